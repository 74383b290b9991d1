"""onespace_client: typed async and sync clients for the onespace gateway, and its CLI commands."""

from __future__ import annotations

__all__: list[str] = []
