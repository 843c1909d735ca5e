"""W3C trace context (`traceparent`, `tracestate`) on the way to the upstream.

`tracing.mode`:
* passthrough (default) — both headers reach the upstream exactly as the client sent them;
  the gateway does nothing per request (no TracePolicy is built).
* participate — the trace continues through the gateway: same trace id and flags, the
  gateway's own parent id (its request span's when OpenTelemetry export is on), and the
  client's `tracestate` as §3.3 has a vendor pass it on (`tracestate_to_forward`). An
  invalid or missing `traceparent` starts a new trace, and its `tracestate` is dropped.
* restart — clients are not trusted to choose trace ids: every forwarded request starts a
  new trace; the client's headers are dropped.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from multidict import CIMultiDictProxy

if TYPE_CHECKING:
    from gateway.edge import Exchange

TraceMode = Literal["passthrough", "participate", "restart"]
TRACE_HEADERS: Final = frozenset({"traceparent", "tracestate"})
# version-traceid-parentid-flags; a future version may append fields (W3C §3.2.4).
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_VERSION_00: Final = re.compile(
    r"00-(?!0{32})([0-9a-f]{32})-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
).fullmatch
_ZERO_TRACE: Final = "0" * 32
_ZERO_PARENT: Final = "0" * 16
MAX_TRACESTATE: Final = 512  # W3C §3.3.1.5: at least 512 characters kept; we keep 512
MAX_MEMBERS: Final = 32  # W3C §3.3.1.1
LONG_MEMBER: Final = 128  # §3.3.1.5: members longer than this are dropped first
# §3.3.1.3: key "=" value. A key is a simple key (lower-case letter or digit first, as
# Level 2 allows) or tenant@system; a value is printable ASCII but "," and "=", not ending
# in a space.
_KEY_CHAR: Final = r"[a-z0-9_\-*/]"
_VALUE_CHAR: Final = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER: Final = re.compile(
    rf"(?:[a-z0-9]{_KEY_CHAR}{{0,255}}|[a-z0-9]{_KEY_CHAR}{{0,240}}@[a-z]{_KEY_CHAR}{{0,13}})"
    rf"={_VALUE_CHAR}{{0,255}}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
).fullmatch
CurrentSpan = Callable[[], "tuple[str, str, str] | None"]  # (trace id, span id, flags)


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: str
    parent_id: str
    flags: str

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"


def parse_traceparent(value: str | None) -> TraceParent | None:
    """A valid `traceparent` value's parts, else None (W3C Trace Context §3.2)."""
    if value is None or len(value) < 55:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE:
        return None
    if parent_id == _ZERO_PARENT:
        return None
    return TraceParent(trace_id, parent_id, flags)


def incoming_trace_id(headers: Mapping[str, str]) -> str | None:
    """The trace id of the client's `traceparent`, when it sent a valid one (read for every
    access line: version 00, nearly all of them, is one regular expression)."""
    value = headers.get("traceparent")
    if value is None:
        return None
    match = _VERSION_00(value)
    if match is not None:
        return match.group(1)
    parsed = parse_traceparent(value)
    return parsed.trace_id if parsed is not None else None


def tracestate_to_forward(values: list[str]) -> str | None:
    """The `tracestate` a participant passes on, from the client's fields (W3C Trace Context
    §3.3), or None to send none.

    The fields are one list; whitespace around members and empty members are skipped. More
    than 32 members, a member off the grammar or a key twice discards the whole list (as the
    W3C test suite expects of a participant). Above 512 characters, members over 128
    characters are dropped first, then members from the right (§3.3.1.5).
    """
    members: list[str] = []
    keys: set[str] = set()
    for value in values:
        for raw in value.split(","):
            member = raw.strip(" \t")
            if not member:
                continue
            key = member.partition("=")[0]
            if _MEMBER(member) is None or key in keys or len(members) == MAX_MEMBERS:
                return None
            keys.add(key)
            members.append(member)
    size = sum(map(len, members)) + len(members) - 1
    while size > MAX_TRACESTATE:
        long = next((i for i, m in enumerate(members) if len(m) > LONG_MEMBER), len(members) - 1)
        size -= len(members.pop(long)) + 1
    return ",".join(members) or None


def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"  # ids, not secrets (W3C §3.2.2.3)


def new_parent_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


class TracePolicy:
    """The trace context fields sent upstream in `participate` and `restart` modes; the
    client's own `traceparent`/`tracestate` are dropped by the header policy."""

    def __init__(self, mode: TraceMode, *, current_span: CurrentSpan | None = None):
        if mode == "passthrough":
            raise ValueError("passthrough needs no TracePolicy")
        self._participate = mode == "participate"
        self._current_span = current_span

    def upstream_fields(
        self, headers: CIMultiDictProxy[str], exchange: Exchange
    ) -> list[tuple[bytes, bytes]]:
        """`traceparent` (and, when the trace continues, the client's `tracestate`); the
        trace id is noted on the exchange for the access log."""
        incoming = None
        if self._participate:
            values = headers.getall("traceparent", [])
            incoming = parse_traceparent(values[0]) if len(values) == 1 else None
        own = self._current_span() if self._current_span is not None else None
        if own is not None:  # OpenTelemetry's request span: its context is the parent
            parent = TraceParent(*own)
        elif incoming is not None:
            parent = TraceParent(incoming.trace_id, new_parent_id(), incoming.flags)
        else:
            parent = TraceParent(new_trace_id(), new_parent_id(), "01")
        exchange.trace_id = parent.trace_id
        fields = [(b"traceparent", parent.header().encode("ascii"))]
        if incoming is not None and incoming.trace_id == parent.trace_id:
            state = tracestate_to_forward(headers.getall("tracestate", []))
            if state is not None:
                fields.append((b"tracestate", state.encode("ascii")))
        return fields
