"""Threads for work no caller waits for, run below the server's CPU priority.

The HNSW adds behind the acks (`WriteBatcher`'s index upkeep) compete for the cores with work
callers do wait for: the event loop, the group commits, the local featurizer's processes. On Linux
every thread has its own nice value, so these threads step back by themselves. Side by side on 2
cores (local provider, one ingest stream of 4,000 texts): 2,158-2,588 texts/s against 1,954-2,180,
counted until the index has caught up, and 2,439-2,804 against 2,111-2,336 over two streams;
searches issued beside such an ingest kept their latency (p50 20-24 ms either way, p99 46-68
against 47-62). The work is the same; the idle moments between the foreground's bursts now do more
of it. When searches and an ingest saturate the cores together, the ingest takes what the adds
leave and searches scan a longer tail: with 32 searchers beside one stream, 1,627-2,085 texts/s and
299-403 searches/s at nice 10 against 1,491-1,734 and 384-488 at 0 (`--index-nice 0`). It cannot
starve: a commit that finds the unindexed tail at its bound indexes first, at the committing
thread's priority (`Collection.apply`). Elsewhere, or where the nice value cannot be changed, the
threads run at the server's priority.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from onespace.index.checkpointer import BUILDER_NICE

__all__ = ["BACKGROUND_NICE", "background_executor", "lower_this_thread"]

log = logging.getLogger(__name__)

BACKGROUND_NICE = BUILDER_NICE  # as the checkpoint builder's process
_LOWEST = 19


def lower_this_thread(increment: int = BACKGROUND_NICE) -> None:
    """Raise the calling thread's nice value by `increment` (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(_LOWEST, current + increment))
    except OSError as exc:  # e.g. a seccomp profile that forbids it
        log.debug("background thread %d keeps its priority: %s", thread, exc)


def background_executor(name: str, increment: int = BACKGROUND_NICE) -> ThreadPoolExecutor:
    """A pool of up to one thread per core, each `increment` nice levels below the server."""
    lower = functools.partial(lower_this_thread, increment) if increment else None
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix=name, initializer=lower)
