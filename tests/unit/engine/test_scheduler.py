"""The embed scheduler against a scripted provider: dedup, cache, packing, concurrency, throttling,
admission, deadlines, cancellation, groups served side by side, and a batch split to isolate the
input a provider refused. Assertions are on call counts and overlap, never wall time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from onespace.config import Settings
from onespace.content import Content, Purpose
from onespace.engine import Admission, EmbedScheduler
from onespace.engine.scheduler import EmbedOutcome, GivenUp
from onespace.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    OnespaceError,
    ResourceExhausted,
    Unavailable,
)
from onespace.metrics import Metrics
from onespace.models import LOCAL_MODEL, Modality
from onespace.providers.base import EmbedInput, ProviderResult
from onespace_client.v1 import common_pb2, embed_pb2
from tests.harness import running_gateway, until
from tests.scripted import RefusingProvider, ScriptedProvider


def text(s: str) -> EmbedInput:
    return EmbedInput(
        Content(Modality.TEXT, text=s), "onespace.local-multimodal-v1", 256, Purpose.GENERIC_INDEX
    )


def later(seconds: float = 30.0) -> float:
    return time.monotonic() + seconds


async def each_outcome(
    scheduler: EmbedScheduler, items: list[EmbedInput], **kw: Any
) -> list[EmbedOutcome | OnespaceError]:
    """Every outcome of a stream's group (`embed_as_done`), in input order, once all are known."""
    each: dict[int, EmbedOutcome | OnespaceError] = {}
    async with contextlib.aclosing(scheduler.embed_as_done(items, **kw)) as waves:
        async for wave in waves:
            each.update(wave)
    return [each[i] for i in range(len(items))]


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
    gate = asyncio.Event()
    provider = ScriptedProvider(gate=gate)
    scheduler = await scheduler_for(provider, concurrency_initial=1, concurrency_max=1, cache_bytes=0)
    blocker = asyncio.create_task(
        scheduler.embed(text("blocker"), deadline=later(), admission=Admission.FAIL_FAST)
    )
    await provider.started.wait()  # the blocker holds the only concurrency slot
    short = [
        asyncio.create_task(
            scheduler.embed(text(f"d{i}"), deadline=later(0.03), admission=Admission.FAIL_FAST)
        )
        for i in range(5)
    ]
    results = await asyncio.gather(*short, return_exceptions=True)
    assert all(isinstance(r, DeadlineExceeded) for r in results)
    assert scheduler.queued == 0
    gate.set()
    await blocker
    # Items go out in order: once a later item is answered, no expired one was sent before it.
    await scheduler.embed(text("after"), deadline=later(), admission=Admission.FAIL_FAST)
    assert [i.content.text for i in provider.seen] == ["blocker", "after"]


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
    await provider.started.wait()  # z0 is under way (its call takes 0.1 s of the 1 s grace)
    await until(lambda: scheduler.queued == 4, "the other 4 queued behind it")
    await scheduler.stop(1.0)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert not isinstance(results[0], Exception)  # the call under way finished
    assert all(isinstance(r, Unavailable) for r in results[1:])
    with pytest.raises(Unavailable):
        await scheduler.embed(text("late"), deadline=later(), admission=Admission.FAIL_FAST)


def image(seed: int) -> EmbedInput:
    return EmbedInput(
        Content(Modality.IMAGE, data=bytes([seed]) * 8, format="png"),
        "onespace.local-multimodal-v1",
        256,
        Purpose.GENERIC_INDEX,
    )


async def test_a_partial_batch_filling_up_does_not_hold_back_another_group(scheduler_for: Any) -> None:
    provider = ScriptedProvider(max_batch_size=96)  # texts pack 96 a call, images go one by one
    scheduler = await scheduler_for(provider, max_batch_wait_ms=600_000)  # texts wait to fill
    first = asyncio.create_task(scheduler.embed(text("t0"), deadline=later(), admission=Admission.FAIL_FAST))
    while scheduler.queued < 1:
        await asyncio.sleep(0)
    # the text batch is waiting to fill; the image is ready at once and must not wait behind it
    outcome = await scheduler.embed(image(1), deadline=later(5), admission=Admission.FAIL_FAST)
    assert outcome.result.embeddings
    assert not first.done()
    await asyncio.gather(
        first,
        *(
            scheduler.embed(text(f"t{i}"), deadline=later(), admission=Admission.FAIL_FAST)
            for i in range(1, 96)
        ),
    )
    assert provider.calls == [1, 96]


