"""A clock the tests move by hand, for code that takes `clock=`."""

from __future__ import annotations

import time


class FakeClock:
    """A clock that moves only when a test moves it (`clock.now += 60`)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now
