"""Bidi streams with a bounded number of requests in flight, and errors kept apart by origin.

The caller's request source is read by a task that holds one window slot per request until its
response arrives, so a folder of videos is read only a window ahead of the acks, and that stops
reading while the requests read and not yet sent hold `READ_AHEAD_BYTES` (a larger one is read
when nothing else waits): sent ones are the server's to bound, and a server whose window is
full stops taking them, so writes wait. A writer task
sends what it has read, one request per message or, on the packed methods, every request ready
at that moment in one frame (gRPC's cost per message is most of a small item's cost).
grpc.aio would swallow an exception raised by a request iterator (it just cancels the call); the
writer records it instead and re-raises it to the reader, while gRPC failures become
`OnespaceClientError` with the status code intact: the server's, even when a write was under way
as the server ended the call (`_EndStatus`).
"""

from __future__ import annotations

import asyncio
import collections
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeAlias, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from onespace_client.content import ContentLike, to_content
from onespace_client.errors import OnespaceClientError, pushback_ms
from onespace_client.v1 import common_pb2, data_pb2, embed_pb2

__all__ = [
    "FRAME_BYTES",
    "FRAME_ITEMS",
    "READ_AHEAD_BYTES",
    "EmbedStreamInput",
    "IngestInput",
    "aiter_of",
    "bounded_bidi",
    "bounded_packed",
    "embed_requests",
    "ingest_requests",
    "sharded",
]

# What one frame of a packed stream carries at most: a quarter of the server's default window,
# what it answers as one group (the server also refuses frames over its max items per request,
# 256 by default), and about 1 MiB, so a frame never nears a receive limit and a large item does
# not wait behind many others.
FRAME_ITEMS = 64
FRAME_BYTES = 1 << 20
# Bytes of requests a stream reads from the caller's source ahead of sending them.
READ_AHEAD_BYTES = 64 << 20

EmbedStreamInput: TypeAlias = embed_pb2.EmbedStreamRequest | ContentLike
IngestInput: TypeAlias = data_pb2.Item | data_pb2.IngestRequest

_T = TypeVar("_T")
_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp")
_Frame = TypeVar("_Frame")
_Answers = TypeVar("_Answers")


async def aiter_of(source: AsyncIterable[_T] | Iterable[_T]) -> AsyncIterator[_T]:
    """Either kind of iterable as an async iterator (a sync one is iterated on the event loop)."""
    if isinstance(source, AsyncIterable):
        async for value in source:
            yield value
    else:
        for value in source:
            yield value


async def bounded_bidi(
    call: grpc.aio.StreamStreamCall[_Req, _Resp], requests: AsyncIterable[_Req], max_in_flight: int
) -> AsyncIterator[_Resp]:
    """Writes `requests` at most `max_in_flight` ahead of the responses, which it yields.

    Assumes one response per request, as both streaming RPCs of the protocol promise. Leaving
    the iteration early cancels the call and the writer.
    """
    response: _Resp
    async for response in _bounded(call, requests, max_in_flight, None, None):
        yield response


async def bounded_packed(
    call: grpc.aio.StreamStreamCall[_Frame, _Answers],
    requests: AsyncIterable[_Req],
    max_in_flight: int,
    pack: Callable[[list[_Req]], _Frame],
    unpack: Callable[[_Answers], Sequence[_Resp]],
    *,
    frame_items: int = FRAME_ITEMS,
    frame_bytes: int = FRAME_BYTES,
) -> AsyncIterator[_Resp]:
    """`bounded_bidi` over a packed stream: the requests that are ready go out together, up to
    `frame_items` and about `frame_bytes` per frame (a larger request goes alone), without
    waiting for more (a slow source sends one-item frames); each answer frame is unpacked."""
    response: _Resp
    async for response in _bounded(call, requests, max_in_flight, (pack, frame_items, frame_bytes), unpack):
        yield response


# What grpc.aio reports for a write that failed because the call had ended (grpc/grpc#36066).
_WRITE_AFTER_END = (grpc.StatusCode.INTERNAL, "Internal error from Core")


