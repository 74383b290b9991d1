"""The bounded-window helper behind every bidirectional stream.

The server reads the next request only while fewer than `window` items are being worked on. When
the window is full it stops reading, gRPC stops granting HTTP/2 flow-control credit, and the
client's writes block: memory stays bounded whatever the client sends. Responses go out as items
finish (they carry the client's request id). When the caller goes away, the items still in the
window are cancelled, which drops them from the embed queue unsent. When `stop` is set (the
server is shutting down) the stream is not read any further: the items already in the window are
answered, then the stream ends with UNAVAILABLE and a retry hint.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from onespace.errors import Unavailable

__all__ = ["Tracker", "bounded_stream"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class Tracker(Protocol):
    """Where the number of items in the window is published (a prometheus Gauge child fits)."""

    def inc(self, amount: float = 1) -> None: ...

    def dec(self, amount: float = 1) -> None: ...


async def bounded_stream(
    requests: AsyncIterable[Req],
    handle: Callable[[Req], Awaitable[Resp]],
    window: int,
    in_window: Tracker | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[Resp]:
    """Yield `handle(request)` for every request, at most `window` at once. `handle` must not raise
    for a bad item (it answers with an error response instead); if it does, the stream fails."""
    reader = aiter(requests)
    working: set[asyncio.Future[Resp]] = set()
    next_request: asyncio.Future[Req] | None = None
    stopping: asyncio.Future[Any] | None = asyncio.ensure_future(stop.wait()) if stop is not None else None
    exhausted = stopped = False
    try:
        while True:
            if stopping is not None and stopping.done() and not stopped:
                stopped = exhausted = True
                if next_request is not None:
                    next_request.cancel()
                    with contextlib.suppress(BaseException):
                        await next_request
                    next_request = None
            if next_request is None and not exhausted and len(working) < window:
                next_request = asyncio.ensure_future(anext(reader))
            waiting: set[asyncio.Future[Any]] = set(working)
            if next_request is not None:
                waiting.add(next_request)
            if not waiting:
                if stopped:
                    raise Unavailable(
                        "the server is shutting down; resend the unanswered items elsewhere",
                        retry_after_seconds=1.0,
                    )
                return
            if stopping is not None and not stopped:
                waiting.add(stopping)
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if next_request is not None and next_request in done:
                finished, next_request = next_request, None
                try:
                    request = finished.result()
                except StopAsyncIteration:
                    exhausted = True
                else:
                    working.add(asyncio.ensure_future(handle(request)))
                    if in_window is not None:
                        in_window.inc()
            for task in [t for t in working if t in done]:
                working.discard(task)
                if in_window is not None:
                    in_window.dec()
                yield task.result()
    finally:
        if stopping is not None:
            stopping.cancel()
        leftovers: list[asyncio.Future[Any]] = [*working]
        if next_request is not None:
            leftovers.append(next_request)
        if in_window is not None and working:
            in_window.dec(len(working))
        for leftover in leftovers:
            leftover.cancel()
        for leftover in leftovers:
            with contextlib.suppress(BaseException):
                await leftover
