"""The embed scheduler's queue depth is exact under every interleaving of its events.

A hypothesis state machine drives a real `EmbedScheduler` against a provider whose calls are
futures the test resolves by hand. Its steps are the events that touch the queue, in any order:
callers arriving (unary and stream admission, repeats that join an item in flight, two groups of
which text packs up to 3 inputs a call), callers cancelled, time moving past deadlines and batch
waits, single turns of the event loop (so a cut, a call task's first step and a caller's leaving
can fall in any order), provider calls answered, throttled, failed or refusing an input (which
splits the batch). After every step: `queued` equals the items actually waiting (in a group
queue, not answered or dropped, not given to the provider), it is never negative, and the
`onespace_queue_depth` gauge shows it. At the end the scheduler is stopped with calls still open
and no grace period: `stop()` returns, every caller is answered without time passing, and no
limiter permit is left out.

Deterministic: the loop runs on a virtual clock that only the `advance` step moves, and loop
turns are explicit (one turn runs what is ready; its selector never sleeps, and only the final
clean-up of a failed example lets it jump to the next timer instead).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from onespace.config import Settings
from onespace.content import Content, EmbeddingType, Purpose
from onespace.engine import Admission, EmbedScheduler
from onespace.engine.scheduler import EmbedOutcome
from onespace.errors import Internal, InvalidArgument, OnespaceError, ResourceExhausted
from onespace.metrics import Metrics
from onespace.models import LOCAL_MODEL, Modality, ModelLimits, ModelSpec
from onespace.providers.base import EmbedInput, Provider, ProviderEmbedding, ProviderResult

TEXT_BATCH = 3


class _JumpSelector(selectors.DefaultSelector):
    """Never sleeps: a wait for the next timer moves the virtual clock to it instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("deadlock: nothing is ready and no timer is set")
        self.now += timeout
        result: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        return result


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = _JumpSelector()
        super().__init__(self.clock)

    def time(self) -> float:
        return self.clock.now


@dataclass(eq=False)
class _Call:
    inputs: list[EmbedInput]
    future: asyncio.Future[list[ProviderResult]]


class HandProvider(Provider):
    """Every call waits on a future the test resolves; it records what it was given."""

    name = "hand"

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self.given: set[int] = set()  # ids of the EmbedInputs sent (the test keeps them alive)

    def models(self) -> Sequence[ModelSpec]:
        limits = ModelLimits(max_batch=TEXT_BATCH)
        return (ModelSpec(LOCAL_MODEL.id, LOCAL_MODEL.modalities, LOCAL_MODEL.dimensions, 256, limits),)

    async def embed(
        self,
        inputs: Sequence[EmbedInput],
        *,
        deadline: float | None = None,
        interactive: bool = False,
    ) -> list[ProviderResult]:
        call = _Call(list(inputs), asyncio.get_running_loop().create_future())
        self.calls.append(call)
        self.given.update(id(i) for i in inputs)
        return await call.future

    def open(self) -> list[_Call]:
        return [c for c in self.calls if not c.future.done()]


