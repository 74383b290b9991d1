"""`onespace emulate-bedrock`: run the emulator from the command line.

`add_cli(subparsers)` registers the sub-command; the main CLI makes the parser itself and calls
`add_arguments(parser)` only when the command is used (importing this package starts the
emulator's server modules). The sub-command stores its runner in `args.func`
(`func(args) -> int`): `run_from_args`, which serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from onespace.emulator.app import running_emulator
from onespace.emulator.config import OVERFLOW_POLICIES, EmulatorConfig, FaultRates, Latency
from onespace.models import Modality

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "add_cli", "config_from_args", "run_from_args"]

HELP = "run a local Bedrock Runtime InvokeModel emulator (Nova, Titan, Cohere embeddings)"
DESCRIPTION = "Bedrock Runtime emulator. Point the gateway at it with --bedrock-endpoint-url."

_FAULT_FLAGS = {
    "throttle": "--throttle-rate",
    "not_ready": "--not-ready-rate",
    "unavailable": "--unavailable-rate",
    "internal": "--error-rate",
    "timeout": "--timeout-rate",
}


def add_cli(subparsers: Any) -> None:
    """Register `emulate-bedrock` on an argparse sub-parsers object."""
    add_arguments(subparsers.add_parser("emulate-bedrock", help=HELP, description=DESCRIPTION))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `emulate-bedrock` and its `func`, on a parser made by the caller."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8787, help="port; 0 picks a free one (default: %(default)s)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency of every call, ms")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="plus uniform jitter in [0, this], ms")
    p.add_argument(
        "--latency",
        action="append",
        default=[],
        metavar="MODALITY=FIXED[:JITTER]",
        help="per-modality latency in ms, e.g. video=800:200 (repeatable; overrides --latency-ms)",
    )
    p.add_argument(
        "--per-item-ms", type=float, default=0.0, help="extra latency per batched item after the first"
    )
    p.add_argument("--rpm", type=int, default=0, help="requests per minute per model; 0 = unlimited")
    p.add_argument("--burst", type=int, default=0, help="token bucket size; 0 = the RPM value")
    p.add_argument("--max-concurrency", type=int, default=0, help="calls in flight at once; 0 = unlimited")
    p.add_argument(
        "--overflow",
        choices=OVERFLOW_POLICIES,
        default="throttle",
        help="beyond --max-concurrency: answer ThrottlingException, or queue (default: %(default)s)",
    )
    for name, flag in _FAULT_FLAGS.items():
        p.add_argument(
            flag,
            dest=f"fault_{name}",
            type=float,
            default=0.0,
            help=f"probability of {FaultRates.CODES[name]} per call",
        )
    p.add_argument("--seed", type=int, default=None, help="seed of the latency/fault RNG")
    p.add_argument("--s3-dir", type=Path, default=None, help="serve s3://bucket/key from DIR/bucket/key")
    p.set_defaults(func=run_from_args)


def _latency(args: argparse.Namespace) -> dict[str, Latency]:
    out = {m.value: Latency(args.latency_ms, args.jitter_ms) for m in Modality}
    for spec in args.latency:
        modality, _, values = spec.partition("=")
        fixed, _, jitter = values.partition(":")
        if modality not in out or not fixed:
            raise SystemExit(
                f"--latency {spec!r}: expected MODALITY=FIXED[:JITTER] with one of {', '.join(out)}"
            )
        out[modality] = Latency(float(fixed), float(jitter or 0.0))
    return out


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    try:
        return EmulatorConfig(
            latency=_latency(args),
            per_item_ms=args.per_item_ms,
            rpm=args.rpm,
            burst=args.burst,
            max_concurrency=args.max_concurrency,
            overflow=args.overflow,
            faults=FaultRates(**{name: getattr(args, f"fault_{name}") for name in _FAULT_FLAGS}),
            seed=args.seed,
            s3_dir=args.s3_dir,
        )
    except ValueError as exc:
        raise SystemExit(f"emulate-bedrock: {exc}") from exc


def run_from_args(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; prints the base URL (with the real port when --port 0)."""
    config = config_from_args(args)
    logging.getLogger(__name__).info("emulator config: %s", config.to_json())
    asyncio.run(_serve(config, args.host, args.port))
    return 0


async def _serve(config: EmulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_emulator(config, host, port) as emulator:
        print(
            f"Bedrock Runtime emulator on {emulator.url} (admin: {emulator.url}/_emulator/stats)", flush=True
        )
        await stop.wait()
