"""Bedrock fan-out through the gateway against the Bedrock Runtime emulator, side by side with what a
user writes by hand, under a fixed latency, a concurrency cap, an RPM quota and random throttles.

Processes, all on 127.0.0.1: the emulator (`onespace emulate-bedrock`, real HTTP, its own process),
a fresh gateway per measurement (`onespace serve --provider bedrock` pointed at it, its own process,
default settings: adaptive limit from 16 in [1, 64]) and every client in this process. The
gateway's CPU time is read from /proc/<pid>/stat, a bare client's from this process
(`time.process_time`), each over its own run only.

Scenarios (emulator settings; Nova text, 1024-d, a distinct text per item):

- **fixed**: 40 ms per call, no quota;
- **cap**: 100 ms per call, at most 16 calls at once, beyond that ThrottlingException
  (`--max-concurrency 16 --overflow throttle`): ceiling 16 / 0.1 s = 160 items/s;
- **cap250**: the same cap at 250 ms per call: ceiling 64 items/s. Each call also costs ~6-7 ms
  outside the emulator's slot here (response, client parse, the next request's build and signing,
  the emulator's HTTP handling; py-spy: both event loops ~40% busy, so it is turnaround, not a
  saturated CPU), which a client told the cap cannot avoid: ~94% of the ceiling at 100 ms, ~97%
  at 250 ms (the issue's "e.g. 16 in flight x 100 ms"; both are reported);
- **rpm**: 40 ms per call, 9,000 requests per minute (a token bucket of 20): ceiling 150 items/s;
- **random**: 40 ms per call, 20% of calls answer ThrottlingException at random.

Contenders:

- **gateway unary**: `Embed` RPCs of one text each from 32 concurrent client tasks;
- **gateway stream**: one `EmbedStream` through `AsyncClient.embed_stream` (64 in flight);
- **aioboto3 gather + Semaphore(32)**: `asyncio.gather` over `invoke_model` + `json.loads`, what a
  user writes; botocore's default retries (legacy mode, 5 attempts), a pool of 64 connections;
- **aioboto3 gather, no semaphore**: the same with every call started at once (the pool of 64 is
  then the only bound);
- **boto3 sequential**: a plain `invoke_model` loop on a subsample, extrapolated to all items;
- **aioboto3 gather + Semaphore(16)**, cap scenarios only: a client told the cap in advance, the
  best a client can do there (what the turnaround between calls leaves of the ceiling);
- **LiteLLM**: `litellm.aembedding` for the same Nova model pointed at the emulator, with a
  semaphore of 32, run by tests/benchmarks/litellm_baseline.py in its own virtualenv
  (.ci/cache/bench-litellm-venv, made on first use with pip; skipped with the reason printed if
  that fails), one run per scenario; the request body LiteLLM sent and its first failure are in
  the report.

Sizes: 2,000 items per gateway run (1,500 in the cap x 100 ms and RPM scenarios, 700 in the cap x
250 ms one, ~10 s each), 500 per bare aioboto3 run under throttling (botocore's legacy retries make
those ~50 items/s) and per LiteLLM run; the no-semaphore, sequential and LiteLLM loops run once per
scenario, the others 3 times.

Figures (medians of the runs, contenders interleaved): items/s, per-item latency p50/p99 (from the
request leaving the client: RPC start, stream write, or the call after the semaphore), failed
items, throttled calls (the emulator's counters) and their share of all calls, the fraction of the
quota-bound ceiling, CPU per item (gateway process for the gateway, this process for the bare
loops) and its ratio to the aioboto3 + Semaphore(32) loop's. The gateway's concurrency limit and
pace are sampled from its /metrics every 100 ms during every unary run and plotted for the
throttled scenarios into docs/benchmarks/limiter.png (matplotlib, the `bench` extra; skipped
without it).
Each gateway run with random throttles comes right after an unthrottled run of the same contender
(fixed 40 ms, same size, same sampling), and its 'x unthrottled' is the median of those pairs'
ratios: the VM's speed drifts over the minutes between the fixed scenario's runs and the random
one's, and a ratio of runs that far apart measured that drift as much as the gateway.
Asserts only counts (every item answered or failed, one result per success), never time.

Results go into docs/benchmarks.md (section `bedrock-fanout`) and docs/benchmarks/bedrock-fanout.json.

Run: `.venv/bin/pytest tests/benchmarks/test_bedrock_fanout.py -s` (~7 min on 2 cores), or
`.venv/bin/python -m tests.benchmarks.test_bedrock_fanout`. `ONESPACE_BENCH_FANOUT_ITEMS` (default
2000) and `ONESPACE_BENCH_FANOUT_REPEATS` (default 3) scale it (then only the JSON is written).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from onespace.models import NOVA_MODEL
from onespace_client import AsyncClient, build
from onespace_client.async_client import DEFAULT_MAX_IN_FLIGHT
from onespace_client.v1 import common_pb2, embed_pb2, embed_pb2_grpc
from tests.aws import AWS_VARIABLES, dummy_aws_environment
from tests.benchmarks._common import print_table, process_stat
from tests.benchmarks._report import RAW, ROOT, load_average, markdown_table, write_section

pytestmark = pytest.mark.benchmark

ITEMS = int(os.environ.get("ONESPACE_BENCH_FANOUT_ITEMS", "2000"))
REPEATS = int(os.environ.get("ONESPACE_BENCH_FANOUT_REPEATS", "3"))
DEFAULT = ITEMS == 2000 and REPEATS == 3
MODEL = NOVA_MODEL.id
DIMENSION = 1024
CLIENTS = 32  # concurrent unary clients, and the bare loop's semaphore
STREAM_WINDOW = DEFAULT_MAX_IN_FLIGHT  # the client's (and the server's) default stream window
POOL = 64  # aioboto3 connections for the bare loops
SEQUENTIAL = 30  # items of the sequential boto3 loop (extrapolated)
DEADLINE = 60.0
SAMPLE_EVERY = 0.1  # seconds between samples of the gateway's concurrency limit
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    config: dict[str, Any]
    ceiling: float | None  # items/s the quota allows, if one binds
    cap: int | None = None
    share: float = 1.0  # of ITEMS per gateway run (the quota-bound scenarios run at ~150/s)

    @property
    def throttles(self) -> bool:
        return self.key != "fixed"

    def items(self, contender: str) -> int:
        if contender == "boto3 sequential":
            return SEQUENTIAL
        if contender == "litellm":
            return ITEMS // 4  # LiteLLM spends ~5 ms of CPU per call here: ~50 items/s
        if contender.startswith("aioboto3") and self.throttles and contender != "aioboto3 + the cap":
            return ITEMS // 4  # botocore's legacy retries make these ~50 items/s
        return int(ITEMS * self.share)


_BASE: dict[str, Any] = {
    "jitter_ms": 0,
    "max_concurrency": 0,
    "overflow": "throttle",
    "rpm": 0,
    "burst": 0,
    "faults": {"throttle": 0.0},
    "seed": 1,
}
SCENARIOS = (
    Scenario("fixed", "fixed 40 ms", {**_BASE, "latency_ms": 40}, None),
    Scenario(
        "cap",
        "cap: 16 in flight x 100 ms",
        {**_BASE, "latency_ms": 100, "max_concurrency": 16},
        160.0,
        cap=16,
        share=0.75,
    ),
    Scenario(
        "cap250",
        "cap: 16 in flight x 250 ms",
        {**_BASE, "latency_ms": 250, "max_concurrency": 16},
        64.0,
        cap=16,
        share=0.35,
    ),
    Scenario(
        "rpm",
        "RPM quota: 9,000/min, 40 ms",
        {**_BASE, "latency_ms": 40, "rpm": 9000, "burst": 20},
        150.0,
        share=0.75,
    ),
    Scenario(
        "random",
        "20% random throttles, 40 ms",
        {**_BASE, "latency_ms": 40, "faults": {"throttle": 0.2}},
        None,
    ),
)


@dataclass
class Run:
    contender: str
    items: int
    seconds: float
    ok: int
    failed: int
    latencies: list[float]
    cpu_seconds: float
    throttles: int = 0
    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    limits: list[tuple[float, int]] = field(default_factory=list)
    paces: list[tuple[float, float]] = field(default_factory=list)  # 0 = not pacing
    extrapolated_from: int | None = None
    client_cpu_seconds: float | None = None
    note: str | None = None  # LiteLLM: the request body it sent, and the first failure if any

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def cpu_per_item(self) -> float:
        return self.cpu_seconds / max(self.items, 1)


# --- processes -------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in AWS_VARIABLES}
    env.update(dummy_aws_environment(os.devnull, os.devnull))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "server"), str(ROOT / "client"), env.get("PYTHONPATH", "")]
    )
    return env


@contextlib.contextmanager
def _aws_isolated() -> Iterator[None]:
    """The bare clients in this process see only the dummy credentials, no machine AWS config."""
    dummy = dummy_aws_environment(os.devnull, os.devnull)
    saved = {k: os.environ.get(k) for k in (*AWS_VARIABLES, *dummy)}
    for name in AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(dummy)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.asynccontextmanager
async def _process(
    args: list[str], ready: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, re.Match[str]]]:
    """Run `python -m onespace.cli *args` until its output matches `ready`; stop it on exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "onespace.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=_env(),
    )
    assert proc.stdout is not None
    tail: list[str] = []
    match: re.Match[str] | None = None
    try:
        async with asyncio.timeout(60):
            while match is None:
                line = (await proc.stdout.readline()).decode(errors="replace")
                if not line:
                    raise RuntimeError(f"{args[0]} exited: {''.join(tail[-20:])}")
                tail.append(line)
                match = re.search(ready, line)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise

    async def drain() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            tail.append(line.decode(errors="replace"))
            del tail[:-50]

    drainer = asyncio.create_task(drain())
    try:
        yield proc, match
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        drainer.cancel()
        await asyncio.gather(drainer, return_exceptions=True)


