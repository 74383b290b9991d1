"""A pending embed item: one provider input that one or more callers are waiting for."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Hashable
from dataclasses import dataclass

from onespace.providers.base import EmbedInput, ProviderResult

__all__ = ["GroupKey", "Pending", "State"]

# Items that may share a provider call: same model, dimension, purpose and modality.
GroupKey = tuple[str, int, str, str]


class State(enum.Enum):
    """Where an item is. It only moves out of QUEUED, once: one field, so the queue depth (the
    count of QUEUED items) cannot be taken twice for one item, whatever order its callers leave in."""

    QUEUED = "queued"  # in its group's queue, counted in the queue depth
    SENT = "sent"  # cut into a batch: a provider call task has it
    DROPPED = "dropped"  # left the queue unsent: its callers left, its deadline passed, shutdown


@dataclass(slots=True, eq=False)
class Pending:
    key: Hashable
    input: EmbedInput
    future: asyncio.Future[ProviderResult]
    deadline: float  # monotonic; the latest deadline among its waiters
    enqueued_at: float
    waiters: int = 1
    state: State = State.QUEUED
    sent_at: float = 0.0  # when it was cut into a batch (a timing, read once it was SENT)
    provider_seconds: float = 0.0
    batch_size: int = 0  # inputs in the provider call that answered it

    @property
    def group(self) -> GroupKey:
        i = self.input
        return (i.model, i.dimension, i.purpose.value, i.content.modality.value)
