"""`WorkerProcesses`: real spawned processes fed over pipes by the event loop. Answers keep their
order and survive any size; a worker's exception comes back as itself; close answers what was
handed over; a dead worker fails what it held and a new one takes its place, also when it is
found gone only as a batch is written to it."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from onespace.providers.local import workers as workers_module
from onespace.providers.local.workers import WorkerDied, WorkerProcesses

from . import worker_jobs


@pytest.fixture
async def workers() -> AsyncIterator[WorkerProcesses]:
    w = WorkerProcesses(1, worker_jobs.perform, worker_jobs.ready)
    await w.start()
    yield w
    await w.close()


async def _opened_for_writing(fifo: Path) -> int:
    """Open `fifo` for writing: it returns once the worker opened it to read, i.e. the held work
    has started."""
    return await asyncio.to_thread(os.open, fifo, os.O_WRONLY)


def _release(fd: int) -> None:
    os.write(fd, b"x")
    os.close(fd)


async def test_answers_come_in_order_at_any_size(workers: WorkerProcesses) -> None:
    big = os.urandom(3 << 20)  # far more than a pipe holds, both ways
    requests = [("echo", i) for i in range(50)] + [("echo", big), ("echo", "after")]
    futures = [workers.submit(r) for r in requests]
    assert await asyncio.gather(*futures) == [arg for _, arg in requests]
    assert workers.started == 1 and len(workers.pids()) == 1


async def test_an_exception_comes_back_as_itself_and_the_worker_serves_on(workers: WorkerProcesses) -> None:
    with pytest.raises(ValueError, match="bad input 7"):
        await workers.submit(("fail", "bad input 7"))
    with pytest.raises(RuntimeError, match=r"PicklingError|AttributeError"):  # its answer could not cross
        await workers.submit(("unpicklable", None))
    assert await workers.submit(("echo", "still here")) == "still here"
    assert workers.started == 1


async def test_the_least_busy_worker_gets_the_next_request(tmp_path: Path) -> None:
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    w = WorkerProcesses(2, worker_jobs.perform, worker_jobs.ready)
    await w.start()
    try:
        assert w.least_busy() == 0
        held = w.submit(("hold", str(fifo)))
        writer = await _opened_for_writing(fifo)
        assert w.least_busy() == 0  # the other worker is free
        assert await w.submit(("echo", 1)) == 1
        second = w.submit(("echo", 2))
        assert w.least_busy() in (0, 1)
        _release(writer)
        assert list(await asyncio.gather(held, second)) == ["released", 2]
        assert w.least_busy() == 0 and w.started == 2
    finally:
        await w.close()


async def test_close_answers_what_was_handed_over_and_ends_the_processes(tmp_path: Path) -> None:
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    w = WorkerProcesses(1, worker_jobs.perform, worker_jobs.ready)
    await w.start()
    (pid,) = w.pids()
    held = w.submit(("hold", str(fifo)))
    writer = await _opened_for_writing(fifo)
    big = os.urandom(3 << 20)  # its answer and the end of the pipe may be read in one go
    queued = [w.submit(("echo", arg)) for arg in (0, 1, big)]
    closing = asyncio.ensure_future(w.close())
    await asyncio.sleep(0)
    assert not closing.done()
    _release(writer)
    await closing
    assert await asyncio.gather(held, *queued) == ["released", 0, 1, big]
    with pytest.raises(ChildProcessError):  # reaped: no longer this process's child
        os.waitpid(pid, os.WNOHANG)
    with pytest.raises(RuntimeError, match="closed"):
        w.submit(("echo", 0))


async def test_a_worker_killed_holding_work_fails_it_and_is_replaced(
    workers: WorkerProcesses, tmp_path: Path
) -> None:
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    (pid,) = workers.pids()
    held = workers.submit(("hold", str(fifo)))
    writer = await _opened_for_writing(fifo)
    queued = workers.submit(("echo", "queued"))
    os.kill(pid, signal.SIGKILL)
    for future in (held, queued):
        with pytest.raises(WorkerDied, match="died"):
            await future
    os.close(writer)
    assert await workers.submit(("echo", "next")) == "next"
    assert workers.started == 2 and pid not in workers.pids()


async def test_a_worker_found_gone_as_a_request_is_written_is_replaced_and_the_request_served(
    workers: WorkerProcesses,
) -> None:
    (pid,) = workers.pids()
    os.kill(pid, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, its pipe closed; the loop has not read that yet
    future = workers.submit(("echo", "served"))  # the write fails (EPIPE): a new worker takes it
    assert await future == "served"
    assert workers.started == 2 and pid not in workers.pids()


async def test_a_worker_that_cannot_set_up_fails_start() -> None:
    w = WorkerProcesses(1, worker_jobs.perform, worker_jobs.broken)
    try:
        with pytest.raises(WorkerDied):
            await w.start()
    finally:
        await w.close()


async def test_an_answer_read_together_with_the_end_of_the_pipe_is_delivered() -> None:
    """The worker answers, exits, and only then does the loop read: the answer fills one read
    exactly, and the end of the file comes in the same callback. The answer is the answer."""
    w = WorkerProcesses(1, worker_jobs.perform, worker_jobs.ready)
    await w.start()
    (worker,) = w._workers
    (pid,) = w.pids()
    room = fcntl.fcntl(worker._inbox_fd, getattr(fcntl, "F_GETPIPE_SZ", 1032))
    if room != workers_module._READ_SIZE:
        await w.close()
        pytest.skip(f"the answer pipe holds {room} bytes here, not one read's worth")
    size = workers_module._READ_SIZE
    while len(workers_module._frame((True, b"x" * size))) > workers_module._READ_SIZE:
        size -= 1  # the frame's header and the pickle's opcodes
    assert len(workers_module._frame((True, b"x" * size))) == workers_module._READ_SIZE
    answer = w.submit(("bytes", size))
    closing = asyncio.ensure_future(w.close())  # the request pipe closes: the worker exits after
    await asyncio.sleep(0)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # the loop, blocked here, has read nothing
    assert await answer == b"x" * size
    await closing
