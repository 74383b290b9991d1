"""A tiny in-process stand-in for the gateway, for client-side tests only.

Answers are computed from the requests (vector[0] = payload length, echoed ids, filters applied
to what was stored) so tests can check what the client put on the wire. Magic inputs trigger
failures: text "boom" -> INVALID_ARGUMENT, text "throttle" -> RESOURCE_EXHAUSTED with a
`grpc-retry-pushback-ms: 250` trailer, item ids starting with "bad" -> a per-item error.
Storage stats follow the writes (a commit per write call, a dead row per replaced or deleted item),
CheckpointCollection stamps CHECKPOINT_TIME, CompactCollection zeroes the dead rows.
It runs on its own event loop in a thread, so sync clients and the CLI (asyncio.run) can use it.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

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
from onespace_client.vectors import vector as vector_of

DEFAULT_DIM = 8
CHECKPOINT_TIME = 1_700_000_000.5  # 2023-11-14 22:13:20 UTC
_KIND_MODALITY = {
    "text": common_pb2.MODALITY_TEXT,
    "image": common_pb2.MODALITY_IMAGE,
    "audio": common_pb2.MODALITY_AUDIO,
    "video": common_pb2.MODALITY_VIDEO,
}


def payload_length(content: common_pb2.Content) -> int:
    kind = content.WhichOneof("kind")
    value = getattr(content, kind) if kind else ""
    return len(value)


def fake_vector(content: common_pb2.Content, dim: int, normalize: bool = True) -> list[float]:
    values = [float(payload_length(content))] + [1.0] * (dim - 1)
    if normalize:
        norm = math.sqrt(sum(v * v for v in values))
        values = [v / norm for v in values]
    return values


def timings() -> common_pb2.Timings:
    return common_pb2.Timings(
        queue_seconds=0.001, provider_seconds=0.002, index_seconds=0.0005, total_seconds=0.004
    )


@dataclass
class FakeState:
    collections: dict[str, collections_pb2.Collection] = field(default_factory=dict)
    items: dict[str, dict[str, data_pb2.StoredItem]] = field(default_factory=dict)
    stats: dict[str, collections_pb2.CollectionStats] = field(default_factory=dict)
    requests: list[Any] = field(default_factory=list)
    ingest_max_outstanding: int = 0
    ack_delay: float = 0.0
    frame_sizes: list[int] = field(default_factory=list)  # items per packed request frame
    ingest_ended: threading.Event = field(default_factory=threading.Event)  # an Ingest stream's handler ended
    ingest_streams: list[int] = field(default_factory=list)  # requests each ended Ingest stream received
    ingest_streams_ended: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))


async def _unpacked(frames: AsyncIterator[Any], state: FakeState) -> AsyncIterator[Any]:
    """The requests of a packed stream's frames, as the one-item method sees them."""
    async for frame in frames:
        state.frame_sizes.append(len(frame.requests))
        for request in frame.requests:
            yield request


async def _check_text(content: common_pb2.Content, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if content.text == "boom":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "items[0].text: boom is not allowed")
    if content.text == "throttle":
        context.set_trailing_metadata((("grpc-retry-pushback-ms", "250"),))
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full, retry later")


