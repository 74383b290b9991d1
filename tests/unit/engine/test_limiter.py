from __future__ import annotations

import asyncio

import pytest

from onespace.engine.limiter import AdaptiveLimiter


async def test_grows_on_success_and_halves_once_per_epoch_on_throttle() -> None:
    seen: list[int] = []
    limiter = AdaptiveLimiter(initial=8, floor=1, ceiling=16, on_change=seen.append)
    permits = [await limiter.acquire() for _ in range(8)]
    assert limiter.in_flight == 8
    # a burst: all 8 calls issued under the same limit are throttled -> one halving, not eight
    for p in permits:
        limiter.release(p, throttled=True)
    assert limiter.limit == 4
    assert limiter.decreases == 1
    # successes grow it back by about one per window
    for _ in range(40):
        p = await limiter.acquire()
        limiter.release(p, succeeded=True)
    assert limiter.limit > 4
    assert seen[0] == 8 and 4 in seen


async def test_respects_floor_and_ceiling() -> None:
    limiter = AdaptiveLimiter(initial=2, floor=2, ceiling=3)
    for _ in range(5):
        p = await limiter.acquire()
        limiter.release(p, throttled=True)
    assert limiter.limit == 2
    for _ in range(50):
        p = await limiter.acquire()
        limiter.release(p, succeeded=True)
    assert limiter.limit == 3
    with pytest.raises(ValueError):
        AdaptiveLimiter(initial=1, floor=0, ceiling=3)


async def test_waiters_are_served_fifo_and_never_exceed_the_limit() -> None:
    limiter = AdaptiveLimiter(initial=2, floor=1, ceiling=2)
    held = [await limiter.acquire(), await limiter.acquire()]
    order: list[int] = []

    async def worker(i: int) -> None:
        p = await limiter.acquire()
        order.append(i)
        assert limiter.in_flight <= 2
        await asyncio.sleep(0)
        limiter.release(p)

    tasks = [asyncio.create_task(worker(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert order == []
    for p in held:
        limiter.release(p)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert limiter.peak_in_flight == 2 and limiter.in_flight == 0


async def test_cancelled_waiter_does_not_leak_a_permit() -> None:
    limiter = AdaptiveLimiter(initial=1, floor=1, ceiling=1)
    held = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    limiter.release(held)
    await asyncio.gather(waiter, return_exceptions=True)
    assert limiter.in_flight == 0
    p = await asyncio.wait_for(limiter.acquire(), 1)
    limiter.release(p)