def _ready(accessor: Coroutine[Any, Any, _T]) -> _T | None:
    """The value of an ended call's accessor (`code()`, `details()`, ...), read without waiting:
    once the call has a status they return at once. None if one would have to wait."""
    try:
        accessor.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    accessor.close()
    return None


class _EndStatus:
    """The status the server ended a stream with, kept before grpc.aio can replace it.

    When a write is under way (waiting for flow control, say) as the server ends the call, grpc.aio
    replaces the server's status with INTERNAL "Internal error from Core" whenever it learns of the
    failed write after the status (grpc/grpc#36066). A bulk ingest whose server shuts down then
    fails with that instead of UNAVAILABLE "the server is shutting down" (2 runs in 10 here), and
    the caller cannot tell it may resend. The call's done callbacks run at every status it takes,
    so the server's is seen here before it is replaced."""

    def __init__(self, call: grpc.aio.StreamStreamCall[Any, Any]) -> None:
        self.error: OnespaceClientError | None = None
        call.add_done_callback(self._ended)

    def _ended(self, call: grpc.aio.Call) -> None:
        try:
            code, details = _ready(call.code()), _ready(call.details())
            if code is None or (code, details) == _WRITE_AFTER_END:
                return
            metadata = _ready(call.trailing_metadata())
        except Exception:  # best effort: a callback must never raise into grpc's status delivery,
            return  # and a grpc.aio whose accessors differ keeps its own status

        self.error = OnespaceClientError(code, details or "", retry_pushback_ms=pushback_ms(metadata))

    def of(self, exc: grpc.aio.AioRpcError) -> OnespaceClientError:
        """The caller's error for `exc`: the server's status where grpc.aio replaced it."""
        if (exc.code(), exc.details()) == _WRITE_AFTER_END and self.error is not None:
            return self.error
        return OnespaceClientError.from_rpc_error(exc)


async def _bounded(
    call: grpc.aio.StreamStreamCall[Any, Any],
    requests: AsyncIterable[_Req],
    max_in_flight: int,
    packing: tuple[Callable[[list[_Req]], Any], int, int] | None,
    unpack: Callable[[Any], Sequence[Any]] | None,
) -> AsyncIterator[Any]:
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    window = asyncio.Semaphore(max_in_flight)
    failure: list[BaseException] = []
    ready: collections.deque[tuple[_Req, int]] = collections.deque()  # read, not sent; their sizes
    more = asyncio.Event()
    sent = asyncio.Event()
    unsent = 0  # bytes of the requests in `ready` and of those being written
    source_done = False

    async def read() -> None:
        """Takes a window slot per request and room in the read-ahead bytes, then hands the
        request to the writer."""
        nonlocal source_done, unsent
        try:
            async for request in requests:
                await window.acquire()
                size = request.ByteSize()
                while unsent and unsent + size > READ_AHEAD_BYTES:
                    sent.clear()
                    await sent.wait()
                unsent += size
                ready.append((request, size))
                more.set()
        except Exception as exc:  # the caller's source failed: stop the call, tell the reader
            failure.append(exc)
            call.cancel()
        finally:
            source_done = True
            more.set()

    async def write() -> None:
        nonlocal unsent
        try:
            while True:
                while not ready and not source_done:
                    more.clear()
                    await more.wait()
                if not ready:
                    break
                if packing is None:
                    request, size = ready.popleft()
                    await call.write(request)
                else:
                    pack, most, budget = packing
                    first, size = ready.popleft()
                    frame = [first]
                    while ready and len(frame) < most and size + ready[0][1] <= budget:
                        request, more_size = ready.popleft()
                        frame.append(request)
                        size += more_size
                    await call.write(pack(frame))
                unsent -= size
                sent.set()
            if not failure:
                await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the call is over; the reader reports its status

    ended = _EndStatus(call)
    tasks = [asyncio.create_task(read()), asyncio.create_task(write())]
    try:
        async for answer in call:
            for response in (answer,) if unpack is None else unpack(answer):
                window.release()
                yield response
    except grpc.aio.AioRpcError as exc:
        if failure:
            raise failure[0] from exc
        raise ended.of(exc) from exc
    except asyncio.CancelledError:
        if failure:
            raise failure[0] from None
        raise
    finally:
        for task in tasks:
            task.cancel()
        call.cancel()
    if failure:
        raise failure[0]


