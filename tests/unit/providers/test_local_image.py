from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from onespace.content import EmbeddingType
from onespace.errors import InvalidArgument
from onespace.providers.local import embed_content
from onespace.providers.local.image import DEFAULT_MAX_PIXELS, GRID, image_features
from tests import media

from .helpers import assert_unit, cos, image, vector


@pytest.mark.parametrize(
    ("fmt", "data"),
    [("png", media.png(1)), ("jpeg", media.jpeg(1)), ("gif", media.gif(1)), ("webp", media.webp(1))],
)
def test_each_image_format_decodes_and_embeds(fmt: str, data: bytes) -> None:
    result = embed_content(image(data), 1024)
    assert [e.type for e in result.embeddings] == [EmbeddingType.IMAGE]
    assert_unit(result.embeddings[0].vector, 1024)
    assert embed_content(image(data, fmt), 1024).embeddings[0].vector.tobytes() == (
        result.embeddings[0].vector.tobytes()
    )


def test_same_image_same_vector_bit_for_bit() -> None:
    assert vector(image(media.png(7))).tobytes() == vector(image(media.png(7))).tobytes()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_near_identical_images_score_closer_than_unrelated(seed: int) -> None:
    base = vector(image(media.png(seed)))
    variants = [
        media.noisy_variant_png(seed, noise=6.0),
        media.noisy_variant_png(seed, noise=0.0, brightness=1.1),
        media.jpeg(seed, quality=70),
        media.webp(seed),
    ]
    unrelated = max(cos(base, vector(image(media.png(seed + k)))) for k in range(1, 5))
    for variant in variants:
        similarity = cos(base, vector(image(variant)))
        assert similarity > 0.9
        assert similarity > unrelated + 0.3


def test_image_size_barely_matters() -> None:
    small, large = vector(image(media.png(5, size=64))), vector(image(media.png(5, size=256)))
    assert cos(small, large) > 0.9


def test_transparency_is_flattened_onto_white() -> None:
    pixels = media.image_array(3)
    rgba = np.dstack([pixels, np.full(pixels.shape[:2], 255, dtype=np.uint8)])
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, format="PNG")
    np.testing.assert_allclose(vector(image(out.getvalue())), vector(image(media.png(3))), atol=1e-6)


def test_features_accept_any_frame_size() -> None:
    features = image_features(media.image_array(2, size=40))
    np.testing.assert_array_equal(
        features,
        image_features(
            np.asarray(
                Image.fromarray(media.image_array(2, size=40)).resize((GRID, GRID), Image.Resampling.BOX)
            )
        ),
    )


def test_garbage_after_a_png_signature_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(image(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4), 256)
    assert info.value.field == "content.image"
    assert info.value.reason.startswith("cannot decode png image: ")


@pytest.mark.parametrize("data", [media.png(4), media.jpeg(4, size=128), media.webp(4)])
def test_truncated_images_are_invalid_argument(data: bytes) -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(image(data[: len(data) // 2]), 256)
    assert info.value.field == "content.image"
    assert "cannot decode" in info.value.reason


def test_unrecognised_bytes_are_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(image(b"hello, world"), 256)
    assert info.value.field == "content.image"


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims `width` x `height` (decoding would need that many pixels)."""
    out = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 30, 30)).save(out, format="PNG")
    data = out.getvalue()
    ihdr = data[8 + 8 : 8 + 8 + 13]
    patched = struct.pack(">II", width, height) + ihdr[8:]
    chunk = b"IHDR" + patched
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[8 + 25 :]


def test_images_over_the_pixel_limit_are_refused_before_decoding() -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(image(_png_claiming(8000, 6000)), 256)
    assert info.value.field == "content.image"
    assert f"exceeds the limit of {DEFAULT_MAX_PIXELS} pixels" in info.value.reason


def test_decompression_bombs_are_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(image(_png_claiming(40_000, 40_000)), 256)
    assert info.value.field == "content.image"
    assert "decompression bomb" in info.value.reason


def test_s3_references_cannot_be_read_offline() -> None:
    from onespace.content import Content
    from onespace.models import Modality

    with pytest.raises(InvalidArgument) as info:
        embed_content(Content(Modality.IMAGE, s3_uri="s3://bucket/cat.png"), 256)
    assert info.value.field == "content.s3_uri"
    assert "--provider bedrock" in info.value.reason
