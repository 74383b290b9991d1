"""Random bytes and random, hostile but well-formed messages to every method of one real server:
none ends in UNKNOWN or INTERNAL, the log holds no traceback, numpy warns about nothing, the
server still answers, and a seeded collection reads back byte-identical (docs/errors.md).

The server runs on an event loop in a thread of its own, so hypothesis drives plain functions
(each example waits for its RPCs on that loop) and the one server lives across all examples.
Messages are built from the request descriptors, so a field added to a .proto is fuzzed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import warnings
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onespace.config import Settings
from onespace.rpc.handlers import ONESPACE
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, embed_pb2, info_pb2, search_pb2
from tests import media
from tests.harness import Running, running_gateway

T = TypeVar("T")

POOL = embed_pb2.DESCRIPTOR.pool
METHODS = {m.name: m for name in sorted(ONESPACE) for m in POOL.FindServiceByName(name).methods}
# Methods that change state: never pointed at the seeded collection, so it must read back unchanged.
WRITES = {
    "CreateCollection",
    "DeleteCollection",
    "UpdateCollection",
    "Upsert",
    "Ingest",
    "IngestPacked",
    "Delete",
}
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS}
SEEDED = "keep"
# Bytes one repeated message field may hold: `[one] * 300` copies `one` 300 times, two levels deep
# that reached a 6.3 GB SearchBatchRequest (seed 10) and ~24 GB once in CI, all in this process
# before the channel's 64 MiB limit refused it (test_malformed covers that limit).
MAX_REPEATED_BYTES = 8 << 20
FRAME_LIMIT = Settings().max_items_per_request  # requests in one packed frame the server reads
DIM = 256
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


class Background:
    """An event loop in a thread: the server and its channel live there, tests wait on futures."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@contextlib.contextmanager
def served(data_dir: Path) -> Iterator[tuple[Background, Running]]:
    bg = Background()
    try:
        # Background maintenance runs often and checkpoints any change at once, so it meets
        # collections the fuzz creates and deletes.
        gateway = running_gateway(
            data_dir, maintenance_interval_seconds=0.05, checkpoint_interval_seconds=0.0
        )
        running = bg.run(gateway.__aenter__())
        try:
            yield bg, running
        finally:
            bg.run(gateway.__aexit__(None, None, None))
    finally:
        bg.close()


# --- strategies built from the descriptors ------------------------------------------------------

PLAIN_TEXT = ["a", "k", "item-1", "hello world", "png"]
HOSTILE_TEXT = ["", " ", "\x00", "a\x00b", "é" * 40, "x" * 257, "x" * 70_000, "../../etc/passwd", "🙂"]
NUMBERS = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    1e-30,
    1e-45,
    65505.0,
    1e5,
    1e18,
    1e19,
    1e38,
    3.4e38,
    float("nan"),
    float("inf"),
]
INTS = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}


def names(writes: bool) -> st.SearchStrategy[str]:
    """Mostly a collection that exists (the seeded one only for methods that do not write)."""
    usual = "scratch" if writes else SEEDED
    known = ["scratch", "nope", "_x", "a" * 64] if writes else [SEEDED, "scratch", "nope"]
    text = st.text(max_size=12)
    return st.one_of(
        st.just(usual), st.sampled_from(known), text.filter(lambda t: t != SEEDED) if writes else text
    )


def vectors() -> st.SearchStrategy[common_pb2.Vector]:
    """Mostly the right length, with a hostile value somewhere, as `values` or packed `f32`."""
    length = st.one_of(st.just(DIM), st.sampled_from([0, 1, 64, DIM + 1]))
    fill = st.one_of(st.sampled_from([0.5, -0.25, 1.0]), st.sampled_from(NUMBERS), st.floats(width=32))

    @st.composite
    def build(draw: st.DrawFn) -> common_pb2.Vector:
        n = draw(length)
        values = np.full(n, draw(fill), dtype=np.float32)
        if n:
            values[draw(st.integers(0, n - 1))] = draw(fill)
        form = draw(st.sampled_from(["values", "f32", "both", "f32_odd"]))
        if form == "values":
            return common_pb2.Vector(values=values.tolist())
        raw = values.astype("<f4").tobytes()
        if form == "f32_odd":
            raw += b"\x00"
        return common_pb2.Vector(f32=raw, values=values.tolist()[:1] if form == "both" else [])

    return build()


