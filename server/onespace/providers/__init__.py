"""Embedding providers: the interface (`base`), the offline `local` one, and Amazon `bedrock`."""

from __future__ import annotations

__all__: list[str] = []
