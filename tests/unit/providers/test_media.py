"""The synthetic media generator itself: formats are what they claim, output is reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest

from onespace.content import format_modality, sniff_format
from onespace.models import Modality
from tests import media


@pytest.mark.parametrize(
    ("make", "fmt"),
    [
        (lambda: media.png(1), "png"),
        (lambda: media.jpeg(1), "jpeg"),
        (lambda: media.gif(1), "gif"),
        (lambda: media.webp(1), "webp"),
        (lambda: media.noisy_variant_png(1), "png"),
        (lambda: media.wav(440), "wav"),
        (lambda: media.ogg(440), "ogg"),
        (lambda: media.mp3(440), "mp3"),
        (lambda: media.wav_ac3(440), "wav"),
        *[(lambda f=f: media.video(f, 1), f) for f in media.VIDEO_FORMATS],
    ],
)
def test_generated_media_sniff_as_their_format_and_reproduce(make: object, fmt: str) -> None:
    assert callable(make)
    data = make()
    assert sniff_format(data) == fmt
    assert make() == data


def test_seeds_give_different_pictures() -> None:
    assert media.png(1) != media.png(2)
    assert (media.image_array(1) != media.image_array(2)).any()


def test_write_catalog(tmp_path: Path) -> None:
    paths = media.write_catalog(tmp_path / "catalog")
    assert paths == sorted(paths)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    kinds = {format_modality(p.suffix) or Modality.TEXT for p in paths}
    assert kinds == set(Modality)
    for p in paths:
        if p.suffix != ".txt":
            assert format_modality(sniff_format(p.read_bytes()) or "") is format_modality(p.suffix)
