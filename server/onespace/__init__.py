"""onespace: one gRPC endpoint, one index, for text, image, audio and video embeddings."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
