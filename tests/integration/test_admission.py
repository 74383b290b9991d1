"""Transport admission: a burst far larger than grpc-core's default pending-call limits is served
in full, and RPCs beyond `max_in_flight_rpcs` are refused by onespace itself, at once, with a
retry hint and a metric (never a bare CANCELLED from grpc-core)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from onespace_client.v1 import common_pb2, embed_pb2, info_pb2
from tests.harness import running_gateway
from tests.scripted import ScriptedProvider

BURST = 5_000  # grpc-core's defaults (1,000 soft, 3,000 hard) cancelled ~40% of these


async def test_a_burst_of_5000_unary_rpcs_on_one_channel_all_succeed(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        await gw.info.Info(info_pb2.InfoRequest())
        outcomes = await asyncio.gather(
            *(gw.info.Info(info_pb2.InfoRequest(), timeout=120) for _ in range(BURST)), return_exceptions=True
        )
    failures = [o for o in outcomes if not isinstance(o, info_pb2.InfoResponse)]
    assert failures == []


async def test_rpcs_beyond_the_in_flight_limit_are_refused_at_once(tmp_path: Path) -> None:
    provider = ScriptedProvider(gate=asyncio.Event())
    async with running_gateway(tmp_path, provider, max_in_flight_rpcs=2, retry_pushback_ms=250) as gw:

        def embed(text: str) -> grpc.aio.UnaryUnaryCall[embed_pb2.EmbedRequest, embed_pb2.EmbedResponse]:
            return gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text=text)]))

        held = [embed("first"), embed("second")]
        await provider.started.wait()
        while gw.app.rpc.admission.active < 2:
            await asyncio.sleep(0)
        try:
            await embed("third")
            raise AssertionError("the third RPC was admitted")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "2 RPCs already in flight" in (error.details() or "")
            assert ("grpc-retry-pushback-ms", "250") in tuple(error.trailing_metadata() or ())
        assert not provider.gate.is_set() and len(provider.seen) <= 2  # refused before any work
        rejected = gw.app.metrics.rejected.labels("rpcs_in_flight")._value.get()
        assert rejected == 1
        provider.gate.set()
        answers = await asyncio.gather(*held)
        assert [len(a.results) for a in answers] == [1, 1]
        assert gw.app.rpc.admission.active == 0
        await gw.info.Info(info_pb2.InfoRequest())  # admitted again once there is room
