"""Bytes that do not parse, and vectors too large to score, get INVALID_ARGUMENT naming what is
wrong; the log holds no traceback (docs/errors.md)."""

from __future__ import annotations

import logging
import random
import time
import tracemalloc
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2

from onespace.rpc.handlers import ONESPACE
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, embed_pb2, info_pb2, search_pb2
from tests.harness import Running, running_gateway

INVALID = grpc.StatusCode.INVALID_ARGUMENT
POOL = embed_pb2.DESCRIPTOR.pool
METHODS = [m for name in sorted(ONESPACE) for m in POOL.FindServiceByName(name).methods]
UNARY = [m for m in METHODS if not m.client_streaming and not m.server_streaming]
LOG_INTERVAL = 10.0  # handlers.UndecodableLog: at most one line per this many seconds


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def request_class(method: MethodDescriptor) -> type[Message]:
    return message_factory.GetMessageClass(method.input_type)


def garbage(cls: type[Message], seed: int) -> bytes:
    """Random bytes (from `seed`) that are not a `cls`: checked here, so the test knows."""
    rng = random.Random(seed)
    while True:
        raw = rng.randbytes(rng.randint(1, 200))
        try:
            cls.FromString(raw)
        except DecodeError:
            return raw


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def bad_utf8(message: Descriptor, depth: int = 0) -> bytes | None:
    """A well-formed frame of `message` whose first reachable string field holds invalid UTF-8."""
    for field in message.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            return _varint(field.number << 3 | 2) + b"\x02\xff\xfe"
    for field in message.fields if depth < 3 else ():
        if field.message_type is not None:
            inner = bad_utf8(field.message_type, depth + 1)
            if inner is not None:
                return _varint(field.number << 3 | 2) + _varint(len(inner)) + inner
    return None


def raw_unary(
    channel: grpc.aio.Channel, method: MethodDescriptor
) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(
        path_of(method), request_serializer=lambda b: b, response_deserializer=lambda b: b
    )


def raw_stream(channel: grpc.aio.Channel, path: str) -> grpc.aio.StreamStreamMultiCallable[bytes, bytes]:
    return channel.stream_stream(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)


def undecodable_count(gw: Running) -> float:
    value = gw.app.metrics.registry.get_sample_value("onespace_rejected_total", {"reason": "undecodable"})
    return value or 0.0


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not loud, [r.getMessage() for r in loud]


async def expect_invalid(call: object, *fragments: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.code() == INVALID, (err.value.code(), err.value.details())
    details = err.value.details() or ""
    for fragment in fragments:
        assert fragment in details, details
    return details


def test_the_bad_frames_are_what_they_claim() -> None:
    for method in UNARY:
        cls = request_class(method)
        frame = bad_utf8(method.input_type)
        if frame is not None:
            with pytest.raises(DecodeError, match="UTF-8"):
                cls.FromString(frame)


async def test_undecodable_unary_requests_are_invalid_argument_without_a_traceback(
    gateway: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    assert len(UNARY) == 15  # every unary method of the five services
    started = time.monotonic()
    sent = 0
    for method in UNARY:
        cls = request_class(method)
        name = method.input_type.full_name
        call = raw_unary(gateway.channel, method)
        for seed in range(3):
            await expect_invalid(call(garbage(cls, seed)), f"request: cannot decode {name}: ")
            sent += 1
        if (frame := bad_utf8(method.input_type)) is not None:
            await expect_invalid(call(frame), f"request: cannot decode {name}: String field had bad UTF-8")
            sent += 1
    elapsed = time.monotonic() - started
    assert undecodable_count(gateway) == sent
    assert_no_traceback(caplog)
    lines = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert 1 <= len(lines) <= 1 + elapsed // LOG_INTERVAL, [r.getMessage() for r in lines]
    assert all(r.levelno == logging.WARNING for r in lines)
    assert (await gateway.info.Info(info_pb2.InfoRequest())).version  # still serving


@pytest.fixture
async def keep(gateway: Running) -> Running:
    await gateway.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(
                name="keep", dimension=256, stored_dtype=collections_pb2.STORED_DTYPE_F32
            )
        )
    )
    return gateway


def ingest(request_id: str, item_id: str) -> bytes:
    return data_pb2.IngestRequest(
        request_id=request_id,
        collection="keep",
        item=data_pb2.Item(id=item_id, vector=common_pb2.Vector(values=[0.5] * 256)),
    ).SerializeToString()


