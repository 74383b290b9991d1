from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from onespace.content import EmbeddingType, MediaLimits, Purpose
from onespace.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from onespace.models import LOCAL_MODEL
from onespace.providers.base import EmbedInput
from onespace.providers.local import LocalProvider, embed_content
from onespace.providers.local import provider as local_provider
from onespace.providers.local.decoding import Decoding, short_reason
from onespace.providers.local.embed import Job, warm_up
from onespace.providers.local.provider import MAX_BATCH, PREFETCH_INPUTS, default_workers
from onespace.providers.local.workers import WorkerProcesses
from tests import media
from tests.harness import until

from . import worker_jobs
from .helpers import audio, image, mixed_inputs, text

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
async def provider() -> AsyncIterator[LocalProvider]:
    p = LocalProvider(workers=2)
    await p.start()
    yield p
    await p.close()


async def test_embed_returns_results_in_input_order(provider: LocalProvider) -> None:
    inputs = mixed_inputs()
    results = await provider.embed(inputs)
    assert [[e.type for e in r.embeddings] for r in results] == [
        [EmbeddingType.TEXT],
        [EmbeddingType.IMAGE],
        [EmbeddingType.AUDIO],
        [EmbeddingType.VIDEO, EmbeddingType.AUDIO],
        [EmbeddingType.TEXT],
    ]
    for item, result in zip(inputs, results, strict=True):
        expected = embed_content(item.content, item.dimension)
        assert [e.vector.tobytes() for e in result.embeddings] == [
            e.vector.tobytes() for e in expected.embeddings
        ]


async def test_purpose_does_not_change_the_vector(provider: LocalProvider) -> None:
    index = await provider.embed(mixed_inputs(purpose=Purpose.GENERIC_INDEX))
    query = await provider.embed(mixed_inputs(purpose=Purpose.TEXT_RETRIEVAL))
    for a, b in zip(index, query, strict=True):
        assert [e.vector.tobytes() for e in a.embeddings] == [e.vector.tobytes() for e in b.embeddings]


async def test_concurrent_embedding_is_deterministic(provider: LocalProvider) -> None:
    item = EmbedInput(image(media.jpeg(2)), LOCAL_MODEL.id, 3072, Purpose.GENERIC_INDEX)
    results = await asyncio.gather(*(provider.embed([item, item]) for _ in range(4)))
    vectors = {r.embeddings[0].vector.tobytes() for batch in results for r in batch}
    assert len(vectors) == 1


async def test_first_failure_in_input_order_fails_the_call(provider: LocalProvider) -> None:
    inputs = mixed_inputs()
    bad = EmbedInput(image(b"\x89PNG\r\n\x1a\n broken"), LOCAL_MODEL.id, 256, Purpose.GENERIC_INDEX)
    worse = EmbedInput(audio(b"RIFF\x00\x00\x00\x00WAVE"), LOCAL_MODEL.id, 256, Purpose.GENERIC_INDEX)
    with pytest.raises(InvalidArgument) as info:
        await provider.embed([inputs[0], bad, worse])
    assert info.value.field == "content.image"


async def test_unknown_model_is_not_found(provider: LocalProvider) -> None:
    with pytest.raises(NotFound):
        await provider.embed([EmbedInput(text("x"), "no-such-model", 256, Purpose.GENERIC_INDEX)])


async def test_past_deadline_is_refused_up_front(provider: LocalProvider) -> None:
    with pytest.raises(DeadlineExceeded):
        await provider.embed(mixed_inputs()[:1], deadline=time.monotonic() - 1.0)


async def test_closed_provider_is_unavailable() -> None:
    p = LocalProvider(workers=1)
    await p.close()
    await p.close()  # idempotent
    with pytest.raises(Unavailable):
        await p.embed(mixed_inputs()[:1])
    with pytest.raises(Unavailable):
        await p.start()