async def test_a_group_queued_while_another_waited_to_fill_is_served_after_it(scheduler_for: Any) -> None:
    # Cohere's max_batch 96: a [text, image] request's image once waited until its deadline
    provider = ScriptedProvider(max_batch_size=96)
    scheduler = await scheduler_for(provider, max_batch_wait_ms=20)
    results = await asyncio.gather(
        scheduler.embed(text("caption"), deadline=later(5), admission=Admission.FAIL_FAST),
        scheduler.embed(image(2), deadline=later(5), admission=Admission.FAIL_FAST),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, Exception)]
    assert sorted(provider.calls) == [1, 1]
    assert scheduler.queued == 0


async def test_one_refused_input_fails_only_its_caller(scheduler_for: Any) -> None:
    provider = RefusingProvider(max_batch_size=8)
    metrics = Metrics()
    scheduler = EmbedScheduler(provider, Settings().replace(max_batch_wait_ms=600_000), metrics)
    await scheduler.start()
    try:
        items = [text("bad input" if i == 5 else f"good {i}") for i in range(8)]
        results = await asyncio.gather(
            *(scheduler.embed(i, deadline=later(), admission=Admission.FAIL_FAST) for i in items),
            return_exceptions=True,
        )
    finally:
        await scheduler.stop(1.0)
    refused = results[5]
    assert isinstance(refused, InvalidArgument) and "'bad input'" in refused.message
    for item, result in zip(items, results, strict=True):
        if item is items[5]:
            continue
        assert isinstance(result, EmbedOutcome)
        assert (
            result.result.embeddings[0].vector == ScriptedProvider._vector(item).embeddings[0].vector
        ).all()
    # 8 refused, then halves: 4 ok + 4 refused, 2 ok + 2 refused, 1 ok + 1 refused
    assert provider.refused == [8, 4, 2, 1]
    assert sorted(provider.calls) == [1, 2, 4]
    assert scheduler.provider_calls == 7 and scheduler.split_calls == 6
    split = metrics.registry.get_sample_value(
        "onespace_provider_retries_total", {"model": items[0].model, "reason": "split"}
    )
    assert split == 6
    assert scheduler.limiter.in_flight == 0 and scheduler.queued == 0


async def test_a_split_half_drops_callers_whose_deadline_passed() -> None:
    now = [1000.0]
    provider = RefusingProvider(max_batch_size=4)
    provider.on_refusal = lambda: now.__setitem__(0, now[0] + 10)  # each refusal takes 10 s
    scheduler = EmbedScheduler(
        provider, Settings().replace(max_batch_wait_ms=600_000), Metrics(), clock=lambda: now[0]
    )
    await scheduler.start()
    try:
        # the real loop's timers see 30 s deadlines; the scheduler's clock sees 5 s for "short"
        deadlines = [now[0] + 30, now[0] + 5, now[0] + 30, now[0] + 30]
        items = [text("bad one"), text("short"), text("fine 1"), text("fine 2")]
        results = await asyncio.gather(
            *(
                scheduler.embed(item, deadline=d, admission=Admission.FAIL_FAST)
                for item, d in zip(items, deadlines, strict=True)
            ),
            return_exceptions=True,
        )
    finally:
        await scheduler.stop(1.0)
    assert isinstance(results[0], InvalidArgument)
    assert isinstance(results[1], DeadlineExceeded)
    assert all(isinstance(r, EmbedOutcome) for r in results[2:])
    assert [i.content.text for i in provider.seen].count("short") == 1  # never sent again
    assert scheduler.limiter.in_flight == 0


