"""`WorkerProcesses`: the local provider's worker processes, each fed over a pipe by the event loop.

Why not `concurrent.futures.ProcessPoolExecutor`: there a batch crosses two helper threads of the
gateway's process each way (one that pickles it and writes it to the worker, one that reads the
answer and wakes the event loop), and every crossing waits for the GIL that the event loop and
the storage threads hold most of the time. Profiled under an ingest of texts, those two threads
took ~23% of the gateway's GIL time. Here the event loop writes a batch to the worker's pipe
itself and reads the answer when its selector finds the pipe readable: no helper thread, no GIL
hand-off, one pickle each way.

A worker answers its batches in the order it got them, so its pending futures are a FIFO. A
worker that dies (killed, out of memory) closes its end of the pipe; the event loop reads the end
of the file, fails the batches that worker held (`WorkerDied`), and starts a new process in its
place. Work once handed over runs to the end: it cannot be interrupted, only its result dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import multiprocessing
import os
import pickle
import signal
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["WorkerDied", "WorkerProcesses"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<Q")  # each message: its length, then its pickle
_READ_SIZE = 1 << 20
_PIPE_SIZE = 1 << 20  # a batch's answer (~4 KB per 1024-d vector) fits in one write
_PR_SET_PDEATHSIG = 1  # prctl(2)
_READY = "ready"


class WorkerDied(Exception):
    """The worker process holding the work ended before answering it."""


def _frame(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, size: int) -> bytes | None:
    """`size` bytes from blocking `fd`, or None at the end of the file."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, _READ_SIZE))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _widen(fd: int) -> None:
    """Let the pipe hold a whole answer, so the worker writes it in one call (Linux; else no-op)."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is not None:
        with contextlib.suppress(OSError):  # above the system's pipe-max-size: keep the default
            fcntl.fcntl(fd, setsize, _PIPE_SIZE)


def _worker_main(
    requests: Connection,
    answers: Connection,
    parent: int,
    work: Callable[[Any], Any],
    initializer: Callable[[], None],
) -> None:
    """A worker process: set up (`_start`), say it is ready, then answer each request with
    `(True, work(request))` or `(False, the exception it raised)` until the gateway closes the
    pipe."""
    _start(parent)
    initializer()
    inbox, outbox = requests.fileno(), answers.fileno()
    _write_all(outbox, _frame(_READY))
    while True:
        header = _read_exactly(inbox, _HEADER.size)
        if header is None:
            return
        payload = _read_exactly(inbox, _HEADER.unpack(header)[0])
        if payload is None:
            return
        answer: tuple[bool, object]
        try:
            answer = (True, work(pickle.loads(payload)))
        except Exception as exc:
            answer = (False, exc)
        try:
            data = _frame(answer)
        except Exception as exc:  # an answer or an exception that does not pickle
            data = _frame((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        _write_all(outbox, data)


def _start(parent: int) -> None:
    """A worker lives no longer than the gateway that started it, and leaves SIGINT to it.

    Without the first, a SIGKILLed gateway could leave its worker running, holding the gateway's
    stdout and stderr open. Linux's parent-death signal ends it at once; elsewhere a thread
    checks every second. A Ctrl-C reaches the whole process group: the gateway drains and then
    closes its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not _die_with_parent():
        threading.Thread(target=_watch_parent, args=(parent,), name="onespace-parent", daemon=True).start()
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(0)


def _die_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent ends; False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


