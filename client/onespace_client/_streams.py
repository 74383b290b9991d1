"""Bidi streams with a bounded number of requests in flight, and errors kept apart by origin.

The caller's request source is pumped by a writer task that holds one window slot per request
until its response arrives, so a folder of videos is read only a window ahead of the acks.
grpc.aio would swallow an exception raised by a request iterator (it just cancels the call); the
writer records it instead and re-raises it to the reader, while gRPC failures become
`OnespaceClientError` with the status code intact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TypeAlias, TypeVar

import grpc.aio

from onespace_client.content import ContentLike, to_content
from onespace_client.errors import OnespaceClientError
from onespace_client.v1 import common_pb2, data_pb2, embed_pb2

__all__ = ["EmbedStreamInput", "IngestInput", "aiter_of", "bounded_bidi", "embed_requests", "ingest_requests"]

EmbedStreamInput: TypeAlias = embed_pb2.EmbedStreamRequest | ContentLike
IngestInput: TypeAlias = data_pb2.Item | data_pb2.IngestRequest

_T = TypeVar("_T")
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


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
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    window = asyncio.Semaphore(max_in_flight)
    failure: list[BaseException] = []

    async def pump() -> None:
        try:
            async for request in requests:
                await window.acquire()
                await call.write(request)
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the call is over; the reader reports its status
        except Exception as exc:  # the caller's source failed: stop the call, tell the reader
            failure.append(exc)
            call.cancel()

    writer = asyncio.create_task(pump())
    try:
        async for response in call:
            window.release()
            yield response
    except grpc.aio.AioRpcError as exc:
        if failure:
            raise failure[0] from exc
        raise OnespaceClientError.from_rpc_error(exc) from exc
    except asyncio.CancelledError:
        if failure:
            raise failure[0] from None
        raise
    finally:
        writer.cancel()
        call.cancel()
    if failure:
        raise failure[0]


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
