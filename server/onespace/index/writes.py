"""Write operations as the write batcher hands them to a collection, already validated.

`plan_writes` folds a whole group of operations (from many RPCs, in arrival order) into one
commit: which records end up inserted, which committed keys are removed, and each operation's own
result (upserted count, or how many of its ids existed at that point). Operations on the same id
within the group behave exactly as if they had been committed one after another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["DeleteOp", "Planned", "PreparedRecord", "UpsertOp", "WriteOp", "plan_writes"]


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    id: str
    vector: npt.NDArray[np.float32]
    code: int
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class UpsertOp:
    records: tuple[PreparedRecord, ...]  # ids unique within the op (the last record of an id wins)
    taken: int  # records the caller sent, repeated ids included (what `upsert` returns)

    @property
    def items(self) -> int:
        return len(self.records)


@dataclass(frozen=True, slots=True)
class DeleteOp:
    ids: tuple[str, ...]

    @property
    def items(self) -> int:
        return len(self.ids)


WriteOp = UpsertOp | DeleteOp


@dataclass
class Planned:
    inserts: list[PreparedRecord] = field(default_factory=list)  # in the order they get keys
    removed_keys: list[int] = field(default_factory=list)  # committed keys that go
    results: list[int] = field(default_factory=list)  # one per op


def plan_writes(ops: Sequence[WriteOp], lookup: Callable[[list[str]], Mapping[str, int]]) -> Planned:
    """Fold `ops`; `lookup(ids)` gives the committed key of each stored id."""
    ids = sorted(
        {r.id for op in ops if isinstance(op, UpsertOp) for r in op.records}
        | {i for op in ops if isinstance(op, DeleteOp) for i in op.ids}
    )
    committed = dict(lookup(ids))
    # id -> what it is now: ("db", key), ("new", index into pending) or absent
    state: dict[str, tuple[str, int]] = {i: ("db", k) for i, k in committed.items()}
    pending: list[PreparedRecord | None] = []
    planned = Planned()
    for op in ops:
        if isinstance(op, UpsertOp):
            for record in op.records:
                _drop(state.get(record.id), pending, planned)
                state[record.id] = ("new", len(pending))
                pending.append(record)
            planned.results.append(op.taken)
        else:
            existed = 0
            for item_id in dict.fromkeys(op.ids):
                current = state.pop(item_id, None)
                existed += current is not None
                _drop(current, pending, planned)
            planned.results.append(existed)
    planned.inserts = [r for r in pending if r is not None]
    return planned


def _drop(current: tuple[str, int] | None, pending: list[PreparedRecord | None], planned: Planned) -> None:
    if current is None:
        return
    where, value = current
    if where == "db":
        planned.removed_keys.append(value)
    else:
        pending[value] = None
