"""Every family and modality through the real aioboto3 client and the emulator: the vectors are
exactly the local featurizer's for the same input, at the requested dimension."""

from __future__ import annotations

import numpy as np
import pytest

from onespace.content import Content, EmbeddingType, TruncationMode, VideoMode
from onespace.emulator import RunningEmulator
from onespace.models import (
    COHERE_EMBED_ENGLISH_V3,
    COHERE_EMBED_MULTILINGUAL_V3,
    COHERE_EMBED_V4,
    NOVA_MODEL,
    TITAN_MULTIMODAL_G1,
    TITAN_TEXT_V2,
    Modality,
    ModelSpec,
)
from onespace.providers.bedrock import BedrockProvider
from onespace.providers.local import embed_content
from tests import media
from tests.unit.bedrock.conftest import item


def same_as_local(
    result_vectors: list[np.ndarray], content: Content, dimension: int, spec: ModelSpec
) -> None:
    want = [e.vector for e in embed_content(content, dimension, spec).embeddings]
    assert len(result_vectors) == len(want)
    for got, expected in zip(result_vectors, want, strict=True):
        assert got.dtype == np.float32 and got.shape == (dimension,)
        assert np.array_equal(got, expected)


def test_models_come_from_onespace_models_nova_first(provider: BedrockProvider) -> None:
    specs = list(provider.models())
    assert specs[0] is NOVA_MODEL and provider.default_model is NOVA_MODEL
    assert set(specs) == {
        NOVA_MODEL,
        TITAN_MULTIMODAL_G1,
        TITAN_TEXT_V2,
        COHERE_EMBED_ENGLISH_V3,
        COHERE_EMBED_MULTILINGUAL_V3,
        COHERE_EMBED_V4,
    }
    assert provider.max_batch(COHERE_EMBED_V4.id, Modality.TEXT) == 96
    assert provider.max_batch(COHERE_EMBED_ENGLISH_V3.id, Modality.TEXT) == 96
    assert provider.max_batch(COHERE_EMBED_V4.id, Modality.IMAGE) == 1
    assert provider.max_batch(NOVA_MODEL.id, Modality.TEXT) == 1


NOVA_CASES = [
    Content(Modality.TEXT, text="Hello, World!"),
    Content(Modality.IMAGE, data=media.png(1)),
    Content(Modality.IMAGE, data=media.jpeg(2), format="jpg"),
    Content(Modality.AUDIO, data=media.wav(330.0)),
    Content(Modality.AUDIO, data=media.ogg(550.0)),
    Content(Modality.VIDEO, data=media.mp4(3)),
]


@pytest.mark.parametrize("content", NOVA_CASES, ids=lambda c: f"{c.modality.value}-{c.format or 'sniffed'}")
@pytest.mark.parametrize("dimension", [384, 3072])
async def test_nova_modalities(
    provider: BedrockProvider, emulator: RunningEmulator, content: Content, dimension: int
) -> None:
    (result,) = await provider.embed([item(content, NOVA_MODEL.id, dimension)])
    same_as_local([e.vector for e in result.embeddings], content, dimension, NOVA_MODEL)
    assert result.request_id == emulator.state.stats.recent[-1]["request_id"]
    assert emulator.state.stats.total(NOVA_MODEL.id, "ok") == 1


async def test_nova_video_separate_gives_video_and_audio(provider: BedrockProvider) -> None:
    content = Content(Modality.VIDEO, data=media.mp4(4), video_mode=VideoMode.AUDIO_VIDEO_SEPARATE)
    (result,) = await provider.embed([item(content, NOVA_MODEL.id, 256)])
    assert [e.type for e in result.embeddings] == [EmbeddingType.VIDEO, EmbeddingType.AUDIO]
    same_as_local([e.vector for e in result.embeddings], content, 256, NOVA_MODEL)


@pytest.mark.parametrize(("mode", "cut"), [(TruncationMode.END, 8192), (TruncationMode.START, 10_000 - 8192)])
async def test_nova_truncated_char_length_is_surfaced(
    provider: BedrockProvider, mode: TruncationMode, cut: int
) -> None:
    content = Content(Modality.TEXT, text="abcd " * 2000, truncation=mode)
    (result,) = await provider.embed([item(content, NOVA_MODEL.id, 1024)])
    assert result.embeddings[0].truncated_char_length == cut
    same_as_local([result.embeddings[0].vector], content, 1024, NOVA_MODEL)
    (short,) = await provider.embed([item("short", NOVA_MODEL.id, 1024)])
    assert short.embeddings[0].truncated_char_length is None


