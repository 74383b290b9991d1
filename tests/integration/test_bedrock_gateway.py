"""The gateway with `--provider bedrock` pointed at the Bedrock Runtime emulator: real aioboto3,
real HTTP on loopback, dummy credentials. Every model family round-trips through gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from onespace.content import Content
from onespace.emulator import EmulatorConfig, RunningEmulator, running_emulator
from onespace.emulator.config import FaultRates
from onespace.models import LOCAL_MODEL, NOVA_MODEL, Modality
from onespace.providers.local import embed_content
from onespace_client import AsyncClient
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, embed_pb2, search_pb2
from tests import media
from tests.harness import Running, running_gateway
from tests.unit.bedrock.conftest import aws_env  # noqa: F401 - autouse: dummy credentials, no machine AWS config

NOVA = NOVA_MODEL.id
COHERE = "cohere.embed-english-v3"


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator(EmulatorConfig(seed=3)) as emu:
        yield emu


@pytest.fixture
async def gateway(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[Running]:
    async with running_gateway(
        tmp_path / "data",
        provider="bedrock",
        bedrock_endpoint_url=emulator.url,
        bedrock_max_attempts=8,
        max_batch_wait_ms=20.0,
    ) as gw:
        yield gw


def local_vector(content: Content, dimension: int) -> np.ndarray:
    return embed_content(content, dimension, LOCAL_MODEL).embeddings[0].vector


async def embed(gw: Running, content: common_pb2.Content, **options: object) -> embed_pb2.EmbedResponse:
    request = embed_pb2.EmbedRequest(items=[content], options=common_pb2.EmbedOptions(**options))  # type: ignore[arg-type]
    return await gw.embed.Embed(request)


async def test_nova_round_trips_every_modality_with_the_local_vectors(gateway: Running) -> None:
    cases = [
        (
            common_pb2.Content(text="one endpoint one index"),
            Content(Modality.TEXT, text="one endpoint one index"),
        ),
        (common_pb2.Content(image=media.png(5)), Content(Modality.IMAGE, data=media.png(5), format="png")),
        (
            common_pb2.Content(audio=media.wav(330.0, 0.5)),
            Content(Modality.AUDIO, data=media.wav(330.0, 0.5), format="wav"),
        ),
        (
            common_pb2.Content(video=media.mp4(6, seconds=0.5)),
            Content(Modality.VIDEO, data=media.mp4(6, seconds=0.5), format="mp4"),
        ),
    ]
    for pb, domain in cases:
        for dimension in (256, 1024):
            reply = await embed(gateway, pb, dimension=dimension)
            assert reply.model == NOVA and reply.dimension == dimension
            got = np.asarray(reply.results[0].embeddings[0].values, dtype=np.float32)
            np.testing.assert_allclose(got, local_vector(domain, dimension), atol=1e-6)


async def test_collection_on_bedrock_ingests_and_searches(
    gateway: Running, emulator: RunningEmulator
) -> None:
    await gateway.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(name="nova", dimension=1024, index_dimension=256)
        )
    )
    items = [
        data_pb2.Item(id="t", content=common_pb2.Content(text="harbour at sunset")),
        data_pb2.Item(id="i", content=common_pb2.Content(image=media.jpeg(3))),
    ]
    await gateway.data.Upsert(data_pb2.UpsertRequest(collection="nova", items=items))
    hits = await gateway.search.Search(
        search_pb2.SearchRequest(collection="nova", content=items[1].content, k=1)
    )
    assert hits.hits[0].id == "i" and hits.hits[0].score == pytest.approx(1.0, abs=1e-3)
    purposes = [call for call in emulator.state.stats.recent if call["model"] == NOVA]
    assert len(purposes) == 3 and all(c["outcome"] == "ok" for c in purposes)


async def test_a_streamed_ingest_embeds_each_distinct_content_once_through_bedrock(
    gateway: Running, emulator: RunningEmulator
) -> None:
    """The client's ingest (IngestPacked: a group's contents embedded with one wait): one Nova call
    per distinct valid content, a bad item refused before Bedrock, every other item stored."""
    await gateway.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(name="feed", dimension=1024, index_dimension=256)
        )
    )
    contents = [
        common_pb2.Content(text="river"),
        common_pb2.Content(text="river"),
        common_pb2.Content(text="mountain"),
        common_pb2.Content(text=""),
        common_pb2.Content(image=media.jpeg(4)),
        common_pb2.Content(text="forest"),
    ]
    items = [data_pb2.Item(id=f"f{n}", content=c) for n, c in enumerate(contents)]
    async with AsyncClient(gateway.target) as client:
        acks = {a.id: a async for a in client.ingest("feed", items)}
        hits = await client.search("feed", content=contents[4], k=1)
    assert {i for i, a in acks.items() if a.HasField("stored")} == {"f0", "f1", "f2", "f4", "f5"}
    assert acks["f3"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert acks["f3"].error.message.startswith("item.content.text: ")
    assert hits.hits[0].id == "f4"
    calls = [c for c in emulator.state.stats.recent if c["model"] == NOVA]
    assert len(calls) == 5 and all(c["outcome"] == "ok" for c in calls)  # 4 to index, 1 to search


async def test_titan_and_cohere_families(gateway: Running) -> None:
    titan = await embed(
        gateway, common_pb2.Content(text="titan text"), model="amazon.titan-embed-text-v2:0", dimension=512
    )
    assert titan.dimension == 512 and len(titan.results[0].embeddings[0].values) == 512
    mm = await embed(
        gateway, common_pb2.Content(image=media.png(1)), model="amazon.titan-embed-image-v1", dimension=384
    )
    assert mm.dimension == 384
    cohere = await embed(gateway, common_pb2.Content(text="cohere text"), model=COHERE)
    assert cohere.dimension == 1024
    v4 = await embed(gateway, common_pb2.Content(text="cohere v4"), model="cohere.embed-v4:0", dimension=256)
    assert v4.dimension == 256


async def test_cohere_packs_concurrent_texts_into_calls_of_up_to_96(
    gateway: Running, emulator: RunningEmulator
) -> None:
    calls = [embed(gateway, common_pb2.Content(text=f"text number {i}"), model=COHERE) for i in range(300)]
    replies = await asyncio.gather(*calls)
    assert len(replies) == 300
    sizes = emulator.state.stats.batch_sizes[COHERE]
    assert sum(size * n for size, n in sizes.items()) == 300
    # How many calls depends on how the 300 RPCs arrive (one call per 20 ms batch wait, more on a
    # loaded machine: 13-22 seen); without packing it would be 300 calls of one.
    assert max(sizes) <= 96 and sum(sizes.values()) <= 60, sizes
    # items already queued together are cut at exactly 96
    emulator.state.reset()
    request = embed_pb2.EmbedRequest(
        items=[common_pb2.Content(text=f"queued text {i}") for i in range(250)],
        options=common_pb2.EmbedOptions(model=COHERE),
    )
    reply = await gateway.embed.Embed(request)
    assert len(reply.results) == 250
    assert dict(emulator.state.stats.batch_sizes[COHERE]) == {96: 2, 58: 1}


async def test_invalid_inputs_never_reach_bedrock(gateway: Running, emulator: RunningEmulator) -> None:
    bad = [
        (common_pb2.Content(text=""), {}),
        (common_pb2.Content(image=media.png(1), format="jpeg"), {}),
        (common_pb2.Content(text="x"), {"dimension": 512}),
        (common_pb2.Content(audio=media.wav(440.0, 0.5)), {"model": "amazon.titan-embed-text-v2:0"}),
        (common_pb2.Content(image=media.webp(1)), {"model": "amazon.titan-embed-image-v1"}),
        (common_pb2.Content(text="y" * 3000), {"model": COHERE}),
    ]
    for content, options in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await embed(gateway, content, **options)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert emulator.state.stats.total() == 0


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ValidationException", grpc.StatusCode.INVALID_ARGUMENT),
        ("AccessDeniedException", grpc.StatusCode.PERMISSION_DENIED),
        ("ResourceNotFoundException", grpc.StatusCode.NOT_FOUND),
        ("ModelTimeoutException", grpc.StatusCode.DEADLINE_EXCEEDED),
        ("ServiceQuotaExceededException", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("ModelErrorException", grpc.StatusCode.INTERNAL),
    ],
)
async def test_non_retryable_errors_map_to_their_status(
    gateway: Running, emulator: RunningEmulator, code: str, status: grpc.StatusCode
) -> None:
    emulator.state.force(code, message=f"emulated {code}", count=1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await embed(gateway, common_pb2.Content(text=f"forced {code}"))
    assert err.value.code() == status
    details = err.value.details() or ""
    assert f"emulated {code}" in details
    request_id = dict(err.value.trailing_metadata() or ()).get("onespace-upstream-request-id")
    assert request_id and request_id in details
    assert emulator.state.stats.total() == 1  # not retried


async def test_throttling_and_transient_faults_are_retried_to_success(tmp_path: Path) -> None:
    faults = FaultRates(throttle=0.2, unavailable=0.05, internal=0.05)
    async with (
        running_emulator(EmulatorConfig(seed=5, faults=faults)) as emu,
        running_gateway(
            tmp_path, provider="bedrock", bedrock_endpoint_url=emu.url, bedrock_max_attempts=10
        ) as gw,
    ):
        replies = await asyncio.gather(*(embed(gw, common_pb2.Content(text=f"busy {i}")) for i in range(120)))
        assert len(replies) == 120
        stats = emu.state.stats
        assert stats.total(NOVA, "ok") == 120
        assert stats.total(NOVA, "ThrottlingException") > 0
        registry = gw.app.metrics.registry
        throttles = registry.get_sample_value("onespace_provider_throttles_total", {"model": NOVA})
        assert throttles == stats.total(NOVA, "ThrottlingException")
        retried = sum(
            registry.get_sample_value("onespace_provider_retries_total", {"model": NOVA, "reason": r}) or 0.0
            for r in ("throttling", "5xx", "unavailable", "internal", "not_ready")
        )
        assert retried == stats.total(NOVA) - 120
