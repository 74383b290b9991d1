"""The pacer's schedule, on a fake clock: slots 1/rate apart, in the order they were asked for."""

from __future__ import annotations

import asyncio

import pytest

from onespace.engine.pacer import Pacer
from tests.clock import FakeClock


def test_not_pacing_never_waits() -> None:
    pacer = Pacer(clock=FakeClock(100.0))
    assert [pacer.reserve() for _ in range(100)] == [0.0] * 100
    assert pacer.delayed == 0


def test_calls_asked_for_at_once_get_successive_slots() -> None:
    clock = FakeClock(100.0)
    pacer = Pacer(clock=clock)
    pacer.rate = 50.0
    waits = [pacer.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])
    assert pacer.delayed == 4
    clock.now += 0.1  # every slot taken has passed: the next call goes at once
    assert pacer.reserve() == 0.0


def test_an_idle_spell_earns_no_more_than_the_burst() -> None:
    clock = FakeClock(100.0)
    pacer = Pacer(burst=3, clock=clock)
    pacer.rate = 10.0
    pacer.reserve()
    clock.now += 60.0
    assert [pacer.reserve() for _ in range(5)] == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_calls_spaced_wider_than_the_pace_never_wait() -> None:
    clock = FakeClock(100.0)
    pacer = Pacer(clock=clock)
    pacer.rate = 100.0
    for _ in range(50):
        assert pacer.reserve() == 0.0
        clock.now += 0.011
    assert pacer.delayed == 0


def test_a_new_rate_applies_from_the_next_slot() -> None:
    clock = FakeClock(100.0)
    pacer = Pacer(clock=clock)
    pacer.rate = 10.0
    assert pacer.reserve() == 0.0
    pacer.rate = 100.0
    assert pacer.reserve() == pytest.approx(0.1)  # the slot the old rate gave
    assert pacer.reserve() == pytest.approx(0.11)
    pacer.rate = None
    assert pacer.reserve() == 0.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_a_pace_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer().rate = bad
    with pytest.raises(ValueError, match="burst"):
        Pacer(burst=0)


async def test_wait_sleeps_until_the_slot() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(clock=loop.time)
    pacer.rate = 200.0
    start = loop.time()
    for _ in range(4):
        await pacer.wait()
    # the first goes at once, the other three each wait for a slot 5 ms after the one before
    assert loop.time() - start >= 0.015 - 1e-3
    assert pacer.delayed == 3