class Embed(embed_pb2_grpc.EmbedServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def Embed(self, request: embed_pb2.EmbedRequest, context: Any) -> embed_pb2.EmbedResponse:
        self.state.requests.append(request)
        for item in request.items:
            await _check_text(item, context)
        opts = request.options
        dim = opts.dimension if opts.HasField("dimension") else DEFAULT_DIM
        normalize = opts.normalize if opts.HasField("normalize") else True
        results = [
            common_pb2.EmbedResult(
                embeddings=[
                    common_pb2.Embedding(
                        values=fake_vector(c, dim, normalize), type=common_pb2.EMBEDDING_TYPE_TEXT
                    )
                ]
            )
            for c in request.items
        ]
        return embed_pb2.EmbedResponse(
            results=results, model=opts.model or "fake-model", dimension=dim, timings=timings()
        )

    async def EmbedStream(
        self, request_iterator: AsyncIterator[embed_pb2.EmbedStreamRequest], context: Any
    ) -> AsyncIterator[embed_pb2.EmbedStreamResponse]:
        async for request in request_iterator:
            self.state.requests.append(request)
            dim = request.options.dimension if request.options.HasField("dimension") else DEFAULT_DIM
            response = embed_pb2.EmbedStreamResponse(
                request_id=request.request_id, model=request.options.model or "fake-model", dimension=dim
            )
            if request.content.text == "boom":
                response.error.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
                response.error.message = "content.text: boom"
            else:
                response.result.embeddings.add(values=fake_vector(request.content, dim))
            yield response

    async def EmbedStreamPacked(
        self, request_iterator: AsyncIterator[embed_pb2.EmbedStreamPackedRequest], context: Any
    ) -> AsyncIterator[embed_pb2.EmbedStreamPackedResponse]:
        async for response in self.EmbedStream(_unpacked(request_iterator, self.state), context):
            yield embed_pb2.EmbedStreamPackedResponse(responses=[response])


class Collections(collections_pb2_grpc.CollectionServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def CreateCollection(self, request: Any, context: Any) -> collections_pb2.CreateCollectionResponse:
        self.state.requests.append(request)
        config = collections_pb2.CollectionConfig()
        config.CopyFrom(request.config)
        if config.name in self.state.collections:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"collection {config.name!r} exists")
        config.model = config.model or "fake-model"
        config.dimension = config.dimension or DEFAULT_DIM
        config.index_dimension = config.index_dimension or config.dimension
        config.metric = config.metric or collections_pb2.METRIC_COSINE
        config.dtype = config.dtype or collections_pb2.INDEX_DTYPE_F16
        config.hnsw.connectivity = config.hnsw.connectivity or 16
        config.hnsw.expansion_add = config.hnsw.expansion_add or 128
        config.hnsw.expansion_search = config.hnsw.expansion_search or 64
        config.rerank_factor = config.rerank_factor or 4
        config.stored_dtype = config.stored_dtype or collections_pb2.STORED_DTYPE_F16
        self.state.collections[config.name] = collections_pb2.Collection(config=config)
        self.state.items[config.name] = {}
        self.state.stats[config.name] = collections_pb2.CollectionStats()
        return collections_pb2.CreateCollectionResponse(collection=self.state.collections[config.name])

    async def _get(self, name: str, context: Any) -> collections_pb2.Collection:
        if name not in self.state.collections:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"collection {name!r} not found")
        collection = self.state.collections[name]
        collection.count = len(self.state.items[name])
        return collection

    async def _with_stats(self, name: str, context: Any) -> collections_pb2.Collection:
        collection = collections_pb2.Collection()
        collection.CopyFrom(await self._get(name, context))
        stats = self.state.stats[name]
        stats.items = collection.count
        bytes_per_row = 2 if collection.config.stored_dtype == collections_pb2.STORED_DTYPE_F16 else 4
        stats.vector_bytes = (stats.items + stats.dead_rows) * collection.config.dimension * bytes_per_row
        stats.index_bytes = 1000 + 100 * (stats.items + stats.index_tombstones)
        stats.log_bytes = 512 * (stats.seq - stats.checkpoint_seq)
        stats.disk_bytes = 8192 + stats.vector_bytes + stats.log_bytes
        collection.stats.CopyFrom(stats)
        return collection

    async def GetCollection(self, request: Any, context: Any) -> collections_pb2.GetCollectionResponse:
        self.state.requests.append(request)
        return collections_pb2.GetCollectionResponse(collection=await self._with_stats(request.name, context))

    async def CheckpointCollection(
        self, request: Any, context: Any
    ) -> collections_pb2.CheckpointCollectionResponse:
        self.state.requests.append(request)
        await self._get(request.name, context)
        stats = self.state.stats[request.name]
        if stats.checkpoint_seq != stats.seq or not stats.checkpoint_time:
            stats.checkpoint_seq, stats.checkpoint_time = stats.seq, CHECKPOINT_TIME
        return collections_pb2.CheckpointCollectionResponse(
            collection=await self._with_stats(request.name, context)
        )

    async def UpdateCollection(self, request: Any, context: Any) -> collections_pb2.UpdateCollectionResponse:
        """Sets the fields the request sets (0 stays 0 here: the fake has no defaults)."""
        self.state.requests.append(request)
        config = (await self._get(request.name, context)).config
        if request.HasField("expansion_search"):
            config.hnsw.expansion_search = request.expansion_search
        if request.HasField("rerank_factor"):
            config.rerank_factor = request.rerank_factor
        if request.HasField("max_unindexed_rows"):
            config.max_unindexed_rows = request.max_unindexed_rows
        return collections_pb2.UpdateCollectionResponse(
            collection=await self._with_stats(request.name, context)
        )

    async def CompactCollection(
        self, request: Any, context: Any
    ) -> collections_pb2.CompactCollectionResponse:
        self.state.requests.append(request)
        await self._get(request.name, context)
        stats = self.state.stats[request.name]
        stats.dead_rows = stats.index_tombstones = 0
        return collections_pb2.CompactCollectionResponse(
            collection=await self._with_stats(request.name, context)
        )

    async def ListCollections(self, request: Any, context: Any) -> collections_pb2.ListCollectionsResponse:
        names = sorted(self.state.collections)
        return collections_pb2.ListCollectionsResponse(
            collections=[await self._get(n, context) for n in names]
        )

    async def DeleteCollection(self, request: Any, context: Any) -> collections_pb2.DeleteCollectionResponse:
        await self._get(request.name, context)
        del self.state.collections[request.name], self.state.items[request.name]
        del self.state.stats[request.name]
        return collections_pb2.DeleteCollectionResponse()


