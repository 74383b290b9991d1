"""Shared helpers for the hand-run benchmarks: synthetic data, timing and a figure table.

Benchmarks print figures and ratios against a baseline measured in the same run; they never
assert on wall time (shared 2-core machines are noisy, about ±30% run to run).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Stopwatch", "closed_loop", "clustered", "print_table", "process_stat", "stopwatch"]

Matrix = npt.NDArray[np.float32]


def clustered(
    n: int,
    dimension: int,
    *,
    centres: int = 200,
    spread: float = 0.5,
    decay: float = 0.0,
    seed: int = 0,
    queries: int = 0,
) -> tuple[Matrix, Matrix]:
    """`n` base vectors and `queries` query vectors from one Gaussian mixture (unit-norm rows).

    Centres ~ N(0, I), point = centre + N(0, spread² I). With `decay` > 0 every dimension i is
    scaled by (1 + i) ** -decay, so the variance is front-loaded like a Matryoshka embedding's.
    """
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, dimension)).astype(np.float32)
    scale = ((1.0 + np.arange(dimension)) ** -decay).astype(np.float32)

    def draw(count: int) -> Matrix:
        picks = rng.integers(0, centres, count)
        points = middle[picks] + spread * rng.standard_normal((count, dimension)).astype(np.float32)
        points *= scale
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        return np.ascontiguousarray(points, dtype=np.float32)

    return draw(n), draw(queries)


class Stopwatch:
    seconds: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    watch = Stopwatch()
    start = time.perf_counter()
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - start


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned table on stdout (run pytest with -s to see it)."""
    cells = [[str(c) for c in header], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n== {title}")
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


async def closed_loop(
    call: Callable[[int], Awaitable[Any]], calls: int, callers: int
) -> tuple[float, list[float], list[Any]]:
    """`callers` concurrent loops making `calls` calls in all, call `i` given its index:
    (seconds, sorted latencies, results by index)."""
    latencies: list[float] = []
    results: list[Any] = [None] * calls
    next_call = 0

    async def caller() -> None:
        nonlocal next_call
        while next_call < calls:
            i = next_call
            next_call += 1
            started = time.perf_counter()
            results[i] = await call(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - started, sorted(latencies), results


def process_stat(pid: int) -> tuple[int, float]:
    """Process `pid`'s parent pid and the CPU seconds it has used (user + system), from
    /proc/<pid>/stat (read after the command name, which may hold spaces and parentheses)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
