from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from onespace.emulator import EmulatorConfig, RunningEmulator, running_emulator


@dataclass
class Answer:
    status: int
    headers: Any
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def error_type(self) -> str | None:
        return self.headers.get("x-amzn-ErrorType")

    @property
    def message(self) -> str:
        return str(self.json["message"])


class Bedrock:
    """A raw HTTP client for the emulator (no botocore: we check the wire format itself)."""

    def __init__(self, emulator: RunningEmulator, session: aiohttp.ClientSession) -> None:
        self.emulator, self.session = emulator, session

    @property
    def stats(self) -> Any:
        return self.emulator.state.stats

    async def invoke(self, model: str, body: Any, *, encode: bool = True) -> Answer:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        path = quote(model, safe="") if encode else model
        async with self.session.post(f"{self.emulator.url}/model/{path}/invoke", data=data) as resp:
            return Answer(resp.status, resp.headers, await resp.read())

    async def admin(self, method: str, path: str, body: Any = None, data: bytes | None = None) -> Answer:
        payload = data if data is not None else (None if body is None else json.dumps(body).encode())
        async with self.session.request(
            method, f"{self.emulator.url}/_emulator/{path}", data=payload
        ) as resp:
            return Answer(resp.status, resp.headers, await resp.read())


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=7)


@pytest.fixture
async def bedrock(emulator_config: EmulatorConfig) -> AsyncIterator[Bedrock]:
    async with running_emulator(emulator_config) as emu, aiohttp.ClientSession() as session:
        yield Bedrock(emu, session)