@pytest.mark.parametrize(
    "error", [ResourceExhausted("throttled", retry_after_seconds=0.01), Internal("model error")]
)
async def test_throttled_or_failed_batches_are_not_split(scheduler_for: Any, error: Exception) -> None:
    provider = ScriptedProvider(max_batch_size=8, fail_with=error)  # type: ignore[arg-type]
    scheduler = await scheduler_for(provider, max_batch_wait_ms=600_000)
    results = await asyncio.gather(
        *(scheduler.embed(text(f"t{i}"), deadline=later(), admission=Admission.FAIL_FAST) for i in range(8)),
        return_exceptions=True,
    )
    assert provider.calls == [8]
    assert all(r is error for r in results)
    assert scheduler.split_calls == 0
    assert scheduler.limiter.in_flight == 0


async def test_stop_answers_the_callers_of_a_call_cut_off_after_the_grace_period() -> None:
    provider = ScriptedProvider(gate=asyncio.Event())  # never opened: the call outlives the grace
    scheduler = EmbedScheduler(provider, Settings(), Metrics())
    await scheduler.start()
    caller = asyncio.create_task(
        scheduler.embed(text("slow"), deadline=later(5), admission=Admission.FAIL_FAST)
    )
    await provider.started.wait()
    await scheduler.stop(0.0)
    with pytest.raises(Unavailable):
        await caller
    assert scheduler.limiter.in_flight == 0


