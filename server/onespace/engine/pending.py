"""A pending embed item: one provider input that one or more callers are waiting for, and the
queue of one group's items, interactive ones first."""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass

from onespace.providers.base import EmbedInput, ProviderResult

__all__ = ["GroupKey", "GroupQueue", "Pending", "State"]

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
    interactive: bool = False  # a unary caller waits for it: it goes before the group's stream items
    state: State = State.QUEUED
    sent_at: float = 0.0  # when it was cut into a batch (a timing, read once it was SENT)
    provider_seconds: float = 0.0
    batch_size: int = 0  # inputs in the provider call that answered it

    @property
    def group(self) -> GroupKey:
        i = self.input
        return (i.model, i.dimension, i.purpose.value, i.content.modality.value)


class GroupQueue:
    """One group's QUEUED items in arrival order, in two lanes: interactive items (a unary caller
    waits) are cut first, then stream items, so a bulk load's window of queued items does not
    sit in front of a caller waiting for one answer. Items that left (no longer QUEUED) stay in
    their lane until they reach its head or are taken, and are skipped then, so `len` may count
    them: a batch is cut early, never late."""

    __slots__ = ("_interactive", "_stream")

    def __init__(self) -> None:
        self._interactive: deque[Pending] = deque()
        self._stream: deque[Pending] = deque()

    def __len__(self) -> int:
        return len(self._interactive) + len(self._stream)

    def __iter__(self) -> Iterator[Pending]:
        """Every item in a lane, interactive lane first (items that left included)."""
        return itertools.chain(self._interactive, self._stream)

    def append(self, pending: Pending) -> None:
        (self._interactive if pending.interactive else self._stream).append(pending)

    def promote(self, pending: Pending) -> None:
        """An interactive caller joined a queued stream item: it moves to the interactive lane
        (a search of the stream lane: rare, and the lane is bounded by the queue's capacity)."""
        if not pending.interactive:
            self._stream.remove(pending)
            pending.interactive = True
            self._interactive.append(pending)

    def heads(self) -> tuple[Pending | None, Pending | None]:
        """The first QUEUED interactive item and the oldest QUEUED item (None, None: empty),
        dropping items that left from the lanes' heads."""
        interactive, streamed = _head(self._interactive), _head(self._stream)
        if interactive is None or (streamed is not None and streamed.enqueued_at < interactive.enqueued_at):
            return interactive, streamed
        return interactive, interactive

    def pop_oldest(self) -> Pending | None:
        """The QUEUED item that arrived first, whichever lane holds it (None when empty): the
        scheduler's turn for arrival order (see its `interactive_burst`)."""
        oldest = self.heads()[1]
        if oldest is not None and not oldest.interactive:  # the stream lane's head (heads() left it there)
            return self._stream.popleft()
        return self.popleft()

    def popleft(self) -> Pending | None:
        """The next item to cut: the interactive lane's first, else the stream lane's (None when
        empty); items that left are skipped."""
        return _head(self._interactive, take=True) or _head(self._stream, take=True)


def _head(lane: deque[Pending], *, take: bool = False) -> Pending | None:
    while lane and lane[0].state is not State.QUEUED:
        lane.popleft()
    if not lane:
        return None
    return lane.popleft() if take else lane[0]
