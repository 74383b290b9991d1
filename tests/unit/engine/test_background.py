"""Background threads step back below the server's priority, on their own thread only."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from onespace.engine.background import BACKGROUND_NICE, background_executor, lower_this_thread

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"
)


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_background_pool_runs_its_work_at_the_background_nice_and_leaves_the_caller_alone() -> None:
    mine = _nice()
    pool = background_executor("test-background")
    try:
        seen = {pool.submit(_nice).result(timeout=30) for _ in range(8)}
    finally:
        pool.shutdown(wait=True)
    assert seen == {min(19, mine + BACKGROUND_NICE)}
    assert _nice() == mine


def test_lowering_stops_at_the_lowest_priority() -> None:
    seen: list[int] = []

    def lower_twice() -> None:
        lower_this_thread(15)
        lower_this_thread(15)
        seen.append(_nice())

    thread = threading.Thread(target=lower_twice)
    thread.start()
    thread.join(30)
    assert seen == [19]
