"""Timing work done on a worker thread by what it cost that thread, not by the wall clock.

The wall time of a thread sharing a busy process includes its waits: for the GIL while the event
loop runs, for a core while other threads do. Those waits say nothing about the work; the thread's
own CPU time does. The search batcher times the batches it hands to a thread this way (engine
/search.py), and the recall sampler its scans (engine/recall.py). A thread that waited for the
disk meanwhile (a major page fault or a block read) is timed by the wall clock instead: work on
any thread would wait for that disk too.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

__all__ = ["Stopwatch", "thread_stopwatch"]

Stopwatch = Callable[[], Callable[[], float]]  # start one; call what it returns for the seconds since
_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", None)  # Linux


def _thread_usage() -> tuple[float, int]:
    """The calling thread's CPU seconds, and how often it has waited for the disk (major page
    faults and block reads; 0 where the system does not count them per thread)."""
    if _RUSAGE_THREAD is None:
        return time.thread_time(), 0
    usage = resource.getrusage(_RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime, usage.ru_majflt + usage.ru_inblock


def thread_stopwatch(usage: Callable[[], tuple[float, int]] = _thread_usage) -> Callable[[], float]:
    """Started on a worker thread: its CPU seconds since, or its wall seconds if it waited for
    the disk meanwhile. Read it on the same thread."""
    wall, (cpu, waits) = time.monotonic(), usage()

    def elapsed() -> float:
        cpu_now, waits_now = usage()
        return time.monotonic() - wall if waits_now > waits else cpu_now - cpu

    return elapsed
