"""`LocalProvider`: the embedded default provider, one worker hop per batch.

Decoding and featurising are CPU work, so they run on the provider's workers, never on the event
loop, one task per *batch* (`embed_outcomes`): the per-input Python work (hashing text n-grams,
decoding media) and then one batched projection per feature space.

Workers are processes (`processes=True`, the server's default) or threads. Hashing n-grams is
Python and holds the GIL, so on a thread the featurizer and the event loop take turns on one
interpreter. A worker process has its own: the gateway's loop keeps its GIL, and a batch crosses
in one pickled message each way (texts out; ~4 KB per 1024-d vector back). On 2 cores, unary
`Embed` of one text from 64 callers carried 30-38% more texts per second on a worker process
than on a thread (docs/benchmarks.md, local provider); a stream of texts into a collection, bound
by its window and by storage, gained nothing. Threads suit tests and library use (no process to
start); numpy, Pillow, libsndfile and FFmpeg release the GIL, so media gain less from processes.
Where a process pool cannot be made or started, the provider warns and uses threads.

Calls are coalesced: at most `workers` batches run at once, and calls that arrive meanwhile wait
in one queue and go together in the next batch (up to `MAX_BATCH` inputs; a larger call runs
alone). The engine keeps many calls in flight (its concurrency limit), each as small as what it
had queued; one thread task each, they would pay the hop and the per-batch numpy calls per
handful of texts and fight each other for the GIL. A coalesced batch still answers each call
alone: an input that fails fails only its own call. An idle provider starts a call at once.

On worker processes, a batch's trip to a worker and its results' trip back (the pool's helper
threads, pickling, a pipe each way) took ~1.5 ms each on 2 cores under an ingest, and the worker
idled through both: ~23% of its cycle. So while every worker is busy and at least
`PREFETCH_INPUTS` inputs wait, one more batch is handed over to wait in the pool's queue, and a
worker starts it as soon as it finishes the one before; with fewer waiting they keep gathering
into a larger batch. Side by side (3 rounds of 3 runs, 4,000 texts each): one ingest stream
1,905-2,061 texts/s against 1,695-2,050, two streams 2,363-2,670 against 2,085-2,380, unary
`Embed` from 64 callers 1,917-2,232 against 1,726-1,982. Queued for any number waiting (one
more batch always), the batches halved and nothing was gained; on threads there is no trip to
hide, and it made no difference.

The provider declares the model's `max_batch` (one input per call) to the engine: coalescing
gives it the batches, and a failed media input then fails no other caller.

The provider owns its decoding bounds: the media limits it is given, and one decode budget that
every decode on its workers shares (threads: one `Decoding`; processes: each of the `workers`
processes decodes one input at a time within `decode_budget_bytes / workers`, so all of them
together stay within the budget). A worker process that dies (killed, out of memory) fails the
calls of its batch, and of one queued behind it, UNAVAILABLE, and the next batch starts a new
pool.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import dataclasses
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from onespace.content import MediaLimits
from onespace.errors import DeadlineExceeded, Internal, OnespaceError, Unavailable
from onespace.models import LOCAL_MODEL, ModelSpec
from onespace.providers.base import EmbedInput, Provider, ProviderResult
from onespace.providers.local.decoding import Decoding
from onespace.providers.local.embed import Job, embed_outcomes, warm_up

__all__ = ["MAX_BATCH", "PREFETCH_INPUTS", "LocalProvider", "default_workers"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # prctl(2)

# Inputs coalesced into one batch: enough that the per-batch costs (a thread hop, a few dozen
# numpy calls) vanish per input, few enough that a batch stays short (~80 ms of CPU for 256 short
# texts at 1024-d).
MAX_BATCH = 256
# Inputs waiting that make it worth queueing one more batch behind each busy worker process.
PREFETCH_INPUTS = 24

_Outcome = list[ProviderResult] | OnespaceError


@dataclass(eq=False, slots=True)
class _Call:
    jobs: list[Job]
    deadline: float | None
    future: asyncio.Future[list[ProviderResult]]


def _run(calls: list[list[Job]], decoding: Decoding) -> list[_Outcome]:
    """One batch, on a worker: each call's results, or the first failure among its inputs."""
    outcomes = embed_outcomes([job for jobs in calls for job in jobs], decoding)
    out: list[_Outcome] = []
    start = 0
    for jobs in calls:
        mine = outcomes[start : start + len(jobs)]
        start += len(jobs)
        failure = next((o for o in mine if isinstance(o, OnespaceError)), None)
        out.append(failure if failure is not None else [o for o in mine if isinstance(o, ProviderResult)])
    return out


