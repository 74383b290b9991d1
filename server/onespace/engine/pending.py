"""A pending embed item: one provider input that one or more callers are waiting for."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass, field

from onespace.providers.base import EmbedInput, ProviderResult

__all__ = ["GroupKey", "Pending"]

# Items that may share a provider call: same model, dimension, purpose and modality.
GroupKey = tuple[str, int, str, str]


@dataclass(slots=True, eq=False)
class Pending:
    key: Hashable
    input: EmbedInput
    future: asyncio.Future[ProviderResult]
    deadline: float  # monotonic; the latest deadline among its waiters
    enqueued_at: float
    waiters: int = 1
    sent_at: float | None = None
    provider_seconds: float = 0.0
    abandoned: bool = field(default=False)

    @property
    def group(self) -> GroupKey:
        i = self.input
        return (i.model, i.dimension, i.purpose.value, i.content.modality.value)