def scalar(field: FieldDescriptor, writes: bool) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if field.name in ("collection", "name"):
            return names(writes)
        return st.one_of(st.sampled_from(PLAIN_TEXT), st.sampled_from(HOSTILE_TEXT), st.text(max_size=20))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.sampled_from([media.png(1), b"GIF89a" + bytes(20)]))
    if kind in INTS:
        low, high = INTS[kind]
        edges = [low, high, 255, 256, 1000, 1001, 16384, 16385]
        return st.one_of(
            st.sampled_from([0, 1, 2, 3, 64]),
            st.sampled_from([e for e in edges if low <= e <= high]),
            st.integers(low, high),
        )
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.one_of(st.sampled_from(NUMBERS), st.floats(width=32))
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.one_of(st.sampled_from([*NUMBERS, 1e308, -1e308]), st.floats())
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:  # proto3 enums are open: unknown values reach the server
        assert field.enum_type is not None
        known = st.sampled_from([v.number for v in field.enum_type.values])
        return st.one_of(known, known, st.integers(-3, 40))
    raise AssertionError(f"no strategy for {field.full_name} (type {kind})")


def message(descriptor: Descriptor, writes: bool, depth: int = 0) -> st.SearchStrategy[Message]:
    """A `descriptor` message with random fields set: each oneof gets one member or none."""
    if descriptor.full_name == "onespace.v1.Vector":
        return vectors()
    cls = message_factory.GetMessageClass(descriptor)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        out = cls()
        chosen = {o.name: draw(st.sampled_from([None, *o.fields])) for o in descriptor.oneofs}
        for field in descriptor.fields:
            oneof = field.containing_oneof
            if oneof is not None and chosen[oneof.name] is not field:
                continue
            if oneof is None and draw(st.integers(0, 2)) == 0:  # set two fields in three
                continue
            _set(out, field, draw, writes, depth)
        return out

    return build()


