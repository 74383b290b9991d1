"""The local provider with worker processes (`processes=True`, the server's default): the same
vectors as on threads, errors that cross the process boundary intact, a dead worker replaced, and
a fallback to threads where processes cannot start."""

from __future__ import annotations

import asyncio
import errno
import multiprocessing.context
import os
import select
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from onespace.content import MediaLimits, Purpose
from onespace.errors import InvalidArgument, Unavailable
from onespace.models import LOCAL_MODEL
from onespace.providers.base import EmbedInput
from onespace.providers.local import LocalProvider
from onespace.providers.local.provider import MAX_BATCH
from onespace_client.v1 import common_pb2, embed_pb2
from tests.harness import running_gateway, until
from tests.reliability.serve import Server

from .helpers import image, mixed_inputs, text

REPO = Path(__file__).resolve().parents[3]


def _workers(parent: int = 0) -> list[int]:
    """Pids of the worker processes (multiprocessing's spawned children) of `parent` (0: this one)."""
    parent, pids = parent or os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):  # it ended meanwhile
            continue
        if ppid == parent and b"spawn_main" in command:
            pids.append(int(stat.parent.name))
    return pids


def _ended(pid: int, timeout: float) -> bool:
    """Whether process `pid` (not necessarily a child) ends within `timeout`: its pidfd turns
    readable when it exits, so this waits on that event, not on a clock."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


@pytest.fixture
async def provider() -> AsyncIterator[LocalProvider]:
    before = set(_workers())
    p = LocalProvider(workers=1, processes=True)
    await p.start()
    assert p.processes
    yield p
    await p.close()
    await until(lambda: set(_workers()) <= before, "the worker process to exit after close")


async def test_worker_processes_give_the_threads_vectors_bit_for_bit(provider: LocalProvider) -> None:
    threads = LocalProvider(workers=1)
    await threads.start()
    try:
        for dimension in (256, 1024):
            inputs = mixed_inputs(dimension)
            got, expected = await asyncio.gather(provider.embed(inputs), threads.embed(inputs))
            for a, b in zip(got, expected, strict=True):
                assert [(e.type, e.truncated_char_length, e.vector.tobytes()) for e in a.embeddings] == [
                    (e.type, e.truncated_char_length, e.vector.tobytes()) for e in b.embeddings
                ]
    finally:
        await threads.close()
    assert provider.batches >= 2 and provider.processes_started == 1


async def test_a_bad_input_fails_only_its_call_with_its_field(provider: LocalProvider) -> None:
    bad = EmbedInput(image(b"\x89PNG\r\n\x1a\nnot really"), LOCAL_MODEL.id, 256, Purpose.GENERIC_INDEX)
    good = mixed_inputs()[0]
    outcomes = await asyncio.gather(provider.embed([bad]), provider.embed([good]), return_exceptions=True)
    assert isinstance(outcomes[0], InvalidArgument)
    assert outcomes[0].field == "content.image" and "decode" in outcomes[0].reason
    assert not isinstance(outcomes[1], BaseException) and len(outcomes[1][0].embeddings[0].vector) == 256


async def test_a_worker_killed_during_a_batch_fails_it_unavailable_and_a_new_process_serves(
    provider: LocalProvider,
) -> None:
    (pid,) = _workers()
    long_text = " ".join(f"word{i}" for i in range(2000))
    batch = [
        EmbedInput(text(f"{i} {long_text}"), LOCAL_MODEL.id, 1024, Purpose.GENERIC_INDEX)
        for i in range(MAX_BATCH)
    ]
    started = provider.batches
    call = asyncio.create_task(provider.embed(batch))
    await until(lambda: provider.batches > started, "the batch to go to the worker")
    os.kill(pid, signal.SIGKILL)  # the batch takes ~0.1-1 s of CPU: it is still running or queued
    with pytest.raises(Unavailable, match="worker process died"):
        await call
    results = await provider.embed(mixed_inputs())
    assert len(results) == 5 and provider.processes_started == 2
    assert pid not in _workers() and len(_workers()) == 1


async def test_a_worker_found_dead_before_a_batch_is_replaced_and_the_batch_served(
    provider: LocalProvider,
) -> None:
    (pid,) = _workers()
    os.kill(pid, signal.SIGKILL)
    await until(lambda: pid not in _workers(), "the provider to notice and reap its dead worker")
    results = await provider.embed(mixed_inputs())  # never given to the dead worker: not failed
    assert len(results) == 5 and provider.processes_started == 2


async def test_each_worker_process_decodes_within_its_share_of_the_budget() -> None:
    limits = MediaLimits(decode_budget_bytes=300 << 20)
    p = LocalProvider(workers=3, processes=True, limits=limits)
    try:
        assert p.decoding.limits.decode_budget_bytes == 300 << 20
        # one decode at a time per process, so the three together stay within the budget
        assert p._process_limits.decode_budget_bytes == 100 << 20
    finally:
        await p.close()


async def test_the_gateway_serves_embeds_from_worker_processes(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, local_executor="process", local_workers=1) as gw:
        provider = gw.app.gateway.provider
        assert isinstance(provider, LocalProvider) and provider.processes
        reply = await gw.embed.Embed(
            embed_pb2.EmbedRequest(
                items=[common_pb2.Content(text="a cat on a mat")],
                options=common_pb2.EmbedOptions(dimension=256),
            )
        )
        threads = LocalProvider(workers=1)
        item = EmbedInput(text("a cat on a mat"), LOCAL_MODEL.id, 256, Purpose.GENERIC_INDEX)
        expected = (await threads.embed([item]))[0].embeddings[0].vector
        await threads.close()
        got = np.array(reply.results[0].embeddings[0].values, dtype=np.float32)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # the gateway renormalises once more
        assert provider.batches >= 1


def test_a_script_that_cannot_start_processes_falls_back_to_threads(tmp_path: Path) -> None:
    """A script without `if __name__ == "__main__":` is imported again by every spawned process,
    which then cannot start: the provider says so and featurises on threads."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import asyncio\n"
        "from onespace.content import Content, Modality, Purpose\n"
        "from onespace.providers.base import EmbedInput\n"
        "from onespace.providers.local import LocalProvider\n"
        "async def main():\n"
        "    p = LocalProvider(1, processes=True)\n"
        "    await p.start()\n"
        "    item = EmbedInput(Content(Modality.TEXT, text='hi'), 'onespace.local-multimodal-v1', 256,"
        " Purpose.GENERIC_INDEX)\n"
        "    result = await p.embed([item])\n"
        "    print('result', p.processes, len(result[0].embeddings[0].vector), flush=True)\n"
        "    await p.close()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "could not start its worker processes" in done.stderr
    assert "featurising on threads of this process instead" in done.stderr
    assert "result False 256" in done.stdout.splitlines()


