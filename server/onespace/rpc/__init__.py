"""The gRPC layer: thin servicers (count, admit, validate, convert), the one status table,
streaming helpers, and the server (health, reflection, graceful stop)."""

from __future__ import annotations

__all__: list[str] = []
