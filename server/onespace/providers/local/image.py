"""Images: decode with Pillow, then colour and layout features in CIELAB.

Every image is flattened onto white (alpha), oriented by its EXIF tag, and box-filtered to a 64x64
grid, so size and encoding (PNG vs re-encoded JPEG) hardly matter. Features, each a block:

- colour: a soft (trilinear) 5x5x5 histogram over L*a*b*, square-rooted (Hellinger) and centred;
  soft bins keep a small brightness or noise change from jumping bins;
- layout: an 8x8 grid of mean L*a*b* with each channel's mean removed (where things are);
- structure: 8-bin gradient-orientation histograms over a 4x4 grid of the lightness (edges);
- statistics: mean and spread of each channel (overall tone).

The same featuriser serves video frames (already decoded to RGB by PyAV).
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from onespace.errors import InvalidArgument
from onespace.models import ModelSpec
from onespace.providers.local.decoding import decode_errors, short_reason
from onespace.providers.local.projection import Features, unit

__all__ = ["DEFAULT_MAX_PIXELS", "GRID", "IMAGE_FEATURES", "Rgb", "decode_image", "image_features"]

Rgb = npt.NDArray[np.uint8]
GRID = 64
# Pixel limit when the model sets none: 40 megapixels decodes in ~120 MB; larger is refused
# before decoding (a decompression bomb guard independent of Pillow's global MAX_IMAGE_PIXELS).
DEFAULT_MAX_PIXELS = 40_000_000

_HIST_BINS = 5
_LAYOUT = 8
_CELLS = 4
_ORIENTATIONS = 8
_SIZES = (_HIST_BINS**3, _LAYOUT * _LAYOUT * 3, _CELLS * _CELLS * _ORIENTATIONS, 6, 1)
IMAGE_FEATURES = sum(_SIZES)
_WEIGHTS = (1.0, 0.9, 0.7, 1.0, 0.05)
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)


def decode_image(data: bytes, fmt: str, spec: ModelSpec, field: str = "content.image") -> Rgb:
    """Decode `data` to a GRID x GRID RGB array; InvalidArgument on bad bytes or too many pixels."""
    limit = spec.limits.max_image_pixels or DEFAULT_MAX_PIXELS
    with decode_errors(field, f"{fmt} image"):
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            reason = f"too many pixels to decode safely (decompression bomb guard): {short_reason(exc)}"
            raise InvalidArgument(field, reason) from exc
        with img:
            width, height = img.size
            if width * height > limit:
                raise InvalidArgument(
                    field, f"{width}x{height} = {width * height} pixels exceeds the limit of {limit} pixels"
                )
            img.draft("RGB", (GRID * 2, GRID * 2))  # JPEG: decode at a reduced scale, much faster
            oriented = ImageOps.exif_transpose(img)
            small = _flatten(oriented).resize((GRID, GRID), Image.Resampling.BOX)
            return np.asarray(small, dtype=np.uint8)


def _flatten(img: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (transparent pixels' colours are arbitrary)."""
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if not has_alpha:
        return img.convert("RGB")
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB")


def _lab(rgb: Rgb) -> Features:
    """sRGB (D65) to CIELAB, element-wise (no BLAS, so bit-stable); shape (H, W, 3)."""
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = lin[..., 0], lin[..., 1], lin[..., 2]
    xyz = [(m[0] * r + m[1] * g + m[2] * b) / w for m, w in zip(_RGB_TO_XYZ, _WHITE_D65, strict=True)]
    delta = 6.0 / 29.0
    fx, fy, fz = (np.where(t > delta**3, np.cbrt(t), t / (3 * delta**2) + 4.0 / 29.0) for t in xyz)
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def _soft_index(
    values: Features, low: float, step: float, bins: int
) -> tuple[npt.NDArray[np.intp], Features]:
    """Lower bin index and the fraction towards the next bin (linear interpolation between centres)."""
    pos = np.clip((values - low) / step, 0.0, bins - 1.0)
    lower = np.minimum(np.floor(pos).astype(np.intp), bins - 2)
    return lower, pos - lower


def _colour_histogram(lab: Features) -> Features:
    axes = (
        _soft_index(lab[..., 0].ravel(), 0.0, 25.0, _HIST_BINS),
        _soft_index(lab[..., 1].ravel(), -60.0, 30.0, _HIST_BINS),
        _soft_index(lab[..., 2].ravel(), -60.0, 30.0, _HIST_BINS),
    )
    hist = np.zeros(_HIST_BINS**3, dtype=np.float64)
    for corner in range(8):
        index = np.zeros_like(axes[0][0])
        weight = np.ones_like(axes[0][1])
        for axis, (lower, frac) in enumerate(axes):
            upper = (corner >> axis) & 1
            index = index * _HIST_BINS + lower + upper
            weight = weight * (frac if upper else 1.0 - frac)
        hist += np.bincount(index, weights=weight, minlength=hist.size)
    root = np.sqrt(hist / hist.sum())
    return unit(root - root.mean())


def _layout(lab: Features) -> Features:
    step = GRID // _LAYOUT
    cells = lab.reshape(_LAYOUT, step, _LAYOUT, step, 3).mean(axis=(1, 3)) / 100.0
    centred = cells - cells.mean(axis=(0, 1))
    return unit(centred.ravel(), floor=1.0)


def _structure(lightness: Features) -> Features:
    """Gradient-orientation histograms of a 32x32 lightness map (halved first: less pixel noise)."""
    half = GRID // 2
    small = lightness.reshape(half, 2, half, 2).mean(axis=(1, 3))
    gy, gx = np.gradient(small)
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi) / (np.pi / _ORIENTATIONS)
    lower = np.floor(angle).astype(np.intp) % _ORIENTATIONS
    frac = angle - np.floor(angle)
    upper = (lower + 1) % _ORIENTATIONS
    step = half // _CELLS
    rows, cols = np.indices((half, half))
    cell = (rows // step) * _CELLS + cols // step
    size = _CELLS * _CELLS * _ORIENTATIONS
    hist = np.bincount((cell * _ORIENTATIONS + lower).ravel(), (magnitude * (1 - frac)).ravel(), size)
    hist += np.bincount((cell * _ORIENTATIONS + upper).ravel(), (magnitude * frac).ravel(), size)
    root = np.sqrt(hist)
    return unit(root - root.mean(), floor=8.0)


def _statistics(lab: Features) -> Features:
    flat = lab.reshape(-1, 3)
    mean = flat.mean(axis=0) - np.array([50.0, 0.0, 0.0])
    return np.concatenate([mean, flat.std(axis=0)]) / 100.0


def image_features(rgb: Rgb) -> Features:
    """The feature vector (IMAGE_FEATURES long) of a GRID x GRID RGB image."""
    if rgb.shape != (GRID, GRID, 3):
        rgb = np.asarray(Image.fromarray(rgb).convert("RGB").resize((GRID, GRID), Image.Resampling.BOX))
    lab = _lab(rgb)
    blocks = (_colour_histogram(lab), _layout(lab), _structure(lab[..., 0]), _statistics(lab), np.ones(1))
    return np.concatenate([block * w for block, w in zip(blocks, _WEIGHTS, strict=True)])
