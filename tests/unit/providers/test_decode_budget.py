"""The decode budget: a byte semaphore shared by threads and tasks, first come first served, and
what it does to eight concurrent decodes of a 6000x6000 PNG."""

from __future__ import annotations

import asyncio
import threading

import pytest

from onespace.content import MediaLimits, Purpose
from onespace.models import LOCAL_MODEL
from onespace.providers.base import EmbedInput
from onespace.providers.local import LocalProvider, embed_content
from onespace.providers.local.decoding import ByteBudget
from onespace.providers.local.image import decoded_bytes

from .helpers import image
from .limits import big_png


async def test_waiters_are_served_in_arrival_order_even_when_a_later_one_would_fit() -> None:
    budget = ByteBudget(10)
    assert await budget.acquire_async(8) == 8
    big = asyncio.ensure_future(budget.acquire_async(5))
    small = asyncio.ensure_future(budget.acquire_async(1))  # 1 fits now, but `big` came first
    await asyncio.sleep(0)
    assert not big.done() and not small.done() and budget.waits == 2
    budget.release(8)
    assert await big == 5 and await small == 1
    assert budget.used == 6 and budget.peak == 8


async def test_a_request_over_the_capacity_is_cut_to_it_and_runs_alone() -> None:
    budget = ByteBudget(10)
    await budget.acquire_async(1)
    huge = asyncio.ensure_future(budget.acquire_async(1000))
    after = asyncio.ensure_future(budget.acquire_async(1))
    await asyncio.sleep(0)
    assert not huge.done() and not after.done()
    budget.release(1)
    assert await huge == 10 and budget.used == 10
    await asyncio.sleep(0)
    assert not after.done()
    budget.release(10)
    assert await after == 1
    assert budget.peak == 10


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    budget = ByteBudget(4)
    await budget.acquire_async(4)
    first = asyncio.ensure_future(budget.acquire_async(4))
    second = asyncio.ensure_future(budget.acquire_async(2))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    budget.release(4)
    assert await second == 2 and budget.used == 2


async def test_a_waiter_cancelled_after_its_grant_gives_the_bytes_back() -> None:
    budget = ByteBudget(4)
    await budget.acquire_async(4)
    waiter = asyncio.ensure_future(budget.acquire_async(3))
    await asyncio.sleep(0)
    budget.release(4)  # grants the 3 bytes; the task has not resumed yet
    assert budget.used == 3
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.used == 0


def test_threads_block_until_the_bytes_are_released() -> None:
    budget = ByteBudget(100)
    budget.acquire(100)
    got: list[int] = []
    done = threading.Event()

    def worker() -> None:
        got.append(budget.acquire(60))
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    assert not done.is_set()  # it cannot hold 60 of 100 while this thread holds all 100
    budget.release(100)
    thread.join()
    assert got == [60] and budget.used == 60
    with budget.reserve(40) as reserved:
        assert reserved == 40 and budget.used == 100
    assert budget.used == 60


def test_releasing_more_than_is_reserved_is_a_bug() -> None:
    budget = ByteBudget(10)
    budget.acquire(3)
    with pytest.raises(ValueError, match="releasing 4 bytes of the 3 reserved"):
        budget.release(4)
    with pytest.raises(ValueError, match="positive capacity"):
        ByteBudget(0)


@pytest.mark.slow
@pytest.mark.timeout(120)  # without the budget, the decodes never wait and this would hang
async def test_eight_concurrent_6000x6000_pngs_never_reserve_more_than_the_budget() -> None:
    """Eight workers, eight 36-megapixel PNGs of 0.5 MB each: decoded, each needs ~145 MB; the
    256 MiB budget lets one decode at a time, and every vector is the one decoded alone.

    The test holds the whole budget until all eight decodes wait for it, so they contend for sure.
    """
    data = big_png(6000, 6000)
    need = decoded_bytes((6000, 6000), "RGB", "png")
    expected = embed_content(image(data), 256).embeddings[0].vector
    all_waiting = threading.Event()
    provider = LocalProvider(workers=8, limits=MediaLimits(decode_budget_bytes=256 << 20))
    budget = provider.decoding.budget
    assert 2 * need > budget.capacity >= need  # two at once would not fit
    budget.on_change = lambda used, waiting: all_waiting.set() if waiting == 8 else None
    held = budget.acquire(budget.capacity)
    await provider.start()
    try:
        item = EmbedInput(image(data), LOCAL_MODEL.id, 256, Purpose.GENERIC_INDEX)
        calls = asyncio.gather(*(provider.embed([item]) for _ in range(8)))
        await asyncio.to_thread(all_waiting.wait)
        budget.peak = 0  # from here on: the decodes' own high-water mark
        budget.release(held)
        results = await calls
    finally:
        await provider.close()
    assert budget.peak == need  # one decode at a time, reserved in full before decoding
    assert budget.waits == 8 and budget.used == 0
    for (result,) in results:
        assert result.embeddings[0].vector.tobytes() == expected.tobytes()