def test_models_and_workers() -> None:
    p = LocalProvider()
    try:
        assert p.name == "local"
        assert tuple(p.models()) == (LOCAL_MODEL,)
        assert p.default_model is LOCAL_MODEL
        assert p.workers == max(1, (os.cpu_count() or 1) - 1)
        assert LocalProvider(workers=3).workers == 3
    finally:
        asyncio.run(p.close())


@pytest.mark.parametrize(("cores", "workers"), [(None, 1), (1, 1), (2, 1), (8, 7)])
def test_default_workers_leave_the_event_loop_a_core(
    monkeypatch: pytest.MonkeyPatch, cores: int | None, workers: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert default_workers() == workers


_DIGEST_SCRIPT = """
import hashlib
from onespace.content import Content, Modality
from onespace.providers.local import embed_content
from tests import media
from tests.harness import until
contents = [
    Content(Modality.TEXT, text="same in every process"),
    Content(Modality.IMAGE, data=media.png(11)),
    Content(Modality.AUDIO, data=media.ogg(523.0)),
    Content(Modality.VIDEO, data=media.webm(12)),
]
h = hashlib.sha256()
for c in contents:
    h.update(embed_content(c, 3072).embeddings[0].vector.tobytes())
print(h.hexdigest())
"""


def test_vectors_are_identical_in_another_process() -> None:
    """Bit-for-bit equal in a fresh process with a different string-hash salt."""
    here: dict[str, str] = {}
    exec(_DIGEST_SCRIPT.replace("print(h.hexdigest())", "result = h.hexdigest()"), here)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", _DIGEST_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == here["result"]


def test_short_reason_drops_object_addresses_and_errno() -> None:
    assert short_reason(OSError("cannot identify image file <_io.BytesIO object at 0x7f00dead>")) == (
        "cannot identify image file"
    )
    assert short_reason(ValueError("x" * 500)).endswith("...")
    assert len(short_reason(ValueError("x" * 500))) == 160


# --- coalescing: calls that arrive while a batch runs go together in the next batch ----------


class _Gate:
    """Replaces the provider's batch function: records each batch's call sizes, and holds the
    first batch on a worker thread until released (so later calls are seen waiting)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        run = local_provider._run

        def gated(calls: list[list[Job]], decoding: Decoding) -> list[Any]:
            self.batches.append([len(jobs) for jobs in calls])
            if len(self.batches) == 1:
                self.entered.set()
                assert self.release.wait(10)
            return run(calls, decoding)

        monkeypatch.setattr(local_provider, "_run", gated)

    async def first_batch_running(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 10)


def _texts(*values: str, dimension: int = 256) -> list[EmbedInput]:
    return [EmbedInput(text(v), LOCAL_MODEL.id, dimension, Purpose.GENERIC_INDEX) for v in values]


def _assert_each_call_got_its_own(sent: list[list[EmbedInput]], results: list[Any]) -> None:
    """Each call's results are its own inputs' vectors, as the featurizer makes them alone."""
    for inputs, result in zip(sent, results, strict=True):
        assert [r.embeddings[0].vector.tobytes() for r in result] == [
            embed_content(i.content, 256).embeddings[0].vector.tobytes() for i in inputs
        ]


async def _waiting(p: LocalProvider, calls: int) -> None:
    await until(lambda: len(p._waiting) >= calls, f"{calls} calls waiting for the next batch")


async def test_calls_arriving_during_a_batch_share_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = _Gate(monkeypatch)
    p = LocalProvider(workers=1)
    try:
        first = asyncio.ensure_future(p.embed(_texts("first")))
        await gate.first_batch_running()
        later = [asyncio.ensure_future(p.embed(_texts(f"later {i}", f"and {i}"))) for i in range(3)]
        await _waiting(p, 3)
        gate.release.set()
        results = await asyncio.gather(first, *later)
        assert gate.batches == [[1], [2, 2, 2]]
        _assert_each_call_got_its_own(
            [_texts("first")] + [_texts(f"later {i}", f"and {i}") for i in range(3)], results
        )
    finally:
        gate.release.set()
        await p.close()


async def test_an_interactive_call_joins_the_next_batch_ahead_of_the_bulk_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two bulk calls of more than half a batch each wait (each its own batch), then two
    interactive ones: those go first into the next batch, in their order, and the bulk calls
    follow in theirs; every call still gets its own results."""
    gate = _Gate(monkeypatch)
    p = LocalProvider(workers=1)
    half = MAX_BATCH // 2 + 1
    try:
        first = asyncio.ensure_future(p.embed(_texts("first")))
        await gate.first_batch_running()
        bulk = [_texts(*(f"bulk {b} {i}" for i in range(half))) for b in range(2)]
        calls = [asyncio.ensure_future(p.embed(inputs)) for inputs in bulk]
        urgent = [_texts("urgent 0"), _texts("urgent 1", "and 1")]
        calls += [asyncio.ensure_future(p.embed(inputs, interactive=True)) for inputs in urgent]
        await _waiting(p, 4)
        gate.release.set()
        results = await asyncio.gather(first, *calls)
        assert gate.batches == [[1], [1, 2, half], [half]]
        _assert_each_call_got_its_own([_texts("first"), *bulk, *urgent], results)
    finally:
        gate.release.set()
        await p.close()


async def test_a_busy_worker_process_gets_one_more_batch_once_enough_inputs_wait(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """So the trips to and from a worker process hide behind its work. A real worker process
    runs the provider's batches, the first held until released: what is decided is which
    batches are handed over, and when."""
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    p = LocalProvider(workers=1, processes=True)
    work = functools.partial(worker_jobs.held_when_first, limits=p._process_limits, fifo=str(fifo))
    p._processes = WorkerProcesses(1, work, warm_up)
    sizes: list[int] = []
    submit = p._processes.submit

    def recorded(calls: list[list[Job]]) -> asyncio.Future[Any]:
        sizes.append(sum(len(jobs) for jobs in calls))
        return submit(calls)

    monkeypatch.setattr(p._processes, "submit", recorded)
    await p.start()
    writer = None
    try:
        first = asyncio.ensure_future(p.embed(_texts("first")))
        writer = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)  # the first batch is running
        few = [asyncio.ensure_future(p.embed(_texts(f"few {i}"))) for i in range(PREFETCH_INPUTS - 1)]
        await _waiting(p, PREFETCH_INPUTS - 1)
        assert p.batches == 1  # fewer wait: they keep gathering
        one_more = asyncio.ensure_future(p.embed(_texts("one more")))
        await until(lambda: p.batches == 2, "a batch queued behind the busy worker")
        assert not p._waiting  # every waiting call went into it
        later = [asyncio.ensure_future(p.embed(_texts(f"later {i}"))) for i in range(PREFETCH_INPUTS)]
        await _waiting(p, PREFETCH_INPUTS)
        assert p.batches == 2  # one batch queued behind a worker at most
        os.write(writer, b"x")
        results = await asyncio.gather(first, *few, one_more, *later)
        assert sizes == [1, PREFETCH_INPUTS, PREFETCH_INPUTS]
        sent = ["first", *(f"few {i}" for i in range(PREFETCH_INPUTS - 1)), "one more"]
        sent += [f"later {i}" for i in range(PREFETCH_INPUTS)]
        assert [r[0].embeddings[0].vector.tobytes() for r in results] == [
            embed_content(i.content, 256).embeddings[0].vector.tobytes() for i in _texts(*sent)
        ]
    finally:
        if writer is not None:
            os.close(writer)
        await p.close()


async def test_a_failing_input_fails_only_its_own_call(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = _Gate(monkeypatch)
    p = LocalProvider(workers=1)
    broken = EmbedInput(image(b"\x89PNG\r\n\x1a\n broken"), LOCAL_MODEL.id, 256, Purpose.GENERIC_INDEX)
    try:
        first = asyncio.ensure_future(p.embed(_texts("first")))
        await gate.first_batch_running()
        bad = asyncio.ensure_future(p.embed([*_texts("fine"), broken]))
        good = asyncio.ensure_future(p.embed(_texts("also fine")))
        await _waiting(p, 2)
        gate.release.set()
        await first
        with pytest.raises(InvalidArgument) as info:
            await bad
        assert info.value.field == "content.image"
        assert len(await good) == 1
        assert gate.batches == [[1], [2, 1]]
    finally:
        gate.release.set()
        await p.close()


async def test_calls_not_started_at_close_are_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = _Gate(monkeypatch)
    p = LocalProvider(workers=1)
    first = asyncio.ensure_future(p.embed(_texts("first")))
    await gate.first_batch_running()
    queued = asyncio.ensure_future(p.embed(_texts("queued")))
    await _waiting(p, 1)
    closing = asyncio.ensure_future(p.close())
    with pytest.raises(Unavailable):
        await queued
    gate.release.set()
    await closing
    assert len(await first) == 1  # work once started runs to the end
    assert gate.batches == [[1]]


async def test_deadline_passed_while_queued_and_cancelled_calls_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = _Gate(monkeypatch)
    p = LocalProvider(workers=1)
    try:
        first = asyncio.ensure_future(p.embed(_texts("first")))
        await gate.first_batch_running()
        deadline = time.monotonic() + 0.3
        late = asyncio.ensure_future(p.embed(_texts("late"), deadline=deadline))
        gone = asyncio.ensure_future(p.embed(_texts("gone")))
        kept = asyncio.ensure_future(p.embed(_texts("kept")))
        await _waiting(p, 3)
        gone.cancel()
        await asyncio.sleep(deadline + 0.05 - time.monotonic())
        gate.release.set()
        await first
        with pytest.raises(DeadlineExceeded):
            await late
        assert len(await kept) == 1
        assert gate.batches == [[1], [1]]
    finally:
        gate.release.set()
        await p.close()


async def test_a_large_call_is_one_batch() -> None:
    p = LocalProvider(workers=2)
    try:
        inputs = _texts(*(f"text number {i}" for i in range(600)), dimension=1024)
        results = await p.embed(inputs)
        assert [r.embeddings[0].vector.tobytes() for r in results[::97]] == [
            embed_content(i.content, 1024).embeddings[0].vector.tobytes() for i in inputs[::97]
        ]
    finally:
        await p.close()


async def test_each_provider_decodes_under_its_own_limits_and_budget() -> None:
    """The limits a provider is given reach its decoders; a second provider in the same process
    keeps its own limits and its own decode budget."""
    limits = MediaLimits(max_audio_samples=20_000, decode_budget_bytes=64 << 20)
    strict = LocalProvider(workers=1, limits=limits)
    loose = LocalProvider(workers=1)
    item = EmbedInput(audio(media.ogg(440)), LOCAL_MODEL.id, 256, Purpose.GENERIC_INDEX)  # 32000 samples
    try:
        with pytest.raises(InvalidArgument) as info:
            await strict.embed([item])
        assert info.value.field == "content.audio"
        assert info.value.reason.endswith("exceeds the limit of 20000 (max_audio_samples)")
        (result,) = await loose.embed([item])
        expected = embed_content(item.content, 256).embeddings[0].vector
        assert result.embeddings[0].vector.tobytes() == expected.tobytes()
    finally:
        await strict.close()
        await loose.close()
    assert strict.decoding.limits == limits and loose.decoding.limits == MediaLimits()
    assert strict.decoding.budget.capacity == 64 << 20 and loose.decoding.budget.capacity == 256 << 20
    assert loose.decoding.budget.peak > 0 and loose.decoding.budget.used == 0  # its decode reserved there
