"""The batched local featurizer gives the vectors the one-at-a-time featurizer gave, bit for bit.

Stored collections depend on it: a vector embedded today must equal the one embedded before, at
every offered dimension. Two pins:

- `REFERENCE`: digests of the vectors (256, 384, 1024 and 3072-d, in that order) that the code
  before batching computed (projection of every input onto all 3072 columns, one at a time, then
  prefix and renormalise), for inputs whose decoding is lossless (text, PNG, WAV);
- the `_reference_*` functions: that code's text featurizer, projection and truncation, kept here
  verbatim and compared with the batched path on many more inputs, in batches of every shape
  (one input, fewer than share a batched position, many, long texts over several row blocks).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import re
from collections import Counter

import numpy as np
import pytest

from onespace.content import Content, EmbeddingType, Modality, TruncationMode, VideoMode
from onespace.models import LOCAL_MODEL
from onespace.providers.local import FULL_DIMENSION, embed_content, embed_many, projection
from onespace.providers.local.audio import audio_features, silence_features
from onespace.providers.local.avmedia import read_media
from onespace.providers.local.decoding import Decoding
from onespace.providers.local.hashing import signed_bucket
from onespace.providers.local.image import image_features
from onespace.providers.local.projection import matrix, project_many, unit
from onespace.providers.local.text import TEXT_FEATURES, normalize, text_features_many
from tests import media

DIMENSIONS = (256, 384, 1024, 3072)


def _long_text(words: int, modulus: int) -> str:
    return " ".join(f"word{i % modulus} extra{i % 13}" for i in range(words))


INPUTS = {
    "text-short": Content(Modality.TEXT, text="The cat sat on the mat."),
    "text-unicode": Content(Modality.TEXT, text="Café au LAIT, naïve coöperation — 東京 2024!"),
    "text-one-word": Content(Modality.TEXT, text="hello"),
    "text-punctuation": Content(Modality.TEXT, text="?!... :-)"),
    "text-long-end": Content(Modality.TEXT, text=_long_text(3000, 997), truncation=TruncationMode.END),
    "text-long-start": Content(Modality.TEXT, text=_long_text(3000, 991), truncation=TruncationMode.START),
    "text-600-words": Content(Modality.TEXT, text=_long_text(300, 251)),
    "image-png": Content(Modality.IMAGE, data=media.png(1)),
    "image-png-large": Content(Modality.IMAGE, data=media.png(5, size=150)),
    "audio-wav": Content(Modality.AUDIO, data=media.wav(440)),
    "audio-silence": Content(Modality.AUDIO, data=media.wav(0)),
}

# Computed with the one-at-a-time featurizer this batched one replaced (git 4ef2a39).
REFERENCE = {
    "text-short": "e0c71e0b5197dae27d2b2611d07ff2c9",
    "text-unicode": "b4521068faa528384bcff210ec41faae",
    "text-one-word": "634da89b18b27d7b37c44a9dd8b76459",
    "text-punctuation": "9027b30bfcd2eb693f7821df465998af",
    "text-long-end": "0eca3a5f8221c39283fce4c3c5a9cb47",
    "text-long-start": "014d5ea0a0f4fbfe545f9cf76f5b8a18",
    "text-600-words": "9a4acdf72191467c8c5e638a3ee1290d",
    "image-png": "f68a50de7e908bd2f04f8d5636d05c22",
    "image-png-large": "e49dab7fd365c28161e31152ffaefe7a",
    "audio-wav": "5dae4a44a5a9d8b668ad1a19c5514fe4",
    "audio-silence": "47c9b3bf1627fd4af9d57c5d952dfb1b",
}


def _digest(vectors: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for v in vectors:
        h.update(v.tobytes())
    return h.hexdigest()[:32]


# ---------------------------------------------------------------- the code before batching


def _reference_text_features(text: str) -> np.ndarray:
    families = ((b"text.word", 0.65), (b"text.bigram", 0.35), (b"text.char", 0.55))
    norm = normalize(text)
    words = re.findall(r"\w+", norm)
    if not words:
        words = norm.split() or [norm]

    def char_ngrams() -> list[str]:
        out = []
        for word in words:
            padded = f" {word} "
            for n in (3, 4):
                out += [padded[i : i + n] for i in range(len(padded) - n + 1)]
        return out

    counters = (
        Counter(words),
        Counter(f"{a} {b}" for a, b in itertools.pairwise(words)),
        Counter(char_ngrams()),
    )
    out = np.zeros(TEXT_FEATURES, dtype=np.float64)
    for i, (counts, (namespace, weight)) in enumerate(zip(counters, families, strict=True)):
        block = np.zeros(1024, dtype=np.float64)
        for token, count in counts.items():
            bucket, sign = signed_bucket(namespace, token, 1024)
            block[bucket] += sign * (1.0 + math.log(count))
        out[i * 1024 : (i + 1) * 1024] = unit(block)
        out[i * 1024 : (i + 1) * 1024] *= weight
    out[-1] = 0.02
    return out


def _reference_project(features: np.ndarray, space: str) -> np.ndarray:
    m = matrix(space, features.shape[0])
    rows = np.flatnonzero(features)
    out = np.zeros(FULL_DIMENSION, dtype=np.float64)
    for start in range(0, rows.size, 256):
        block = rows[start : start + 256]
        out += (m[block] * features[block, None]).sum(axis=0)
    return out


def _reference_finish(full: np.ndarray, dimension: int) -> np.ndarray:
    prefix = full[:dimension]
    norm = float(np.sqrt(np.sum(prefix * prefix)))
    return (prefix / norm).astype(np.float32)


@functools.cache
def _reference_full(text: str) -> np.ndarray:
    return _reference_project(_reference_text_features(text), "text")


def _reference_text(text: str, dimension: int) -> np.ndarray:
    return _reference_finish(_reference_full(text), dimension)


# ---------------------------------------------------------------- pinned vectors


@pytest.mark.parametrize("label", list(INPUTS))
def test_vectors_equal_the_pinned_reference(label: str) -> None:
    content = INPUTS[label]
    vectors = [embed_content(content, d).embeddings[0].vector for d in DIMENSIONS]
    assert _digest(vectors) == REFERENCE[label]


def test_one_mixed_batch_gives_the_pinned_vectors() -> None:
    """The same vectors from one batch of every input (all modalities) at each dimension."""
    per_dimension = {d: embed_many(list(INPUTS.values()), d) for d in DIMENSIONS}
    for i, label in enumerate(INPUTS):
        vectors = [per_dimension[d][i].embeddings[0].vector for d in DIMENSIONS]
        assert _digest(vectors) == REFERENCE[label], label


# ---------------------------------------------------------------- against the code before batching


@functools.cache
def _texts() -> tuple[str, ...]:
    rng = np.random.default_rng(7)
    vocabulary = [f"w{i}" for i in range(3000)]
    texts = [
        "",
        " ",
        "a",
        "?!",
        "Café au LAIT",
        "東京 2024!",
        "x" * 5000,
        "a " * 2000,  # counts beyond the 1 + log(count) table
        "the the the cat",
        _long_text(2000, 997)[:8192],
    ]
    for n in rng.integers(1, 1100, size=60):  # up to ~7,000 characters: never truncated
        texts.append(" ".join(rng.choice(vocabulary, size=int(n))))
    return tuple(texts)


def test_text_features_equal_the_reference_in_any_batch() -> None:
    texts = list(_texts())
    expected = np.stack([_reference_text_features(t) for t in texts])
    assert np.array_equal(text_features_many(texts), expected)
    assert np.array_equal(text_features_many(texts[::-1]), expected[::-1])  # remembered hashes
    for i in (0, 7, 9):
        assert np.array_equal(text_features_many([texts[i]])[0], expected[i])


@pytest.mark.parametrize("dimension", DIMENSIONS)
@pytest.mark.parametrize("size", [1, 7, 40, 70])
def test_text_vectors_equal_the_reference_in_any_batch(dimension: int, size: int) -> None:
    texts = [t for t in _texts() if t.strip()]  # (the gateway refuses blank text)
    expected = [_reference_text(t, dimension) for t in texts]
    contents = [Content(Modality.TEXT, text=t) for t in texts]
    for start in range(0, len(texts), size):
        results = embed_many(contents[start : start + size], dimension)
        for result, want in zip(results, expected[start : start + size], strict=True):
            assert result.embeddings[0].vector.tobytes() == want.tobytes()


def _sparse(rng: np.random.Generator, counts: list[int], width: int) -> np.ndarray:
    features = np.zeros((len(counts), width))
    for i, count in enumerate(counts):
        rows = rng.choice(width, size=count, replace=False)
        features[i, rows] = rng.standard_normal(count)
    return features


@pytest.mark.parametrize(
    "counts",
    [
        [5],
        [0, 3, 0],  # a row with no features projects to zeros
        [700, 1, 300],  # fewer items than share a batched position: one by one
        [256] * 40 + [600] * 3,  # the shared positions end on a row-block boundary
        [300] * 40 + [700] * 5 + [20] * 30,  # ... and inside a block, left open for the longest
        list(range(1, 200, 3)),  # every length: the active set shrinks position by position
    ],
)
@pytest.mark.parametrize("dimension", [1, 256, 1024, 3072])
def test_project_many_equals_the_one_at_a_time_projection(counts: list[int], dimension: int) -> None:
    features = _sparse(np.random.default_rng(len(counts)), counts, TEXT_FEATURES)
    expected = np.stack([_reference_project(f, "text")[:dimension] for f in features])
    got = project_many(features, "text", dimension)
    assert got.tobytes() == expected.tobytes()
    for i in range(0, len(counts), 17):
        assert projection.project(features[i], "text", dimension).tobytes() == expected[i].tobytes()


@pytest.mark.parametrize("mode", list(VideoMode))
@pytest.mark.parametrize("with_audio", [True, False])
def test_video_vectors_equal_the_reference(mode: VideoMode, with_audio: bool) -> None:
    data = media.mp4(3, with_audio=with_audio)
    clip = read_media(data, "mp4", LOCAL_MODEL, "content.video", video=True, decoding=Decoding.of(), frames=4)
    frames = np.mean([image_features(f) for f in clip.frames], axis=0)
    sound = audio_features(*clip.audio) if clip.audio is not None else None
    visual = _reference_project(frames, "image")
    if mode is VideoMode.AUDIO_VIDEO_SEPARATE:
        audio = _reference_project(sound if sound is not None else silence_features(), "audio")
        full = [(EmbeddingType.VIDEO, visual), (EmbeddingType.AUDIO, audio)]
    else:
        combined = visual * (0.8 / float(np.sqrt(np.sum(frames * frames))))
        if sound is not None:
            scale = 0.6 / float(np.sqrt(np.sum(sound * sound)))
            combined = combined + _reference_project(sound, "audio") * scale
        full = [(EmbeddingType.AUDIO_VIDEO_COMBINED, combined)]
    content = Content(Modality.VIDEO, data=data, video_mode=mode)
    for dimension in DIMENSIONS:
        (result,) = embed_many([content, Content(Modality.TEXT, text="beside it")], dimension)[:1]
        assert [e.type for e in result.embeddings] == [kind for kind, _ in full]
        for embedding, (_, vector) in zip(result.embeddings, full, strict=True):
            assert embedding.vector.tobytes() == _reference_finish(vector, dimension).tobytes()


def test_each_vector_owns_its_memory() -> None:
    """Results are separate arrays, not views of the batch's (the cache accounts per vector)."""
    results = embed_many([Content(Modality.TEXT, text=f"text {i}") for i in range(5)], 256)
    for r in results:
        vector = r.embeddings[0].vector
        assert vector.base is None and vector.flags.c_contiguous and vector.shape == (256,)
