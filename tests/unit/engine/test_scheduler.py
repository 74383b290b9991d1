"""The embed scheduler against a scripted provider: dedup, cache, packing, concurrency, throttling,
admission, deadlines and cancellation. Assertions are on call counts and overlap, never wall time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from onespace.config import Settings
from onespace.content import Content, Purpose
from onespace.engine import Admission, EmbedScheduler
from onespace.errors import DeadlineExceeded, Internal, ResourceExhausted, Unavailable
from onespace.metrics import Metrics
from onespace.models import Modality
from onespace.providers.base import EmbedInput
from tests.scripted import ScriptedProvider


def text(s: str) -> EmbedInput:
    return EmbedInput(
        Content(Modality.TEXT, text=s), "onespace.local-multimodal-v1", 256, Purpose.GENERIC_INDEX
    )


def later(seconds: float = 30.0) -> float:
    return time.monotonic() + seconds


@pytest.fixture
async def scheduler_for(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    made: list[EmbedScheduler] = []

    async def build(provider: ScriptedProvider, **overrides: Any) -> EmbedScheduler:
        s = EmbedScheduler(provider, Settings().replace(**overrides), Metrics())
        await s.start()
        made.append(s)
        return s

    yield build
    for s in made:
        await s.stop(1.0)


async def test_identical_inputs_in_flight_make_one_call_and_the_cache_serves_repeats(
    scheduler_for: Any,
) -> None:
    provider = ScriptedProvider(latency=0.02)
    scheduler = await scheduler_for(provider, queue_capacity=2000)
    items = [text(f"input {i % 100}") for i in range(1000)]
    outcomes = await asyncio.gather(
        *(scheduler.embed(i, deadline=later(), admission=Admission.FAIL_FAST) for i in items)
    )
    assert len(provider.calls) == 100
    for item, outcome in zip(items, outcomes, strict=True):
        assert (
            outcome.result.embeddings[0].vector == ScriptedProvider._vector(item).embeddings[0].vector
        ).all()
    again = await asyncio.gather(
        *(scheduler.embed(i, deadline=later(), admission=Admission.FAIL_FAST) for i in items)
    )
    assert len(provider.calls) == 100  # warm cache: zero more calls
    assert all(o.cached for o in again)


async def test_cache_disabled_still_dedups_but_repeats_call_again(scheduler_for: Any) -> None:
    provider = ScriptedProvider(latency=0.01)
    scheduler = await scheduler_for(provider, cache_bytes=0)
    await asyncio.gather(
        *(scheduler.embed(text("same"), deadline=later(), admission=Admission.FAIL_FAST) for _ in range(50))
    )
    assert len(provider.calls) == 1
    await scheduler.embed(text("same"), deadline=later(), admission=Admission.FAIL_FAST)
    assert len(provider.calls) == 2


async def test_concurrency_is_bounded_by_the_limit_and_used_fully(scheduler_for: Any) -> None:
    provider = ScriptedProvider(latency=0.02)
    scheduler = await scheduler_for(provider, concurrency_initial=8, concurrency_max=8, cache_bytes=0)
    await asyncio.gather(
        *(scheduler.embed(text(f"x{i}"), deadline=later(), admission=Admission.FAIL_FAST) for i in range(80))
    )
    assert len(provider.calls) == 80
    # N·L/C, not N·L: calls overlapped up to the limit and never beyond it
    assert provider.peak == 8


async def test_list_providers_get_packed_calls(scheduler_for: Any) -> None:
    provider = ScriptedProvider(latency=0.01, max_batch_size=96)
    scheduler = await scheduler_for(provider, concurrency_initial=1, concurrency_max=1, max_batch_wait_ms=20)
    await asyncio.gather(
        *(scheduler.embed(text(f"t{i}"), deadline=later(), admission=Admission.FAIL_FAST) for i in range(300))
    )
    assert sum(provider.calls) == 300
    assert max(provider.calls) == 96
    assert len(provider.calls) <= 5


async def test_a_failed_call_fails_every_caller_in_it(scheduler_for: Any) -> None:
    provider = ScriptedProvider(latency=0.01, max_batch_size=8, fail_with=Internal("model error"))
    scheduler = await scheduler_for(provider, max_batch_wait_ms=20)
    results = await asyncio.gather(
        *(scheduler.embed(text(f"t{i}"), deadline=later(), admission=Admission.FAIL_FAST) for i in range(8)),
        return_exceptions=True,
    )
    assert len(provider.calls) == 1
    assert all(isinstance(r, Internal) for r in results)
    assert scheduler.queued == 0


async def test_throttling_storm_halves_the_limit_then_it_recovers(scheduler_for: Any) -> None:
    provider = ScriptedProvider(latency=0.005, capacity=4)
    scheduler = await scheduler_for(provider, concurrency_initial=32, concurrency_max=32, cache_bytes=0)
    first = await asyncio.gather(
        *(scheduler.embed(text(f"a{i}"), deadline=later(), admission=Admission.FAIL_FAST) for i in range(64)),
        return_exceptions=True,
    )
    assert provider.throttles > 0
    assert scheduler.limiter.decreases >= 1
    assert scheduler.limiter.limit <= 8
    assert all(isinstance(r, ResourceExhausted) for r in first if isinstance(r, Exception))
    # the provider now copes: successes grow the limit again
    provider.capacity = None
    low = scheduler.limiter.limit
    for batch in range(10):
        await asyncio.gather(
            *(
                scheduler.embed(text(f"b{batch}-{i}"), deadline=later(), admission=Admission.FAIL_FAST)
                for i in range(32)
            )
        )
    assert scheduler.limiter.limit > low


async def test_unary_admission_fails_fast_when_the_queue_is_full(scheduler_for: Any) -> None:
    provider = ScriptedProvider(latency=0.2)
    scheduler = await scheduler_for(
        provider, queue_capacity=10, concurrency_initial=1, concurrency_max=1, retry_pushback_ms=250
    )
    tasks = [
        asyncio.create_task(scheduler.embed(text(f"q{i}"), deadline=later(), admission=Admission.FAIL_FAST))
        for i in range(30)
    ]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    served = [r for r in results if not isinstance(r, Exception)]
    assert refused and served
    assert all(r.retry_after_seconds == 0.25 for r in refused)
    assert len(served) == len(provider.seen)  # refused items were never sent


async def test_stream_admission_waits_instead_of_failing(scheduler_for: Any) -> None:
    provider = ScriptedProvider(latency=0.005)
    scheduler = await scheduler_for(provider, queue_capacity=4, concurrency_initial=2, concurrency_max=2)
    peak_queue = 0

    async def watch() -> None:
        nonlocal peak_queue
        while True:
            peak_queue = max(peak_queue, scheduler.queued)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(
        *(scheduler.embed(text(f"s{i}"), deadline=later(), admission=Admission.WAIT) for i in range(100))
    )
    watcher.cancel()
    assert len(results) == 100
    assert peak_queue <= 4


async def test_items_past_their_deadline_in_the_queue_are_never_sent(scheduler_for: Any) -> None:
    provider = ScriptedProvider(latency=0.1)
    scheduler = await scheduler_for(provider, concurrency_initial=1, concurrency_max=1, cache_bytes=0)
    blocker = asyncio.create_task(
        scheduler.embed(text("blocker"), deadline=later(), admission=Admission.FAIL_FAST)
    )
    await asyncio.sleep(0.01)
    short = [
        asyncio.create_task(
            scheduler.embed(text(f"d{i}"), deadline=later(0.03), admission=Admission.FAIL_FAST)
        )
        for i in range(5)
    ]
    results = await asyncio.gather(*short, return_exceptions=True)
    await blocker
    assert all(isinstance(r, DeadlineExceeded) for r in results)
    await asyncio.sleep(0.05)
    assert [i.content.text for i in provider.seen] == ["blocker"]
    assert scheduler.queued == 0


async def test_cancelled_callers_items_are_dropped_unsent(scheduler_for: Any) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider(gate=gate)
    scheduler = await scheduler_for(provider, concurrency_initial=1, concurrency_max=1)
    blocker = asyncio.create_task(
        scheduler.embed(text("blocker"), deadline=later(), admission=Admission.FAIL_FAST)
    )
    await provider.started.wait()  # the blocker holds the only concurrency slot
    doomed = [
        asyncio.create_task(scheduler.embed(text(f"c{i}"), deadline=later(), admission=Admission.FAIL_FAST))
        for i in range(10)
    ]
    while scheduler.queued < 10:  # let each task run up to its enqueue (loop turns, no timing)
        await asyncio.sleep(0)
    for t in doomed:
        t.cancel()
    await asyncio.gather(*doomed, return_exceptions=True)
    gate.set()
    await blocker
    # Items go out in order: once a later item is answered, no cancelled one was sent before it.
    await scheduler.embed(text("after"), deadline=later(), admission=Admission.FAIL_FAST)
    assert [i.content.text for i in provider.seen] == ["blocker", "after"]
    assert scheduler.queued == 0


async def test_a_joined_item_survives_when_one_of_its_callers_leaves(scheduler_for: Any) -> None:
    provider = ScriptedProvider(latency=0.05)
    scheduler = await scheduler_for(provider)
    a = asyncio.create_task(scheduler.embed(text("shared"), deadline=later(), admission=Admission.FAIL_FAST))
    b = asyncio.create_task(scheduler.embed(text("shared"), deadline=later(), admission=Admission.FAIL_FAST))
    await asyncio.sleep(0)
    a.cancel()
    outcome = await b
    assert outcome.result.embeddings
    assert len(provider.calls) == 1


async def test_stop_fails_queued_items_and_refuses_new_ones() -> None:
    provider = ScriptedProvider(latency=0.1)
    scheduler = EmbedScheduler(
        provider, Settings().replace(concurrency_initial=1, concurrency_max=1), Metrics()
    )
    await scheduler.start()
    tasks = [
        asyncio.create_task(scheduler.embed(text(f"z{i}"), deadline=later(), admission=Admission.FAIL_FAST))
        for i in range(5)
    ]
    await asyncio.sleep(0.01)
    await scheduler.stop(1.0)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert not isinstance(results[0], Exception)  # the call under way finished
    assert all(isinstance(r, Unavailable) for r in results[1:])
    with pytest.raises(Unavailable):
        await scheduler.embed(text("late"), deadline=later(), admission=Admission.FAIL_FAST)