def _cpu_seconds(pid: int) -> float:
    return process_stat(pid)[1]


class Emulator:
    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url, self.http = url, http

    async def configure(self, scenario: Scenario) -> None:
        async with self.http.post(f"{self.url}/_emulator/config", json=scenario.config) as r:
            assert r.status == 200, await r.text()
        await self.reset()

    async def reset(self) -> None:
        async with self.http.post(f"{self.url}/_emulator/reset") as r:
            assert r.status == 200, await r.text()

    async def calls(self) -> Counter[str]:
        async with self.http.get(f"{self.url}/_emulator/stats") as r:
            stats = await r.json()
        return Counter(stats["calls"].get(MODEL, {}))


@dataclass
class Gateway:
    pid: int
    target: str
    metrics_url: str


@contextlib.asynccontextmanager
async def gateway(emulator_url: str, data_dir: Path) -> AsyncIterator[Gateway]:
    args = [
        "serve",
        "--provider",
        "bedrock",
        "--bedrock-endpoint-url",
        emulator_url,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--data-dir",
        str(data_dir),
        "--log-level",
        "WARNING",
    ]
    ready = r"serving gRPC on ([\d.]+:\d+) .*metrics on :(\d+)/metrics"
    async with _process(args, ready) as (proc, match):
        yield Gateway(proc.pid, match.group(1), f"http://127.0.0.1:{match.group(2)}/metrics")