def _commit(state: FakeState, name: str, replaced: int) -> None:
    stats = state.stats[name]
    stats.seq += 1
    stats.dead_rows += replaced
    stats.index_tombstones += replaced


def _stored(item: data_pb2.Item) -> data_pb2.StoredItem:
    if item.HasField("vector"):
        values = [float(v) for v in vector_of(item.vector)]  # packed f32 or repeated floats
        return data_pb2.StoredItem(id=item.id, metadata=item.metadata, vector=values)
    kind = item.content.WhichOneof("kind") or "text"
    vector = fake_vector(item.content, DEFAULT_DIM)
    return data_pb2.StoredItem(
        id=item.id, modality=_KIND_MODALITY.get(kind, 0), metadata=item.metadata, vector=vector
    )


class Data(data_pb2_grpc.DataServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def _items(self, name: str, context: Any) -> dict[str, data_pb2.StoredItem]:
        if name not in self.state.items:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"collection {name!r} not found")
        return self.state.items[name]

    async def Upsert(self, request: data_pb2.UpsertRequest, context: Any) -> data_pb2.UpsertResponse:
        self.state.requests.append(request)
        items = await self._items(request.collection, context)
        _commit(self.state, request.collection, sum(item.id in items for item in request.items))
        for item in request.items:
            items[item.id] = _stored(item)
        return data_pb2.UpsertResponse(
            upserted=len(request.items), model="fake-model", dimension=DEFAULT_DIM, timings=timings()
        )

    async def Ingest(
        self, request_iterator: AsyncIterator[data_pb2.IngestRequest], context: Any
    ) -> AsyncIterator[data_pb2.IngestResponse]:
        queue: asyncio.Queue[data_pb2.IngestRequest | None] = asyncio.Queue()
        counts = {"received": 0, "acked": 0}

        async def read() -> None:
            async for request in request_iterator:
                counts["received"] += 1
                outstanding = counts["received"] - counts["acked"]
                self.state.ingest_max_outstanding = max(self.state.ingest_max_outstanding, outstanding)
                await queue.put(request)
            await queue.put(None)

        reader = asyncio.create_task(read())
        try:
            while (request := await queue.get()) is not None:
                self.state.requests.append(request)
                items = await self._items(request.collection, context)
                if self.state.ack_delay:
                    await asyncio.sleep(self.state.ack_delay)
                ack = data_pb2.IngestResponse(
                    request_id=request.request_id, id=request.item.id, timings=timings()
                )
                if request.item.id.startswith("bad"):
                    ack.error.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
                    ack.error.message = "item.content: undecodable"
                else:
                    _commit(self.state, request.collection, int(request.item.id in items))
                    items[request.item.id] = _stored(request.item)
                    ack.stored = True
                counts["acked"] += 1
                yield ack
        finally:
            reader.cancel()
            self.state.ingest_streams.append(counts["received"])
            self.state.ingest_ended.set()
            self.state.ingest_streams_ended.release()

    async def IngestPacked(
        self, request_iterator: AsyncIterator[data_pb2.IngestPackedRequest], context: Any
    ) -> AsyncIterator[data_pb2.IngestPackedResponse]:
        async for ack in self.Ingest(_unpacked(request_iterator, self.state), context):
            yield data_pb2.IngestPackedResponse(responses=[ack])

    async def Get(self, request: data_pb2.GetRequest, context: Any) -> data_pb2.GetResponse:
        items = await self._items(request.collection, context)
        response = data_pb2.GetResponse(missing_ids=[i for i in request.ids if i not in items])
        for item_id in request.ids:
            if item_id in items:
                stored = response.items.add()
                stored.CopyFrom(items[item_id])
                if not request.include_vectors:
                    del stored.vector[:]
        return response

    async def Delete(self, request: data_pb2.DeleteRequest, context: Any) -> data_pb2.DeleteResponse:
        items = await self._items(request.collection, context)
        existing = [i for i in request.ids if i in items]
        for item_id in existing:
            del items[item_id]
        if existing:
            _commit(self.state, request.collection, len(existing))
        return data_pb2.DeleteResponse(deleted=len(existing))


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _passes(condition: search_pb2.Condition, metadata: Any) -> bool:
    """The protocol's semantics of one condition, written plainly."""
    value = metadata.get(condition.key)
    test = condition.WhichOneof("test")
    if test == "equals":
        return bool(value == condition.equals)
    if test == "not_equals":
        return bool(value != condition.not_equals)
    if test == "in":
        return value in getattr(condition, "in").values
    if test == "not_in":
        return value not in condition.not_in.values
    number = _number(value)
    if test != "range" or number is None:
        return False
    r = condition.range
    return (
        (not r.HasField("gt") or number > r.gt)
        and (not r.HasField("gte") or number >= r.gte)
        and (not r.HasField("lt") or number < r.lt)
        and (not r.HasField("lte") or number <= r.lte)
    )