async def stream_until_error(
    call: grpc.aio.StreamStreamMultiCallable[bytes, bytes], frames: list[bytes]
) -> tuple[list[bytes], grpc.aio.AioRpcError]:
    """Send `frames`, the bad one last: a write after the server ended the stream can make the
    asyncio client report INTERNAL "Internal error from Core" instead (grpc/grpc#36066)."""

    async def requests() -> AsyncIterator[bytes]:
        for frame in frames:
            yield frame

    got: list[bytes] = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for response in call(requests()):
            got.append(response)
    return got, err.value


@pytest.mark.parametrize("bad", [b"\xff\xff\xff\xff", "utf8"])
async def test_a_bad_ingest_frame_ends_the_stream_after_answering_the_frames_before_it(
    keep: Running, caplog: pytest.LogCaptureFixture, bad: bytes | str
) -> None:
    caplog.set_level(logging.WARNING)
    frame = bad_utf8(data_pb2.IngestRequest.DESCRIPTOR) if bad == "utf8" else bad
    assert isinstance(frame, bytes)
    call = raw_stream(keep.channel, "/onespace.v1.DataService/Ingest")
    got, err = await stream_until_error(call, [ingest("1", "a"), ingest("2", "b"), frame])
    assert err.code() == INVALID, err.details()
    assert (err.details() or "").startswith("requests[2]: cannot decode onespace.v1.IngestRequest: ")
    acks = sorted((data_pb2.IngestResponse.FromString(r) for r in got), key=lambda a: a.request_id)
    assert [(a.request_id, a.id, a.stored) for a in acks] == [("1", "a", True), ("2", "b", True)]
    stored = await keep.data.Get(data_pb2.GetRequest(collection="keep", ids=["a", "b"]))
    assert [i.id for i in stored.items] == ["a", "b"]
    assert undecodable_count(keep) == 1
    assert_no_traceback(caplog)