async def test_a_refused_input_through_grpc_fails_only_its_own_rpc(tmp_path: Path) -> None:
    provider = RefusingProvider(max_batch_size=8)
    async with running_gateway(tmp_path, provider, max_batch_wait_ms=600_000) as gw:
        calls: list[Any] = [
            gw.embed.Embed(
                embed_pb2.EmbedRequest(items=[common_pb2.Content(text="bad input" if i == 3 else f"ok {i}")])
            )
            for i in range(8)
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert provider.refused[0] == 8  # they went as one call
    for i, outcome in enumerate(outcomes):
        if i == 3:
            assert isinstance(outcome, grpc.aio.AioRpcError)
            assert outcome.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "'bad input'" in (outcome.details() or "")
        else:
            assert isinstance(outcome, embed_pb2.EmbedResponse) and len(outcome.results) == 1


async def test_a_throttled_call_over_a_cut_limit_retries_when_a_permit_is_free(scheduler_for: Any) -> None:
    """The retry of a call holding a permit above a limit just cut waits for a call to finish (its
    permit given back, queued first after its backoff), instead of retrying into a full upstream
    while holding it: the retry goes out only once the slow call has answered."""
    slow_may_finish = asyncio.Event()
    cut = asyncio.Event()
    seen: list[tuple[str, int, int]] = []

    class Provider(ScriptedProvider):
        async def embed(
            self,
            inputs: Sequence[EmbedInput],
            *,
            deadline: float | None = None,
            interactive: bool = False,
        ) -> list[ProviderResult]:
            assert self.events is not None
            limiter = scheduler.limiter
            if inputs[0].content.text == "slow":
                self.started.set()
                await slow_may_finish.wait()
                seen.append(("slow answered", limiter.in_flight, limiter.limit))
                return [self._vector(i) for i in inputs]
            for _ in range(4):  # throttled 4 times in a row: the limit is cut by a permit
                self.events.throttled(inputs[0].model)
                if limiter.over_limit:
                    cut.set()
                await self.events.backoff(inputs[0].model, "throttling", 0.001)
            seen.append(("retry sent", limiter.in_flight, limiter.limit))
            return [self._vector(i) for i in inputs]

    provider = Provider()
    scheduler = await scheduler_for(provider, concurrency_initial=2, concurrency_max=2, cache_bytes=0)
    async with asyncio.timeout(30):
        slow = asyncio.create_task(
            scheduler.embed(text("slow"), deadline=later(), admission=Admission.FAIL_FAST)
        )
        await provider.started.wait()
        fast = asyncio.create_task(
            scheduler.embed(text("fast"), deadline=later(), admission=Admission.FAIL_FAST)
        )
        await cut.wait()
        assert scheduler.limiter.limit == 1
        while scheduler.limiter.over_limit:  # a loop turn or two: the throttled call gives back
            await asyncio.sleep(0)
        slow_may_finish.set()
        await asyncio.gather(slow, fast)
    # the throttled call gave its permit back: the slow call alone held one, then the retry did
    assert seen == [("slow answered", 1, 1), ("retry sent", 1, 1)]
    assert scheduler.limiter.in_flight == 0


async def test_a_throttled_call_under_the_limit_keeps_its_permit_and_sleeps_its_backoff(
    scheduler_for: Any,
) -> None:
    seen: list[int] = []

    class Provider(ScriptedProvider):
        async def embed(
            self,
            inputs: Sequence[EmbedInput],
            *,
            deadline: float | None = None,
            interactive: bool = False,
        ) -> list[ProviderResult]:
            assert self.events is not None
            self.events.throttled(inputs[0].model)
            await self.events.backoff(inputs[0].model, "throttling", 0.001)
            seen.append(scheduler.limiter.in_flight)
            return [self._vector(i) for i in inputs]

    scheduler = await scheduler_for(Provider(), concurrency_initial=2, concurrency_max=2, cache_bytes=0)
    await scheduler.embed(text("once"), deadline=later(), admission=Admission.FAIL_FAST)
    assert seen == [1] and scheduler.limiter.limit == 2 and scheduler.limiter.in_flight == 0


async def test_every_attempt_retries_included_takes_a_slot_from_the_pace(scheduler_for: Any) -> None:
    slots: list[str] = []

    class Provider(ScriptedProvider):
        async def embed(
            self,
            inputs: Sequence[EmbedInput],
            *,
            deadline: float | None = None,
            interactive: bool = False,
        ) -> list[ProviderResult]:
            assert self.events is not None
            slots.append("attempt")
            if inputs[0].content.text == "throttled twice":
                self.events.throttled(inputs[0].model)
                await self.events.backoff(inputs[0].model, "throttling", 0.001)
                slots.append("attempt")  # the retry
                self.events.throttled(inputs[0].model)
                await self.events.backoff(inputs[0].model, "throttling", 0.001)
                slots.append("attempt")
            return [self._vector(i) for i in inputs]

    scheduler = await scheduler_for(Provider(), cache_bytes=0)
    pacer = scheduler.limiter.pacer
    reserve = pacer.reserve

    def counted() -> float:
        slots.append("slot")
        return reserve()

    pacer.reserve = counted  # type: ignore[method-assign]
    await scheduler.embed(text("plain"), deadline=later(), admission=Admission.FAIL_FAST)
    await scheduler.embed(text("throttled twice"), deadline=later(), admission=Admission.FAIL_FAST)
    # a slot before the first attempt of each call, and before each retry after its backoff
    assert slots == ["slot", "attempt"] + ["slot", "attempt"] * 3
    # paced: the slots are spaced out (the wait itself is the pacer's, tested on a fake clock)
    pacer.rate = 1000.0
    await scheduler.embed(text("paced"), deadline=later(), admission=Admission.FAIL_FAST)
    assert slots[-2:] == ["slot", "attempt"] and pacer.delayed == 0


async def test_a_streams_group_gives_each_input_what_embed_gives_it(scheduler_for: Any) -> None:
    """A stream's group: dedup within and across calls, the cache, one provider error for only
    its input, all in input order, with one wait and no task per input."""
    provider = RefusingProvider(max_batch_size=8)
    scheduler = await scheduler_for(provider, max_batch_wait_ms=5)
    warm = await scheduler.embed(text("warm"), deadline=later(), admission=Admission.WAIT)
    items = [text(t) for t in ("a", "b", "a", "bad one", "warm", "c")]
    outcomes = await each_outcome(scheduler, items, deadline=later(), admission=Admission.WAIT)
    assert [type(o).__name__ for o in outcomes] == ["EmbedOutcome"] * 3 + ["InvalidArgument"] + [
        "EmbedOutcome"
    ] * 2
    for item, outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, EmbedOutcome):
            expected = ScriptedProvider._vector(item).embeddings[0].vector
            assert (outcome.result.embeddings[0].vector == expected).all()
    assert isinstance(outcomes[3], InvalidArgument) and "'bad one'" in outcomes[3].message
    assert outcomes[2].joined and not outcomes[0].joined  # type: ignore[union-attr]
    assert outcomes[4].cached and outcomes[4].result == warm.result  # type: ignore[union-attr]
    assert provider.refused[0] == 4  # a, b, "bad one", c: the repeated "a" went once
    assert [i.content.text for i in provider.seen].count("warm") == 1  # then from the cache
    assert (
        scheduler.queued == 0
        and await each_outcome(scheduler, [], deadline=later(), admission=Admission.WAIT) == []
    )


