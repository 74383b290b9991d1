from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from onespace.content import EmbeddingType, Purpose, VideoMode
from onespace.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from onespace.models import LOCAL_MODEL
from onespace.providers.base import EmbedInput
from onespace.providers.local import LocalProvider, embed_content
from onespace.providers.local.decoding import short_reason
from tests import media

from .helpers import audio, image, text, video

REPO = Path(__file__).resolve().parents[3]


def _inputs(dimension: int = 256, purpose: Purpose = Purpose.GENERIC_INDEX) -> list[EmbedInput]:
    contents = [
        text("first"),
        image(media.png(1)),
        audio(media.wav(440)),
        video(media.mp4(1), VideoMode.AUDIO_VIDEO_SEPARATE),
        text("last"),
    ]
    return [EmbedInput(c, LOCAL_MODEL.id, dimension, purpose) for c in contents]


@pytest.fixture
async def provider() -> AsyncIterator[LocalProvider]:
    p = LocalProvider(workers=2)
    await p.start()
    yield p
    await p.close()


async def test_embed_returns_results_in_input_order(provider: LocalProvider) -> None:
    inputs = _inputs()
    results = await provider.embed(inputs)
    assert [[e.type for e in r.embeddings] for r in results] == [
        [EmbeddingType.TEXT],
        [EmbeddingType.IMAGE],
        [EmbeddingType.AUDIO],
        [EmbeddingType.VIDEO, EmbeddingType.AUDIO],
        [EmbeddingType.TEXT],
    ]
    for item, result in zip(inputs, results, strict=True):
        expected = embed_content(item.content, item.dimension)
        assert [e.vector.tobytes() for e in result.embeddings] == [
            e.vector.tobytes() for e in expected.embeddings
        ]


async def test_purpose_does_not_change_the_vector(provider: LocalProvider) -> None:
    index = await provider.embed(_inputs(purpose=Purpose.GENERIC_INDEX))
    query = await provider.embed(_inputs(purpose=Purpose.TEXT_RETRIEVAL))
    for a, b in zip(index, query, strict=True):
        assert [e.vector.tobytes() for e in a.embeddings] == [e.vector.tobytes() for e in b.embeddings]


async def test_concurrent_embedding_is_deterministic(provider: LocalProvider) -> None:
    item = EmbedInput(image(media.jpeg(2)), LOCAL_MODEL.id, 3072, Purpose.GENERIC_INDEX)
    results = await asyncio.gather(*(provider.embed([item, item]) for _ in range(4)))
    vectors = {r.embeddings[0].vector.tobytes() for batch in results for r in batch}
    assert len(vectors) == 1


async def test_first_failure_in_input_order_fails_the_call(provider: LocalProvider) -> None:
    inputs = _inputs()
    bad = EmbedInput(image(b"\x89PNG\r\n\x1a\n broken"), LOCAL_MODEL.id, 256, Purpose.GENERIC_INDEX)
    worse = EmbedInput(audio(b"RIFF\x00\x00\x00\x00WAVE"), LOCAL_MODEL.id, 256, Purpose.GENERIC_INDEX)
    with pytest.raises(InvalidArgument) as info:
        await provider.embed([inputs[0], bad, worse])
    assert info.value.field == "content.image"


async def test_unknown_model_is_not_found(provider: LocalProvider) -> None:
    with pytest.raises(NotFound):
        await provider.embed([EmbedInput(text("x"), "no-such-model", 256, Purpose.GENERIC_INDEX)])


async def test_past_deadline_is_refused_up_front(provider: LocalProvider) -> None:
    with pytest.raises(DeadlineExceeded):
        await provider.embed(_inputs()[:1], deadline=time.monotonic() - 1.0)


async def test_closed_provider_is_unavailable() -> None:
    p = LocalProvider(workers=1)
    await p.close()
    await p.close()  # idempotent
    with pytest.raises(Unavailable):
        await p.embed(_inputs()[:1])
    with pytest.raises(Unavailable):
        await p.start()


def test_models_and_workers() -> None:
    p = LocalProvider()
    try:
        assert p.name == "local"
        assert tuple(p.models()) == (LOCAL_MODEL,)
        assert p.default_model is LOCAL_MODEL
        assert p.workers == (os.cpu_count() or 1)
        assert LocalProvider(workers=3).workers == 3
    finally:
        asyncio.run(p.close())


_DIGEST_SCRIPT = """
import hashlib
from onespace.content import Content, Modality
from onespace.providers.local import embed_content
from tests import media
contents = [
    Content(Modality.TEXT, text="same in every process"),
    Content(Modality.IMAGE, data=media.png(11)),
    Content(Modality.AUDIO, data=media.ogg(523.0)),
    Content(Modality.VIDEO, data=media.webm(12)),
]
h = hashlib.sha256()
for c in contents:
    h.update(embed_content(c, 3072).embeddings[0].vector.tobytes())
print(h.hexdigest())
"""


def test_vectors_are_identical_in_another_process() -> None:
    """Bit-for-bit equal in a fresh process with a different string-hash salt."""
    here: dict[str, str] = {}
    exec(_DIGEST_SCRIPT.replace("print(h.hexdigest())", "result = h.hexdigest()"), here)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", _DIGEST_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == here["result"]


def test_short_reason_drops_object_addresses_and_errno() -> None:
    assert short_reason(OSError("cannot identify image file <_io.BytesIO object at 0x7f00dead>")) == (
        "cannot identify image file"
    )
    assert short_reason(ValueError("x" * 500)).endswith("...")
    assert len(short_reason(ValueError("x" * 500))) == 160