async def test_a_bad_first_embed_stream_frame_ends_the_stream_at_frame_0(
    gateway: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    call = raw_stream(gateway.channel, "/onespace.v1.EmbedService/EmbedStream")
    got, err = await stream_until_error(call, [b"\x0f"])
    assert err.code() == INVALID and got == []
    assert (err.details() or "").startswith("requests[0]: cannot decode onespace.v1.EmbedStreamRequest: ")
    assert_no_traceback(caplog)


async def test_a_bad_embed_stream_frame_after_good_ones(
    gateway: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    call = raw_stream(gateway.channel, "/onespace.v1.EmbedService/EmbedStream")
    good = embed_pb2.EmbedStreamRequest(request_id="1", content=common_pb2.Content(text="hello"))
    empty = embed_pb2.EmbedStreamRequest(request_id="2", content=common_pb2.Content(text=""))
    frame = bad_utf8(embed_pb2.EmbedStreamRequest.DESCRIPTOR)
    assert frame is not None
    got, err = await stream_until_error(call, [good.SerializeToString(), empty.SerializeToString(), frame])
    assert err.code() == INVALID
    assert (err.details() or "").startswith("requests[2]: cannot decode onespace.v1.EmbedStreamRequest: ")
    assert "UTF-8" in (err.details() or "")
    answers = {r.request_id: r for r in map(embed_pb2.EmbedStreamResponse.FromString, got)}
    assert set(answers) == {"1", "2"}
    assert len(answers["1"].result.embeddings[0].values) > 0
    assert answers["2"].error.code == INVALID.value[0]  # a bad item that parses: its own error
    assert_no_traceback(caplog)


async def test_the_servers_health_service_refuses_undecodable_requests(
    gateway: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Health needs no token: garbage sent to it must be INVALID_ARGUMENT, not a traceback."""
    channel = gateway.channel
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda b: b,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    frame = bad_utf8(health_pb2.HealthCheckRequest.DESCRIPTOR)
    assert frame is not None
    await expect_invalid(check(frame), "request: cannot decode grpc.health.v1.HealthCheckRequest")
    ok = await check(health_pb2.HealthCheckRequest(service="").SerializeToString())
    assert ok.status == health_pb2.HealthCheckResponse.SERVING
    watch = channel.unary_stream(
        "/grpc.health.v1.Health/Watch",
        request_serializer=lambda b: b,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in watch(b"\x0f"):
            pass
    assert err.value.code() == INVALID
    assert_no_traceback(caplog)


# --- values that parse but cannot be scored ---------------------------------------------------


def f32(values: list[float]) -> common_pb2.Vector:
    return common_pb2.Vector(f32=np.asarray(values, dtype="<f4").tobytes())


@pytest.fixture
async def metrics_collections(gateway: Running) -> Running:
    configs = [
        collections_pb2.CollectionConfig(
            name="cos", dimension=256, stored_dtype=collections_pb2.STORED_DTYPE_F32
        ),
        collections_pb2.CollectionConfig(
            name="ip", dimension=256, metric=collections_pb2.METRIC_INNER_PRODUCT
        ),  # f16 index and stored vectors (the defaults), unnormalised
        collections_pb2.CollectionConfig(
            name="l2",
            dimension=256,
            metric=collections_pb2.METRIC_L2,
            dtype=collections_pb2.INDEX_DTYPE_F32,
            stored_dtype=collections_pb2.STORED_DTYPE_F32,
        ),
    ]
    for config in configs:
        await gateway.collections.CreateCollection(collections_pb2.CreateCollectionRequest(config=config))
    return gateway


@pytest.fixture
def no_numpy_warnings() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


async def test_huge_finite_vectors_are_refused_naming_the_field(
    metrics_collections: Running, no_numpy_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    gw = metrics_collections
    caplog.set_level(logging.WARNING)
    for collection in ("cos", "ip", "l2"):
        for vector in (
            common_pb2.Vector(values=[1e38] * 256),
            f32([3.4e38] * 256),
            common_pb2.Vector(values=[1e18] * 256),  # squared norm 2.6e38: fits float32, its L2 scores do not
            f32([0.1] * 255 + [-1e20]),
        ):
            await expect_invalid(
                gw.data.Upsert(
                    data_pb2.UpsertRequest(
                        collection=collection, items=[data_pb2.Item(id="x", vector=vector)]
                    )
                ),
                "items[0].vector: values too large: squared norm",
                "overflows float32",
            )
            await expect_invalid(
                gw.search.Search(search_pb2.SearchRequest(collection=collection, vector=vector)),
                "vector: values too large",
            )
            await expect_invalid(
                gw.search.SearchBatch(
                    search_pb2.SearchBatchRequest(
                        queries=[
                            search_pb2.SearchRequest(
                                collection=collection, vector=common_pb2.Vector(values=[0.1] * 256)
                            ),
                            search_pb2.SearchRequest(collection=collection, vector=vector),
                        ]
                    )
                ),
                "queries[1].vector: values too large",
            )

            async def one(
                v: common_pb2.Vector = vector, c: str = collection
            ) -> AsyncIterator[data_pb2.IngestRequest]:
                yield data_pb2.IngestRequest(
                    request_id="1", collection=c, item=data_pb2.Item(id="x", vector=v)
                )

            acks = [a async for a in gw.data.Ingest(one())]
            assert (
                acks[0].error.code == INVALID.value[0]
                and "item.vector: values too large" in acks[0].error.message
            )
    for collection in ("cos", "ip", "l2"):
        got = await gw.collections.GetCollection(collections_pb2.GetCollectionRequest(name=collection))
        assert got.collection.count == 0
    assert_no_traceback(caplog)


async def test_the_largest_accepted_vectors_score_finite(
    metrics_collections: Running, no_numpy_warnings: None
) -> None:
    gw = metrics_collections
    big = 5e17  # squared norm 6.4e37 over 256 components: just within the bound (8.5e37)
    await gw.data.Upsert(
        data_pb2.UpsertRequest(
            collection="l2",
            items=[
                data_pb2.Item(id="far", vector=f32([big] * 256)),
                data_pb2.Item(id="near", vector=f32([-big] * 255 + [big])),
            ],
        )
    )
    hits = await gw.search.Search(search_pb2.SearchRequest(collection="l2", vector=f32([-big] * 256), k=2))
    scores = {h.id: h.score for h in hits.hits}
    assert all(np.isfinite(s) for s in scores.values()), scores
    assert [h.id for h in hits.hits] == ["near", "far"]
    assert scores["far"] == pytest.approx(-256 * (2 * big) ** 2, rel=1e-3)


async def test_vectors_too_small_to_normalise_and_beyond_f16_are_refused(
    metrics_collections: Running, no_numpy_warnings: None
) -> None:
    gw = metrics_collections
    tiny = common_pb2.Vector(values=[1e-30] * 256)
    await expect_invalid(
        gw.data.Upsert(data_pb2.UpsertRequest(collection="cos", items=[data_pb2.Item(id="x", vector=tiny)])),
        "items[0].vector: values too small",
    )
    await expect_invalid(
        gw.search.Search(search_pb2.SearchRequest(collection="cos", vector=tiny)), "vector: values too small"
    )
    await expect_invalid(  # a Matryoshka prefix is renormalised whatever the metric
        gw.search.Search(search_pb2.SearchRequest(collection="l2", vector=tiny, dimension=64)),
        "vector: values too small",
        "first 64 components",
    )
    wide = common_pb2.Vector(values=[1e5] + [0.1] * 255)
    await expect_invalid(
        gw.data.Upsert(data_pb2.UpsertRequest(collection="ip", items=[data_pb2.Item(id="x", vector=wide)])),
        "items[0].vector",
        "f16 range",
        "stored dtype f32",
        "dtype f32 or bf16",
    )
    await expect_invalid(
        gw.search.Search(search_pb2.SearchRequest(collection="ip", vector=wide)), "f16 range"
    )
    await gw.data.Upsert(data_pb2.UpsertRequest(collection="l2", items=[data_pb2.Item(id="x", vector=wide)]))


# --- replies that would not fit ---------------------------------------------------------------


async def test_a_status_message_quoting_a_huge_input_is_cut(
    gateway: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    name = "x" * 1_000_000
    details = await expect_invalid(
        gateway.collections.GetCollection(collections_pb2.GetCollectionRequest(name=name)), "name: 'xxx"
    )
    assert details.endswith("bytes in all)") and len(details) < 1200
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.data.Get(data_pb2.GetRequest(collection=name, ids=["a"]))
    assert err.value.code() != grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    assert_no_traceback(caplog)


async def _collection_of_one(gw: Running) -> None:
    """Collection `c` (256-d) holding item `a`."""
    await gw.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(name="c", dimension=256)
        )
    )
    await gw.data.Upsert(
        data_pb2.UpsertRequest(collection="c", items=[data_pb2.Item(id="a", vector=f32([0.5] * 256))])
    )


async def test_a_response_over_the_message_limit_is_refused_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_gateway(tmp_path / "data", max_request_bytes=64 * 1024) as gw:
        await _collection_of_one(gw)
        ids = ["a"] * 100
        await expect_invalid(
            gw.data.Get(data_pb2.GetRequest(collection="c", ids=ids, include_vectors=True)),
            "request: its response would be",
            "max_request_bytes",
        )
        small = await gw.data.Get(data_pb2.GetRequest(collection="c", ids=ids))
        assert len(small.items) == 100
    assert_no_traceback(caplog)


async def test_a_get_of_many_duplicate_ids_is_refused_before_its_response_is_built(tmp_path: Path) -> None:
    """Ids may repeat and each found one gets its own vector: the server counts the bytes as it
    goes, so 21,000 copies of one id (63 KB of request, 21 MB of vectors and as much again of
    protobuf if built) are refused at the limit, not after building everything (fuzzing found
    that a 64 MiB request of ids could ask for terabytes)."""
    async with running_gateway(tmp_path / "data", max_request_bytes=64 * 1024) as gw:
        await _collection_of_one(gw)
        request = data_pb2.GetRequest(collection="c", ids=["a"] * 21_000, include_vectors=True)
        tracemalloc.start()
        try:
            await expect_invalid(
                gw.data.Get(request), "request: its response would be at least", "max_request_bytes"
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20, peak  # ~64 KiB of vectors before the refusal, not 21 MB
        stored = await gw.data.Get(data_pb2.GetRequest(collection="c", ids=["a"], include_vectors=True))
        assert [i.id for i in stored.items] == ["a"]  # nothing stored was touched


async def test_a_search_batch_whose_vectors_could_pass_the_limit_is_refused_before_searching(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path / "data", max_request_bytes=64 * 1024) as gw:
        await gw.collections.CreateCollection(
            collections_pb2.CreateCollectionRequest(
                config=collections_pb2.CollectionConfig(name="c", dimension=256)
            )
        )
        items = [data_pb2.Item(id=f"i{n}", vector=f32(np.eye(256)[n] + 0.1)) for n in range(100)]
        for start in (0, 50):  # 50 KiB a request, under the 64 KiB limit
            await gw.data.Upsert(data_pb2.UpsertRequest(collection="c", items=items[start : start + 50]))

        def query(include_vectors: bool) -> search_pb2.SearchRequest:
            return search_pb2.SearchRequest(
                collection="c", vector=f32([0.5] * 256), k=100, include_vectors=include_vectors
            )

        # 2 x 100 hits x 1 KiB of vector = 200 KiB, over 64 KiB: refused, naming the bound
        await expect_invalid(
            gw.search.SearchBatch(search_pb2.SearchBatchRequest(queries=[query(True), query(True)])),
            "request: its response could be up to 204800 bytes",
            "max_request_bytes",
        )
        plain = await gw.search.SearchBatch(
            search_pb2.SearchBatchRequest(queries=[query(False), query(False)])
        )
        assert [len(r.hits) for r in plain.results] == [100, 100]
