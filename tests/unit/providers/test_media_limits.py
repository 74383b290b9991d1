"""Decoded size is bounded, not only encoded size: pixels, audio samples and video frames are read
from the header (or counted while decoding) and refused over their limits, naming the field and the
setting; an image's decode reserves what it materialises, and large images still embed exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from onespace.config import Settings
from onespace.content import Content, MediaLimits, Modality, check, image_size
from onespace.errors import InvalidArgument
from onespace.models import LOCAL_MODEL, NOVA_MODEL, TITAN_MULTIMODAL_G1, ModelSpec
from onespace.providers.local import embed_content
from onespace.providers.local import image as local_image
from onespace.providers.local.avmedia import read_media
from onespace.providers.local.decoding import Decoding
from onespace.providers.local.image import GRID, decode_image, decoded_bytes
from tests import media

from .helpers import audio, image, video
from .limits import encoded, limited, picture, png_claiming, raw_h264


def refusal(content: Content, decoding: Decoding | None = None) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        embed_content(content, 256, decoding=decoding)
    return info.value


# ---------------------------------------------------------------- settings


def test_the_settings_defaults_are_the_media_limits_defaults() -> None:
    assert MediaLimits.of(Settings()) == MediaLimits()
    with pytest.raises(ValueError, match="max_video_frames must be positive"):
        MediaLimits(max_video_frames=0)


# ---------------------------------------------------------------- images


def test_pixels_are_read_from_the_header_and_refused_naming_the_item_and_the_setting() -> None:
    """A 70-byte PNG declaring 6000x6000 is refused by the gateway's check, before any decoder."""
    bomb = Content(Modality.IMAGE, data=png_claiming(6000, 6000))
    with pytest.raises(InvalidArgument) as info:
        check(bomb, LOCAL_MODEL, "items[3]", MediaLimits(max_image_pixels=16_777_216))
    assert info.value.field == "items[3].image"
    assert "6000x6000 = 36000000 pixels exceeds the limit of 16777216 pixels (max_image_pixels" in str(
        info.value
    )
    check(bomb, LOCAL_MODEL, "items[3]", MediaLimits(max_image_pixels=36_000_000))


def test_two_sets_of_limits_hold_side_by_side() -> None:
    """Limits are values passed to each check and decode, not process state: one caller's stricter
    limits change nothing for another's, before, during or after."""
    data = media.ogg(440)  # 32000 samples
    strict, loose = limited(max_audio_samples=20_000), limited(max_audio_samples=32_000)
    assert "max_audio_samples" in refusal(audio(data), strict).reason
    embed_content(audio(data), 256, decoding=loose)
    embed_content(audio(data), 256)  # the defaults
    assert "max_audio_samples" in refusal(audio(data), strict).reason
    assert strict.budget is not loose.budget


@pytest.mark.parametrize("spec", [NOVA_MODEL, TITAN_MULTIMODAL_G1], ids=lambda s: s.id)
def test_bedrock_models_get_the_header_check_too(spec: ModelSpec) -> None:
    """Bedrock never decodes here: the header check is what keeps a bomb from being sent."""
    with pytest.raises(InvalidArgument) as info:
        check(Content(Modality.IMAGE, data=png_claiming(50_000, 50_000)), spec, "items[0]")
    assert info.value.field == "items[0].image"
    assert "2500000000 pixels exceeds the limit of" in info.value.reason
    if spec is TITAN_MULTIMODAL_G1:  # the model's own limit (2048 x 2048) applies as well
        with pytest.raises(InvalidArgument) as titan:
            check(Content(Modality.IMAGE, data=png_claiming(3000, 3000)), spec, "items[0]")
        assert f"exceeds the limit of {2048 * 2048} pixels for {spec.id}" in titan.value.reason


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (64, 48), (333, 1001), (4100, 17)])
def test_header_sizes_agree_with_pillow(fmt: str, width: int, height: int) -> None:
    img = picture(width, height, alpha=fmt in ("PNG", "WEBP"))
    for options in ({}, {"progressive": True, "exif": Image.Exif()} if fmt == "JPEG" else {"lossless": True}):
        if fmt in ("PNG", "GIF") and options:
            continue
        data = encoded(img if fmt != "JPEG" else img.convert("RGB"), fmt, **options)
        assert image_size(data, fmt.lower()) == Image.open(io.BytesIO(data)).size


def test_a_jpeg_header_is_walked_only_so_far() -> None:
    """A real header has a few dozen segments before its frame; forged bytes cannot stall the loop."""
    frame = b"\xff\xc0\x00\x11\x08\x17\x70\x17\x70\x03"  # 6000x6000
    assert image_size(b"\xff\xd8" + b"\xff\xe0\x00\x02" * 40 + frame, "jpeg") == (6000, 6000)
    assert image_size(b"\xff\xd8" + b"\xff\xe0\x00\x02" * 100_000 + frame, "jpeg") is None


