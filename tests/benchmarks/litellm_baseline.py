"""LiteLLM's `aembedding` against the Bedrock emulator: the bedrock-fanout benchmark's LiteLLM row.

Run by the benchmark with the python of a separate virtualenv holding litellm (it never enters the
project's dependencies), so this file imports nothing from onespace. Protocol on stdout/stdin: one
warm-up call, then the line WARMED (the benchmark resets the emulator's counters), then it waits
for a line on stdin and runs `--items` texts with at most `--concurrency` calls in flight
(`asyncio.gather` + a semaphore, what a LiteLLM user writes), and prints one line RESULT + JSON:
items/s, latencies, failures by exception type, the first failure's message, the client's CPU seconds, and
the request body LiteLLM sent first (to show the wire format it speaks). LiteLLM's own retries are
left at their default: what a user gets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

WARMED = "litellm_baseline: warmed"
RESULT = "litellm_baseline: result "  # stdout may carry LiteLLM's own prints too


def _texts(tag: str, n: int) -> list[str]:
    return [f"{tag} document number {i} about harbours, lighthouses and tides" for i in range(n)]


def _capture_bodies(sent: list[bytes]) -> None:
    """Record the first request body LiteLLM posts (its httpx handler), to report the wire format."""
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler  # type: ignore[import-not-found]

    original = AsyncHTTPHandler.post

    async def post(self: Any, *args: Any, **kwargs: Any) -> Any:
        data = kwargs.get("data")
        if not sent and data is not None:
            sent.append(data if isinstance(data, bytes) else str(data).encode())
        return await original(self, *args, **kwargs)

    AsyncHTTPHandler.post = post


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--model", required=True, help="the Bedrock model id (LiteLLM gets bedrock/<id>)")
    p.add_argument("--items", type=int, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--dimension", type=int, required=True)
    p.add_argument("--tag", default="litellm")
    args = p.parse_args()

    import litellm  # type: ignore[import-not-found]  # in its own venv only

    litellm.suppress_debug_info = True  # else it prints "Give Feedback / Get Help" on each failure
    sent: list[bytes] = []
    _capture_bodies(sent)
    kwargs: dict[str, Any] = {
        "model": f"bedrock/{args.model}",
        "dimensions": args.dimension,
        "aws_bedrock_runtime_endpoint": args.endpoint,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_region_name": "us-east-1",
    }
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    first_error: list[str] = []
    ok = 0
    wrong = 0

    async def one(text: str, gate: asyncio.Semaphore) -> None:
        nonlocal ok, wrong
        async with gate:
            start = time.perf_counter()
            try:
                response = await litellm.aembedding(input=[text], **kwargs)
            except Exception as exc:  # every failure is a figure here, whatever its type
                errors[type(exc).__name__] += 1
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}"[:600])
                return
            latencies.append(time.perf_counter() - start)
        vector = response.data[0]["embedding"]
        if len(vector) == args.dimension:
            ok += 1
        else:
            wrong += 1

    warm = asyncio.Semaphore(1)
    await one("warm up", warm)
    print(WARMED, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    warm_up = {"ok": ok, "errors": dict(errors), "first_error": first_error[0] if first_error else None}
    latencies.clear()
    errors.clear()
    first_error.clear()
    ok = wrong = 0
    gate = asyncio.Semaphore(args.concurrency)
    cpu0, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(t, gate) for t in _texts(args.tag, args.items)))
    seconds = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

    print(
        RESULT
        + json.dumps(
            {
                "litellm": litellm.__version__ if hasattr(litellm, "__version__") else _version(),
                "items": args.items,
                "seconds": seconds,
                "ok": ok,
                "wrong_dimension": wrong,
                "failed": sum(errors.values()) + wrong,
                "errors": dict(errors),
                "first_error": first_error[0] if first_error else None,
                "latencies": latencies,
                "p50": pct(0.5),
                "p99": pct(0.99),
                "cpu_seconds": time.process_time() - cpu0,
                "warm_up": warm_up,
                "request_body": sent[0].decode(errors="replace") if sent else None,
            }
        ),
        flush=True,
    )


def _version() -> str:
    from importlib.metadata import version

    return version("litellm")


if __name__ == "__main__":
    asyncio.run(main())