def _worker_start(parent: int) -> None:
    """A worker process's start: it lives no longer than the gateway that started it, leaves
    SIGINT to it, and builds the projections before its first batch.

    Without the first, a SIGKILLed gateway left its worker running (it holds both ends of its call
    queue's pipe, so it never reads an end of file), and with it the gateway's stdout and stderr
    open. Linux's parent-death signal ends it at once; elsewhere a thread checks every second.
    A Ctrl-C reaches the whole process group: the gateway drains and then shuts the pool down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not _die_with_parent():
        threading.Thread(target=_watch_parent, args=(parent,), name="onespace-parent", daemon=True).start()
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(0)
    warm_up()


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


def _run_in_process(calls: list[list[Job]], limits: MediaLimits) -> list[_Outcome]:
    """`_run` in a worker process, within its share of the decode budget (`limits`). The process
    runs one batch at a time and decodes one input at a time, so a budget made per batch bounds
    its decodes as one kept for the process's life would."""
    return _run(calls, Decoding.of(limits))


def default_workers() -> int:
    """One fewer than the cores, at least one: the event loop keeps a core.

    Featurising text is mostly Python (n-gram hashing) under the GIL, so a worker per core makes
    the workers and the event loop take turns on the GIL, and every batch smaller. Side by side on
    the 2-core VM, one worker carried 12-13% more texts per second than two through unary Embed
    and through Ingest, at 15% less gateway CPU per text, in batches of ~22-28 texts instead of ~7
    (docs/benchmarks.md, local provider). Worker processes do not share the GIL, but they share
    the cores with the event loop: on the same VM two processes carried 1,319-1,627 texts/s
    through unary Embed where one carried 1,506-1,788, and 1,536-1,612 through Ingest where one
    carried 1,605-1,758 (3 runs each, twice), at more CPU per text. Media decoders release the
    GIL, so more cores still get more workers."""
    return max(1, (os.cpu_count() or 1) - 1)