async def test_embed_as_done_hands_each_outcome_back_as_soon_as_it_is_known(scheduler_for: Any) -> None:
    """A stream's group: the cached and refused inputs first, then each embedding as its call
    returns (a repeated input with the one it joined), while a held call answers nothing; a
    consumer that stops iterating leaves the held input as a cancelled caller does."""
    gate = asyncio.Event()
    provider = RefusingProvider(gate=gate, gated_text="held")
    scheduler = await scheduler_for(provider)
    await scheduler.embed(text("warm"), deadline=later(), admission=Admission.WAIT)
    items = [text(t) for t in ("warm", "held", "a", "bad one", "a")]
    waves = scheduler.embed_as_done(items, deadline=later(), admission=Admission.WAIT)
    first = await anext(waves)
    assert [(i, o.cached) for i, o in first] == [(0, True)]  # type: ignore[union-attr]
    rest: dict[int, object] = {}
    while len(rest) < 3:
        rest.update(await anext(waves))
    assert isinstance(rest[3], InvalidArgument) and not gate.is_set()
    assert rest[2].result == rest[4].result and rest[4].joined  # type: ignore[attr-defined]
    assert scheduler.queued == 0 and provider.in_flight == 1  # only "held" is still out
    await waves.aclose()
    gate.set()  # the call still answers, into the cache, for whoever asks next
    again = await scheduler.embed(text("held"), deadline=later(), admission=Admission.WAIT)
    assert again.cached or again.joined
    assert [i.content.text for i in provider.seen].count("held") == 1


async def test_all_or_nothing_ends_at_the_first_failure_without_waiting_for_the_rest(
    scheduler_for: Any,
) -> None:
    """A unary request's group: the provider refuses one input while another is still in flight;
    the wait ends at the refusal (the gate stays shut), the unfinished input is given up, and
    its call runs on for the cache and later callers."""
    gate = asyncio.Event()
    provider = RefusingProvider(max_batch_size=1, gate=gate)
    scheduler = await scheduler_for(provider, concurrency_initial=2, concurrency_max=2)
    group = scheduler.embed_many([text("slow"), text("bad one")], deadline=later(), admission=Admission.WAIT)
    outcomes = await asyncio.wait_for(group, 30)  # a guard only: it must not wait for the gate
    assert not gate.is_set()
    assert isinstance(outcomes[0], GivenUp) and isinstance(outcomes[1], InvalidArgument)
    assert provider.refused == [1]
    gate.set()  # the given-up call was sent: it still answers, into the cache
    again = await scheduler.embed(text("slow"), deadline=later(), admission=Admission.WAIT)
    assert again.cached or again.joined
    assert [i.content.text for i in provider.seen].count("slow") == 1