_END = object()  # the end of a shard's requests


async def sharded(
    requests: AsyncIterable[_Req],
    shards: int,
    key: Callable[[_Req], str],
    stream: Callable[[AsyncIterable[_Req]], AsyncIterator[_Resp]],
    max_in_flight: int,
) -> AsyncIterator[_Resp]:
    """The responses of `shards` streams opened with `stream`, each given the requests whose
    `key` hashes to it (CRC-32), so requests with one key go on one stream in their order.

    One stream's window, and its server's, bounds what it has in flight; more streams carry more
    at once. Each shard queues at most `max_in_flight` requests read ahead of its stream, and a
    full one holds the reading back; the merged responses wait for the caller one per shard at
    most. A failed stream or source fails the whole, and leaving early cancels every stream.
    """
    if shards < 1:
        raise ValueError(f"streams must be at least 1, got {shards}")
    inboxes: list[asyncio.Queue[Any]] = [asyncio.Queue(max_in_flight) for _ in range(shards)]
    merged: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(shards)

    async def deal() -> None:
        try:
            async for request in requests:
                await inboxes[zlib.crc32(key(request).encode()) % shards].put(request)
        except Exception as exc:  # the caller's source failed
            await merged.put(("failed", exc))
            return
        for inbox in inboxes:
            await inbox.put(_END)

    async def inbox_requests(inbox: asyncio.Queue[Any]) -> AsyncIterator[_Req]:
        while (request := await inbox.get()) is not _END:
            yield request

    async def run(inbox: asyncio.Queue[Any]) -> None:
        try:
            async for response in stream(inbox_requests(inbox)):
                await merged.put(("response", response))
        except Exception as exc:
            await merged.put(("failed", exc))
            return
        await merged.put(("ended", None))

    tasks = [asyncio.create_task(deal())] + [asyncio.create_task(run(inbox)) for inbox in inboxes]
    try:
        ended = 0
        while ended < shards:
            kind, value = await merged.get()
            if kind == "failed":
                raise value
            if kind == "ended":
                ended += 1
            else:
                yield value
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def embed_requests(
    source: AsyncIterable[EmbedStreamInput] | Iterable[EmbedStreamInput], options: common_pb2.EmbedOptions
) -> AsyncIterator[embed_pb2.EmbedStreamRequest]:
    """Requests with ids defaulting to the position ("0", "1", ...) and `options` where none are set."""
    position = 0
    async for value in aiter_of(source):
        if isinstance(value, embed_pb2.EmbedStreamRequest):
            request = embed_pb2.EmbedStreamRequest()
            request.CopyFrom(value)  # never mutate the caller's message
        else:
            request = embed_pb2.EmbedStreamRequest(content=to_content(value))
        if not request.request_id:
            request.request_id = str(position)
        if not request.HasField("options"):
            request.options.CopyFrom(options)
        position += 1
        yield request


async def ingest_requests(
    collection: str, source: AsyncIterable[IngestInput] | Iterable[IngestInput]
) -> AsyncIterator[data_pb2.IngestRequest]:
    """Requests with ids defaulting to the position and the collection filled in where empty."""
    position = 0
    async for value in aiter_of(source):
        if isinstance(value, data_pb2.IngestRequest):
            request = data_pb2.IngestRequest()
            request.CopyFrom(value)
        else:
            request = data_pb2.IngestRequest(item=value)
        if not request.request_id:
            request.request_id = str(position)
        if not request.collection:
            request.collection = collection
        position += 1
        yield request