def _set(out: Message, field: FieldDescriptor, draw: st.DrawFn, writes: bool, depth: int) -> None:
    target = getattr(out, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        size = draw(st.sampled_from([0, 1, 2, 70]))
        entries = draw(st.dictionaries(scalar(key, writes), scalar(value, writes), max_size=size))
        target.update(entries)
    elif field.is_repeated:
        if field.message_type is not None:
            if depth < 3:
                count = draw(st.sampled_from([1, 1, 2, 3, 0, 300]))
                one = draw(message(field.message_type, writes, depth + 1))
                if count > 1:  # the same draws, so a seed replays; only the copies are bounded
                    count = min(count, max(1, MAX_REPEATED_BYTES // max(1, one.ByteSize())))
                target.extend([one] * count)  # the same message repeated: cheap, still hostile
        else:
            target.extend(
                draw(
                    st.lists(scalar(field, writes), min_size=1, max_size=draw(st.sampled_from([1, 3, 1200])))
                )
            )
    elif field.message_type is not None:
        if depth < 3:
            target.CopyFrom(draw(message(field.message_type, writes, depth + 1)))
    else:
        setattr(out, field.name, draw(scalar(field, writes)))


def request(method: MethodDescriptor) -> st.SearchStrategy[Message]:
    return message(method.input_type, method.name in WRITES)


def _vector(value: float = 0.5) -> common_pb2.Vector:
    return common_pb2.Vector(values=[value] * DIM)


def _query() -> search_pb2.SearchRequest:
    return search_pb2.SearchRequest(
        collection=SEEDED, vector=_vector(), k=5, filter=search_pb2.Filter(metadata={"tag": "even"})
    )


# A request each method answers OK: the base that `mutated` changes one or two fields of.
VALID: dict[str, Message] = {
    "Embed": embed_pb2.EmbedRequest(items=[common_pb2.Content(text="hello")]),
    "EmbedStream": embed_pb2.EmbedStreamRequest(request_id="1", content=common_pb2.Content(text="hello")),
    "CreateCollection": collections_pb2.CreateCollectionRequest(
        config=collections_pb2.CollectionConfig(name="scratch2", dimension=DIM)
    ),
    "GetCollection": collections_pb2.GetCollectionRequest(name=SEEDED),
    "ListCollections": collections_pb2.ListCollectionsRequest(),
    "DeleteCollection": collections_pb2.DeleteCollectionRequest(name="scratch2"),
    "CheckpointCollection": collections_pb2.CheckpointCollectionRequest(name=SEEDED),
    "CompactCollection": collections_pb2.CompactCollectionRequest(name=SEEDED),
    "UpdateCollection": collections_pb2.UpdateCollectionRequest(name="scratch", expansion_search=32),
    "Upsert": data_pb2.UpsertRequest(
        collection="scratch", items=[data_pb2.Item(id="a", vector=_vector(), metadata={"k": "v"})]
    ),
    "Ingest": data_pb2.IngestRequest(
        request_id="1",
        collection="scratch",
        item=data_pb2.Item(id="a", content=common_pb2.Content(text="hi")),
    ),
    "Get": data_pb2.GetRequest(collection=SEEDED, ids=["item-1", "zz"], include_vectors=True),
    "Delete": data_pb2.DeleteRequest(collection="scratch", ids=["a"]),
    "Search": _query(),
    "SearchBatch": search_pb2.SearchBatchRequest(queries=[_query(), _query()]),
    "Info": info_pb2.InfoRequest(),
}


def _fields(msg: Message) -> Iterator[tuple[Message, FieldDescriptor]]:
    """Every field of `msg` and of the messages set inside it (what `mutated` may change)."""
    for field in msg.DESCRIPTOR.fields:
        yield msg, field
    for field, value in msg.ListFields():
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        for inner in value if field.is_repeated else [value]:
            yield from _fields(inner)


def mutated(name: str) -> st.SearchStrategy[Message]:
    """`VALID[name]` with one or two fields (anywhere inside it) set to hostile values."""
    writes = name in WRITES

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        out = type(VALID[name])()
        out.CopyFrom(VALID[name])
        for _ in range(draw(st.integers(1, 2))):
            parent, field = draw(st.sampled_from(list(_fields(out))))
            if field.is_repeated:
                parent.ClearField(field.name)
            _set(parent, field, draw, writes, depth=2)
        return out

    return build()


# --- calls -------------------------------------------------------------------------------------


def frames_the_server_reads(method: MethodDescriptor, frames: list[bytes]) -> list[bytes]:
    """The frames a stream reads: it ends at the first one that does not parse, or that packs more
    requests than the server reads in one frame (docs/errors.md).

    Sending more after it would race the server's end of the stream, and the asyncio client can
    then report INTERNAL "Internal error from Core" in place of the server's status
    (grpc/grpc#36066): a client artefact, not what the server said.
    """
    cls = message_factory.GetMessageClass(method.input_type)
    for i, frame in enumerate(frames):
        try:
            parsed = cls.FromString(frame)
        except DecodeError:
            return frames[: i + 1]
        packed = parsed.DESCRIPTOR.fields_by_name.get("requests")
        if packed is not None and len(getattr(parsed, packed.name)) > FRAME_LIMIT:
            return frames[: i + 1]
    return frames


async def call(gw: Running, method: MethodDescriptor, frames: list[bytes]) -> grpc.StatusCode:
    """Send `frames` raw (one for a unary method); the final status code."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.client_streaming:
            frames = frames_the_server_reads(method, frames)
            stream = gw.channel.stream_stream(path, request_serializer=bytes, response_deserializer=bytes)

            async def requests() -> AsyncIterator[bytes]:
                for frame in frames:
                    yield frame

            async for _ in stream(requests(), timeout=60):
                pass
        else:
            unary = gw.channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)
            await unary(frames[0], timeout=60)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() not in NEVER, (method.name, exc.code(), exc.details())
        assert "Stream removed" not in (exc.details() or ""), (method.name, exc.details())
        return exc.code()
    return grpc.StatusCode.OK


async def seed(gw: Running) -> None:
    await gw.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(
                name=SEEDED, dimension=DIM, stored_dtype=collections_pb2.STORED_DTYPE_F32
            )
        )
    )
    rng = np.random.default_rng(7)
    items = [
        data_pb2.Item(
            id=f"item-{i}",
            vector=common_pb2.Vector(f32=rng.standard_normal(DIM).astype("<f4").tobytes()),
            metadata={"n": str(i), "tag": "even" if i % 2 == 0 else "odd"},
        )
        for i in range(20)
    ]
    await gw.data.Upsert(data_pb2.UpsertRequest(collection=SEEDED, items=items))
    await gw.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(name="scratch", dimension=DIM)
        )
    )


async def snapshot(gw: Running) -> tuple[int, bytes, bytes]:
    got = await gw.data.Get(
        data_pb2.GetRequest(
            collection=SEEDED,
            ids=[f"item-{i}" for i in range(20)],
            include_vectors=True,
            vector_format=common_pb2.VECTOR_FORMAT_F32,
        )
    )
    assert len(got.items) == 20
    count = await gw.collections.GetCollection(collections_pb2.GetCollectionRequest(name=SEEDED))
    config = count.collection.config.SerializeToString(deterministic=True)
    return count.collection.count, got.SerializeToString(deterministic=True), config


async def still_serving(gw: Running) -> None:
    assert (await gw.info.Info(info_pb2.InfoRequest())).version
    health = await health_pb2_grpc.HealthStub(gw.channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert health.status == health_pb2.HealthCheckResponse.SERVING


# --- the test ----------------------------------------------------------------------------------

frame_strategy = st.sampled_from(sorted(METHODS)).flatmap(
    lambda name: st.tuples(
        st.just(name),
        st.lists(
            st.one_of(st.binary(max_size=300), request(METHODS[name]).map(lambda m: m.SerializeToString())),
            min_size=1,
            max_size=4 if METHODS[name].client_streaming else 1,
        ),
    )
)


def test_random_and_hostile_requests_never_break_the_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    seen: dict[str, set[str]] = {name: set() for name in METHODS}
    with served(tmp_path / "data") as (bg, gw), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bg.run(seed(gw))
        before = bg.run(snapshot(gw))

        @SETTINGS
        @given(case=frame_strategy)
        def random_bytes_and_messages(case: tuple[str, list[bytes]]) -> None:
            name, frames = case
            seen[name].add(bg.run(call(gw, METHODS[name], frames)).name)

        @SETTINGS
        @given(data=st.data())
        def hostile_messages_to_every_method(data: st.DataObject) -> None:
            for name, method in METHODS.items():
                frames = data.draw(
                    st.lists(request(method), min_size=1, max_size=3 if method.client_streaming else 1)
                )
                seen[name].add(bg.run(call(gw, method, [f.SerializeToString() for f in frames])).name)

        @SETTINGS
        @given(
            name=st.sampled_from(sorted(n for n, v in VALID.items() if v.DESCRIPTOR.fields)), data=st.data()
        )
        def one_or_two_hostile_fields_in_a_valid_request(name: str, data: st.DataObject) -> None:
            count = data.draw(st.integers(1, 3)) if METHODS[name].client_streaming else 1
            frames = [data.draw(mutated(name)).SerializeToString() for _ in range(count)]
            seen[name].add(bg.run(call(gw, METHODS[name], frames)).name)

        for name, valid in VALID.items():  # the bases really are valid
            assert bg.run(call(gw, METHODS[name], [valid.SerializeToString()])) == grpc.StatusCode.OK, name
        random_bytes_and_messages()
        one_or_two_hostile_fields_in_a_valid_request()
        hostile_messages_to_every_method()
        assert bg.run(snapshot(gw)) == before
        bg.run(still_serving(gw))
        registry = gw.app.metrics.registry
    assert all(seen.values()), seen  # every method was called
    for name in METHODS:  # and the server's own count agrees: it answered none with these codes
        for code in NEVER:
            labels = {"method": name, "code": code.name}
            assert not registry.get_sample_value("onespace_rpc_duration_seconds_count", labels), labels
    loud = [r for r in caplog.records if (r.exc_info or r.levelno >= logging.ERROR)]
    assert not loud, [r.getMessage() for r in loud]
    numpy = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not numpy, numpy
