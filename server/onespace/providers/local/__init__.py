"""The local provider: deterministic, offline embeddings of text, images, audio and video.

Content-derived features (hashed text n-grams; image colour, layout and edges; audio band-energy
statistics; video frames plus the audio track) are projected by a fixed seeded Gaussian projection
to 3072 dimensions, whose every prefix is itself a valid (renormalised) embedding; a vector asked
for at a smaller dimension is projected onto that prefix only. Similar inputs score close,
identical inputs identical (bit for bit, in any batch); nothing is semantic across modalities.
"""

from __future__ import annotations

from onespace.providers.local.embed import embed_content, embed_inputs, embed_many
from onespace.providers.local.projection import FULL_DIMENSION
from onespace.providers.local.provider import LocalProvider

__all__ = ["FULL_DIMENSION", "LocalProvider", "embed_content", "embed_inputs", "embed_many"]