class _Worker:
    """One worker process and its two pipes, driven by the event loop (`loop`)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        work: Callable[[Any], Any],
        initializer: Callable[[], None],
        on_exit: Callable[[_Worker], None],
    ) -> None:
        # spawn: a fork would copy the gRPC server's threads and locks into the child
        context = multiprocessing.get_context("spawn")
        requests_in, requests_out = context.Pipe(duplex=False)
        answers_in, answers_out = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_worker_main,
            args=(requests_in, answers_out, os.getpid(), work, initializer),
            name="onespace-local",
            daemon=True,
        )
        try:
            self.process.start()
        except BaseException:
            requests_out.close()
            answers_in.close()
            raise
        finally:
            requests_in.close()  # the child's ends: closed here, so its death reads as an end of file
            answers_out.close()
        self._requests, self._answers = requests_out, answers_in
        self._outbox_fd, self._inbox_fd = requests_out.fileno(), answers_in.fileno()
        _widen(self._inbox_fd)
        os.set_blocking(self._outbox_fd, False)
        os.set_blocking(self._inbox_fd, False)
        self._loop, self._on_exit = loop, on_exit
        self.ready: asyncio.Future[None] = loop.create_future()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pending: deque[asyncio.Future[Any]] = deque()  # answers owed, in order
        self._inbox = bytearray()
        self._outbox = bytearray()  # what the request pipe could not take yet
        self._closing = False
        self._writing = False  # the loop watches the request pipe for room
        self._ended = False
        loop.add_reader(self._inbox_fd, self._read)

    @property
    def alive(self) -> bool:
        return not self._ended

    def submit(self, request: object) -> asyncio.Future[Any]:
        """Send `request`; its future gets the answer, or `WorkerDied`. Raises `WorkerDied` at
        once, the request not taken, if the process is found gone."""
        if not self.alive or self._closing:
            raise WorkerDied("the worker process has ended")
        data = _frame(request)
        if not self._outbox:
            try:
                sent = os.write(self._outbox_fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:  # EPIPE: it died before reading this
                self._exit()
                raise WorkerDied("the worker process has ended") from exc
            data = data[sent:]
            if data:
                self._loop.add_writer(self._outbox_fd, self._write)
                self._writing = True
        self._outbox += data
        future: asyncio.Future[Any] = self._loop.create_future()
        self.pending.append(future)
        return future

    def close(self) -> None:
        """No more requests: the worker answers what it holds, then reads the end of the file."""
        self._closing = True
        if not self._outbox and self.alive:
            self._requests.close()

    def _write(self) -> None:
        try:
            sent = os.write(self._outbox_fd, self._outbox)
        except BlockingIOError:
            return
        except OSError:
            self._exit()
            return
        del self._outbox[:sent]
        if not self._outbox:
            self._loop.remove_writer(self._outbox_fd)
            self._writing = False
            if self._closing:
                self._requests.close()

    def _read(self) -> None:
        ended = False
        try:
            while True:
                chunk = os.read(self._inbox_fd, _READ_SIZE)
                if not chunk:
                    ended = True
                    break
                self._inbox += chunk
                if len(chunk) < _READ_SIZE:
                    break
        except BlockingIOError:
            pass
        except OSError:
            ended = True
        self._deliver()  # answers read before the end of the file are answers
        if ended:
            self._exit()

    def _deliver(self) -> None:
        start = 0
        while len(self._inbox) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._inbox, start)
            end = start + _HEADER.size + size
            if len(self._inbox) < end:
                break
            payload, start = self._inbox[start + _HEADER.size : end], end
            if not self.ready.done():
                self.ready.set_result(None)
                continue
            future = self.pending.popleft()
            try:
                ok, value = pickle.loads(payload)
            except Exception as exc:  # e.g. an exception type that cannot be rebuilt here
                ok, value = False, RuntimeError(f"the worker's answer could not be read: {exc!r}")
            if future.done():  # its caller went away
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        del self._inbox[:start]

    def _exit(self) -> None:
        """The worker has ended (or its pipe broke): fail what it owed and let it go."""
        if self._ended:
            return
        self._ended = True
        self._loop.remove_reader(self._inbox_fd)
        if self._writing:  # else the descriptor may be closed, its number another file's now
            self._loop.remove_writer(self._outbox_fd)
            self._writing = False
        self._requests.close()
        self._answers.close()
        self._outbox.clear()
        if self.process.is_alive():  # a broken pipe, not a death: make it one
            self.process.kill()
        died = WorkerDied("the worker process died")
        if not self.ready.done():
            self.ready.set_exception(died)
            self.ready.exception()  # read: nobody may be waiting for it
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(died)
        self._on_exit(self)
        # reaped off the loop: at the end of its pipe the process may not be waitable yet
        reaped = self._loop.run_in_executor(None, self.process.join)
        reaped.add_done_callback(lambda _: self.exited.set_result(None))


class WorkerProcesses:
    """`count` worker processes that run `work(request)`, after `initializer()` in each.

    Every process is started by `start()` (or by the first `submit`), and replaced when it dies
    unless closing. `work`, `initializer` and every request and answer must pickle."""

    def __init__(self, count: int, work: Callable[[Any], Any], initializer: Callable[[], None]) -> None:
        self._count = count
        self._work, self._initializer = work, initializer
        self._workers: list[_Worker] = []
        self._closed = False
        self.started = 0  # processes started so far (each death costs one more)

    @property
    def count(self) -> int:
        return self._count

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    async def start(self) -> None:
        """Start every process and wait until each has set up; raises `WorkerDied` if one ended
        first (e.g. it could not import the gateway's main module)."""
        self._fill()
        await asyncio.gather(*(worker.ready for worker in self._workers))

    def least_busy(self) -> int:
        """How many batches the least busy process holds (starting any missing ones)."""
        self._fill()
        return min(len(worker.pending) for worker in self._workers)

    def submit(self, request: object) -> asyncio.Future[Any]:
        """Hand `request` to the least busy process (to a new one if that one is found gone)."""
        for _ in range(2):
            self._fill()
            worker = min(self._workers, key=lambda w: len(w.pending))
            try:
                return worker.submit(request)
            except WorkerDied:
                continue
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_exception(WorkerDied("the worker process died before taking the batch"))
        return future

    async def close(self) -> None:
        """Let each process answer what it holds, then wait for all of them to exit."""
        self._closed = True
        workers = list(self._workers)
        for worker in workers:
            worker.close()
        await asyncio.gather(*(worker.exited for worker in workers))

    def _fill(self) -> None:
        if self._closed:
            raise RuntimeError("the worker processes are closed")
        loop = asyncio.get_running_loop()
        while len(self._workers) < self._count:
            self._workers.append(_Worker(loop, self._work, self._initializer, self._exited))
            self.started += 1

    def _exited(self, worker: _Worker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
            if not self._closed:
                log.warning("a local provider worker process died; it is replaced at the next batch")
