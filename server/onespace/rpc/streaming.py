"""The bounded-window helper behind every bidirectional stream.

The server reads the next request only while fewer than `window` items are being worked on, and
(with `window_bytes`) while the requests being worked on hold fewer than `window_bytes` bytes.
When the window is full it stops reading, gRPC stops granting HTTP/2 flow-control credit, and the
client's writes block: memory stays bounded whatever the client sends (the window's bytes plus
the one request read that found it full; a request larger than the whole window is worked on
alone). Counting items alone bounded a stream of 64 videos of 64 MiB at 4 GiB. Responses go out as items
finish (they carry the client's request id). When the caller goes away, the items still in the
window are cancelled, which drops them from the embed queue unsent. When `stop` is set (the
server is shutting down) the stream is not read any further: the items already in the window are
answered, then the stream ends with UNAVAILABLE and a retry hint.

A frame that did not parse (`handlers.Undecodable`) ends the stream the same way: nothing after
it is read, every request read before it is answered, then INVALID_ARGUMENT names it
(`requests[3]: cannot decode onespace.v1.IngestRequest: ...`, counted from 0). It cannot be
answered on its own: responses name the request they answer by the `request_id` inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from onespace.errors import InvalidArgument, Unavailable
from onespace.rpc.handlers import Undecodable

__all__ = [
    "STOPS_HERE",
    "BadFrame",
    "Tracker",
    "bounded_group_batches",
    "flattened",
    "singletons",
]

STOPS_HERE = "; the stream stops here, every request before it was answered"
Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True, slots=True)
class BadFrame:
    """Put in the request stream where a frame cannot be taken (a packed frame over the item
    limit): like an undecodable frame, nothing after it is read, the requests before it are
    answered, then the stream fails with `error`."""

    error: InvalidArgument


class Tracker(Protocol):
    """Where the number of items in the window is published (a prometheus Gauge child fits)."""

    def inc(self, amount: float = 1) -> None: ...

    def dec(self, amount: float = 1) -> None: ...


async def flattened(batches: AsyncGenerator[list[Resp], None]) -> AsyncGenerator[Resp, None]:
    """Each response of `batches` in turn; closing it closes `batches` at once."""
    try:
        async for batch in batches:
            for response in batch:
                yield response
    finally:
        await batches.aclose()  # at once, not when collected: its handlers are cancelled now


async def bounded_group_batches(
    groups: AsyncIterable[list[Req] | Undecodable | BadFrame],
    handle: Callable[[list[Req]], AsyncGenerator[list[Resp], None]],
    window: int,
    in_window: Tracker | None = None,
    stop: asyncio.Event | None = None,
    max_batch: int = 1,
    *,
    window_bytes: int = 0,
    weigh: Callable[[Req], int] | None = None,
    bytes_in_window: Tracker | None = None,
) -> AsyncGenerator[list[Resp], None]:
    """Yield the responses `handle(group)` gives for every group of requests (one per request, in
    parts: each part it yields is a list of answers to some of the group's requests, every
    request answered once), at most `window` requests at once, in lists of up to `max_batch`:
    each list holds the responses already finished when it is cut, without waiting for more
    (packed streams send one frame per list). A group holds as many window slots as it has
    requests, and gives each back as its answer comes, so groups must not be larger than
    `window`; one-item streams make groups of one (`singletons`). One task per group, not per
    request; a group answered in parts as its items finish holds no answer back for its slowest
    item (a group answered at once waited for a throttled call's backoffs: with 20% of Bedrock
    calls throttled at random, a stream of 16-item groups ran at 0.55 of its unthrottled rate,
    one answered in parts at ~0.7). `handle` must not raise for a bad item (it answers with an
    error response instead); if it does, the stream fails.

    With `window_bytes` (and `weigh`, a request's size), a group also holds its requests' bytes,
    from when it is read until its handler ends (the group holds its requests until then), and
    the next group is started only while they fit; `bytes_in_window` shows them.

    A reader task takes a window slot, reads a group, takes the rest of its slots and starts its
    handler; every part and every task that finishes goes onto one completion queue, which this
    generator drains. Each part costs O(1) bookkeeping (waiting on the whole window's futures per
    event cost O(window)).
    """
    finished: asyncio.Queue[asyncio.Future[Any] | tuple[_Open, list[Resp]]] = asyncio.Queue()
    room = asyncio.Semaphore(window)
    held = _HeldBytes(window_bytes, bytes_in_window)
    working: dict[asyncio.Future[None], _Open] = {}  # a group's task -> its requests not yet answered

    async def answer(group: list[Req], opened: _Open) -> None:
        parts = handle(group)
        try:
            async for part in parts:
                finished.put_nowait((opened, part))
        finally:
            await parts.aclose()  # at once when cancelled: its own waits are left now

    stopped = False
    bad_frame: list[InvalidArgument] = []

    async def read() -> None:
        frame = 0
        async for group in _slots(groups, room):
            if isinstance(group, Undecodable):  # stop reading; answer what was read, then fail
                room.release()
                bad_frame.append(group.error(f"requests[{frame}]", STOPS_HERE))
                return
            if isinstance(group, BadFrame):
                room.release()
                bad_frame.append(group.error)
                return
            if not 1 <= len(group) <= window:
                raise ValueError(f"a group of {len(group)} requests does not fit a window of {window}")
            for _ in range(len(group) - 1):
                await room.acquire()
            size = sum(map(weigh, group)) if window_bytes and weigh is not None else 0
            await held.take(size)
            frame += len(group)
            opened = _Open(len(group), size)
            task = asyncio.ensure_future(answer(group, opened))
            working[task] = opened
            if in_window is not None:
                in_window.inc(len(group))
            task.add_done_callback(finished.put_nowait)

    reader: asyncio.Future[None] = asyncio.ensure_future(read())
    reader.add_done_callback(finished.put_nowait)
    watcher: asyncio.Future[Any] | None = None
    if stop is not None:
        watcher = asyncio.ensure_future(stop.wait())
        watcher.add_done_callback(lambda _: reader.cancel())  # stop reading at once
    reading = True
    try:
        while reading or working:
            batch: list[Resp] = []
            done = await finished.get()
            while True:
                if isinstance(done, tuple):  # a part of a group's answers
                    opened, part = done
                    opened.requests -= len(part)
                    for _ in part:
                        room.release()
                    if in_window is not None:
                        in_window.dec(len(part))
                    batch.extend(part)
                elif done is reader:
                    reading = False
                    if reader.cancelled():
                        stopped = True
                    elif (error := reader.exception()) is not None:
                        raise error
                else:  # a group's task ended: after all its parts (they were queued first)
                    opened = working.pop(done)
                    held.give(opened.size)
                    done.result()  # a handler that raised fails the stream
                    if opened.requests:
                        raise RuntimeError(f"a group's handler left {opened.requests} request(s) unanswered")
                if len(batch) >= max_batch or finished.empty():
                    break
                done = finished.get_nowait()
            for first in range(0, len(batch), max_batch):
                yield batch[first : first + max_batch]
        if bad_frame:
            raise bad_frame[0]
        if stopped:
            raise Unavailable(
                "the server is shutting down; resend the unanswered items elsewhere",
                retry_after_seconds=1.0,
            )
    finally:
        if watcher is not None:
            watcher.cancel()
        leftovers: list[asyncio.Future[Any]] = [reader, *working]
        if in_window is not None and working:
            in_window.dec(sum(opened.requests for opened in working.values()))
        held.give(sum(opened.size for opened in working.values()))
        for leftover in leftovers:
            leftover.cancel()
        for leftover in leftovers:
            with contextlib.suppress(BaseException):
                await leftover


@dataclass(slots=True)
class _Open:
    """A group's requests that hold window slots and await their answers, and their bytes."""

    requests: int
    size: int = 0


class _HeldBytes:
    """The bytes of the requests being worked on, and the wait for room under `capacity` (0: no
    bound). A group that does not fit waits until it does or until nothing else is held, so a
    request larger than the whole window is worked on alone instead of never. One waiter: the
    stream's reader."""

    __slots__ = ("_freed", "_gauge", "capacity", "held")

    def __init__(self, capacity: int, gauge: Tracker | None) -> None:
        self.capacity = capacity
        self.held = 0
        self._freed = asyncio.Event()
        self._gauge = gauge

    async def take(self, size: int) -> None:
        while self.held and self.held + size > self.capacity:
            self._freed.clear()
            await self._freed.wait()
        self._change(size)

    def give(self, size: int) -> None:
        if size:
            self._change(-size)
            self._freed.set()

    def _change(self, size: int) -> None:
        self.held += size
        if self._gauge is None:
            return
        if size > 0:
            self._gauge.inc(size)
        else:
            self._gauge.dec(-size)


async def singletons(requests: AsyncIterable[Req]) -> AsyncIterator[list[Req] | Undecodable | BadFrame]:
    """Each request as a group of one; the stream's markers (`Undecodable`, `BadFrame`) as they are."""
    async for request in requests:
        if isinstance(request, (Undecodable, BadFrame)):
            yield request
        else:
            yield [request]


async def _slots(requests: AsyncIterable[Req], room: asyncio.Semaphore) -> AsyncIterator[Req]:
    """The requests, each read only once a window slot is free (the slot goes with the item)."""
    reader = aiter(requests)
    while True:
        await room.acquire()
        try:
            request = await anext(reader)
        except StopAsyncIteration:
            room.release()
            return
        yield request
