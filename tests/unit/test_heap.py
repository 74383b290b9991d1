"""The serving process freezes its start-up heap out of the cyclic collector's walks."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from onespace.heap import freeze_startup_heap
from tests.reliability.serve import Server


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freezing_collects_first_then_hides_every_survivor(unfrozen: None) -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    garbage = Cycle()
    kept = Cycle()
    del garbage  # a cycle that only the collector can free: it must not be frozen for good
    frozen = freeze_startup_heap()
    assert frozen == gc.get_freeze_count() > 0
    assert not any(type(o) is Cycle and o is not kept for o in gc.get_objects())  # the garbage went
    assert all(o is not kept for o in gc.get_objects())  # the survivor is frozen: out of the walks
    late = Cycle()  # made after start-up: still tracked, as everything allocated while serving
    assert any(o is late for o in gc.get_objects())


def test_serve_freezes_the_heap_before_it_announces_itself(tmp_path: Path) -> None:
    server = Server(tmp_path, "--log-level", "DEBUG")
    try:
        banner = next(i for i, line in enumerate(server.lines) if "serving gRPC on" in line)
        frozen = [re.search(r"start-up heap frozen: (\d+) objects", line) for line in server.lines[:banner]]
        counts = [int(m.group(1)) for m in frozen if m]
        assert len(counts) == 1 and counts[0] > 10_000, server.output
    finally:
        server.terminate()