class Search(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def Search(self, request: search_pb2.SearchRequest, context: Any) -> search_pb2.SearchResponse:
        self.state.requests.append(request)
        if request.collection not in self.state.items:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"collection {request.collection!r} not found")
        if request.HasField("content"):
            await _check_text(request.content, context)
        items = self.state.items[request.collection]
        if request.HasField("id") and request.id not in items:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"id {request.id!r} not found")
        wanted = set(request.filter.modalities)
        matches = [
            s
            for s in items.values()
            if (not wanted or s.modality in wanted)
            and all(s.metadata.get(k) == v for k, v in request.filter.metadata.items())
            and all(_passes(c, s.metadata) for c in request.filter.conditions)
        ]
        hits = [
            search_pb2.SearchHit(id=s.id, score=1.0 / (rank + 1), modality=s.modality, metadata=s.metadata)
            for rank, s in enumerate(sorted(matches, key=lambda s: s.id)[: request.k or 10])
        ]
        dim = request.dimension if request.HasField("dimension") else DEFAULT_DIM
        return search_pb2.SearchResponse(hits=hits, model="fake-model", dimension=dim, timings=timings())

    async def SearchBatch(
        self, request: search_pb2.SearchBatchRequest, context: Any
    ) -> search_pb2.SearchBatchResponse:
        self.state.requests.append(request)
        results = [await self.Search(q, context) for q in request.queries]
        return search_pb2.SearchBatchResponse(results=results)


INFO = info_pb2.InfoResponse(
    provider="fake",
    version="0.0.1",
    default_model="fake-model",
    models=[
        info_pb2.ModelInfo(
            id="fake-model",
            modalities=[common_pb2.MODALITY_TEXT, common_pb2.MODALITY_IMAGE],
            dimensions=[8, 16],
            default_dimension=8,
            limits=info_pb2.ModelLimits(
                max_text_chars=1000, max_inline_bytes=25 << 20, max_media_seconds=30, image_formats=["png"]
            ),
            description="a fake model",
            semantic_across_modalities=True,
        )
    ],
    limits=info_pb2.ServerLimits(max_items_per_request=16, max_request_bytes=64 << 20, max_k=100),
    notice="answers are computed, not embedded",
)


class Info(info_pb2_grpc.InfoServiceServicer):
    async def Info(self, request: info_pb2.InfoRequest, context: Any) -> info_pb2.InfoResponse:
        return INFO


@dataclass
class FakeGateway:
    target: str
    state: FakeState


@dataclass
class _Running:
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    server: grpc.aio.Server


def _start(state: FakeState) -> tuple[_Running, int]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-gateway", daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20),
            ]
        )
        embed_pb2_grpc.add_EmbedServiceServicer_to_server(Embed(state), server)
        collections_pb2_grpc.add_CollectionServiceServicer_to_server(Collections(state), server)
        data_pb2_grpc.add_DataServiceServicer_to_server(Data(state), server)
        search_pb2_grpc.add_SearchServiceServicer_to_server(Search(state), server)
        info_pb2_grpc.add_InfoServiceServicer_to_server(Info(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    return _Running(loop, thread, server), port


def _stop(running: _Running) -> None:
    asyncio.run_coroutine_threadsafe(running.server.stop(None), running.loop).result(timeout=10)
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join(timeout=10)
    running.loop.close()


def serve() -> Iterator[FakeGateway]:
    """Generator for a pytest fixture: starts the fake, yields it, stops it."""
    state = FakeState()
    running, port = _start(state)
    try:
        yield FakeGateway(f"127.0.0.1:{port}", state)
    finally:
        _stop(running)
