"""Counters of what the emulator answered, so tests and benchmarks can assert how many Bedrock
calls a workload made (and how big Cohere's batches were) without trusting the caller's count."""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from typing import Any

__all__ = ["UNRESOLVED", "Stats"]

UNRESOLVED = "<unresolved>"  # calls whose model id matched nothing (404s)
RECENT = 256  # how many recent calls `recent` remembers


class Stats:
    def __init__(self) -> None:
        self.calls: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.batch_sizes: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.in_flight = 0
        self.max_in_flight = 0
        self.queued = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)

    def record(self, model: str, outcome: str, request_id: str, batch_size: int | None = None) -> None:
        """One answered call: `outcome` is `ok` or the error code."""
        self.calls[model][outcome] += 1
        self.recent.append({"model": model, "outcome": outcome, "request_id": request_id})
        if batch_size is not None:
            self.batch_sizes[model][batch_size] += 1

    def enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def total(self, model: str | None = None, outcome: str | None = None) -> int:
        models = [model] if model is not None else list(self.calls)
        return sum(n for m in models for o, n in self.calls.get(m, Counter()).items() if outcome in (None, o))

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": {m: dict(c) for m, c in self.calls.items()},
            "batch_sizes": {
                m: {str(k): v for k, v in sorted(c.items())} for m, c in self.batch_sizes.items()
            },
            "total_calls": self.total(),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "queued": self.queued,
            "recent": list(self.recent),
        }