async def _limiter(http: aiohttp.ClientSession, url: str) -> tuple[int, float] | None:
    """The gateway's concurrency limit and pace (attempts/s, 0 = not pacing) from /metrics."""
    async with http.get(url) as r:
        text = await r.text()
    limit = re.search(r"^onespace_provider_concurrency_limit ([\d.e+]+)$", text, re.M)
    pace = re.search(r"^onespace_provider_pace ([\d.e+]+)$", text, re.M)
    if limit is None:
        return None
    return int(float(limit.group(1))), float(pace.group(1)) if pace else 0.0


@contextlib.asynccontextmanager
async def _sampling(
    http: aiohttp.ClientSession, gw: Gateway, on: bool
) -> AsyncIterator[list[tuple[float, int, float]]]:
    samples: list[tuple[float, int, float]] = []
    start = time.perf_counter()

    async def sample() -> None:
        while True:
            state = await _limiter(http, gw.metrics_url)
            if state is not None:
                samples.append((time.perf_counter() - start, *state))
            await asyncio.sleep(SAMPLE_EVERY)

    task = asyncio.create_task(sample()) if on else None
    try:
        yield samples
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# --- contenders ------------------------------------------------------------------------------------


def _texts(tag: str, n: int) -> list[str]:
    return [f"{tag} document number {i} about harbours, lighthouses and tides" for i in range(n)]


def _nova_body(text: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": "nova-multimodal-embed-v1",
            "taskType": "SINGLE_EMBEDDING",
            "singleEmbeddingParams": {
                "embeddingPurpose": "GENERIC_INDEX",
                "embeddingDimension": DIMENSION,
                "text": {"truncationMode": "END", "value": text},
            },
        }
    ).encode()


def _channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        target,
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )


def _request(text: str) -> embed_pb2.EmbedRequest:
    """One text, options as onespace_client builds them (vectors back as packed float32)."""
    return embed_pb2.EmbedRequest(
        items=[common_pb2.Content(text=text)], options=build.embed_options(dimension=DIMENSION)
    )


def _dimension(embedding: common_pb2.Embedding) -> int:
    return len(embedding.values) or len(embedding.f32) // 4


async def _warm_up(target: str) -> None:
    """One call per gateway before timing: connections, the Bedrock route, code paths."""
    channel = _channel(target)
    try:
        reply = await embed_pb2_grpc.EmbedServiceStub(channel).Embed(_request("warm up"), timeout=DEADLINE)
        assert _dimension(reply.results[0].embeddings[0]) == DIMENSION
    finally:
        await channel.close()


async def gateway_unary(target: str, texts: list[str]) -> tuple[int, int, list[float], Counter[str]]:
    channel = _channel(target)
    stub = embed_pb2_grpc.EmbedServiceStub(channel)
    todo = iter(texts)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    ok = 0

    async def client() -> None:
        nonlocal ok
        for text in todo:
            start = time.perf_counter()
            try:
                reply = await stub.Embed(_request(text), timeout=DEADLINE)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                continue
            latencies.append(time.perf_counter() - start)
            assert len(reply.results) == 1 and _dimension(reply.results[0].embeddings[0]) == DIMENSION
            ok += 1

    try:
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
    finally:
        await channel.close()
    return ok, sum(errors.values()), latencies, errors


async def gateway_stream(target: str, texts: list[str]) -> tuple[int, int, list[float], Counter[str]]:
    sent: dict[str, float] = {}
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    ok = 0

    def requests() -> Iterator[embed_pb2.EmbedStreamRequest]:
        for i, text in enumerate(texts):
            sent[str(i)] = time.perf_counter()  # taken by the writer when the window has room
            yield embed_pb2.EmbedStreamRequest(request_id=str(i), content=common_pb2.Content(text=text))

    async with AsyncClient(target, stream_timeout=None) as client:
        async for response in client.embed_stream(
            requests(), dimension=DIMENSION, max_in_flight=STREAM_WINDOW
        ):
            if response.HasField("result"):
                latencies.append(time.perf_counter() - sent[response.request_id])
                assert _dimension(response.result.embeddings[0]) == DIMENSION
                ok += 1
            else:
                errors[str(response.error.code)] += 1
    return ok, sum(errors.values()), latencies, errors


