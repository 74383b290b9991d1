"""`LocalProvider`: the embedded default provider, one worker-thread hop per batch.

Decoding and featurising are CPU work, so they run on the provider's own threads, never on the
event loop, one task per *batch* (`embed_outcomes`): the per-input Python work (hashing text
n-grams, decoding media) and then one batched projection per feature space, whose numpy calls
release the GIL (Pillow, libsndfile and FFmpeg release it while decoding too).

Calls are coalesced: at most `workers` batches run at once, and calls that arrive meanwhile wait
in one queue and go together in the next batch (up to `MAX_BATCH` inputs; a larger call runs
alone). The engine keeps many calls in flight (its concurrency limit), each as small as what it
had queued; one thread task each, they would pay the hop and the per-batch numpy calls per
handful of texts and fight each other for the GIL. A coalesced batch still answers each call
alone: an input that fails fails only its own call. An idle provider starts a call at once.

The provider declares the model's `max_batch` (one input per call) to the engine: coalescing
gives it the batches, and a failed media input then fails no other caller.

The provider owns its decoding bounds (`Decoding`): the media limits it is given, and one decode
budget that every decode on its workers shares.
"""

from __future__ import annotations

import asyncio
import functools
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

__all__ = ["MAX_BATCH", "LocalProvider", "default_workers"]

# Inputs coalesced into one batch: enough that the per-batch costs (a thread hop, a few dozen
# numpy calls) vanish per input, few enough that a batch stays short (~80 ms of CPU for 256 short
# texts at 1024-d).
MAX_BATCH = 256

_Outcome = list[ProviderResult] | OnespaceError


@dataclass(eq=False, slots=True)
class _Call:
    jobs: list[Job]
    deadline: float | None
    future: asyncio.Future[list[ProviderResult]]


def _run(calls: list[list[Job]], decoding: Decoding) -> list[_Outcome]:
    """One batch, on a worker thread: each call's results, or the first failure among its inputs."""
    outcomes = embed_outcomes([job for jobs in calls for job in jobs], decoding)
    out: list[_Outcome] = []
    start = 0
    for jobs in calls:
        mine = outcomes[start : start + len(jobs)]
        start += len(jobs)
        failure = next((o for o in mine if isinstance(o, OnespaceError)), None)
        out.append(failure if failure is not None else [o for o in mine if isinstance(o, ProviderResult)])
    return out


def default_workers() -> int:
    """One fewer than the cores, at least one: the event loop keeps a core.

    Featurising text is mostly Python (n-gram hashing) under the GIL, so a worker per core makes
    the workers and the event loop take turns on the GIL, and every batch smaller. Side by side on
    the 2-core VM, one worker carried 12-13% more texts per second than two through unary Embed
    and through Ingest, at 15% less gateway CPU per text, in batches of ~22-28 texts instead of ~7
    (docs/benchmarks.md, local provider). Media decoders release the GIL, so more cores still
    get more workers."""
    return max(1, (os.cpu_count() or 1) - 1)


class LocalProvider(Provider):
    """Deterministic, offline embeddings for every modality (see `embed_outcomes`)."""

    name = "local"

    def __init__(self, workers: int = 0, *, limits: MediaLimits | None = None) -> None:
        """`workers` threads (0: `default_workers()`); `limits` bound each decode (None: the
        defaults), and `limits.decode_budget_bytes` all of this provider's decodes at once."""
        self._workers = workers or default_workers()
        self._decoding = Decoding.of(limits)
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="onespace-local")
        self._waiting: deque[_Call] = deque()
        self._running = 0
        self._closed = False

    @property
    def workers(self) -> int:
        return self._workers

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

    def _start_batches(self) -> None:
        """Hand waiting calls to free workers, as many calls per batch as fit (event loop only)."""
        while self._running < self._workers and self._waiting:
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
            try:
                done = asyncio.get_running_loop().run_in_executor(
                    self._executor, _run, [call.jobs for call in batch], self._decoding
                )
            except RuntimeError:  # the executor was shut down by a concurrent close()
                self._fail(batch, lambda: Unavailable("the local provider is closed"))
                return
            self._running += 1
            done.add_done_callback(functools.partial(self._finished, batch))

    def _finished(self, batch: list[_Call], done: asyncio.Future[list[_Outcome]]) -> None:
        self._running -= 1
        if done.cancelled():  # only when the loop itself is going away
            self._fail(batch, lambda: Unavailable("the local provider is closed"))
            return
        try:
            outcomes = done.result()
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
        """Build the projections before the first request, off the event loop."""
        if self._closed:
            raise Unavailable("the local provider is closed")
        await asyncio.get_running_loop().run_in_executor(self._executor, warm_up)

    async def close(self) -> None:
        """Stop accepting work, fail calls not started, wait for running work (off the event loop)."""
        if self._closed:
            return
        self._closed = True
        waiting = list(self._waiting)
        self._waiting.clear()
        self._fail(waiting, lambda: Unavailable("the local provider is closed"))
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
