"""`AsyncClient`: one grpc.aio channel, one typed method per RPC.

Methods return the generated response messages; a response that only wraps one field
(`CreateCollectionResponse.collection`, `DeleteResponse.deleted`, ...) is unwrapped to it.
Failures raise `OnespaceClientError` (status code, details, retry pushback) chained from the
`grpc.aio.AioRpcError`. Unary calls get the client's `timeout` unless given one; streams get
`stream_timeout` (none by default: a bulk ingest may rightly take hours).

The channel is plaintext to a loopback target (127.0.0.1, ::1, localhost, unix sockets) and TLS
to any other unless `tls=False`; `tls_ca`/`tls_cert`/`tls_key` (PEM bytes or file paths) or a
ready `credentials` choose the roots and the client certificate of mutual TLS.

gRPC retries the idempotent calls by itself on UNAVAILABLE and RESOURCE_EXHAUSTED, waiting as
long as the server's `grpc-retry-pushback-ms` asks (`retries=`: see `onespace_client.retry`).
`wait_for_ready=True` makes calls wait, within their deadline, for an unreachable server instead
of failing at once with UNAVAILABLE.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio

from onespace_client import build, enums
from onespace_client._streams import (
    EmbedStreamInput,
    IngestInput,
    bounded_bidi,
    bounded_packed,
    embed_requests,
    ingest_requests,
    sharded,
)
from onespace_client.content import ContentLike, to_content
from onespace_client.errors import OnespaceClientError
from onespace_client.retry import RetryPolicy, channel_options
from onespace_client.v1 import (
    collections_pb2,
    collections_pb2_grpc,
    common_pb2,
    data_pb2,
    data_pb2_grpc,
    embed_pb2,
    embed_pb2_grpc,
    info_pb2,
    info_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from onespace_client.vectors import pack

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_TARGET",
    "MAX_MESSAGE_BYTES",
    "AsyncClient",
    "EmbedStreamInput",
    "IngestInput",
    "PemSource",
    "channel_credentials",
    "is_local_target",
]

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a few inline videos per request fit; gRPC's 4 MiB default does not
DEFAULT_MAX_IN_FLIGHT = 256

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

PemSource = bytes | str | os.PathLike[str]
"""PEM contents as bytes, or the path of a PEM file as str or Path."""


def _pem(source: PemSource | None) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()


def channel_credentials(
    ca: PemSource | None = None, cert: PemSource | None = None, key: PemSource | None = None
) -> grpc.ChannelCredentials:
    """TLS credentials: `ca` the roots to trust (None: grpc's bundled public roots), `cert` and
    `key` the client certificate for mutual TLS. Files are read now, so a missing one fails here."""
    if (cert is None) != (key is None):
        raise ValueError("tls_cert and tls_key go together: a client certificate needs its private key")
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(ca), private_key=_pem(key), certificate_chain=_pem(cert)
    )


def is_local_target(target: str) -> bool:
    """True for targets only this machine can answer (loopback, unix sockets): no TLS by default."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    address = target.split(":///", 1)[-1] if ":///" in target else target.removeprefix("dns:")
    address = address.split(",", 1)[0].removeprefix("ipv4:").removeprefix("ipv6:")
    if address.startswith("["):
        host = address[1:].partition("]")[0]
    elif address.count(":") == 1:
        host = address.partition(":")[0]
    else:
        host = address  # a bare host, or a bare IPv6 address
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name: it may resolve to anything
    return ip.is_loopback or ip.is_unspecified


def _credentials_for(
    target: str,
    tls: bool | None,
    credentials: grpc.ChannelCredentials | None,
    ca: PemSource | None,
    cert: PemSource | None,
    key: PemSource | None,
) -> grpc.ChannelCredentials | None:
    """The channel's credentials, None for plaintext; contradictory options are an error."""
    files = ca is not None or cert is not None or key is not None
    if credentials is not None and files:
        raise ValueError("pass either credentials or tls_ca/tls_cert/tls_key, not both")
    if tls is False:
        if credentials is not None or files:
            raise ValueError("tls=False (plaintext) contradicts the TLS credentials given")
        return None
    if credentials is not None:
        return credentials
    if files or tls or not is_local_target(target):
        return channel_credentials(ca, cert, key)
    return None


class AsyncClient:
    """Async client for the onespace gateway; use as `async with AsyncClient(target) as client:`."""

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
        """`tls`: None = TLS unless the target is local, True/False = always/never. `token`: a
        bearer token sent with every call (`authorization: Bearer <token>`). `retries`: True =
        `retry.DEFAULT_RETRY`, False = none, or a `RetryPolicy`; a `grpc.service_config` in
        `options` replaces it. `wait_for_ready`: calls wait for the server to be reachable."""
        credentials = _credentials_for(target, tls, credentials, tls_ca, tls_cert, tls_key)
        given = {name for name, _ in options}
        retry_options = [] if "grpc.service_config" in given else channel_options(retries, MAX_MESSAGE_BYTES)
        all_options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            *(option for option in retry_options if option[0] not in given),
            *options,
        ]
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=all_options)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials, options=all_options)
        self.target = target
        self._timeout = timeout
        self._stream_timeout = stream_timeout
        self._wait_for_ready = wait_for_ready
        self._metadata = tuple(metadata) + ((("authorization", f"Bearer {token}"),) if token else ())
        self._embed = embed_pb2_grpc.EmbedServiceStub(self._channel)
        self._collections = collections_pb2_grpc.CollectionServiceStub(self._channel)
        self._data = data_pb2_grpc.DataServiceStub(self._channel)
        self._search = search_pb2_grpc.SearchServiceStub(self._channel)
        self._info = info_pb2_grpc.InfoServiceStub(self._channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel; calls still running are cancelled."""
        await self._channel.close()

    async def _unary(
        self, method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req, timeout: float | None
    ) -> _Resp:
        try:
            return await method(
                request,
                timeout=self._timeout if timeout is None else timeout,
                metadata=self._metadata,
                wait_for_ready=self._wait_for_ready,
            )
        except grpc.aio.AioRpcError as exc:
            raise OnespaceClientError.from_rpc_error(exc) from exc

    def _bidi(
        self,
        methods: tuple[Any, Any, Any],
        requests: AsyncIterable[Any],
        max_in_flight: int,
        timeout: float | None,
        packed: bool,
    ) -> AsyncIterator[Any]:
        """A bidi stream's responses: `methods` are the one-item method, its packed twin and the
        packed request type; the packed one unless `packed` is false."""
        one, packed_method, frame = methods
        options = {
            "timeout": self._stream_timeout if timeout is None else timeout,
            "metadata": self._metadata,
            "wait_for_ready": self._wait_for_ready,
        }
        if not packed:
            return bounded_bidi(one(**options), requests, max_in_flight)
        return bounded_packed(
            packed_method(**options),
            requests,
            max_in_flight,
            lambda batch: frame(requests=batch),
            lambda answers: answers.responses,
        )

    # --- embedding -------------------------------------------------------------------------

    async def embed(
        self,
        items: Sequence[ContentLike],
        *,
        model: str | None = None,
        dimension: int | None = None,
        purpose: enums.PurposeLike | None = None,
        normalize: bool | None = None,
        timeout: float | None = None,
    ) -> embed_pb2.EmbedResponse:
        """Embeds `items` in one call; results are in item order, one bad item fails the call."""
        if isinstance(items, str | bytes):
            raise TypeError("embed takes a sequence of items; wrap a single text in a list")
        request = embed_pb2.EmbedRequest(
            items=[to_content(i) for i in items],
            options=build.embed_options(
                model=model, dimension=dimension, purpose=purpose, normalize=normalize
            ),
        )
        return await self._unary(self._embed.Embed, request, timeout)

    async def embed_stream(
        self,
        requests: AsyncIterable[EmbedStreamInput] | Iterable[EmbedStreamInput],
        *,
        model: str | None = None,
        dimension: int | None = None,
        purpose: enums.PurposeLike | None = None,
        normalize: bool | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        timeout: float | None = None,
        packed: bool = True,
    ) -> AsyncIterator[embed_pb2.EmbedStreamResponse]:
        """Streams items (requests, Content, text or paths) and yields responses as they come.

        Request ids default to the item's position ("0", "1", ...); responses may be out of order.
        The options apply to every item that does not carry its own. Items ready together travel
        in one message (`EmbedStreamPacked`); `packed=False` sends one message per item
        (`EmbedStream`), for a server older than that method.
        """
        options = build.embed_options(model=model, dimension=dimension, purpose=purpose, normalize=normalize)
        responses: AsyncIterator[embed_pb2.EmbedStreamResponse] = self._bidi(
            (self._embed.EmbedStream, self._embed.EmbedStreamPacked, embed_pb2.EmbedStreamPackedRequest),
            embed_requests(requests, options),
            max_in_flight,
            timeout,
            packed,
        )
        async for response in responses:
            yield response

    # --- collections -----------------------------------------------------------------------

    async def create_collection(
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
        """Creates a collection; zeros mean server defaults, the result has every default filled in.

        `stored_dtype` is "f16" (the default: half the bytes, ~1e-3 relative rounding) or "f32"
        (vectors read back exactly as written); `dtype` is the HNSW index's. `max_unindexed_rows`
        (0: the server's default, 16,384 rows from a 1024-d index up, 43,008 for a 256-d one)
        is how many written rows may wait for the HNSW index before writes wait for it: raise it
        for a bulk load, and searches scan those rows meanwhile.
        """
        config = build.collection_config(
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
        )
        request = collections_pb2.CreateCollectionRequest(config=config)
        return (await self._unary(self._collections.CreateCollection, request, timeout)).collection

    async def get_collection(self, name: str, *, timeout: float | None = None) -> collections_pb2.Collection:
        """The collection with its storage statistics (`Collection.stats`)."""
        request = collections_pb2.GetCollectionRequest(name=name)
        return (await self._unary(self._collections.GetCollection, request, timeout)).collection

    async def checkpoint_collection(
        self, name: str, *, timeout: float | None = None
    ) -> collections_pb2.Collection:
        """Saves the collection's HNSW index now, so a restart replays less; returns the collection
        with its stats (`stats.checkpoint_seq == stats.seq` afterwards). A no-op when nothing
        changed since the last checkpoint."""
        request = collections_pb2.CheckpointCollectionRequest(name=name)
        return (await self._unary(self._collections.CheckpointCollection, request, timeout)).collection

    async def compact_collection(
        self, name: str, *, timeout: float | None = None
    ) -> collections_pb2.Collection:
        """Reclaims every dead row and removed index entry now (the server also does this by itself
        past a threshold); returns the collection with its stats. On a large collection this
        takes a while: pass a generous `timeout` (the server finishes the work either way)."""
        request = collections_pb2.CompactCollectionRequest(name=name)
        return (await self._unary(self._collections.CompactCollection, request, timeout)).collection

    async def update_collection(
        self,
        name: str,
        *,
        expansion_search: int | None = None,
        rerank_factor: int | None = None,
        max_unindexed_rows: int | None = None,
        timeout: float | None = None,
    ) -> collections_pb2.Collection:
        """Changes the settings that touch no stored data; None keeps a setting, 0 sets the server
        default. They apply to the next search without a rebuild: `expansion_search` (how far a
        search walks the graph) and `rerank_factor` (candidates per hit reranked on the full
        vectors, for a lossy index) trade recall for speed; `max_unindexed_rows` is raised for a
        bulk load and set back after. Returns the collection with its stats."""
        request = collections_pb2.UpdateCollectionRequest(
            name=name,
            expansion_search=expansion_search,
            rerank_factor=rerank_factor,
            max_unindexed_rows=max_unindexed_rows,
        )
        return (await self._unary(self._collections.UpdateCollection, request, timeout)).collection

    async def tune_collection(
        self,
        name: str,
        queries: Iterable[Sequence[float] | Any] = (),
        *,
        target_recall: float,
        k: int = 10,
        apply: bool = True,
        timeout: float | None = None,
    ) -> collections_pb2.TuneCollectionResponse:
        """Finds the cheapest `expansion_search` / `rerank_factor` whose mean recall@k on `queries`
        (a few hundred like your callers'; vectors or rows of a numpy array) reaches
        `target_recall`; with no queries, on the collection's live searches the server's recall
        sampler last drew (it needs `--recall-sample-budget` > 0). The server computes each
        query's exact top k itself and tries settings from the cheapest up; with `apply` the
        collection keeps the first that reaches it. Returns every trial (recall and time per
        query), whether one reached the target, how many queries were searched, and the
        collection as it is after. Exact scans of the stored vectors: on a large collection pass
        a generous `timeout` (without one the server allows its default, 60 s); a deadline that
        passes mid-way changes nothing."""
        request = collections_pb2.TuneCollectionRequest(
            name=name,
            queries=[common_pb2.Vector(f32=pack(q)) for q in queries],
            k=k,
            target_recall=target_recall,
            apply=apply,
        )
        return await self._unary(self._collections.TuneCollection, request, timeout)

    async def list_collections(self, *, timeout: float | None = None) -> list[collections_pb2.Collection]:
        request = collections_pb2.ListCollectionsRequest()
        return list((await self._unary(self._collections.ListCollections, request, timeout)).collections)

    async def delete_collection(self, name: str, *, timeout: float | None = None) -> None:
        request = collections_pb2.DeleteCollectionRequest(name=name)
        await self._unary(self._collections.DeleteCollection, request, timeout)

    # --- data ------------------------------------------------------------------------------

    async def upsert(
        self, collection: str, items: Iterable[data_pb2.Item], *, timeout: float | None = None
    ) -> data_pb2.UpsertResponse:
        """Stores items in one call (build them with `onespace_client.item`); fails as a whole."""
        request = data_pb2.UpsertRequest(collection=collection, items=list(items))
        return await self._unary(self._data.Upsert, request, timeout)

    async def ingest(
        self,
        collection: str,
        items: AsyncIterable[IngestInput] | Iterable[IngestInput],
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        timeout: float | None = None,
        packed: bool = True,
        streams: int = 1,
    ) -> AsyncIterator[data_pb2.IngestResponse]:
        """Streams items into `collection`, yielding one ack per item (stored or a per-item error).

        Items are read from `items` at most `max_in_flight` ahead of the acks. Request ids default
        to the item's position ("0", "1", ...); acks may come out of order. Items ready together
        travel in one message (`IngestPacked`); `packed=False` sends one message per item
        (`Ingest`), for a server older than that method.

        `streams` > 1 spreads the items over that many streams, each with its own window of
        `max_in_flight` (the server bounds each stream's window too): a bulk load whose one
        stream is bound by its window gets more items in flight (against `onespace serve` with
        the local provider on 2 cores, 2 streams carried ~1.2x the texts per second of one).
        An item goes to the stream its id hashes to, so items with one id are still stored in
        their order.
        """
        requests = ingest_requests(collection, items)
        methods = (self._data.Ingest, self._data.IngestPacked, data_pb2.IngestPackedRequest)
        acks: AsyncIterator[data_pb2.IngestResponse]
        if streams == 1:
            acks = self._bidi(methods, requests, max_in_flight, timeout, packed)
        else:
            acks = sharded(
                requests,
                streams,
                lambda request: request.item.id,
                lambda part: self._bidi(methods, part, max_in_flight, timeout, packed),
                max_in_flight,
            )
        async for ack in acks:
            yield ack

    async def get(
        self,
        collection: str,
        ids: Sequence[str],
        *,
        include_vectors: bool = False,
        timeout: float | None = None,
    ) -> data_pb2.GetResponse:
        """Reads items back in request order; unknown ids are listed in `missing_ids`."""
        request = data_pb2.GetRequest(
            collection=collection,
            ids=list(ids),
            include_vectors=include_vectors,
            vector_format=common_pb2.VECTOR_FORMAT_F32,
        )
        return await self._unary(self._data.Get, request, timeout)

    async def delete(self, collection: str, ids: Sequence[str], *, timeout: float | None = None) -> int:
        """Deletes items; returns how many of the ids existed."""
        request = data_pb2.DeleteRequest(collection=collection, ids=list(ids))
        return (await self._unary(self._data.Delete, request, timeout)).deleted

    # --- search and info -------------------------------------------------------------------

    async def search(
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
        """Nearest items to exactly one query: `text`, `content`, `vector` or a stored `id`.

        Only items passing every filter are ranked: a modality in `modalities` (empty: any),
        every `metadata` key equal, every condition in `conditions` (at most 16; build them with
        `onespace_client.where`, e.g. `where("year").range(gte=2000)`).
        """
        request = build.search_request(
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
        )
        return await self._unary(self._search.Search, request, timeout)

    async def search_batch(
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
        """Nearest items to each row of `query_vectors` (a 2-D numpy array or a sequence of
        vectors), in one `SearchBatch` RPC: one response per row, in order.

        The server searches the rows together (one index call for the batch), so many queries
        cost far less this way than as separate `search` calls. Every row shares `k`,
        `dimension` and the filter (see `search`); at most the server's max items per request
        (Info `limits`) rows per call. A bad row fails the call, naming it (`queries[i]`).
        """
        request = build.search_batch_request(
            collection,
            query_vectors,
            k=k,
            dimension=dimension,
            modalities=modalities,
            metadata=metadata,
            conditions=conditions,
            include_vectors=include_vectors,
        )
        return list((await self._unary(self._search.SearchBatch, request, timeout)).results)

    async def info(self, *, timeout: float | None = None) -> info_pb2.InfoResponse:
        """The provider, models (dimensions, modalities, limits) and the server's limits."""
        return await self._unary(self._info.Info, info_pb2.InfoRequest(), timeout)
