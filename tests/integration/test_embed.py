"""Embed and EmbedStream: same vectors, Matryoshka prefixes, per-response metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from onespace_client.v1 import common_pb2, embed_pb2
from tests import media
from tests.harness import Running

CONTENTS = [
    common_pb2.Content(text="one endpoint, one index"),
    common_pb2.Content(image=media.png(7)),
    common_pb2.Content(audio=media.wav(330.0, 0.5)),
    common_pb2.Content(video=media.mp4(8, seconds=0.5)),
]


async def test_embed_and_embed_stream_give_the_same_vectors(gateway: Running) -> None:
    unary = await gateway.embed.Embed(embed_pb2.EmbedRequest(items=CONTENTS))
    assert unary.dimension == 3072 and unary.model == "onespace.local-multimodal-v1"
    assert unary.timings.total_seconds > 0

    async def requests() -> AsyncIterator[embed_pb2.EmbedStreamRequest]:
        for n, content in enumerate(CONTENTS):
            yield embed_pb2.EmbedStreamRequest(request_id=f"id-{n}", content=content)

    streamed = {r.request_id: r async for r in gateway.embed.EmbedStream(requests())}
    assert sorted(streamed) == [f"id-{n}" for n in range(len(CONTENTS))]
    for n, result in enumerate(unary.results):
        other = streamed[f"id-{n}"]
        assert other.WhichOneof("outcome") == "result" and other.dimension == 3072
        assert list(other.result.embeddings[0].values) == list(result.embeddings[0].values)
        assert (
            np.linalg.norm(result.embeddings[0].values) == np.float32(1.0)
            or abs(np.linalg.norm(result.embeddings[0].values) - 1.0) < 1e-5
        )


async def test_smaller_dimensions_are_renormalised_prefixes(gateway: Running) -> None:
    full = await gateway.embed.Embed(embed_pb2.EmbedRequest(items=CONTENTS))
    for dim in (256, 384, 1024):
        short = await gateway.embed.Embed(
            embed_pb2.EmbedRequest(items=CONTENTS, options=common_pb2.EmbedOptions(dimension=dim))
        )
        assert short.dimension == dim
        for a, b in zip(full.results, short.results, strict=True):
            prefix = np.asarray(a.embeddings[0].values[:dim], dtype=np.float64)
            expected = prefix / np.linalg.norm(prefix)
            got = np.asarray(b.embeddings[0].values, dtype=np.float64)
            assert len(got) == dim
            np.testing.assert_allclose(got, expected, atol=1e-6)


async def test_repeat_is_served_from_cache_and_identical(gateway: Running) -> None:
    request = embed_pb2.EmbedRequest(items=[common_pb2.Content(text="cache me")])
    first = await gateway.embed.Embed(request)
    second = await gateway.embed.Embed(request)
    assert not first.results[0].cached and second.results[0].cached
    assert list(first.results[0].embeddings[0].values) == list(second.results[0].embeddings[0].values)


async def test_separate_video_mode_returns_two_vectors(gateway: Running) -> None:
    content = common_pb2.Content(
        video=media.mp4(9, seconds=0.5),
        video_embedding_mode=common_pb2.VIDEO_EMBEDDING_MODE_AUDIO_VIDEO_SEPARATE,
    )
    response = await gateway.embed.Embed(embed_pb2.EmbedRequest(items=[content]))
    types = [e.type for e in response.results[0].embeddings]
    assert types == [common_pb2.EMBEDDING_TYPE_VIDEO, common_pb2.EMBEDDING_TYPE_AUDIO]


async def test_long_text_is_truncated_and_reported(gateway: Running) -> None:
    text = "word " * 2000  # 10,000 characters, over the 8,192 model limit
    response = await gateway.embed.Embed(
        embed_pb2.EmbedRequest(
            items=[common_pb2.Content(text=text, truncation_mode=common_pb2.TRUNCATION_MODE_END)]
        )
    )
    embedding = response.results[0].embeddings[0]
    assert embedding.HasField("truncated_char_length") and embedding.truncated_char_length == 8192
