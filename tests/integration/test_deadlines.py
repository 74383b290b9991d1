"""A client's deadline is honoured as sent: longer than the server default, or cut to the
configured maximum (and the error says so)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from onespace.providers.base import EmbedInput, ProviderResult
from onespace_client.v1 import common_pb2, embed_pb2
from tests.harness import running_gateway
from tests.scripted import ScriptedProvider


@dataclass
class _DeadlineRecorder(ScriptedProvider):
    deadlines: list[float] = field(default_factory=list)

    async def embed(
        self,
        inputs: Sequence[EmbedInput],
        *,
        deadline: float | None = None,
        interactive: bool = False,
    ) -> list[ProviderResult]:
        assert deadline is not None
        self.deadlines.append(deadline - time.monotonic())
        return await super().embed(inputs, deadline=deadline)


def _request(text: str) -> embed_pb2.EmbedRequest:
    return embed_pb2.EmbedRequest(items=[common_pb2.Content(text=text)])


async def test_a_deadline_longer_than_the_default_reaches_the_provider(tmp_path: Path) -> None:
    provider = _DeadlineRecorder()
    async with running_gateway(tmp_path, provider, default_deadline_seconds=0.5) as g:
        await g.embed.Embed(_request("long"), timeout=120)
        await g.embed.Embed(_request("none"))  # no deadline sent: the server default
    assert provider.deadlines[0] > 100
    assert provider.deadlines[1] <= 0.5


async def test_max_deadline_cuts_a_longer_one_and_says_so(tmp_path: Path) -> None:
    provider = _DeadlineRecorder(gate=asyncio.Event())  # never answers
    async with running_gateway(tmp_path, provider, max_deadline_seconds=0.3) as g:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await g.embed.Embed(_request("slow"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "max_deadline_seconds" in (caught.value.details() or "")
    assert provider.deadlines[0] <= 0.3
