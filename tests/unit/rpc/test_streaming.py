"""The stream core (`bounded_group_batches`; one-item streams are groups of one): the window
bounds reads and work, answers come as items finish, shutdown stops reading at once and still
answers the window, and a departing caller leaves nothing running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from onespace.errors import InvalidArgument, Unavailable
from onespace.rpc.streaming import BadFrame, Tracker, bounded_group_batches, flattened, singletons

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def bounded_batches(
    requests: AsyncIterable[Req],
    handle: Callable[[Req], Awaitable[Resp]],
    window: int,
    in_window: Tracker | None = None,
    stop: asyncio.Event | None = None,
    max_batch: int = 1,
) -> AsyncGenerator[list[Resp], None]:
    """A one-item stream as the servicers build it: groups of one, each answered by `handle`."""

    async def each(group: list[Req]) -> AsyncGenerator[list[Resp], None]:
        yield [await handle(group[0])]

    return bounded_group_batches(singletons(requests), each, window, in_window, stop, max_batch)


def bounded_stream(
    requests: AsyncIterable[Req],
    handle: Callable[[Req], Awaitable[Resp]],
    window: int,
    in_window: Tracker | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncGenerator[Resp, None]:
    return flattened(bounded_batches(requests, handle, window, in_window, stop))


class Gauge:
    def __init__(self) -> None:
        self.value = 0.0
        self.peak = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount
        self.peak = max(self.peak, self.value)

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


class Source:
    """An async request stream that counts how far it has been read."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.read = 0
        self.more = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[int]:
        for i in range(self.count):
            self.read += 1
            self.more.set()
            yield i


async def test_at_most_window_items_are_read_and_worked_on() -> None:
    source, gauge = Source(100), Gauge()
    gates = {i: asyncio.Event() for i in range(100)}

    async def handle(i: int) -> int:
        await gates[i].wait()
        return i

    stream = bounded_stream(source, handle, 8, gauge)
    first = asyncio.ensure_future(anext(stream))
    while source.read < 8:
        await source.more.wait()
        source.more.clear()
    for _ in range(5):
        await asyncio.sleep(0)  # let the reader try for more: the window is full
    assert source.read == 8 and gauge.value == 8
    gates[5].set()
    assert await first == 5  # answers come as items finish, not in order
    answers = [5]
    for i in range(100):
        gates[i].set()
    answers += [r async for r in stream]
    assert sorted(answers) == list(range(100)) and gauge.peak == 8 and gauge.value == 0


async def test_stop_ends_reading_at_once_then_answers_the_window_and_raises() -> None:
    source, stop = Source(1000), asyncio.Event()
    release = asyncio.Event()
    started = asyncio.Event()
    seen: list[int] = []

    async def handle(i: int) -> int:
        seen.append(i)
        if len(seen) == 4:
            started.set()
        await release.wait()
        return i

    answers: list[int] = []

    async def consume() -> None:
        async for r in bounded_stream(source, handle, 4, None, stop):
            answers.append(r)

    consumer = asyncio.ensure_future(consume())
    await started.wait()
    stop.set()
    release.set()
    with pytest.raises(Unavailable, match="shutting down"):
        await consumer
    assert sorted(answers) == [0, 1, 2, 3] and source.read <= 5


async def test_a_handler_error_fails_the_stream_and_a_departing_caller_cancels_the_rest() -> None:
    async def boom(i: int) -> int:
        if i == 3:
            raise RuntimeError("handler broke")
        return i

    with pytest.raises(RuntimeError, match="handler broke"):
        async for _ in bounded_stream(Source(10), boom, 2):
            pass

    cancelled = asyncio.Event()
    gauge = Gauge()

    async def hang(i: int) -> int:
        if i == 0:
            return i
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return i

    stream = bounded_stream(Source(10), hang, 4, gauge)
    assert await anext(stream) == 0
    await stream.aclose()  # the caller went away
    assert cancelled.is_set() and gauge.value == 0


async def test_a_broken_request_stream_fails_the_stream() -> None:
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise ConnectionError("client reset")

    async def echo(i: int) -> int:
        return i

    with pytest.raises(ConnectionError, match="client reset"):
        async for _ in bounded_stream(broken(), echo, 4):
            pass