async def test_all_or_nothing_stops_queueing_at_a_refused_admission(scheduler_for: Any) -> None:
    """Past the queue's capacity a fail-fast group stops at the refused input: nothing after it is
    queued, and what it had queued is dropped unsent."""
    gate = asyncio.Event()
    provider = ScriptedProvider(gate=gate)
    scheduler = await scheduler_for(
        provider, concurrency_initial=1, concurrency_max=1, queue_capacity=2, cache_bytes=0
    )
    blocker = asyncio.create_task(
        scheduler.embed(text("blocker"), deadline=later(), admission=Admission.WAIT)
    )
    await provider.started.wait()  # the only slot is taken: what follows stays queued
    items = [text(t) for t in ("a", "b", "c", "d")]
    outcomes = await scheduler.embed_many(items, deadline=later(), admission=Admission.FAIL_FAST)
    assert [type(o) for o in outcomes] == [GivenUp, GivenUp, ResourceExhausted, GivenUp]
    assert scheduler.queued == 0
    each = await each_outcome(scheduler, items, deadline=later(0.5), admission=Admission.FAIL_FAST)
    waited = [DeadlineExceeded, DeadlineExceeded, ResourceExhausted, ResourceExhausted]
    assert [type(o) for o in each] == waited  # each input its own outcome, after the wait
    gate.set()
    await blocker
    assert [i.content.text for i in provider.seen] == ["blocker"]


async def test_a_streams_group_past_its_deadline_or_cancelled_leaves_nothing_queued(
    scheduler_for: Any,
) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider(gate=gate)
    scheduler = await scheduler_for(provider, concurrency_initial=1, concurrency_max=1, cache_bytes=0)
    blocker = asyncio.create_task(
        scheduler.embed(text("blocker"), deadline=later(), admission=Admission.WAIT)
    )
    await provider.started.wait()  # the only slot is taken: what follows stays queued
    late = await each_outcome(
        scheduler, [text("x"), text("y")], deadline=time.monotonic() + 0.05, admission=Admission.WAIT
    )
    assert all(isinstance(o, DeadlineExceeded) for o in late)
    assert scheduler.queued == 0  # both dropped unsent
    doomed = asyncio.create_task(
        each_outcome(scheduler, [text("p"), text("q")], deadline=later(), admission=Admission.WAIT)
    )
    while scheduler.queued < 2:  # let it enqueue both (loop turns, no timing)
        await asyncio.sleep(0)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert scheduler.queued == 0
    gate.set()
    await blocker
    await scheduler.embed(text("after"), deadline=later(), admission=Admission.WAIT)
    assert [i.content.text for i in provider.seen] == ["blocker", "after"]  # nothing else was sent


# --- interactive first: a unary caller's item goes before a stream's queued items -------------


async def _queued(scheduler: EmbedScheduler, count: int) -> None:
    await until(lambda: scheduler.queued >= count, f"{count} items queued")


async def test_a_unary_callers_item_is_cut_before_the_streams_queued_before_it(scheduler_for: Any) -> None:
    """One call at a time, 4 inputs a call: a stream's 8 queued items, then a unary caller's item
    and a unary caller joining the stream's last item. The next call carries both first, is
    flagged interactive to the provider, and the stream's items follow in their order."""
    gate = asyncio.Event()
    provider = ScriptedProvider(max_batch_size=4, gate=gate)
    scheduler = await scheduler_for(
        provider, concurrency_initial=1, concurrency_min=1, concurrency_max=1, max_batch_wait_ms=0
    )

    def stream(s: str) -> asyncio.Task[EmbedOutcome]:
        return asyncio.create_task(scheduler.embed(text(s), deadline=later(), admission=Admission.WAIT))

    def unary(s: str) -> asyncio.Task[EmbedOutcome]:
        return asyncio.create_task(scheduler.embed(text(s), deadline=later(), admission=Admission.FAIL_FAST))

    running = stream("s0")
    await provider.started.wait()  # s0's call holds the only permit
    queued = [stream(f"s{i}") for i in range(1, 9)]
    await _queued(scheduler, 8)
    waiting = [unary("u"), unary("s8")]  # "s8" joins the stream's queued item
    await _queued(scheduler, 9)
    gate.set()
    outcomes = await asyncio.gather(running, *queued, *waiting)
    assert all(o.result.embeddings for o in outcomes)
    assert [i.content.text for i in provider.seen] == [
        "s0",
        "u",
        "s8",
        "s1",
        "s2",
        "s3",
        "s4",
        "s5",
        "s6",
        "s7",
    ]
    assert provider.calls == [1, 4, 4, 1]
    assert provider.interactive_calls == [False, True, False, False]
    assert outcomes[-1].joined and not outcomes[8].joined  # one input embedded for both callers
    assert scheduler.queued == 0