async def test_a_worker_ignores_sigint_left_to_the_gateway(provider: LocalProvider) -> None:
    """Ctrl-C reaches the whole process group; the gateway drains and then stops its workers."""
    (pid,) = _workers()
    os.kill(pid, signal.SIGINT)
    results = await provider.embed(mixed_inputs())
    assert len(results) == 5 and provider.processes_started == 1 and _workers() == [pid]


def test_a_sigkilled_gateway_leaves_no_worker_process(tmp_path: Path) -> None:
    """A worker holds its call queue's both ends, so it would never see the gateway go, and would
    keep the gateway's stdout open: it must end with the gateway (`onespace serve` defaults to
    worker processes)."""
    server = Server(tmp_path / "data")
    try:
        (worker,) = _workers(server.proc.pid)  # started before the banner
    finally:
        server.kill()  # SIGKILL; `reap` also waits for the end of its output, which the worker held
    assert _ended(worker, 30), f"worker {worker} outlived the gateway it served"


async def test_a_host_that_cannot_start_processes_featurises_on_threads(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where no process can be started (e.g. a container's process limit reached), the provider
    says so at start and runs on threads, leaving no pipe open behind."""

    def cannot_fork(self: object) -> None:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", cannot_fork)
    descriptors = len(os.listdir("/proc/self/fd"))
    p = LocalProvider(workers=1, processes=True)
    try:
        await p.start()
        assert not p.processes and p.processes_started == 0
        assert "could not start its worker processes (BlockingIOError: [Errno 11]" in caplog.text
        assert len((await p.embed(mixed_inputs()))[0].embeddings[0].vector) == 256
    finally:
        await p.close()
    assert len(os.listdir("/proc/self/fd")) == descriptors
