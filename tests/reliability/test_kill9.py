"""Crash tests: every acknowledged write survives a SIGKILL of `onespace serve`, at any moment.

`test_kill9_loses_no_acknowledged_write` runs a real server on one data dir for `ROUNDS` rounds.
Each round streams raw vectors through `Ingest` (new ids, and new vectors for ids written in
earlier rounds), deletes ids with unary `Delete` as acks come in, and is SIGKILLed at a random
point chosen by events, never by time:

* "acks" rounds: once a random number of acks (50..1500) came back, one more unary `Delete` and
  one unary `Upsert` are made and the SIGKILL is sent the moment the `Upsert` is acked;
* "maintenance" rounds: after a random number of acks the server is SIGKILLed by the thread
  reading its output the moment it logs a compaction ("compacted the vector file" or "index
  rebuilt without its removed entries"), i.e. while it runs the index rebuild and checkpoint that
  follow it (a fallback ack count turns the round into an "acks" one if no compaction comes).

With `--checkpoint-changes 300 --maintenance-interval-seconds 0.05` the server checkpoints its
index after every ~300 changed items (several times a second while a round streams) and compacts
whenever a third of its rows are dead (replaced or deleted), so "acks" kills land before, during
and after checkpoints too.

The client keeps, for every id, the state it knows for sure (the last acked write: a version of
the item, or deleted) and, for writes sent but not acked when the server died, the states the id
may be in. After each restart (the server must start every time) every id is read back with its
vector: it must be in one of its allowed states (acked writes exactly: the collection stores f32,
so vector and metadata must be the very ones acked; acked deletes absent), each id comes back
once, the collection count equals what Get found and lies between the ids surely live and those
possibly live, and a sample of live ids comes first when searched by its own vector. What was
found then becomes the known state. After the last restart every live id is searched for.

Searches go through HNSW, which is approximate: an id that does not come first at k=10 must come
first with the widest shortlist the server still takes from the index (at most 1% may need it);
one that does not is unreachable through the index, which is a failure.

`test_sigterm_ends_an_open_ingest_stream` checks the graceful side: SIGTERM during an Ingest
stream ends the stream with UNAVAILABLE at once, the server exits 0, and every acked item is
there after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from onespace_client.v1 import (
    collections_pb2,
    collections_pb2_grpc,
    common_pb2,
    data_pb2,
    data_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from tests.reliability.serve import Server

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("ONESPACE_KILL9_SEED", "20261126"))  # printed, so a failure can be rerun
ROUNDS = 12
COLLECTION = "crash"
DIMENSION = 256  # the smallest dimension the local model offers
INDEX_DIMENSION = 64
SERVER_ARGS = (
    "--checkpoint-changes",
    "300",
    "--maintenance-interval-seconds",
    "0.05",
)
COMPACTION = re.compile(r"compacted the vector file|index rebuilt without its removed entries")
CHECKPOINT_LOADED = re.compile(r"index checkpoint at seq \d+ loaded")
TROUBLE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")
IN_FLIGHT = 256  # stream items sent and not yet acked, at most
KILL_ACKS = (50, 1500)  # "acks" rounds: the SIGKILL follows this many acks (drawn per round)
ARM_ACKS = (50, 400)  # "maintenance" rounds: kill on the next compaction after this many acks
FALLBACK_ACKS = 4000  # ... or, if none came, after this many more
REPLACE_SHARE = 0.6  # share of stream items (after round 0) that rewrite an id of an earlier round
DELETE_EVERY = 100  # acks between two unary Deletes
POOL = 600  # live ids set aside each round for unary Deletes and Upserts (never streamed)
SEARCH_SAMPLE = 20
GET_CHUNK = 400


@dataclass(frozen=True, eq=False)
class Version:
    """One write of an id: what Get must return if this write is the one that stands."""

    id: str
    number: int  # unique over the run; also the stream request id and the `v` metadata value
    vector: npt.NDArray[np.float32]
    metadata: dict[str, str]


State = Version | None  # None: absent (never written, or deleted)


class Model:
    """What the client knows: each id's sure state, and the possible states of ids with a write
    sent and not acked (the server may have died before or after committing it)."""

    def __init__(self, seed: int) -> None:
        self.sure: dict[str, State] = {}
        self.possible: dict[str, list[State]] = {}
        self._numbers = itertools.count(1)
        self._vectors = np.random.default_rng(seed)

    def version(self, item_id: str, round_number: int, via: str) -> Version:
        number = next(self._numbers)
        vector = self._vectors.standard_normal(DIMENSION).astype(np.float32)
        metadata = {"v": str(number), "round": str(round_number), "via": via}
        return Version(item_id, number, vector, metadata)

    def sending(self, item_id: str, state: State) -> None:
        assert item_id not in self.possible, f"{item_id} has two writes in flight (test bug)"
        self.possible[item_id] = [self.sure.get(item_id), state]

    def acked(self, item_id: str, state: State) -> None:
        self.sure[item_id] = state
        self.possible.pop(item_id, None)

    def allowed(self, item_id: str) -> list[State]:
        return self.possible.get(item_id) or [self.sure.get(item_id)]

    def settle(self, item_id: str, state: State) -> None:
        self.sure[item_id] = state
        self.possible.pop(item_id, None)

    def ids(self) -> list[str]:
        return sorted(self.sure.keys() | self.possible.keys())

    def live(self) -> list[str]:
        assert not self.possible
        return sorted(i for i, state in self.sure.items() if state is not None)


class Counter:
    """A count that coroutines can wait on reaching a value."""

    def __init__(self) -> None:
        self.value = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def add(self, n: int = 1) -> None:
        self.value += n
        for target, future in list(self._waiters):
            if self.value >= target:
                self._waiters.remove((target, future))
                if not future.done():
                    future.set_result(None)

    async def reached(self, target: int) -> None:
        if self.value >= target:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        await future


@dataclass
class Round:
    number: int
    mode: str  # "acks" or "maintenance" (may fall back to "acks")
    kill_at: int  # acks before the kill ("acks") or before arming the kill on a compaction
    acks: int = 0
    sent: int = 0
    deleted: int = 0  # ids deleted by acked unary Deletes
    upserted: int = 0  # items stored by acked unary Upserts
    killed_on: str = ""
    compactions: int = 0  # logged by the server killed in this round
    seconds: float = 0.0
    restart: dict[str, int] = field(default_factory=dict)


def item_of(version: Version) -> data_pb2.Item:
    return data_pb2.Item(
        id=version.id, vector=common_pb2.Vector(values=version.vector.tolist()), metadata=version.metadata
    )


def chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def matches(state: State, found: data_pb2.StoredItem | None) -> bool:
    if state is None or found is None:
        return state is None and found is None
    if dict(found.metadata) != state.metadata or len(found.vector) != DIMENSION:
        return False
    return bool(np.array_equal(np.asarray(found.vector, dtype=np.float32), state.vector))  # f32: exact


def describe(state: State) -> str:
    return "absent" if state is None else f"v{state.number} (round {state.metadata['round']})"


def trouble(server: Server) -> list[str]:
    return [line for line in server.lines if TROUBLE.search(line)]


def tail(server: Server, lines: int = 80) -> str:
    return "".join(server.lines[-lines:])


async def create_collection(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await collections_pb2_grpc.CollectionServiceStub(channel).CreateCollection(
            collections_pb2.CreateCollectionRequest(
                config=collections_pb2.CollectionConfig(
                    name=COLLECTION,
                    dimension=DIMENSION,
                    index_dimension=INDEX_DIMENSION,
                    stored_dtype=collections_pb2.STORED_DTYPE_F32,  # read back exactly as written
                )
            )
        )
        assert reply.collection.config.stored_dtype == collections_pb2.STORED_DTYPE_F32


async def delete(data: data_pb2_grpc.DataServiceStub, model: Model, ids: list[str]) -> int:
    expected = sum(model.sure.get(i) is not None for i in ids)
    for item_id in ids:
        model.sending(item_id, None)
    reply = await data.Delete(data_pb2.DeleteRequest(collection=COLLECTION, ids=ids))
    for item_id in ids:
        model.acked(item_id, None)
    assert reply.deleted == expected, f"Delete said {reply.deleted} of {ids} existed, expected {expected}"
    return len(ids)


async def upsert(data: data_pb2_grpc.DataServiceStub, model: Model, versions: list[Version]) -> int:
    for version in versions:
        model.sending(version.id, version)
    reply = await data.Upsert(
        data_pb2.UpsertRequest(collection=COLLECTION, items=[item_of(v) for v in versions])
    )
    for version in versions:
        model.acked(version.id, version)
    assert reply.upserted == len(versions)
    return len(versions)


async def run_round(server: Server, model: Model, rng: random.Random, plan: Round) -> None:
    """Stream, delete and upsert until the server is SIGKILLed (by this round's trigger)."""
    r = plan.number
    live = model.live()
    pool = rng.sample(live, min(POOL, len(live) // 3))  # for the unary calls only
    reserved = set(pool)
    candidates = [i for i in model.ids() if i not in reserved]  # live or deleted: both get rewritten
    rng.shuffle(candidates)

    def stream_versions() -> Iterator[Version]:
        for n in itertools.count():
            if candidates and rng.random() < REPLACE_SHARE:
                yield model.version(candidates.pop(), r, "ingest")
            else:
                yield model.version(f"r{r:02d}-{n:05d}", r, "ingest")

    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        data = data_pb2_grpc.DataServiceStub(channel)
        call = data.Ingest()
        window = asyncio.Semaphore(IN_FLIGHT)
        acks = Counter()
        in_flight: dict[str, Version] = {}

        async def write() -> None:
            try:
                for version in stream_versions():
                    await window.acquire()
                    request_id = str(version.number)
                    in_flight[request_id] = version
                    model.sending(version.id, version)
                    await call.write(
                        data_pb2.IngestRequest(
                            request_id=request_id, collection=COLLECTION, item=item_of(version)
                        )
                    )
                    plan.sent += 1
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                if not server.kill_sent:
                    raise

        async def read() -> None:
            try:
                while True:
                    response = await call.read()
                    if response is grpc.aio.EOF:
                        raise AssertionError("the Ingest stream ended while the server was alive")
                    version = in_flight.pop(response.request_id)
                    assert response.id == version.id, response
                    assert response.WhichOneof("outcome") == "stored", f"item refused: {response}"
                    model.acked(version.id, version)  # even when read after the kill: it was acked
                    plan.acks += 1
                    window.release()
                    acks.add()
            except grpc.aio.AioRpcError:
                if not server.kill_sent:
                    raise

        def take(n: int) -> list[str]:
            return [pool.pop() for _ in range(min(n, len(pool)))]

        async def kill_after_unary_calls() -> None:
            """The last Delete and Upsert are acked, then SIGKILL at once (no await in between)."""
            if gone := take(rng.randint(1, 20)):
                plan.deleted += await delete(data, model, gone)
            versions = [model.version(i, r, "upsert") for i in take(rng.randint(1, 10))]
            versions += [model.version(f"u{r:02d}-{j:03d}", r, "upsert") for j in range(rng.randint(1, 10))]
            plan.upserted += await upsert(data, model, versions)
            server.sigkill()

        async def drive() -> None:
            try:
                next_delete = DELETE_EVERY
                if plan.mode == "acks":
                    while next_delete < plan.kill_at:
                        await acks.reached(next_delete)
                        if ids := take(rng.randint(5, 25)):
                            plan.deleted += await delete(data, model, ids)
                        next_delete += DELETE_EVERY
                    await acks.reached(plan.kill_at)
                    await kill_after_unary_calls()
                    return
                await acks.reached(plan.kill_at)
                server.kill_on(COMPACTION)
                next_delete = plan.kill_at + DELETE_EVERY
                while next_delete < plan.kill_at + FALLBACK_ACKS:
                    await acks.reached(next_delete)
                    if ids := take(rng.randint(5, 25)):
                        plan.deleted += await delete(data, model, ids)
                    next_delete += DELETE_EVERY
                if not server.kill_sent:  # no compaction came: end it like an "acks" round
                    plan.mode = "maintenance->acks"
                    await kill_after_unary_calls()
            except grpc.aio.AioRpcError:
                if not server.kill_sent:
                    raise

        reader = asyncio.create_task(read())
        pending = {reader, asyncio.create_task(write()), asyncio.create_task(drive())}
        try:
            while reader in pending:  # the reader ends when the SIGKILL breaks the stream
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a failure while the server was alive fails the round
        except Exception as exc:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(server.proc.wait, 5)
            raise AssertionError(
                f"round {r} ({plan.mode}) failed after {plan.acks} acks (SIGKILL sent: {server.kill_sent}): "
                f"{exc!r}; server exit code {server.proc.poll()}, its output:\n{tail(server, 200)}"
            ) from exc
        finally:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await task
            call.cancel()
    assert server.kill_sent
    plan.killed_on = (server.killed_on or "").strip()
    code = await asyncio.to_thread(server.reap, 30)
    assert code == -signal.SIGKILL, f"round {r}: the server exited with {code}:\n{tail(server)}"


def widest_hnsw_k(live: int) -> int:
    """The largest k the server still answers from an HNSW shortlist (k * rerank factor 4, rounded
    up to a power of two, below half the collection; beyond it the server scans every row)."""
    count = 1
    while 4 * count < live:
        count *= 2
    return max(1, min(1000, count // 4))


async def find_by_own_vectors(
    channel: grpc.aio.Channel, model: Model, ids: Sequence[str], context: str, logs: str
) -> int:
    """Each id, searched by its own vector (concurrently: the server batches them), comes first.

    HNSW is approximate: an id missed at k=10 must come first when searched with the widest
    shortlist the server still takes from the index; one missing then is not reachable through
    the index at all. Returns how many needed the wider search (at most 1%, or one, allowed).
    """
    search = search_pb2_grpc.SearchServiceStub(channel)
    slots = asyncio.Semaphore(64)
    wide = widest_hnsw_k(len(model.live()))

    async def rank_of(item_id: str, k: int) -> tuple[int | None, list[str]]:
        state = model.sure[item_id]
        assert state is not None
        vector = common_pb2.Vector(values=state.vector.tolist())
        async with slots:
            reply = await search.Search(search_pb2.SearchRequest(collection=COLLECTION, vector=vector, k=k))
        hits = [hit.id for hit in reply.hits]
        assert len(hits) == len(set(hits)), f"{context}: a search returned an id twice: {hits}{logs}"
        return (hits.index(item_id) if item_id in hits else None), hits

    ranks = await asyncio.gather(*(rank_of(item_id, 10) for item_id in ids))
    misses = [(item_id, hits) for item_id, (rank, hits) in zip(ids, ranks, strict=True) if rank != 0]
    wider = await asyncio.gather(*(rank_of(item_id, wide) for item_id, _ in misses))
    report = "\n".join(
        f"{item_id} ({describe(model.sure[item_id])}): k=10 found {hits[:3]}; k={wide} ranks it {rank}"
        for (item_id, hits), (rank, _) in zip(misses, wider, strict=True)
    )
    lost = sum(rank != 0 for rank, _ in wider)
    assert not lost, (
        f"{context}: {lost} of {len(ids)} live ids are not found by their own vector even with "
        f"k={wide}:\n{report}{logs}"
    )
    assert len(misses) <= max(1, len(ids) // 100), (
        f"{context}: {len(misses)} of {len(ids)} live ids need k={wide} to be found:\n{report}{logs}"
    )
    return len(misses)


async def verify(server: Server, model: Model, rng: random.Random, plan: Round, killed: Server) -> None:
    """Everything acked is there, nothing deleted is, each id once; then settle the unknowns."""
    context = f"round {plan.number} ({plan.mode}, killed after {plan.acks} acks)"
    logs = f"\n--- server killed in {context} ---\n{tail(killed)}\n--- restarted server ---\n{tail(server)}"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        data = data_pb2_grpc.DataServiceStub(channel)
        ids = model.ids()
        found: dict[str, data_pb2.StoredItem] = {}
        for chunk in chunks(ids, GET_CHUNK):
            reply = await data.Get(
                data_pb2.GetRequest(collection=COLLECTION, ids=chunk, include_vectors=True)
            )
            got = [item.id for item in reply.items]
            assert len(got) == len(set(got)), f"{context}: Get returned an id twice{logs}"
            assert sorted([*got, *reply.missing_ids]) == sorted(chunk), f"{context}: Get lost ids{logs}"
            found.update((item.id, item) for item in reply.items)
        problems: list[str] = []
        surely_live = possibly_live = 0
        for item_id in ids:
            allowed = model.allowed(item_id)
            item = found.get(item_id)
            match = [state for state in allowed if matches(state, item)]
            surely_live += all(state is not None for state in allowed)
            possibly_live += any(state is not None for state in allowed)
            if not match:
                seen = "absent" if item is None else f"metadata {dict(item.metadata)}"
                wanted = " or ".join(describe(state) for state in allowed)
                problems.append(f"{item_id}: expected {wanted}, found {seen}")
                continue
            model.settle(item_id, match[0])
        assert not problems, f"{context}: {len(problems)} ids wrong:\n" + "\n".join(problems[:30]) + logs

        collection = (
            await collections_pb2_grpc.CollectionServiceStub(channel).GetCollection(
                collections_pb2.GetCollectionRequest(name=COLLECTION)
            )
        ).collection
        count, stats = collection.count, collection.stats
        assert count == stats.items == len(found), (
            f"{context}: count {count}, stats.items {stats.items}, Get found {len(found)} live ids{logs}"
        )
        assert surely_live <= count <= possibly_live, (
            f"{context}: count {count} outside [{surely_live}, {possibly_live}]{logs}"
        )

        live = model.live()
        await find_by_own_vectors(
            channel, model, rng.sample(live, min(SEARCH_SAMPLE, len(live))), context, logs
        )
    plan.restart = {
        "live": count,
        "surely_live": surely_live,
        "possibly_live": possibly_live,
        "dead_rows": stats.dead_rows,
        "tombstones": stats.index_tombstones,
        "replayed_commits": stats.seq - stats.checkpoint_seq,
        "checkpoint_loaded": sum(bool(CHECKPOINT_LOADED.search(line)) for line in server.lines),
    }
    plan.compactions = sum(bool(COMPACTION.search(line)) for line in killed.lines)


async def test_kill9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random(SEED)
    model = Model(SEED)
    started = time.monotonic()
    print(f"seed {SEED} (set ONESPACE_KILL9_SEED to rerun another)")
    server = Server(data_dir, *SERVER_ARGS)
    lives = [server]
    rounds: list[Round] = []
    try:
        await create_collection(server.port)
        for r in range(ROUNDS):
            if r >= 2 and r % 3 == 2:
                plan = Round(r, "maintenance", rng.randint(*ARM_ACKS))
            else:
                plan = Round(r, "acks", rng.randint(*KILL_ACKS))
            rounds.append(plan)
            round_started = time.monotonic()
            await run_round(server, model, rng, plan)
            killed, server = server, Server(data_dir, *SERVER_ARGS)  # must start, every time
            lives.append(server)
            await verify(server, model, rng, plan, killed)
            plan.seconds = time.monotonic() - round_started
            print(
                f"round {r:2d} {plan.mode:17s} kill_at {plan.kill_at:4d}: {plan.acks:5d} acks of "
                f"{plan.sent:5d} sent, {plan.deleted:3d} deleted, {plan.upserted:2d} upserted, "
                f"{plan.compactions} compactions; restart {plan.restart}; {plan.seconds:.1f}s"
                + (f"; killed on: {plan.killed_on.partition(': ')[2]}" if plan.killed_on else "")
            )
        # Last, after the last restart: every live id, searched by its own vector, comes first.
        swept = time.monotonic()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            live = model.live()
            wider = await find_by_own_vectors(channel, model, live, "after the last restart", "")
        print(
            f"all {len(live)} live ids found first by their own vectors ({wider} only with a wider "
            f"shortlist) in {time.monotonic() - swept:.1f}s"
        )
    finally:
        code = await asyncio.to_thread(server.terminate) if server.proc.poll() is None else None
    assert code == 0, tail(server)
    print(f"{ROUNDS} rounds in {time.monotonic() - started:.1f}s")

    problems = {i: trouble(life) for i, life in enumerate(lives) if trouble(life)}
    assert not problems, f"the server logged trouble: {problems}"
    compactions = sum(bool(COMPACTION.search(line)) for life in lives for line in life.lines)
    assert compactions, "no compaction ran: the test no longer exercises it"
    assert any(plan.killed_on for plan in rounds), "no round was killed right after a compaction"
    assert any(plan.restart["checkpoint_loaded"] for plan in rounds), "no restart loaded a checkpoint"


async def test_sigterm_ends_an_open_ingest_stream(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    model = Model(SEED + 1)
    # A long grace period: a stream left open until the grace ran out would take 30 s to end.
    server = Server(data_dir, "--grace-seconds", "30")
    try:
        await create_collection(server.port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = data_pb2_grpc.DataServiceStub(channel).Ingest()
            sending = 4 * IN_FLIGHT  # well above the server's window (256 items)
            window = asyncio.Semaphore(sending)
            stop_writing = asyncio.Event()
            acks = Counter()
            in_flight: dict[str, Version] = {}

            async def write() -> None:
                for n in itertools.count():
                    await window.acquire()
                    if stop_writing.is_set():
                        return
                    version = model.version(f"t{n:05d}", 0, "ingest")
                    in_flight[str(version.number)] = version
                    model.sending(version.id, version)
                    await call.write(
                        data_pb2.IngestRequest(
                            request_id=str(version.number), collection=COLLECTION, item=item_of(version)
                        )
                    )

            async def read() -> grpc.aio.AioRpcError:
                while True:
                    try:
                        response = await call.read()
                    except grpc.aio.AioRpcError as exc:
                        return exc
                    assert response is not grpc.aio.EOF, "the stream ended without a status"
                    version = in_flight.pop(response.request_id)
                    assert response.WhichOneof("outcome") == "stored", response
                    model.acked(version.id, version)
                    window.release()
                    acks.add()

            writer = asyncio.create_task(write())
            reader = asyncio.create_task(read())
            await acks.reached(500)
            # The stream stays open (no half-close) with up to `sending` items sent and unacked,
            # most of them not yet read by the server. The writer stops first: a write still
            # waiting for flow control when the server ends the call would make grpc.aio report
            # INTERNAL "Internal error from Core" instead of the server's status (grpc#36066).
            stop_writing.set()
            window.release()  # wakes the writer if it waits for a slot
            await writer
            acks_at_signal, unacked_at_signal = acks.value, len(in_flight)
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            error = await reader
            ended = time.monotonic() - signalled
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
        assert "shutting down" in (error.details() or ""), error
        assert ended < 5, f"the stream ended {ended:.1f}s after SIGTERM"
        assert in_flight, "every item sent was answered: the server did not stop reading the stream"
        code = await asyncio.to_thread(server.reap, 30)
        assert code == 0, tail(server)
        print(
            f"SIGTERM after {acks_at_signal} acks with {unacked_at_signal} items unacked: the stream ended "
            f"with UNAVAILABLE after {ended * 1000:.0f} ms and {acks.value - acks_at_signal} more acks, "
            f"{len(in_flight)} items never answered; exit {code}"
        )
    finally:
        if server.proc.poll() is None:
            server.kill()
    assert not trouble(server), trouble(server)

    server = Server(data_dir)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            data = data_pb2_grpc.DataServiceStub(channel)
            acked = sorted(model.sure)
            assert len(acked) == acks.value
            for chunk in chunks(acked, GET_CHUNK):
                reply = await data.Get(
                    data_pb2.GetRequest(collection=COLLECTION, ids=chunk, include_vectors=True)
                )
                assert not reply.missing_ids, f"acked items lost: {list(reply.missing_ids)[:20]}"
                for item in reply.items:
                    assert matches(model.sure[item.id], item), item.id
            count = (
                await collections_pb2_grpc.CollectionServiceStub(channel).GetCollection(
                    collections_pb2.GetCollectionRequest(name=COLLECTION)
                )
            ).collection.count
            assert len(acked) <= count <= len(acked) + len(model.possible)
    finally:
        assert await asyncio.to_thread(server.terminate) == 0, tail(server)
    assert not trouble(server), trouble(server)
