from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from onespace.config import Settings
from onespace.content import Content, Purpose
from onespace.emulator import EmulatorConfig, RunningEmulator, running_emulator
from onespace.models import Modality
from onespace.providers.base import EmbedInput
from onespace.providers.bedrock import BedrockProvider, RetryPolicy
from tests.aws import AWS_VARIABLES, dummy_aws_environment


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials for the emulator; nothing from the machine's own AWS setup leaks in."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in dummy_aws_environment(
        str(tmp_path / "aws-config"), str(tmp_path / "aws-credentials")
    ).items():
        monkeypatch.setenv(name, value)


class RecordingEvents:
    def __init__(self) -> None:
        self.throttled_models: list[str] = []
        self.retries: list[tuple[str, str]] = []
        self.backoffs: list[tuple[str, str]] = []

    def throttled(self, model: str) -> None:
        self.throttled_models.append(model)

    def retried(self, model: str, reason: str) -> None:
        self.retries.append((model, reason))

    async def backoff(self, model: str, reason: str, delay: float) -> None:
        self.backoffs.append((model, reason))
        await asyncio.sleep(delay)


FAST_RETRY = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.004)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=11)


@pytest.fixture
async def emulator(emulator_config: EmulatorConfig) -> AsyncIterator[RunningEmulator]:
    async with running_emulator(emulator_config) as emu:
        yield emu


@pytest.fixture
def retry_policy() -> RetryPolicy:
    return FAST_RETRY


@pytest.fixture
async def provider(emulator: RunningEmulator, retry_policy: RetryPolicy) -> AsyncIterator[BedrockProvider]:
    settings = Settings(bedrock_endpoint_url=emulator.url, bedrock_max_attempts=retry_policy.max_attempts)
    p = BedrockProvider(settings, retry=retry_policy, events=RecordingEvents(), seed=0)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


def events(provider: BedrockProvider) -> RecordingEvents:
    assert isinstance(provider.events, RecordingEvents)
    return provider.events


def item(
    content: Content | str, model: str, dimension: int, purpose: Purpose = Purpose.GENERIC_INDEX
) -> EmbedInput:
    if isinstance(content, str):
        content = Content(Modality.TEXT, text=content)
    return EmbedInput(content, model, dimension, purpose)