class LocalProvider(Provider):
    """Deterministic, offline embeddings for every modality (see `embed_outcomes`)."""

    name = "local"

    def __init__(
        self, workers: int = 0, *, processes: bool = False, limits: MediaLimits | None = None
    ) -> None:
        """`workers` threads, or processes when `processes` (0: `default_workers()`); `limits`
        bound each decode (None: the defaults), and `limits.decode_budget_bytes` all of this
        provider's decodes at once."""
        self._workers = workers or default_workers()
        self._processes = processes
        self._decoding = Decoding.of(limits)
        # each worker process's share of the decode budget (it decodes one input at a time)
        share = max(1, self._decoding.limits.decode_budget_bytes // self._workers)
        self._process_limits = dataclasses.replace(self._decoding.limits, decode_budget_bytes=share)
        try:
            self._executor = self._new_executor()
        except (OSError, ImportError, NotImplementedError) as exc:  # no working sem_open (no /dev/shm)
            self._use_threads(exc)
        self.pools_started = 1  # executors made so far (a dead worker process costs one more)
        self.batches = 0  # batches handed to the workers (calls coalesced while others ran)
        self._waiting: deque[_Call] = deque()
        self._running = 0
        self._closed = False

    def _use_threads(self, why: BaseException) -> None:
        """Worker processes cannot start here: say why, and featurise on threads instead."""
        log.warning(
            "the local provider could not start its worker processes (%s: %s); featurising on "
            "threads of this process instead (--local-executor thread)",
            type(why).__name__,
            (str(why).strip().splitlines() or [""])[0],
        )
        self._processes = False
        self._executor = self._new_executor()

    def _new_executor(self) -> Executor:
        if self._processes:
            # spawn: a fork would copy the gRPC server's threads and locks into the child
            context = multiprocessing.get_context("spawn")
            # processes start from the event loop's thread (submit), so the parent-death signal,
            # tied to the thread that forked, comes only when the gateway's process ends
            return ProcessPoolExecutor(
                self._workers, mp_context=context, initializer=_worker_start, initargs=(os.getpid(),)
            )
        return ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="onespace-local")

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def processes(self) -> bool:
        """Whether the workers are processes (else threads of the gateway's process)."""
        return self._processes

    @property
    def decoding(self) -> Decoding:
        """The media limits and the decode budget of every decode this provider runs."""
        return self._decoding

    def models(self) -> Sequence[ModelSpec]:
        return (LOCAL_MODEL,)

    async def embed(
        self, inputs: Sequence[EmbedInput], *, deadline: float | None = None
    ) -> list[ProviderResult]:
        """Embed every input; results in input order.

        If any input fails, the call fails with the first failure in input order (the engine
        fails every caller in a failed call). A deadline already past when the call would start
        refuses it; work once started runs to the end (it cannot be interrupted, and it is short).
        """
        if self._closed:
            raise Unavailable("the local provider is closed")
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded("the deadline passed before the local provider started")
        jobs = [(item.content, item.dimension, self.model(item.model)) for item in inputs]
        call = _Call(jobs, deadline, asyncio.get_running_loop().create_future())
        self._waiting.append(call)
        self._start_batches()
        return await call.future

    def _may_start(self) -> bool:
        """Whether a waiting batch may be handed over now: a worker is free, or (processes) each
        has one and at least `PREFETCH_INPUTS` inputs wait, so one more queues behind each."""
        if self._running < self._workers:
            return True
        if not self._processes or self._running >= 2 * self._workers:
            return False
        waiting = 0
        for call in self._waiting:
            waiting += len(call.jobs)
            if waiting >= PREFETCH_INPUTS:
                return True
        return False

    def _start_batches(self) -> None:
        """Hand waiting calls to workers (`_may_start`), as many calls per batch as fit (event
        loop only)."""
        while self._waiting and self._may_start():
            batch: list[_Call] = []
            size = 0
            now = time.monotonic()
            while self._waiting and (not batch or size + len(self._waiting[0].jobs) <= MAX_BATCH):
                call = self._waiting.popleft()
                if call.future.done():  # its caller stopped waiting
                    continue
                if call.deadline is not None and now >= call.deadline:
                    call.future.set_exception(
                        DeadlineExceeded("the deadline passed before the local provider started")
                    )
                    continue
                batch.append(call)
                size += len(call.jobs)
            if not batch:
                return
            jobs = [call.jobs for call in batch]
            loop, executor = asyncio.get_running_loop(), self._executor
            try:
                if self._processes:
                    done = loop.run_in_executor(executor, _run_in_process, jobs, self._process_limits)
                else:
                    done = loop.run_in_executor(executor, _run, jobs, self._decoding)
            except BrokenProcessPool:  # a worker died before this batch: it goes to a new pool
                self._waiting.extendleft(reversed(batch))
                self._replace_executor(executor)
                continue
            except RuntimeError:  # the executor was shut down by a concurrent close()
                self._fail(batch, lambda: Unavailable("the local provider is closed"))
                return
            self._running += 1
            self.batches += 1
            done.add_done_callback(functools.partial(self._finished, batch, executor))

    def _finished(self, batch: list[_Call], executor: Executor, done: asyncio.Future[list[_Outcome]]) -> None:
        self._running -= 1
        if done.cancelled():  # only when the loop itself is going away
            self._fail(batch, lambda: Unavailable("the local provider is closed"))
            return
        try:
            outcomes = done.result()
        except BrokenProcessPool:  # a worker process died (killed, out of memory) during the batch
            self._fail(batch, _worker_died)
            if not self._closed:
                self._replace_executor(executor)
        except OnespaceError as exc:  # not one input's failure: every call of the batch gets it
            failure = exc
            self._fail(batch, lambda: failure)
        except Exception as exc:  # a bug
            reason = f"local provider failed: {type(exc).__name__}: {exc}"
            self._fail(batch, lambda: Internal(reason), exc)
        else:
            for call, outcome in zip(batch, outcomes, strict=True):
                if call.future.done():
                    continue
                if isinstance(outcome, OnespaceError):
                    call.future.set_exception(outcome)
                else:
                    call.future.set_result(outcome)
        if not self._closed:
            self._start_batches()

    def _replace_executor(self, broken: Executor) -> None:
        """A new pool for the next batches, once `broken` broke (its other batches fail too)."""
        if broken is not self._executor:
            return  # already replaced after another batch of the same pool failed
        log.warning("a local provider worker process died; starting a new pool")
        self._executor.shutdown(wait=False)
        self._executor = self._new_executor()
        self.pools_started += 1

    @staticmethod
    def _fail(
        calls: Sequence[_Call], error: Callable[[], OnespaceError], cause: BaseException | None = None
    ) -> None:
        for call in calls:
            if not call.future.done():
                exc = error()
                if cause is not None:
                    exc.__cause__ = cause
                call.future.set_exception(exc)

    async def start(self) -> None:
        """Build the projections before the first request, off the event loop (and start every
        worker process, each building its own: one task per worker starts them all)."""
        if self._closed:
            raise Unavailable("the local provider is closed")
        loop = asyncio.get_running_loop()
        starting = self._workers if self._processes else 1
        try:
            await asyncio.gather(*(loop.run_in_executor(self._executor, warm_up) for _ in range(starting)))
        except (RuntimeError, OSError) as exc:
            if not self._processes:
                raise
            # e.g. a script without `if __name__ == "__main__":` (a spawned process imports it again)
            self._executor.shutdown(wait=False)
            self._use_threads(exc)
            await loop.run_in_executor(self._executor, warm_up)

    async def close(self) -> None:
        """Stop accepting work, fail calls not started, wait for running work (off the event loop)."""
        if self._closed:
            return
        self._closed = True
        waiting = list(self._waiting)
        self._waiting.clear()
        self._fail(waiting, lambda: Unavailable("the local provider is closed"))
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)


def _worker_died() -> OnespaceError:
    return Unavailable(
        "a local provider worker process died during the call; retry it", retry_after_seconds=0.1
    )