async def test_a_group_holding_a_unary_callers_item_goes_before_older_stream_groups(
    scheduler_for: Any,
) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider(max_batch_size=4, gate=gate)
    scheduler = await scheduler_for(
        provider, concurrency_initial=1, concurrency_min=1, concurrency_max=1, max_batch_wait_ms=0
    )
    running = asyncio.create_task(scheduler.embed(text("s0"), deadline=later(), admission=Admission.WAIT))
    await provider.started.wait()
    streamed = [
        asyncio.create_task(scheduler.embed(text(f"s{i}"), deadline=later(), admission=Admission.WAIT))
        for i in range(1, 5)
    ]
    await _queued(scheduler, 4)
    wide = EmbedInput(
        Content(Modality.TEXT, text="u"), "onespace.local-multimodal-v1", 512, Purpose.GENERIC_INDEX
    )
    unary = asyncio.create_task(scheduler.embed(wide, deadline=later(), admission=Admission.FAIL_FAST))
    await _queued(scheduler, 5)
    gate.set()
    await asyncio.gather(running, *streamed, unary)
    assert [(i.content.text, i.dimension) for i in provider.seen[:2]] == [("s0", 256), ("u", 512)]
    assert provider.interactive_calls == [False, True, False]


async def _order(
    scheduler_for: Any, queued: Sequence[tuple[EmbedInput, Admission]], **overrides: Any
) -> list[str]:
    """The texts in the order the provider got them, one input a call (as Nova on Bedrock), one
    call at a time: "s0" holds the only permit while `queued` are queued, one after another."""
    provider = ScriptedProvider(max_batch_size=1, gate=asyncio.Event())
    scheduler = await scheduler_for(
        provider,
        concurrency_initial=1,
        concurrency_min=1,
        concurrency_max=1,
        max_batch_wait_ms=0,
        **overrides,
    )
    tasks = [asyncio.create_task(scheduler.embed(text("s0"), deadline=later(), admission=Admission.WAIT))]
    await provider.started.wait()
    for n, (item, admission) in enumerate(queued, start=1):
        tasks.append(asyncio.create_task(scheduler.embed(item, deadline=later(), admission=admission)))
        await _queued(scheduler, n)
    assert provider.gate is not None
    provider.gate.set()
    await asyncio.gather(*tasks)
    return [i.content.text for i in provider.seen]


def _streamed(*names: str) -> list[tuple[EmbedInput, Admission]]:
    return [(text(name), Admission.WAIT) for name in names]


def _unary(*names: str) -> list[tuple[EmbedInput, Admission]]:
    return [(text(name), Admission.FAIL_FAST) for name in names]


async def test_unary_load_never_stalls_a_stream_one_of_its_items_goes_after_eight_unary_ones(
    scheduler_for: Any,
) -> None:
    unary = [f"u{i}" for i in range(20)]
    order = await _order(scheduler_for, _streamed("s1", "s2", "s3") + _unary(*unary))
    assert order == ["s0", *unary[:8], "s1", *unary[8:16], "s2", *unary[16:], "s3"]


async def test_a_stream_group_gets_its_turn_beside_a_group_busy_with_unary_items(scheduler_for: Any) -> None:
    wide = [  # a stream's items in a group of their own (another dimension)
        (
            EmbedInput(Content(Modality.TEXT, text=name), LOCAL_MODEL.id, 512, Purpose.GENERIC_INDEX),
            Admission.WAIT,
        )
        for name in ("w1", "w2")
    ]
    order = await _order(scheduler_for, wide + _unary("u0", "u1", "u2", "u3", "u4"), interactive_burst=2)
    assert order == ["s0", "u0", "u1", "w1", "u2", "u3", "w2", "u4"]


async def test_an_interactive_burst_of_zero_cuts_in_arrival_order(scheduler_for: Any) -> None:
    queued = _streamed("s1") + _unary("u1") + _streamed("s2") + _unary("u2")
    assert await _order(scheduler_for, queued, interactive_burst=0) == ["s0", "s1", "u1", "s2", "u2"]
