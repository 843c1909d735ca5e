"""CounterHistory: the gateway's own counters sampled over the last minutes, so the admin
console can say "how many refreshes were reuse detections in the last 5 minutes" without a
Prometheus server."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gateway.observability.metrics import SampleKey

WINDOWS: Final = (60, 300, 900)  # seconds the console reports on


@dataclass(frozen=True, slots=True)
class Increase:
    """How much each counter grew over `seconds` (less than asked for shortly after start)."""

    seconds: float
    deltas: dict[SampleKey, float]

    def by_label(self, sample: str, label: str) -> dict[str, float]:
        """{label value: increase} for one sample name, e.g. refresh outcomes."""
        out: dict[str, float] = {}
        for (name, labels), value in self.deltas.items():
            if name == sample:
                key = dict(labels).get(label, "")
                out[key] = out.get(key, 0.0) + value
        return out


class CounterHistory:
    """Keeps (instant, totals) samples for the longest window; `sample` is called
    periodically (gateway.runtime.lifetimes.sampling_lifetime)."""

    def __init__(
        self,
        read: Callable[[], dict[SampleKey, float]],
        *,
        span: float = max(WINDOWS),
        clock: Callable[[], float] = time.monotonic,
    ):
        self._read = read
        self._span = span
        self._clock = clock
        self._samples: deque[tuple[float, dict[SampleKey, float]]] = deque()

    def sample(self) -> None:
        now = self._clock()
        self._samples.append((now, self._read()))
        # Keep one sample at or before the start of the longest window.
        while len(self._samples) > 1 and self._samples[1][0] <= now - self._span:
            self._samples.popleft()

    def increase(self, seconds: float) -> Increase:
        """Growth of every counter from the sample nearest `seconds` ago until now."""
        now = self._clock()
        current = self._read()
        start_at, start = now, current
        for index, (at, totals) in enumerate(self._samples):
            # The newest sample at or before the window's start; the oldest one if none is.
            if index and at > now - seconds:
                break
            start_at, start = at, totals
        deltas = {
            key: max(0.0, value - start.get(key, 0.0))  # a vanished worker never goes negative
            for key, value in current.items()
        }
        return Increase(seconds=max(0.0, now - start_at), deltas=deltas)