async def test_batches_hold_what_finished_together_without_waiting_for_more() -> None:
    gate = asyncio.Event()
    late = asyncio.Event()

    async def handle(i: int) -> int:
        await (late if i == 9 else gate).wait()
        return i

    batches = bounded_batches(Source(10), handle, 16, max_batch=4)
    first = asyncio.ensure_future(anext(batches))
    for _ in range(20):
        await asyncio.sleep(0)  # every item read and waiting
    gate.set()  # items 0-8 finish in the same loop turn
    got = [await first]
    got.append(await anext(batches))
    got.append(await anext(batches))
    assert [len(b) for b in got] == [4, 4, 1] and sorted(i for b in got for i in b) == list(range(9))
    pending = asyncio.ensure_future(anext(batches))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not pending.done()  # a partial frame is not held back, nor is an empty one sent
    late.set()
    assert await pending == [9]
    with pytest.raises(StopAsyncIteration):
        await anext(batches)


async def test_a_bad_frame_marker_ends_the_stream_after_answering_what_came_before() -> None:
    async def requests() -> AsyncIterator[object]:
        yield 1
        yield 2
        yield BadFrame(InvalidArgument("frames[1].requests", "too many"))
        yield 3

    async def handle(i: object) -> object:
        return i

    got: list[object] = []
    with pytest.raises(InvalidArgument, match=r"frames\[1\].requests: too many"):
        async for batch in bounded_batches(requests(), handle, 4):
            got.extend(batch)
    assert sorted(got) == [1, 2]  # type: ignore[type-var]


