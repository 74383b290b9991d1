"""`Client`: the blocking twin of `AsyncClient`, same method names, arguments and results.

It runs a private event loop in a daemon thread and forwards every call to an `AsyncClient`
living there, so both share one implementation (and one error type). Streaming methods return
plain iterators; a plain iterable passed in is advanced in a worker thread, so a generator that
reads files, or even calls this client, never stalls the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

from onespace_client import enums
from onespace_client._streams import EmbedStreamInput, IngestInput
from onespace_client.async_client import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_TARGET,
    AsyncClient,
    PemSource,
    _credentials_for,
)
from onespace_client.content import ContentLike
from onespace_client.retry import RetryPolicy
from onespace_client.v1 import collections_pb2, data_pb2, embed_pb2, info_pb2, search_pb2

__all__ = ["Client"]

_T = TypeVar("_T")
_END = object()


def _next_or_end(iterator: Iterator[Any]) -> Any:
    return next(iterator, _END)


async def _offloaded(source: Iterable[_T]) -> AsyncIterator[_T]:
    """A sync iterable as an async iterator whose `next()` runs in a worker thread."""
    if isinstance(source, list | tuple):  # nothing can block: skip the thread hop
        for value in source:
            yield value
        return
    iterator = iter(source)
    while (value := await asyncio.to_thread(_next_or_end, iterator)) is not _END:
        yield value


async def _step(stream: AsyncIterator[_T]) -> tuple[bool, _T | None]:
    try:
        return True, await stream.__anext__()
    except StopAsyncIteration:
        return False, None


class Client:
    """Blocking client for the onespace gateway; use as `with Client(target) as client:`."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = 30.0,
        stream_timeout: float | None = None,
        options: Sequence[tuple[str, Any]] = (),
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        tls: bool | None = None,
        tls_ca: PemSource | None = None,
        tls_cert: PemSource | None = None,
        tls_key: PemSource | None = None,
        token: str | None = None,
        retries: bool | RetryPolicy = True,
        wait_for_ready: bool = False,
    ) -> None:
        """`tls`: None = TLS unless the target is local, True/False = always/never; `token`: a
        bearer token sent with every call; `retries` and `wait_for_ready`: see `AsyncClient`."""
        # Resolved (and files read) before the loop thread starts, so a bad option leaves nothing running.
        credentials = _credentials_for(target, tls, credentials, tls_ca, tls_cert, tls_key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="onespace-client", daemon=True)
        self._thread.start()

        async def connect() -> AsyncClient:  # the aio channel must be made on its own loop
            return AsyncClient(
                target,
                timeout=timeout,
                stream_timeout=stream_timeout,
                options=options,
                credentials=credentials,
                metadata=metadata,
                tls=credentials is not None,
                token=token,
                retries=retries,
                wait_for_ready=wait_for_ready,
            )

        self._aio = self._run(connect())
        self.target = target

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: do not leave the call running
            raise

    def _iterate(self, stream: AsyncIterator[_T]) -> Iterator[_T]:
        try:
            while True:
                more, value = self._run(_step(stream))
                if not more:
                    return
                yield value  # type: ignore[misc]  # more=True means a value
        finally:
            if not self._loop.is_closed():
                self._run(stream.aclose())  # type: ignore[attr-defined]

    def close(self) -> None:
        """Closes the channel and stops the background loop; idempotent."""
        if self._loop.is_closed():
            return
        self._run(self._aio.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def embed(
        self,
        items: Sequence[ContentLike],
        *,
        model: str | None = None,
        dimension: int | None = None,
        purpose: enums.PurposeLike | None = None,
        normalize: bool | None = None,
        timeout: float | None = None,
    ) -> embed_pb2.EmbedResponse:
        """See `AsyncClient.embed`."""
        return self._run(
            self._aio.embed(
                items, model=model, dimension=dimension, purpose=purpose, normalize=normalize, timeout=timeout
            )
        )

    def embed_stream(
        self,
        requests: Iterable[EmbedStreamInput],
        *,
        model: str | None = None,
        dimension: int | None = None,
        purpose: enums.PurposeLike | None = None,
        normalize: bool | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        timeout: float | None = None,
        packed: bool = True,
    ) -> Iterator[embed_pb2.EmbedStreamResponse]:
        """See `AsyncClient.embed_stream`."""
        stream = self._aio.embed_stream(
            _offloaded(requests),
            model=model,
            dimension=dimension,
            purpose=purpose,
            normalize=normalize,
            max_in_flight=max_in_flight,
            timeout=timeout,
            packed=packed,
        )
        return self._iterate(stream)

    def create_collection(
        self,
        name: str,
        *,
        model: str = "",
        dimension: int = 0,
        index_dimension: int = 0,
        metric: enums.MetricLike = collections_pb2.METRIC_UNSPECIFIED,
        dtype: enums.DtypeLike = collections_pb2.INDEX_DTYPE_UNSPECIFIED,
        connectivity: int = 0,
        expansion_add: int = 0,
        expansion_search: int = 0,
        rerank_factor: int = 0,
        stored_dtype: enums.StoredDtypeLike = collections_pb2.STORED_DTYPE_UNSPECIFIED,
        max_unindexed_rows: int = 0,
        timeout: float | None = None,
    ) -> collections_pb2.Collection:
        """See `AsyncClient.create_collection`."""
        return self._run(
            self._aio.create_collection(
                name,
                model=model,
                dimension=dimension,
                index_dimension=index_dimension,
                metric=metric,
                dtype=dtype,
                connectivity=connectivity,
                expansion_add=expansion_add,
                expansion_search=expansion_search,
                rerank_factor=rerank_factor,
                stored_dtype=stored_dtype,
                max_unindexed_rows=max_unindexed_rows,
                timeout=timeout,
            )
        )

    def get_collection(self, name: str, *, timeout: float | None = None) -> collections_pb2.Collection:
        return self._run(self._aio.get_collection(name, timeout=timeout))

    def checkpoint_collection(self, name: str, *, timeout: float | None = None) -> collections_pb2.Collection:
        """See `AsyncClient.checkpoint_collection`."""
        return self._run(self._aio.checkpoint_collection(name, timeout=timeout))

    def compact_collection(self, name: str, *, timeout: float | None = None) -> collections_pb2.Collection:
        """See `AsyncClient.compact_collection`."""
        return self._run(self._aio.compact_collection(name, timeout=timeout))

    def update_collection(
        self,
        name: str,
        *,
        expansion_search: int | None = None,
        rerank_factor: int | None = None,
        max_unindexed_rows: int | None = None,
        timeout: float | None = None,
    ) -> collections_pb2.Collection:
        """See `AsyncClient.update_collection`."""
        return self._run(
            self._aio.update_collection(
                name,
                expansion_search=expansion_search,
                rerank_factor=rerank_factor,
                max_unindexed_rows=max_unindexed_rows,
                timeout=timeout,
            )
        )

    def tune_collection(
        self,
        name: str,
        queries: Iterable[Sequence[float] | Any] = (),
        *,
        target_recall: float,
        k: int = 10,
        apply: bool = True,
        timeout: float | None = None,
    ) -> collections_pb2.TuneCollectionResponse:
        """See `AsyncClient.tune_collection`."""
        return self._run(
            self._aio.tune_collection(
                name, queries, target_recall=target_recall, k=k, apply=apply, timeout=timeout
            )
        )

    def list_collections(self, *, timeout: float | None = None) -> list[collections_pb2.Collection]:
        return self._run(self._aio.list_collections(timeout=timeout))

    def delete_collection(self, name: str, *, timeout: float | None = None) -> None:
        self._run(self._aio.delete_collection(name, timeout=timeout))

    def upsert(
        self, collection: str, items: Iterable[data_pb2.Item], *, timeout: float | None = None
    ) -> data_pb2.UpsertResponse:
        return self._run(self._aio.upsert(collection, items, timeout=timeout))

    def ingest(
        self,
        collection: str,
        items: Iterable[IngestInput],
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        timeout: float | None = None,
        packed: bool = True,
        streams: int = 1,
    ) -> Iterator[data_pb2.IngestResponse]:
        """See `AsyncClient.ingest`."""
        stream = self._aio.ingest(
            collection,
            _offloaded(items),
            max_in_flight=max_in_flight,
            timeout=timeout,
            packed=packed,
            streams=streams,
        )
        return self._iterate(stream)

    def get(
        self,
        collection: str,
        ids: Sequence[str],
        *,
        include_vectors: bool = False,
        timeout: float | None = None,
    ) -> data_pb2.GetResponse:
        return self._run(self._aio.get(collection, ids, include_vectors=include_vectors, timeout=timeout))

    def delete(self, collection: str, ids: Sequence[str], *, timeout: float | None = None) -> int:
        return self._run(self._aio.delete(collection, ids, timeout=timeout))

    def search(
        self,
        collection: str,
        *,
        text: str | None = None,
        content: ContentLike | None = None,
        vector: Sequence[float] | None = None,
        id: str | None = None,
        k: int = 10,
        dimension: int | None = None,
        modalities: Iterable[enums.ModalityLike] = (),
        metadata: Mapping[str, str] | None = None,
        conditions: Iterable[search_pb2.Condition] = (),
        purpose: enums.PurposeLike | None = None,
        include_vectors: bool = False,
        timeout: float | None = None,
    ) -> search_pb2.SearchResponse:
        """See `AsyncClient.search`."""
        return self._run(
            self._aio.search(
                collection,
                text=text,
                content=content,
                vector=vector,
                id=id,
                k=k,
                dimension=dimension,
                modalities=modalities,
                metadata=metadata,
                conditions=conditions,
                purpose=purpose,
                include_vectors=include_vectors,
                timeout=timeout,
            )
        )

    def search_batch(
        self,
        collection: str,
        query_vectors: Iterable[Sequence[float]] | Any,
        *,
        k: int = 10,
        dimension: int | None = None,
        modalities: Iterable[enums.ModalityLike] = (),
        metadata: Mapping[str, str] | None = None,
        conditions: Iterable[search_pb2.Condition] = (),
        include_vectors: bool = False,
        timeout: float | None = None,
    ) -> list[search_pb2.SearchResponse]:
        """See `AsyncClient.search_batch`."""
        return self._run(
            self._aio.search_batch(
                collection,
                query_vectors,
                k=k,
                dimension=dimension,
                modalities=modalities,
                metadata=metadata,
                conditions=conditions,
                include_vectors=include_vectors,
                timeout=timeout,
            )
        )

    def info(self, *, timeout: float | None = None) -> info_pb2.InfoResponse:
        return self._run(self._aio.info(timeout=timeout))
