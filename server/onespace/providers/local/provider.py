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
Where worker processes cannot start, the provider warns at `start()` and uses threads.

Calls are coalesced: at most `workers` batches run at once, and calls that arrive meanwhile wait
in one queue and go together in the next batch (up to `MAX_BATCH` inputs; a larger call runs
alone). The engine keeps many calls in flight (its concurrency limit), each as small as what it
had queued; one thread task each, they would pay the hop and the per-batch numpy calls per
handful of texts and fight each other for the GIL. A coalesced batch still answers each call
alone: an input that fails fails only its own call. An idle provider starts a call at once.
Calls with an interactive caller (a unary RPC) join the queue ahead of the stream items waiting,
so a bulk load's window of items queued here does not sit in front of them.

On worker processes, a batch's trip to a worker and its results' trip back (`WorkerProcesses`:
a pickle and a pipe each way, read and written by the event loop itself) leave the worker idle
between batches. So while every worker is busy and at least `PREFETCH_INPUTS` inputs wait, one
more batch is written to a busy worker's pipe, and it starts that batch as soon as it finishes
the one before; with fewer waiting they keep gathering into a larger batch. Side by side (3 runs
of 4,000 texts, twice): one ingest stream 2,205-2,416 texts/s against 1,927-2,185 without it,
unary `Embed` from 64 callers 2,203-2,525 against 2,018-2,272. Queued for any number waiting
(one more batch always), the batches halved and nothing was gained (measured with
`ProcessPoolExecutor`'s hand-off); on threads there is no trip to hide, and it made no
difference.

The provider declares the model's `max_batch` (one input per call) to the engine: coalescing
gives it the batches, and a failed media input then fails no other caller.

The provider owns its decoding bounds: the media limits it is given, and one decode budget that
every decode on its workers shares (threads: one `Decoding`; processes: each of the `workers`
processes decodes one input at a time within `decode_budget_bytes / workers`, so all of them
together stay within the budget). A worker process that dies (killed, out of memory) fails the
calls of its batch, and of one queued behind it, UNAVAILABLE, and a new process takes its place
at the next batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from onespace.content import MediaLimits
from onespace.errors import DeadlineExceeded, Internal, OnespaceError, Unavailable
from onespace.models import LOCAL_MODEL, ModelSpec
from onespace.providers.base import EmbedInput, Provider, ProviderResult
from onespace.providers.local.decoding import Decoding
from onespace.providers.local.embed import Job, embed_outcomes, warm_up
from onespace.providers.local.workers import WorkerDied, WorkerProcesses

__all__ = ["MAX_BATCH", "PREFETCH_INPUTS", "LocalProvider", "default_workers"]

log = logging.getLogger(__name__)

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
    carried 1,605-1,758 (3 runs each, twice), at more CPU per text; fed over pipes, two carried
    2,478-2,841 texts/s through two ingest streams where one carried 2,674-2,917. Media decoders
    release the GIL, so more cores still get more workers."""
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
        self._decoding = Decoding.of(limits)
        # each worker process's share of the decode budget (it decodes one input at a time)
        share = max(1, self._decoding.limits.decode_budget_bytes // self._workers)
        self._process_limits = dataclasses.replace(self._decoding.limits, decode_budget_bytes=share)
        self._threads: ThreadPoolExecutor | None = None
        self._processes: WorkerProcesses | None = None
        if processes:
            work = functools.partial(_run_in_process, limits=self._process_limits)
            self._processes = WorkerProcesses(self._workers, work, warm_up)
        else:
            self._threads = self._thread_pool()
        self.batches = 0  # batches handed to the workers (calls coalesced while others ran)
        self._waiting: deque[_Call] = deque()
        self._interactive = 0  # the first calls of `_waiting` have an interactive caller
        self._running = 0
        self._closed = False

    async def _use_threads(self, why: BaseException) -> None:
        """Worker processes cannot start here: say why, and featurise on threads instead."""
        log.warning(
            "the local provider could not start its worker processes (%s: %s); featurising on "
            "threads of this process instead (--local-executor thread)",
            type(why).__name__,
            (str(why).strip().splitlines() or [""])[0],
        )
        if self._processes is not None:
            processes, self._processes = self._processes, None
            await processes.close()
        self._threads = self._thread_pool()

    def _thread_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="onespace-local")

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def processes(self) -> bool:
        """Whether the workers are processes (else threads of the gateway's process)."""
        return self._processes is not None

    @property
    def processes_started(self) -> int:
        """Worker processes started so far (a dead one costs one more; 0 on threads)."""
        return self._processes.started if self._processes is not None else 0

    @property
    def decoding(self) -> Decoding:
        """The media limits and the decode budget of every decode this provider runs."""
        return self._decoding

    def models(self) -> Sequence[ModelSpec]:
        return (LOCAL_MODEL,)

    async def embed(
        self,
        inputs: Sequence[EmbedInput],
        *,
        deadline: float | None = None,
        interactive: bool = False,
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
        if interactive:  # ahead of the stream items waiting, behind earlier interactive calls
            self._waiting.insert(self._interactive, call)
            self._interactive += 1
        else:
            self._waiting.append(call)
        self._start_batches()
        return await call.future

    def _may_start(self) -> bool:
        """Whether a waiting batch may be handed over now: a worker is free, or (processes) each
        has one and at least `PREFETCH_INPUTS` inputs wait, so one more queues behind one."""
        if self._processes is None:
            return self._running < self._workers
        held = self._processes.least_busy()
        if held != 1:
            return held == 0
        waiting = 0
        for call in self._waiting:
            waiting += len(call.jobs)
            if waiting >= PREFETCH_INPUTS:
                return True
        return False

    def _start_batches(self) -> None:
        """Hand waiting calls to workers (`_may_start`), as many calls per batch as fit (event
        loop only)."""
        while self._waiting:
            try:
                if not self._may_start():
                    return
            except OSError as exc:  # a worker process could not be started (e.g. out of memory)
                self._refuse_waiting(f"the local provider could not start a worker process: {exc}")
                return
            batch: list[_Call] = []
            size = 0
            now = time.monotonic()
            while self._waiting and (not batch or size + len(self._waiting[0].jobs) <= MAX_BATCH):
                call = self._waiting.popleft()
                self._interactive = max(0, self._interactive - 1)
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
            if self._processes is not None:
                done = self._processes.submit(jobs)
            else:
                assert self._threads is not None
                loop = asyncio.get_running_loop()
                try:
                    done = loop.run_in_executor(self._threads, _run, jobs, self._decoding)
                except RuntimeError:  # the executor was shut down by a concurrent close()
                    self._fail(batch, lambda: Unavailable("the local provider is closed"))
                    return
            self._running += 1
            self.batches += 1
            done.add_done_callback(functools.partial(self._finished, batch))

    def _take_waiting(self) -> list[_Call]:
        waiting = list(self._waiting)
        self._waiting.clear()
        self._interactive = 0
        return waiting

    def _refuse_waiting(self, reason: str) -> None:
        waiting = self._take_waiting()
        self._fail(waiting, lambda: Unavailable(reason, retry_after_seconds=1.0))

    def _finished(self, batch: list[_Call], done: asyncio.Future[list[_Outcome]]) -> None:
        self._running -= 1
        if done.cancelled():  # only when the loop itself is going away
            self._fail(batch, lambda: Unavailable("the local provider is closed"))
            return
        try:
            outcomes = done.result()
        except WorkerDied:  # a worker process died (killed, out of memory) holding the batch
            self._fail(batch, _worker_died)
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
        """Build the projections before the first request, off the event loop: each worker
        process builds its own as it starts (all of them now), threads share one set."""
        if self._closed:
            raise Unavailable("the local provider is closed")
        if self._processes is not None:
            try:
                await self._processes.start()
                return
            except (WorkerDied, OSError) as exc:
                # e.g. a script without `if __name__ == "__main__":` (a spawned process imports
                # it again and cannot start one of its own), or no process can be made at all
                await self._use_threads(exc)
        assert self._threads is not None
        await asyncio.get_running_loop().run_in_executor(self._threads, warm_up)

    async def close(self) -> None:
        """Stop accepting work, fail calls not started, wait for running work (off the event loop)."""
        if self._closed:
            return
        self._closed = True
        waiting = self._take_waiting()
        self._fail(waiting, lambda: Unavailable("the local provider is closed"))
        if self._processes is not None:
            await self._processes.close()
        else:
            assert self._threads is not None
            await asyncio.get_running_loop().run_in_executor(None, self._threads.shutdown, True)


def _worker_died() -> OnespaceError:
    return Unavailable(
        "a local provider worker process died during the call; retry it", retry_after_seconds=0.1
    )