async def test_a_group_holds_a_window_slot_per_request_and_starts_only_when_all_are_free() -> None:
    """Window 8, groups of 3: two groups (6 slots) run; the third waits for 3 free slots, so
    freeing one group's slots starts it, and every request is answered once, in its group."""
    gauge = Gauge()
    started: list[int] = []
    gates = {g: asyncio.Event() for g in range(5)}
    moved = asyncio.Event()

    async def groups() -> AsyncIterator[list[int] | BadFrame]:
        for g in range(5):
            yield [3 * g, 3 * g + 1, 3 * g + 2]

    async def handle(group: list[int]) -> AsyncGenerator[list[int], None]:
        started.append(group[0] // 3)
        moved.set()
        await gates[group[0] // 3].wait()
        yield [r * 10 for r in group]

    batches = bounded_group_batches(groups(), handle, 8, gauge, max_batch=4)
    first = asyncio.ensure_future(anext(batches))
    while len(started) < 2:
        await moved.wait()
        moved.clear()
    for _ in range(10):
        await asyncio.sleep(0)  # the reader holds the third group's first 2 slots, not a third
    assert started == [0, 1] and gauge.value == 6
    gates[1].set()
    assert await first == [30, 40, 50]  # up to max_batch, as they finished
    while len(started) < 3:
        await moved.wait()
        moved.clear()
    assert started == [0, 1, 2] and gauge.value == 6
    for gate in gates.values():
        gate.set()
    rest = [r async for batch in batches for r in batch]
    assert sorted([30, 40, 50, *rest]) == [10 * r for r in range(15)]
    assert gauge.peak == 6 and gauge.value == 0


async def test_a_group_larger_than_the_window_fails_the_stream() -> None:
    async def groups() -> AsyncIterator[list[int] | BadFrame]:
        yield [1, 2, 3]

    async def handle(group: list[int]) -> AsyncGenerator[list[int], None]:
        yield group

    with pytest.raises(ValueError, match="a group of 3 requests does not fit a window of 2"):
        async for _ in bounded_group_batches(groups(), handle, 2):
            pass


async def test_a_group_answered_in_parts_frees_a_slot_per_answer_and_must_answer_every_request() -> None:
    """Window 4, one group of 4 answered in two parts: the first part's two slots free up (and
    the next group's first request is read) while the rest of the group still works; a handler
    that ends with a request unanswered fails the stream."""
    gauge = Gauge()
    rest = asyncio.Event()
    started: list[int] = []
    moved = asyncio.Event()

    async def groups() -> AsyncIterator[list[int] | BadFrame]:
        yield [0, 1, 2, 3]
        yield [4, 5]

    async def handle(group: list[int]) -> AsyncGenerator[list[int], None]:
        started.append(group[0])
        moved.set()
        if group[0] == 0:
            yield group[:2]
            await rest.wait()
            yield group[2:]
        else:
            yield group

    batches = bounded_group_batches(groups(), handle, 4, gauge, max_batch=8)
    assert await anext(batches) == [0, 1]
    while len(started) < 2:  # the freed slots let the second group in, before the first ends
        await moved.wait()
        moved.clear()
    assert gauge.value == 4 and not rest.is_set()
    rest.set()
    got = [r async for batch in batches for r in batch]
    assert sorted(got) == [2, 3, 4, 5] and gauge.value == 0 and gauge.peak == 4

    async def short(group: list[int]) -> AsyncGenerator[list[int], None]:
        yield group[:1]

    with pytest.raises(RuntimeError, match=r"left 3 request\(s\) unanswered"):
        async for _ in bounded_group_batches(groups(), short, 4):
            pass


async def test_the_window_in_bytes_bounds_the_requests_worked_on_and_a_larger_one_runs_alone() -> None:
    """Window of 8 items but 100 bytes, each request weighing its value: 40 + 40 run, the third
    (40) is read and waits until one of them ends; one of 150, more than the whole window, waits
    until nothing else is held and then runs alone; the bytes gauge returns to 0."""
    weights = [40, 40, 40, 150, 10]
    source, items, held = Source(len(weights)), Gauge(), Gauge()
    started: list[int] = []
    gates = {i: asyncio.Event() for i in range(len(weights))}
    moved = asyncio.Event()

    async def handle(group: list[int]) -> AsyncGenerator[list[int], None]:
        started.append(group[0])
        moved.set()
        await gates[group[0]].wait()
        yield group

    async def started_count(n: int) -> None:
        while len(started) < n:
            await moved.wait()
            moved.clear()
        for _ in range(10):
            await asyncio.sleep(0)  # the reader would start more if it could

    batches = bounded_group_batches(
        singletons(source),
        handle,
        8,
        items,
        window_bytes=100,
        weigh=lambda i: weights[i],
        bytes_in_window=held,
    )
    answered: list[int] = []
    consumer = asyncio.ensure_future(_collect(batches, answered))
    await started_count(2)
    assert started == [0, 1] and source.read == 3 and held.value == 80 and items.value == 2
    gates[0].set()
    await started_count(3)
    assert started == [0, 1, 2] and held.value == 80  # 150 read, waiting for the window to empty
    gates[1].set()
    await started_count(3)
    assert started == [0, 1, 2] and held.value == 40
    gates[2].set()
    await started_count(4)
    assert started == [0, 1, 2, 3] and held.value == 150  # alone: the 10 waits behind it
    gates[3].set()
    gates[4].set()
    await consumer
    assert answered == [0, 1, 2, 3, 4] and started == [0, 1, 2, 3, 4]
    assert held.peak == 150 and held.value == 0 and items.value == 0


async def _collect(batches: AsyncGenerator[list[int], None], into: list[int]) -> None:
    async for batch in batches:
        into.extend(batch)


async def test_a_departing_caller_gives_back_the_bytes_of_the_requests_it_left() -> None:
    held = Gauge()
    entered: list[int] = []
    moved = asyncio.Event()

    async def handle(group: list[int]) -> AsyncGenerator[list[int], None]:
        entered.append(group[0])
        moved.set()
        await asyncio.Event().wait()
        yield group

    batches = bounded_group_batches(
        singletons(Source(3)), handle, 8, window_bytes=100, weigh=lambda i: 30, bytes_in_window=held
    )
    pending = asyncio.ensure_future(anext(batches))
    while len(entered) < 3:
        await moved.wait()
        moved.clear()
    assert held.value == 90
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await batches.aclose()
    assert held.peak == 90 and held.value == 0