async def test_nova_s3_sources(provider: BedrockProvider, emulator: RunningEmulator) -> None:
    picture = media.png(8)
    emulator.state.s3.put("media", "a/picture.png", picture)
    emulator.state.s3.put("media", "a/note.txt", b"text kept in s3")
    image = Content(Modality.IMAGE, s3_uri="s3://media/a/picture.png", s3_bucket_owner="123456789012")
    text = Content(Modality.TEXT, s3_uri="s3://media/a/note.txt")
    (got_image,) = await provider.embed([item(image, NOVA_MODEL.id, 256)])
    (got_text,) = await provider.embed([item(text, NOVA_MODEL.id, 256)])
    same_as_local([got_image.embeddings[0].vector], Content(Modality.IMAGE, data=picture), 256, NOVA_MODEL)
    same_as_local(
        [got_text.embeddings[0].vector], Content(Modality.TEXT, text="text kept in s3"), 256, NOVA_MODEL
    )


@pytest.mark.parametrize("dimension", [256, 384, 1024])
async def test_titan_multimodal(provider: BedrockProvider, dimension: int) -> None:
    text = Content(Modality.TEXT, text="a small blue circle")
    image = Content(Modality.IMAGE, data=media.jpeg(5))
    (t,) = await provider.embed([item(text, TITAN_MULTIMODAL_G1.id, dimension)])
    (i,) = await provider.embed([item(image, TITAN_MULTIMODAL_G1.id, dimension)])
    same_as_local([t.embeddings[0].vector], text, dimension, TITAN_MULTIMODAL_G1)
    same_as_local([i.embeddings[0].vector], image, dimension, TITAN_MULTIMODAL_G1)
    assert (t.embeddings[0].type, i.embeddings[0].type) == (EmbeddingType.TEXT, EmbeddingType.IMAGE)


@pytest.mark.parametrize("dimension", [256, 512, 1024])
async def test_titan_text_v2(provider: BedrockProvider, dimension: int) -> None:
    content = Content(Modality.TEXT, text="Titan text, version two.")
    (result,) = await provider.embed([item(content, TITAN_TEXT_V2.id, dimension)])
    same_as_local([result.embeddings[0].vector], content, dimension, TITAN_TEXT_V2)


@pytest.mark.parametrize(
    ("spec", "dimension"),
    [
        (COHERE_EMBED_ENGLISH_V3, 1024),
        (COHERE_EMBED_MULTILINGUAL_V3, 1024),
        (COHERE_EMBED_V4, 256),
        (COHERE_EMBED_V4, 1536),
    ],
)
async def test_cohere_texts_share_one_call(
    provider: BedrockProvider, emulator: RunningEmulator, spec: ModelSpec, dimension: int
) -> None:
    texts = [f"passage {i} about topic {i % 3}" for i in range(7)]
    results = await provider.embed([item(t, spec.id, dimension) for t in texts])
    for text, result in zip(texts, results, strict=True):
        same_as_local([result.embeddings[0].vector], Content(Modality.TEXT, text=text), dimension, spec)
    assert emulator.state.stats.total(spec.id) == 1
    assert emulator.state.stats.batch_sizes[spec.id] == {7: 1}
    assert len({r.request_id for r in results}) == 1


@pytest.mark.parametrize("spec", [COHERE_EMBED_ENGLISH_V3, COHERE_EMBED_V4])
async def test_cohere_image(provider: BedrockProvider, spec: ModelSpec) -> None:
    content = Content(Modality.IMAGE, data=media.png(6))
    (result,) = await provider.embed([item(content, spec.id, spec.default_dimension)])
    same_as_local([result.embeddings[0].vector], content, spec.default_dimension, spec)
    assert result.embeddings[0].type is EmbeddingType.IMAGE


async def test_cohere_packs_96_texts_into_one_call(
    provider: BedrockProvider, emulator: RunningEmulator
) -> None:
    batch = [item(f"text number {i}", COHERE_EMBED_V4.id, 512) for i in range(96)]
    results = await provider.embed(batch)
    assert len(results) == 96
    assert emulator.state.stats.total() == 1
    assert emulator.state.stats.batch_sizes[COHERE_EMBED_V4.id] == {96: 1}
    assert provider.counters.calls == 1


async def test_cohere_splits_calls_by_truncation_mode(
    provider: BedrockProvider, emulator: RunningEmulator
) -> None:
    modes = [TruncationMode.END, TruncationMode.START, TruncationMode.END, TruncationMode.NONE]
    batch = [
        item(Content(Modality.TEXT, text=f"t{i}", truncation=m), COHERE_EMBED_ENGLISH_V3.id, 1024)
        for i, m in enumerate(modes)
    ]
    results = await provider.embed(batch)
    assert len(results) == 4
    assert emulator.state.stats.batch_sizes[COHERE_EMBED_ENGLISH_V3.id] == {2: 1, 1: 2}
    for i, result in enumerate(results):
        same_as_local(
            [result.embeddings[0].vector], Content(Modality.TEXT, text=f"t{i}"), 1024, COHERE_EMBED_ENGLISH_V3
        )


async def test_empty_batch_makes_no_call(provider: BedrockProvider, emulator: RunningEmulator) -> None:
    assert await provider.embed([]) == []
    assert emulator.state.stats.total() == 0
