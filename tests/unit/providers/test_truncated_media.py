"""Media cut short is refused as truncated, never embedded as if it were the whole; media that is
whole (or a stream format cut between its units) still embeds, and the same as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from onespace.content import Content
from onespace.errors import InvalidArgument
from onespace.providers.local import embed_content
from tests import media

from .helpers import assert_unit, audio, image, vector, video
from .limits import mp4_index_first


def reason(content: Content) -> str:
    with pytest.raises(InvalidArgument) as info:
        embed_content(content, 256)
    assert info.value.field == f"content.{content.modality.value}"
    return info.value.reason


def test_a_wav_cut_to_1000_bytes_says_how_much_it_declares_and_holds() -> None:
    data = media.wav(440, seconds=1.0, sample_rate=44100)[:1000]
    assert reason(audio(data)) == (
        "cannot decode wav audio: truncated: header declares 44100 frames, 1000 bytes hold 478"
    )


def test_a_wav_cut_by_one_frame_is_truncated() -> None:
    data = media.wav(440, seconds=1.0, sample_rate=44100)[:-2]
    assert "header declares 44100 frames" in reason(audio(data))


def test_a_streamed_wav_declaring_no_length_still_embeds() -> None:
    data = bytearray(media.wav(440, seconds=0.5))
    data[40:44] = b"\xff\xff\xff\xff"  # the data chunk's size: "unknown", as live writers leave it
    assert_unit(vector(audio(bytes(data)), 256), 256)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_an_mp3_shorter_than_its_xing_header_is_truncated(keep: float) -> None:
    data = media.mp3(440, seconds=1.0, sample_rate=44100)
    cut = data[: int(len(data) * keep)]
    assert reason(audio(cut)) == (
        f"cannot decode mp3 audio: truncated: its Xing header declares {len(data)} bytes, "
        f"{len(cut)} are present"
    )


def test_an_ogg_ending_inside_a_page_is_truncated() -> None:
    data = media.ogg(440)
    assert "truncated: " in reason(audio(data[:-7])) and "Ogg page" in reason(audio(data[:-7]))


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_an_mp4_cut_anywhere_is_truncated(keep: float, tmp_path: Path) -> None:
    for data in (media.mp4(1, seconds=2.0), mp4_index_first(2.0, tmp_path)):  # index last, first
        cut = reason(video(data[: int(len(data) * keep)]))
        assert cut.startswith("cannot decode mp4 video: truncated: ") and "box" in cut


def test_an_mp4_cut_at_a_box_boundary_before_its_index_is_truncated() -> None:
    data = media.mp4(1, seconds=2.0)  # ftyp, free, mdat, moov
    moov = data.index(b"moov") - 4
    assert "no 'moov' box" in reason(video(data[:moov]))


def test_the_whole_mp4_with_its_index_first_embeds_like_the_original(tmp_path: Path) -> None:
    original, remuxed = media.mp4(1, seconds=2.0), mp4_index_first(2.0, tmp_path)
    assert vector(video(remuxed)).tobytes() == vector(video(original)).tobytes()


@pytest.mark.parametrize(
    ("cut", "expected"),
    [(-12, "bytes end before the IEND chunk"), (-2, "inside the 'IEND' chunk"), (3000, "inside the 'IDAT'")],
)
def test_a_png_cut_short_is_truncated_even_with_every_pixel_present(cut: int, expected: str) -> None:
    data = media.png(1, size=300)
    got = reason(image(data[:cut]))
    assert got.startswith("cannot decode png image: truncated: ") and expected in got


@pytest.mark.parametrize("cut", [-1, -2, 2000])
def test_a_jpeg_cut_short_is_truncated(cut: int) -> None:
    assert "image file is truncated" in reason(image(media.jpeg(1, size=300)[:cut]))


def test_a_webp_shorter_than_its_riff_header_is_truncated() -> None:
    data = media.webp(1, size=300)
    assert reason(image(data[:-1])) == (
        f"cannot decode webp image: truncated: the RIFF header declares {len(data)} bytes, "
        f"{len(data) - 1} are present"
    )


def test_trailing_bytes_after_the_end_are_no_truncation() -> None:
    """Bytes after IEND or after the last box (a tagger's padding) change nothing embedded."""
    png = media.png(4)
    assert vector(image(png + b"\0" * 16)).tobytes() == vector(image(png)).tobytes()
    mp4 = media.mp4(2)
    assert vector(video(mp4 + b"\0\0\0")).tobytes() == vector(video(mp4)).tobytes()