async def aioboto3_gather(
    url: str, texts: list[str], semaphore: int | None, warmed: Callable[[], Awaitable[None]]
) -> tuple[int, int, list[float], Counter[str], float]:
    import aioboto3
    from aiobotocore.config import AioConfig

    latencies: list[float] = []
    session = aioboto3.Session(**CREDENTIALS)
    config = AioConfig(max_pool_connections=POOL)
    async with session.client("bedrock-runtime", endpoint_url=url, config=config) as client:
        gate = asyncio.Semaphore(semaphore) if semaphore else contextlib.nullcontext()

        async def one(text: str) -> list[float]:
            async with gate:
                start = time.perf_counter()
                response = await client.invoke_model(
                    modelId=MODEL,
                    body=_nova_body(text),
                    contentType="application/json",
                    accept="application/json",
                )
                async with response["body"] as stream:
                    raw = await stream.read()
                latencies.append(time.perf_counter() - start)
            embedding: list[float] = json.loads(raw)["embeddings"][0]["embedding"]
            return embedding

        await one("warm up")
        await warmed()
        latencies.clear()
        begun = time.process_time()
        outcomes = await asyncio.gather(*(one(t) for t in texts), return_exceptions=True)
        cpu = time.process_time() - begun
    errors = Counter(type(o).__name__ for o in outcomes if isinstance(o, BaseException))
    ok = sum(1 for o in outcomes if isinstance(o, list) and len(o) == DIMENSION)
    return ok, sum(errors.values()), latencies, errors, cpu


def _boto3_client(url: str) -> Any:
    import boto3

    return boto3.client("bedrock-runtime", endpoint_url=url, **CREDENTIALS)


def _invoke(client: Any, text: str) -> list[float]:
    response = client.invoke_model(
        modelId=MODEL, body=_nova_body(text), contentType="application/json", accept="application/json"
    )
    embedding: list[float] = json.loads(response["body"].read())["embeddings"][0]["embedding"]
    return embedding


def boto3_sequential(client: Any, texts: list[str]) -> tuple[int, int, list[float], Counter[str], float]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    ok = 0
    begun = time.thread_time()
    for text in texts:
        start = time.perf_counter()
        try:
            embedding = _invoke(client, text)
        except Exception as exc:
            errors[type(exc).__name__] += 1
            continue
        latencies.append(time.perf_counter() - start)
        ok += len(embedding) == DIMENSION
    return ok, sum(errors.values()), latencies, errors, time.thread_time() - begun


