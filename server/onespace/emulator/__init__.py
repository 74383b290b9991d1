"""A local Amazon Bedrock Runtime emulator (InvokeModel for Nova, Titan and Cohere embeddings).

Real paths, headers and error shapes; vectors from the local featurizer; a latency model, an
RPM quota, a concurrency cap, fault injection and call counters, all adjustable at runtime
through `/_emulator/*`. See docs/bedrock.md.
"""

from __future__ import annotations

from onespace.emulator.app import RunningEmulator, build_app, running_emulator
from onespace.emulator.cli import add_cli, run_from_args
from onespace.emulator.config import EmulatorConfig, FaultRates, Latency

__all__ = [
    "EmulatorConfig",
    "FaultRates",
    "Latency",
    "RunningEmulator",
    "add_cli",
    "build_app",
    "run_from_args",
    "running_emulator",
]
