"""Work for `WorkerProcesses` in its tests: module-level, so a spawned worker process can import
it by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onespace.content import MediaLimits
from onespace.providers.local.embed import Job
from onespace.providers.local.provider import _run_in_process


def perform(request: tuple[str, object]) -> object:
    """`(op, arg)`: echo arg; answer arg bytes; fail with ValueError(arg); answer something that
    cannot pickle; or hold: read one byte from the FIFO at path arg (its opening tells the test
    the work started), then answer "released"."""
    op, arg = request
    if op == "echo":
        return arg
    if op == "bytes":
        return b"x" * int(str(arg))
    if op == "fail":
        raise ValueError(arg)
    if op == "unpicklable":
        unpicklable: Callable[[], None] = lambda: None  # noqa: E731
        return unpicklable
    if op == "hold":
        with open(str(arg), "rb") as fifo:
            fifo.read(1)
        return "released"
    raise AssertionError(op)


def ready() -> None:
    """An initializer with nothing to set up."""


def broken() -> None:
    """An initializer that fails, as a worker that cannot import what it needs."""
    raise ImportError("cannot set up")


def held_when_first(calls: list[list[Job]], limits: MediaLimits, fifo: str) -> list[Any]:
    """The local provider's batch, except that one starting with the text "first" first waits
    for a byte on `fifo` (its opening tells the test it started)."""
    if calls[0][0][0].text == "first":
        with open(fifo, "rb") as held:
            held.read(1)
    return list(_run_in_process(calls, limits))