@dataclass
class _LiteLLM:
    """LiteLLM in a virtualenv of its own (never in the project's dependencies), made once and cached
    under .ci/cache/; `python` None with `reason` when it cannot be had (no network, say)."""

    venv: Path = ROOT / ".ci" / "cache" / "bench-litellm-venv"
    python: Path | None = None
    reason: str = "not looked for"
    version: str = ""

    async def provide(self) -> None:
        python = self.venv / "bin" / "python"
        if await self._found(python):
            return
        for args in (
            [sys.executable, "-m", "venv", str(self.venv)],
            [str(python), "-m", "pip", "install", "-q", "litellm"],
        ):
            code, out = await _run(args)
            if code != 0:
                self.reason = f"`{' '.join(args[-3:])}` failed: {out.strip()[-300:]}"
                break
        else:
            if await self._found(python):
                return
            self.reason = "litellm does not import after installing it"
        print(f"LiteLLM row skipped: {self.reason}", flush=True)

    async def _found(self, python: Path) -> bool:
        if python.exists():
            code, out = await _run(
                [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
            )
            if code == 0:
                self.python, self.version, self.reason = python, out.strip(), ""
        return self.python is not None


LITELLM = _LiteLLM()
LITELLM_SCRIPT = Path(__file__).with_name("litellm_baseline.py")


async def _run(args: list[str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 900)
    return proc.returncode or 0, out.decode(errors="replace")


async def _line(stream: asyncio.StreamReader, prefix: bytes) -> bytes:
    """The rest of the first line starting with `prefix` (LiteLLM prints lines of its own)."""
    while line := await stream.readline():
        if line.startswith(prefix):
            return line[len(prefix) :]
    raise RuntimeError(f"litellm_baseline.py exited before printing {prefix!r}")


async def litellm_gather(
    emulator: Emulator, texts: list[str], tag: str
) -> tuple[int, int, list[float], Counter[str], float, float, str]:
    """tests/benchmarks/litellm_baseline.py in LiteLLM's venv: `aembedding` over the same texts with a
    semaphore of CLIENTS; the emulator is reset once it has warmed up. Its CPU is its own process's."""
    assert LITELLM.python is not None
    env = {k: v for k, v in os.environ.items() if k not in AWS_VARIABLES and k != "PYTHONPATH"}
    env.update(dummy_aws_environment(os.devnull, os.devnull))
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no fetch of a price list from GitHub
    args = [
        str(LITELLM.python),
        str(LITELLM_SCRIPT),
        *("--endpoint", emulator.url, "--model", MODEL, "--items", str(len(texts))),
        *("--concurrency", str(CLIENTS), "--dimension", str(DIMENSION), "--tag", tag),
    ]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(600):
            await _line(proc.stdout, b"litellm_baseline: warmed")
            await emulator.reset()
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            figures = json.loads(await _line(proc.stdout, b"litellm_baseline: result "))
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    note = f"request body: `{figures['request_body']}`"
    if figures["first_error"]:
        note += f"; first failure: {figures['first_error']}"
    return (
        figures["ok"],
        figures["failed"],
        figures["latencies"],
        Counter(figures["errors"]),
        figures["cpu_seconds"],
        figures["seconds"],
        note,
    )


# --- measuring -------------------------------------------------------------------------------------

ONCE = {"aioboto3 no semaphore", "boto3 sequential", "litellm"}  # slow, for reference: one run each
PAIRED = ("gateway unary", "gateway stream")  # random-throttle runs paired with an unthrottled one
UNTHROTTLED = "random-unthrottled"  # results key of those unthrottled runs
CONTENDERS = (
    ("gateway unary", f"onespace unary `Embed`, {CLIENTS} concurrent clients"),
    ("gateway stream", f"onespace `EmbedStream`, {STREAM_WINDOW} in flight"),
    ("aioboto3 + semaphore", f"aioboto3 `gather` + Semaphore({CLIENTS})"),
    ("aioboto3 no semaphore", f"aioboto3 `gather`, no semaphore (pool {POOL})"),
    ("boto3 sequential", f"boto3 sequential loop ({SEQUENTIAL} items, extrapolated)"),
    ("aioboto3 + the cap", "aioboto3 `gather` + Semaphore(the cap): a client told the cap"),
    ("litellm", f"LiteLLM `aembedding` + Semaphore({CLIENTS}) (own venv)"),
)


def _contenders(scenario: Scenario) -> list[tuple[str, str]]:
    """Every contender; the one told the cap only where there is a cap, LiteLLM only if installed."""
    return [
        (n, label)
        for n, label in CONTENDERS
        if (n != "aioboto3 + the cap" or scenario.cap) and (n != "litellm" or LITELLM.python is not None)
    ]


async def measure(
    contender: str, scenario: Scenario, emulator: Emulator, http: aiohttp.ClientSession, tmp: Path, tag: str
) -> Run:
    texts = _texts(tag, scenario.items(contender))
    await emulator.configure(scenario)
    limits: list[tuple[float, int]] = []
    paces: list[tuple[float, float]] = []
    client_cpu: float | None = None
    note: str | None = None
    if contender.startswith("gateway"):
        call: Callable[[str, list[str]], Awaitable[tuple[int, int, list[float], Counter[str]]]]
        call = gateway_unary if contender == "gateway unary" else gateway_stream
        async with gateway(emulator.url, tmp / tag) as gw:
            await _warm_up(gw.target)
            await emulator.reset()
            sample = contender == "gateway unary"  # in every scenario: both sides of a ratio pay for it
            async with _sampling(http, gw, sample) as samples:
                cpu0, client0, start = _cpu_seconds(gw.pid), time.process_time(), time.perf_counter()
                ok, failed, latencies, errors = await call(gw.target, texts)
                seconds = time.perf_counter() - start
                cpu, client_cpu = _cpu_seconds(gw.pid) - cpu0, time.process_time() - client0
            limits = [(t, limit) for t, limit, _ in samples]
            paces = [(t, pace) for t, _, pace in samples]
            final = await _limiter(http, gw.metrics_url)
            if not limits and final is not None:
                limits.append((seconds, final[0]))
                paces.append((seconds, final[1]))
    elif contender == "litellm":
        ok, failed, latencies, errors, cpu, seconds, note = await litellm_gather(emulator, texts, tag)
    else:
        with _aws_isolated():
            if contender == "boto3 sequential":
                client = await asyncio.to_thread(_boto3_client, emulator.url)
                await asyncio.to_thread(_invoke, client, "warm up")
                await emulator.reset()
                start = time.perf_counter()
                ok, failed, latencies, errors, cpu = await asyncio.to_thread(boto3_sequential, client, texts)
                seconds = time.perf_counter() - start
                client.close()
            else:
                gates = {"aioboto3 + semaphore": CLIENTS, "aioboto3 + the cap": scenario.cap}
                semaphore = gates.get(contender)
                timer = _Timer(emulator)
                ok, failed, latencies, errors, cpu = await aioboto3_gather(
                    emulator.url, texts, semaphore, timer.start
                )
                seconds = time.perf_counter() - timer.started
    calls = await emulator.calls()
    result = Run(
        contender,
        len(texts),
        seconds,
        ok,
        failed,
        latencies,
        cpu,
        calls["ThrottlingException"],
        sum(calls.values()),
        errors,
        limits,
        paces,
        client_cpu_seconds=client_cpu,
        note=note,
    )
    if contender == "boto3 sequential":  # a rate for all items, from the subsample
        full = scenario.items("gateway unary")
        result.extrapolated_from = len(texts)
        result.seconds = seconds * full / len(texts)
        result.cpu_seconds = cpu * full / len(texts)
        result.items = full
    return result


class _Timer:
    """Started by a bare contender once it has warmed up (and the emulator was reset)."""

    def __init__(self, emulator: Emulator | None = None) -> None:
        self.emulator = emulator
        self.started = time.perf_counter()

    async def start(self) -> None:
        if self.emulator is not None:
            await self.emulator.reset()
        self.started = time.perf_counter()


def _failures(runs: list[Run]) -> str:
    """The median failures, and every run's when they differ."""
    median = f"{_median(runs, lambda r: r.failed):,.0f}"
    if len({r.failed for r in runs}) == 1:
        return median
    return f"{median} ({'/'.join(str(r.failed) for r in runs)})"


def _median(runs: list[Run], key: Callable[[Run], float]) -> float:
    return statistics.median(key(r) for r in runs)


def _ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1e3:,.0f}"


async def run(tmp: Path) -> dict[str, Any]:
    started = dt.datetime.now().astimezone()
    load_before = load_average()
    results: dict[str, dict[str, list[Run]]] = {}
    await LITELLM.provide()
    async with contextlib.AsyncExitStack() as stack:
        _, match = await stack.enter_async_context(
            _process(
                ["emulate-bedrock", "--host", "127.0.0.1", "--port", "0", "--seed", "1"], r"(http://[\d.:]+)"
            )
        )
        http = await stack.enter_async_context(aiohttp.ClientSession())
        emulator = Emulator(match.group(1), http)
        for scenario in SCENARIOS:
            runs = results.setdefault(scenario.key, {name: [] for name, _ in _contenders(scenario)})
            for repeat in range(REPEATS):
                for name, _ in _contenders(scenario):
                    if repeat and name in ONCE:
                        continue
                    tag = f"{scenario.key}-{name.replace(' ', '-').replace('+', '')}-{repeat}"
                    if scenario.key == "random" and name in PAIRED:
                        reference = await measure(
                            name, SCENARIOS[0], emulator, http, tmp, f"{tag}-unthrottled"
                        )
                        results.setdefault(UNTHROTTLED, {}).setdefault(name, []).append(reference)
                    result = await measure(name, scenario, emulator, http, tmp, tag)
                    runs[name].append(result)
                    assert result.ok + result.failed == result.items or result.extrapolated_from
                    print(
                        f"[{time.strftime('%H:%M:%S')}] {scenario.key} #{repeat + 1} {name}: "
                        f"{result.rate:,.0f} items/s, {result.failed} failed, {result.throttles} throttled, "
                        f"p99 {_ms(result.percentile(0.99))} ms, "
                        f"{result.cpu_per_item * 1e3:.2f} ms CPU/item, "
                        f"load {load_average()}",
                        flush=True,
                    )
    return report(results, started, load_before)


def report(
    results: dict[str, dict[str, list[Run]]], started: dt.datetime, load_before: str
) -> dict[str, Any]:
    header = [
        "scenario",
        "contender",
        "items x runs",
        "items/s",
        "x unthrottled",
        "of ceiling",
        "p50 ms",
        "p99 ms",
        "failed",
        "throttled calls",
        "throttled share",
        "CPU ms/item",
        "x bare CPU",
    ]
    rows: list[list[object]] = []
    for scenario in SCENARIOS:
        runs_by = results[scenario.key]
        bare_cpu = _median(runs_by["aioboto3 + semaphore"], lambda r: r.cpu_per_item)
        for name, label in _contenders(scenario):
            runs = runs_by[name]
            rate = _median(runs, lambda r: r.rate)
            cpu = _median(runs, lambda r: r.cpu_per_item)
            throttles = _median(runs, lambda r: r.throttles)
            share = _median(runs, lambda r: r.throttles / max(r.calls, 1))
            rows.append(
                [
                    scenario.label,
                    label,
                    f"{runs[0].extrapolated_from or runs[0].items:,} x {len(runs)}",
                    rate,
                    f"{_unthrottled_ratio(results, name):.2f}" if scenario.key == "random" else "",
                    f"{rate / scenario.ceiling:.1%}" if scenario.ceiling else "",
                    _ms(_median(runs, lambda r: r.percentile(0.5))),
                    _ms(_median(runs, lambda r: r.percentile(0.99))),
                    _failures(runs),
                    f"{throttles:,.0f}",
                    f"{share:.1%}",
                    f"{cpu * 1e3:.2f}",
                    f"{cpu / bare_cpu:.2f}",
                ]
            )
    title = (
        f"Bedrock fan-out, Nova text {DIMENSION}-d, medians of the runs; x unthrottled = items/s / the "
        "same contender's unthrottled items/s (the gateway: median of the paired runs' ratios); x bare "
        f"CPU = CPU per item / the aioboto3 + Semaphore({CLIENTS}) loop's in the same scenario"
    )
    print_table(title, header, rows)
    target_header = ["target", "contender", "figure", "met"]
    target_rows = _targets(results)
    print_table("targets", target_header, target_rows)
    pair_header = ["contender", "unthrottled items/s", "20% random throttles items/s", "ratio"]
    pair_rows = [
        [name, u.rate, t.rate, f"{t.rate / u.rate:.2f}"]
        for name, references in results.get(UNTHROTTLED, {}).items()
        for u, t in zip(references, results["random"][name], strict=True)
    ]
    print_table("random throttles, paired with an unthrottled run", pair_header, pair_rows)
    limits = _limit_figures(results)
    limit_rows = [[s, *v] for s, v in limits.items()]
    limit_header = [
        "scenario",
        "limit min",
        "limit median",
        "limit max",
        "final limit",
        "samples paced",
        "pace median (calls/s)",
    ]
    print_table(
        "gateway concurrency limit during the unary runs (samples every 100 ms, all repeats)",
        limit_header,
        limit_rows,
    )
    plot = _plot(results)
    print(plot)
    body = "\n\n".join(
        [
            "Everything on 127.0.0.1 and the same 2 cores: the emulator in its own process, a fresh gateway "
            "per run in its own process (default settings: adaptive limit from 16, within [1, 64]), all "
            f"clients in the benchmark's process. Nova text at {DIMENSION}-d, a distinct text per item; "
            f"{ITEMS:,} items per gateway run ({int(ITEMS * 0.75):,} in the cap x 100 ms and RPM "
            f"scenarios, {int(ITEMS * 0.35):,} in the cap x 250 ms one), {ITEMS // 4:,} per bare-loop run "
            "under throttling (botocore's retries make them slow) and per LiteLLM run, "
            f"contenders interleaved, medians of {REPEATS} runs (the no-semaphore, sequential and LiteLLM "
            "loops: one run). Scenarios: "
            "fixed 40 ms per call; a concurrency cap of 16 calls x 100 ms, beyond it ThrottlingException "
            "(ceiling 160 items/s); the same cap at 250 ms per call (ceiling 64 items/s: the emulator's and "
            "client's fixed cost per call, ~6-7 ms of turnaround outside the emulator's slot on these 2 "
            "cores, is then a smaller share of the call, see 'a client told the cap'); an RPM quota of "
            "9,000/min (token bucket of 20) at 40 ms (ceiling "
            "150 items/s); 20% of calls throttled at random at 40 ms. Bare loops: `asyncio.gather` over "
            f"aioboto3 `invoke_model` + `json.loads` with Semaphore({CLIENTS}) or none (pool of {POOL} "
            "connections, botocore's default legacy retries: 5 attempts); a sequential boto3 loop over "
            f"{SEQUENTIAL} items, extrapolated; in the cap scenarios also aioboto3 with Semaphore(16), a "
            "client told the cap, i.e. what the turnaround between calls leaves of the ceiling; LiteLLM "
            f"`aembedding` (model `bedrock/{MODEL}`, `dimensions={DIMENSION}`, "
            f"`aws_bedrock_runtime_endpoint` = the emulator) with Semaphore({CLIENTS}), run by "
            "tests/benchmarks/litellm_baseline.py in a virtualenv of its own (.ci/cache/bench-litellm-venv, "
            "made on first use; never a project dependency), its CPU its own process's, LiteLLM's default "
            f"retries. {_litellm_finding(results)} Latency: "
            "from the request leaving the client (RPC start, stream write, the call after the semaphore). "
            "Throttled calls: the emulator's counters; share = of all calls made. CPU: the gateway "
            "process (/proc) for the gateway rows, the benchmark process around the loop for the bare "
            "rows (the gateway rows' gRPC client is not counted).",
            markdown_table(header, rows),
            "The issue's targets, computed from the table above:",
            markdown_table(target_header, target_rows),
            "Random throttles against unthrottled, each gateway run paired with the unthrottled run (fixed "
            "40 ms, same contender, same size and sampling) made just before it:",
            markdown_table(pair_header, pair_rows),
            "Gateway concurrency limit (unary runs, sampled from /metrics every 100 ms, all repeats; the "
            "sampling costs the gateway a little CPU, in every scenario alike):",
            markdown_table(limit_header, limit_rows),
            plot,
        ]
    )
    raw = {
        "items": ITEMS,
        "repeats": REPEATS,
        "scenarios": {s.key: {"label": s.label, "config": s.config, "ceiling": s.ceiling} for s in SCENARIOS},
        "runs": {
            key: {
                name: [
                    {
                        "items": r.items,
                        "seconds": r.seconds,
                        "rate": r.rate,
                        "ok": r.ok,
                        "failed": r.failed,
                        "errors": dict(r.errors),
                        "p50": r.percentile(0.5),
                        "p99": r.percentile(0.99),
                        "throttles": r.throttles,
                        "calls": r.calls,
                        "cpu_seconds": r.cpu_seconds,
                        "client_cpu_seconds": r.client_cpu_seconds,
                        "extrapolated_from": r.extrapolated_from,
                        "limits": r.limits,
                        "paces": r.paces,
                        "note": r.note,
                    }
                    for r in runs
                ]
                for name, runs in by.items()
            }
            for key, by in results.items()
        },
    }
    write_section(
        "bedrock-fanout" if DEFAULT else f"bedrock-fanout-{ITEMS}x{REPEATS}",
        "Bedrock fan-out through the gateway (`test_bedrock_fanout.py`)",
        body,
        started=started,
        load_before=load_before,
        raw=raw,
        document=DEFAULT,
    )
    return {"results": results, "rows": rows}


def _litellm_finding(results: dict[str, dict[str, list[Run]]]) -> str:
    """What LiteLLM sent and what the emulator answered, or why it has no row."""
    if LITELLM.python is None:
        return f"LiteLLM: no row ({LITELLM.reason})."
    notes = [
        f"{s.label}: {r.note}"
        for s in SCENARIOS
        for r in results.get(s.key, {}).get("litellm", [])[:1]
        if r.note and (r.failed or s.key == "fixed")
    ]
    return f"LiteLLM {LITELLM.version}: " + "; ".join(notes) + "."


def _unthrottled_ratio(results: dict[str, dict[str, list[Run]]], name: str) -> float:
    """Random-throttle items/s over unthrottled items/s: for the gateway the median of each run's
    ratio to the unthrottled run just before it, for the others the ratio of the two medians."""
    pairs = results.get(UNTHROTTLED, {}).get(name)
    throttled = results["random"][name]
    if pairs:
        return statistics.median(t.rate / u.rate for t, u in zip(throttled, pairs, strict=True))
    return _median(throttled, lambda r: r.rate) / _median(results["fixed"][name], lambda r: r.rate)


def _targets(results: dict[str, dict[str, list[Run]]]) -> list[list[object]]:
    """The issue's targets, each with the figure it is judged by."""
    rows: list[list[object]] = []

    def rate(key: str, name: str) -> float:
        return _median(results[key][name], lambda r: r.rate)

    for name in ("gateway unary", "gateway stream"):
        for scenario in SCENARIOS:
            if scenario.ceiling:
                runs = results[scenario.key][name]
                of = rate(scenario.key, name) / scenario.ceiling
                share = _median(runs, lambda r: r.throttles / max(r.calls, 1))
                rows.append(
                    [
                        f"{scenario.label}: >= 95% of the ceiling, <= 5% throttled",
                        name,
                        f"{of:.1%} of {scenario.ceiling:.0f}/s, {share:.1%} throttled",
                        "yes" if of >= 0.95 and share <= 0.05 else "no",
                    ]
                )
        ratio = _unthrottled_ratio(results, name)
        failed = max(r.failed for r in results["random"][name])
        rows.append(
            [
                "20% random throttles: >= 70% of unthrottled items/s, 0 failed",
                name,
                f"x{ratio:.2f}, {failed} failed (worst run)",
                "yes" if ratio >= 0.7 and failed == 0 else "no",
            ]
        )
        cpu = _median(results["fixed"][name], lambda r: r.cpu_per_item)
        bare = _median(results["fixed"]["aioboto3 + semaphore"], lambda r: r.cpu_per_item)
        rows.append(
            [
                "CPU per item <= 1.2x a bare aioboto3 loop (fixed 40 ms)",
                name,
                f"{cpu * 1e3:.2f} vs {bare * 1e3:.2f} ms: x{cpu / bare:.2f}",
                "yes" if cpu / bare <= 1.2 else "no",
            ]
        )
    return rows


def _limit_figures(results: dict[str, dict[str, list[Run]]]) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for scenario in SCENARIOS:
        runs = results[scenario.key]["gateway unary"]
        values = [v for r in runs for _, v in r.limits]
        finals = [r.limits[-1][1] for r in runs if r.limits]
        paces = [p for r in runs for _, p in r.paces]
        paced = [p for p in paces if p > 0]
        if values:
            out[scenario.label] = [
                min(values),
                statistics.median(values),
                max(values),
                "/".join(map(str, finals)),
                f"{len(paced) / len(paces):.0%}" if paces else "",
                f"{statistics.median(paced):.0f}" if paced else "",
            ]
    return out


def _plot(results: dict[str, dict[str, list[Run]]]) -> str:
    """The limit over time in the throttled scenarios, into docs/benchmarks/limiter.png."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        message = "matplotlib is missing (`pip install -e .[bench]`): no plot of the limit"
        print(message)
        return message
    throttled = [s for s in SCENARIOS if s.key != "fixed"]
    fig, axes = plt.subplots(1, len(throttled), figsize=(4.2 * len(throttled), 3.2), sharey=True)
    for ax, scenario in zip(axes, throttled, strict=True):
        right = ax.twinx()  # the pace, where there is one
        any_paced = False
        for i, r in enumerate(results[scenario.key]["gateway unary"]):
            if r.limits:
                t, v = zip(*r.limits, strict=True)
                line = ax.step(t, v, where="post", lw=1.2, alpha=0.8, label=f"run {i + 1}")[0]
                paced = [(t, p) for t, p in r.paces if p > 0]
                if paced:
                    pt, pv = zip(*paced, strict=True)
                    right.plot(pt, pv, ".", ms=2, color=line.get_color(), alpha=0.6)
                    any_paced = True
        if any_paced:
            right.set_ylabel("pace, calls/s (dots; dotted: the ceiling)", fontsize=8)
            right.tick_params(labelsize=7)
            if scenario.ceiling:
                right.axhline(scenario.ceiling, color="grey", ls=":", lw=1)
        else:
            right.set_axis_off()
        if scenario.cap:
            ax.axhline(scenario.cap, color="grey", ls="--", lw=1, label="the cap")
        ax.set_title(scenario.label, fontsize=9)
        ax.set_xlabel("seconds")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("concurrency limit")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"gateway concurrency limit, unary Embed from {CLIENTS} clients ({ITEMS:,} items per run)",
        fontsize=10,
    )
    fig.tight_layout()
    RAW.mkdir(parents=True, exist_ok=True)
    path = RAW / ("limiter.png" if DEFAULT else f"limiter-{ITEMS}x{REPEATS}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"![gateway concurrency limit over time]({path.relative_to(ROOT / 'docs')})"


@pytest.mark.timeout(3600)
async def test_bedrock_fanout(tmp_path: Path) -> None:
    figures = await run(tmp_path)
    for by in figures["results"].values():
        for runs in by.values():
            for r in runs:
                assert r.ok + r.failed == r.items or r.extrapolated_from is not None
                assert r.ok == len(r.latencies)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp)))


if __name__ == "__main__":
    main()