def _result(item: EmbedInput) -> ProviderResult:
    vector = np.full(item.dimension, item.dimension**-0.5, dtype=np.float32)
    return ProviderResult((ProviderEmbedding(vector, EmbeddingType.TEXT),))


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = _VirtualLoop()
        self.provider = HandProvider()
        self.metrics = Metrics()
        self.inputs: list[EmbedInput] = []
        self.callers: list[asyncio.Task[EmbedOutcome]] = []
        self.cancelled: set[asyncio.Task[EmbedOutcome]] = set()
        config = Settings().replace(
            queue_capacity=4,
            concurrency_initial=2,
            concurrency_min=1,
            concurrency_max=2,
            max_batch_wait_ms=2.0,
            cache_bytes=0,
        )
        self.scheduler = EmbedScheduler(self.provider, config, self.metrics, clock=self.loop.time)
        self.loop.run_until_complete(self.scheduler.start())

    def _turn(self) -> None:
        """One turn of the event loop: what is ready runs, the clock stands still."""
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()

    def _live(self) -> list[asyncio.Task[EmbedOutcome]]:
        return [t for t in self.callers if not t.done()]

    # --- steps ---------------------------------------------------------------------------------
    @rule(
        which=st.integers(0, 4),
        image=st.booleans(),
        stream=st.booleans(),
        life=st.sampled_from([0.001, 0.003, 0.01, 1.0]),
    )
    def arrive(self, which: int, image: bool, stream: bool, life: float) -> None:
        content = (
            Content(Modality.IMAGE, data=bytes([which]), format="png")
            if image
            else Content(Modality.TEXT, text=f"text {which}")
        )
        item = EmbedInput(content, LOCAL_MODEL.id, 256, Purpose.GENERIC_INDEX)
        self.inputs.append(item)
        admission = Admission.WAIT if stream else Admission.FAIL_FAST
        embed = self.scheduler.embed(item, deadline=self.loop.time() + life, admission=admission)
        self.callers.append(self.loop.create_task(embed))

    @precondition(lambda self: any(not t.done() for t in self.callers))
    @rule(pick=st.integers(0, 1 << 16))
    def cancel(self, pick: int) -> None:
        live = self._live()
        task = live[pick % len(live)]
        task.cancel()
        self.cancelled.add(task)

    @rule(seconds=st.sampled_from([0.0005, 0.001, 0.002, 0.005, 0.5]))
    def advance(self, seconds: float) -> None:
        self.loop.clock.now += seconds

    @rule(turns=st.integers(1, 4))
    def turn(self, turns: int) -> None:
        for _ in range(turns):
            self._turn()

    @precondition(lambda self: bool(self.provider.open()))
    @rule(pick=st.integers(0, 1 << 16))
    def answer(self, pick: int) -> None:
        calls = self.provider.open()
        call = calls[pick % len(calls)]
        call.future.set_result([_result(i) for i in call.inputs])

    @precondition(lambda self: bool(self.provider.open()))
    @rule(pick=st.integers(0, 1 << 16), kind=st.sampled_from(["throttled", "failed", "refused"]))
    def fail(self, pick: int, kind: str) -> None:
        calls = self.provider.open()
        call = calls[pick % len(calls)]
        error: OnespaceError = {
            "throttled": ResourceExhausted("throttled", retry_after_seconds=0.01),
            "failed": Internal("model error"),
            "refused": InvalidArgument("content.text", "refused by the hand provider"),
        }[kind]
        call.future.set_exception(error)

    # --- after every step ----------------------------------------------------------------------
    @invariant()
    def queue_depth_is_exact(self) -> None:
        waiting = {
            id(p)
            for queue in self.scheduler._groups.values()
            for p in queue
            if not p.future.done() and id(p.input) not in self.provider.given
        }
        queued = self.scheduler.queued
        assert queued >= 0, f"queue depth {queued}"
        assert queued == len(waiting), f"queue depth {queued}, items waiting {len(waiting)}"
        assert self.metrics.registry.get_sample_value("onespace_queue_depth") == queued

    @invariant()
    def permits_are_held_only_by_calls(self) -> None:
        # every call task holds one; the dispatcher may hold one while it cuts a batch
        assert self.scheduler.limiter.in_flight <= len(self.scheduler._calls) + 1

    def teardown(self) -> None:
        try:
            # no grace: calls still open are cut off; loop turns only, no time passes, so every
            # caller must be answered by the scheduler itself (not by its own deadline)
            stopping = self.loop.create_task(self.scheduler.stop(0.0))
            for _ in range(100):
                self._turn()
            assert stopping.done(), "stop() did not return"
            stopping.result()
            stuck = self._live()
            assert not stuck, f"{len(stuck)} callers left waiting after stop"
            for task in self.callers:
                if task.cancelled():
                    assert task in self.cancelled
                else:
                    error = task.exception()
                    assert error is None or isinstance(error, OnespaceError), repr(error)
            assert self.scheduler.queued == 0
            assert self.metrics.registry.get_sample_value("onespace_queue_depth") == 0
            assert self.scheduler.limiter.in_flight == 0
        finally:
            for task in self._live():
                task.cancel()
            if self.callers:
                self.loop.run_until_complete(asyncio.wait(self.callers))
            self.loop.close()


QueueMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None, database=None
)
TestQueueDepth = QueueMachine.TestCase
