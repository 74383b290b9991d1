"""A clock that moves only when a test moves it (`clock.now += seconds`), for code that takes an
injectable clock: tests then drive time event by event, never by sleeping."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