def test_animated_webp_reports_its_canvas() -> None:
    frames = [picture(120, 80, seed=s) for s in (1, 2)]
    data = encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    assert image_size(data, "webp") == (120, 80)
    assert image_size(data[:20], "webp") is None and image_size(b"\xff\xd8\xff\xe0", "jpeg") is None


def test_a_very_narrow_image_counts_its_stretch_to_the_grid() -> None:
    """1 x 1,000,000: a million pixels, but the box filter's first pass makes 64 x 1,000,000."""
    data = encoded(Image.new("L", (1, 1_000_000), 128), "PNG")
    reason = refusal(image(data)).reason
    assert f"is stretched to {GRID} pixels across" in reason and "max_image_pixels" in reason


def test_jpeg_reserves_only_what_it_decodes_at_reduced_scale() -> None:
    data = encoded(picture(4000, 3000).convert("RGB"), "JPEG", quality=80)
    decoding = limited(decode_budget_bytes=1 << 30)
    decode_image(data, "jpeg", LOCAL_MODEL, decoding=decoding)
    budget = decoding.budget
    assert budget.peak == decoded_bytes((500, 375), "RGB", "jpeg")  # decoded at 1/8 scale
    assert budget.peak < 4000 * 3000


def test_png_reserves_its_decoded_size_before_decoding() -> None:
    data = encoded(picture(3000, 1500, alpha=True), "PNG", compress_level=1)
    decoding = limited(decode_budget_bytes=1 << 30)
    decode_image(data, "png", LOCAL_MODEL, decoding=decoding)
    assert decoding.budget.peak == decoded_bytes((3000, 1500), "RGBA", "png") > 3000 * 1500 * 4


@pytest.mark.parametrize("orientation", range(1, 9))
def test_large_images_are_banded_to_the_same_grid_as_one_whole_resize(orientation: int) -> None:
    """4.5 MP (over the whole-image size): each band oriented, flattened and row-filtered alone."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = picture(3000, 1500, alpha=True)
    data = encoded(img, "PNG", exif=exif, compress_level=1)
    transposed = img.transpose(local_image._ORIENTATION[orientation]) if orientation > 1 else img
    whole = local_image._flatten(transposed).resize((GRID, GRID), Image.Resampling.BOX)
    got = decode_image(data, "png", LOCAL_MODEL, decoding=Decoding.of())
    if orientation >= 5:  # a transposed image is tall: Pillow may filter its columns first
        assert np.abs(got.astype(int) - np.asarray(whole, dtype=int)).max() <= 1
    else:
        assert got.tobytes() == whole.tobytes()


# ---------------------------------------------------------------- audio


def test_audio_samples_are_read_from_the_header() -> None:
    """1 s of stereo at 16 kHz decodes to 32000 samples."""
    data = media.ogg(440)
    info = refusal(audio(data), limited(max_audio_samples=20_000))
    assert info.field == "content.audio"
    assert info.reason == (
        "32000 samples decoded (1.0 s x 16000 Hz x 2 channels) exceeds the limit of 20000 (max_audio_samples)"
    )
    embed_content(audio(data), 256, decoding=limited(max_audio_samples=32_000))


def test_audio_samples_are_bounded_on_the_ffmpeg_path_too() -> None:
    ac3 = media.wav_ac3(440, seconds=1.0)  # 48 kHz AC-3: libsndfile refuses it
    info = refusal(audio(ac3), limited(max_audio_samples=10_000))
    assert info.field == "content.audio" and "max_audio_samples" in info.reason


# ---------------------------------------------------------------- video


@pytest.mark.parametrize("fmt", ["mp4", "mkv"])
def test_video_frames_are_read_from_the_header(fmt: str) -> None:
    """MP4 declares its frame count; Matroska only a duration (x the frame rate)."""
    data = media.video(fmt, 1, seconds=2.0, fps=8)
    info = refusal(video(data), limited(max_video_frames=10))
    assert info.field == "content.video"
    assert "16 frames decoded (" in info.reason
    assert "exceeds the limit of 10 (max_video_frames)" in info.reason
    embed_content(video(data), 256, decoding=limited(max_video_frames=17))


def test_video_frames_are_counted_when_nothing_declares_them() -> None:
    data = raw_h264(frames=12)  # an elementary stream: no container, no duration, no count
    twelve, eleven = limited(max_video_frames=12), limited(max_video_frames=11)
    assert len(read_media(data, "flv", LOCAL_MODEL, "f", video=True, decoding=twelve).frames) == 4
    with pytest.raises(InvalidArgument) as info:
        read_media(data, "flv", LOCAL_MODEL, "items[2].video", video=True, decoding=eleven)
    assert info.value.field == "items[2].video"
    assert info.value.reason == (
        "12 frames decoded (counted while decoding) exceeds the limit of 11 (max_video_frames)"
    )


def test_video_frame_size_counts_against_max_image_pixels() -> None:
    info = refusal(video(media.mp4(1)), limited(max_image_pixels=64 * 63))
    assert info.reason == ("frames of 64x64 = 4096 pixels exceed the limit of 4032 pixels (max_image_pixels)")
