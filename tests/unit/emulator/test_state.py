from __future__ import annotations

import argparse

import pytest

from onespace.emulator import EmulatorConfig, Latency, add_cli
from onespace.emulator.catalog import resolve_model
from onespace.emulator.cli import config_from_args
from onespace.emulator.errors import EmulatedError
from onespace.emulator.state import EmulatorState, TokenBucket
from onespace.emulator.vectors import cohere_types
from onespace.models import COHERE_EMBED_V4, NOVA_MODEL
from tests.clock import FakeClock


def test_token_bucket_refills_at_the_rpm_rate() -> None:
    bucket = TokenBucket(rate=1.0, capacity=2, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.5) is False
    assert bucket.take(1.0) is True
    assert [bucket.take(60.0) for _ in range(3)] == [True, True, False]  # capped at capacity


def test_quota_uses_burst_and_per_model_overrides() -> None:
    clock = FakeClock(100.0)
    state = EmulatorState(EmulatorConfig(rpm=60, burst=1, rpm_by_model={COHERE_EMBED_V4.id: 0}), clock)
    state.check_quota(NOVA_MODEL.id)
    with pytest.raises(EmulatedError) as info:
        state.check_quota(NOVA_MODEL.id)
    assert info.value.code == "ThrottlingException" and info.value.status == 429
    clock.now += 1.0  # 60 RPM = one token a second
    state.check_quota(NOVA_MODEL.id)
    for _ in range(100):  # 0 = unlimited for this model
        state.check_quota(COHERE_EMBED_V4.id)


def test_latency_is_fixed_plus_seeded_jitter_plus_per_item() -> None:
    config = EmulatorConfig(
        latency={"text": Latency(10, 0), "video": Latency(100, 50)}, per_item_ms=2, seed=3
    )
    state = EmulatorState(config)
    assert state.latency_seconds("text", 1) == pytest.approx(0.010)
    assert state.latency_seconds("text", 96) == pytest.approx(0.010 + 95 * 0.002)
    draws = [state.latency_seconds("video", 1) for _ in range(50)]
    assert all(0.100 <= d <= 0.150 for d in draws) and len(set(draws)) > 1
    replay = EmulatorState(config)
    assert [replay.latency_seconds("video", 1) for _ in range(50)] == draws
    assert state.latency_seconds("audio", 1) == 0.0


def test_fault_draw_frequencies_follow_the_rates() -> None:
    state = EmulatorState(EmulatorConfig(seed=1).updated({"faults": {"throttle": 0.2, "unavailable": 0.1}}))
    draws = [state.draw_fault() for _ in range(5000)]
    assert 850 < draws.count("ThrottlingException") < 1150
    assert 380 < draws.count("ServiceUnavailableException") < 620
    assert (
        draws.count(None) + draws.count("ThrottlingException") + draws.count("ServiceUnavailableException")
        == 5000
    )


def test_forced_errors_are_consumed_in_order() -> None:
    state = EmulatorState(EmulatorConfig())
    state.force("AccessDeniedException", count=1)
    state.force("ModelTimeoutException", "slow", count=1)
    codes = []
    for _ in range(2):
        with pytest.raises(EmulatedError) as info:
            state.check_forced(NOVA_MODEL.id, b"{}")
        codes.append((info.value.code, info.value.message))
    assert codes[0][0] == "AccessDeniedException" and codes[1] == ("ModelTimeoutException", "slow")
    state.check_forced(NOVA_MODEL.id, b"{}")
    with pytest.raises(ValueError, match="unknown Bedrock error code"):
        state.force("NopeException")


def test_resolve_model_decodes_percent_encoding() -> None:
    arn = "arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fcohere.embed-v4%3A0"
    assert resolve_model(arn).spec is COHERE_EMBED_V4
    assert resolve_model("global.cohere.embed-v4:0").spec is COHERE_EMBED_V4
    with pytest.raises(EmulatedError, match="ResourceNotFoundException"):
        resolve_model("arn:aws:bedrock:us-east-1::foundation-model")


def test_cohere_binary_types_pack_signs() -> None:
    import numpy as np

    vector = np.array([1, -1, 1, -1, 1, -1, 1, -1, -1, -1, -1, -1, -1, -1, -1, 1], dtype=np.float32)
    assert cohere_types(vector, "ubinary") == [0b10101010, 0b00000001]
    assert cohere_types(vector, "binary") == [0b10101010 - 128, 1 - 128]


def test_cli_flags_build_the_config() -> None:
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(
        [
            "emulate-bedrock",
            "--port",
            "0",
            "--latency-ms",
            "20",
            "--jitter-ms",
            "5",
            "--latency",
            "video=800:200",
            "--rpm",
            "60",
            "--throttle-rate",
            "0.1",
            "--error-rate",
            "0.05",
            "--max-concurrency",
            "8",
            "--overflow",
            "queue",
            "--seed",
            "9",
        ]
    )
    config = config_from_args(args)
    assert config.latency["text"] == Latency(20, 5) and config.latency["video"] == Latency(800, 200)
    assert (config.rpm, config.max_concurrency, config.overflow, config.seed) == (60, 8, "queue", 9)
    assert (config.faults.throttle, config.faults.internal) == (0.1, 0.05)
    assert args.func.__name__ == "run_from_args"
    bad = parser.parse_args(["emulate-bedrock", "--throttle-rate", "0.8", "--error-rate", "0.8"])
    with pytest.raises(SystemExit, match="sum to at most 1"):
        config_from_args(bad)
    with pytest.raises(SystemExit, match="MODALITY=FIXED"):
        config_from_args(parser.parse_args(["emulate-bedrock", "--latency", "smell=3"]))
