"""gRPC's own retries in the client, against a real gateway refusing calls with a pushback hint,
and `wait_for_ready` against a gateway that is not up yet."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from onespace_client import AsyncClient, Client, OnespaceClientError, RetryPolicy
from onespace_client.retry import IDEMPOTENT_METHODS, channel_options
from onespace_client.v1 import info_pb2
from tests.harness import Running, running_gateway
from tests.scripted import ScriptedProvider
from tests.unit.client.fake_gateway import FakeGateway

PUSHBACK_MS = 250


def _rejected(gw: Running) -> float:
    value: float = gw.app.metrics.rejected.labels("rpcs_in_flight")._value.get()
    return value


@pytest.fixture
async def full(
    tmp_path: Path,
) -> AsyncIterator[tuple[Running, ScriptedProvider, list[asyncio.Future[object]]]]:
    """A gateway admitting 2 unary RPCs at once, with 2 embeds held in flight by the provider: the
    next RPC is refused with RESOURCE_EXHAUSTED and `grpc-retry-pushback-ms`."""
    provider = ScriptedProvider(gate=asyncio.Event())
    async with running_gateway(tmp_path, provider, max_in_flight_rpcs=2, retry_pushback_ms=PUSHBACK_MS) as gw:
        holder = AsyncClient(gw.target)
        held: list[asyncio.Future[object]] = [
            asyncio.create_task(holder.embed([text])) for text in ("first", "second")
        ]
        await provider.started.wait()
        while gw.app.rpc.admission.active < 2:
            await asyncio.sleep(0)
        try:
            yield gw, provider, held
        finally:
            provider.gate.set()  # type: ignore[union-attr]
            await asyncio.gather(*held, return_exceptions=True)
            await holder.close()


async def test_a_refusal_with_pushback_is_retried_and_succeeds(
    full: tuple[Running, ScriptedProvider, list[asyncio.Future[object]]],
) -> None:
    gw, provider, held = full
    async with AsyncClient(gw.target) as client:
        call = asyncio.create_task(client.info())
        while _rejected(gw) < 1:  # the first attempt was refused...
            await asyncio.sleep(0)
        assert not call.done()  # ...and not reported: gRPC waits the pushback, then tries again
        assert provider.gate is not None
        provider.gate.set()
        await asyncio.gather(*held)
        response = await call
    assert isinstance(response, info_pb2.InfoResponse) and response.models


async def test_without_retries_the_refusal_surfaces_with_its_hint(
    full: tuple[Running, ScriptedProvider, list[asyncio.Future[object]]],
) -> None:
    gw, _, _ = full
    async with AsyncClient(gw.target, retries=False) as client:
        with pytest.raises(OnespaceClientError) as refused:
            await client.info()
    assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.retry_pushback_ms == PUSHBACK_MS
    assert _rejected(gw) == 1


async def test_create_collection_is_never_retried(
    full: tuple[Running, ScriptedProvider, list[asyncio.Future[object]]],
) -> None:
    gw, _, _ = full
    async with AsyncClient(gw.target) as client:  # retries on
        with pytest.raises(OnespaceClientError) as refused:
            await client.create_collection("docs")
    assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _rejected(gw) == 1  # one attempt: a lost success must not turn into ALREADY_EXISTS


def test_the_retry_count_follows_the_policy(gateway: FakeGateway) -> None:
    """The fake refuses "throttle" every time: the policy's attempts are all made, then it fails."""

    def attempts(**kwargs: object) -> int:
        before = len(gateway.state.requests)
        client = Client(gateway.target, **kwargs)  # type: ignore[arg-type]
        with client, pytest.raises(OnespaceClientError, match="RESOURCE_EXHAUSTED"):
            client.embed(["throttle"])
        return len(gateway.state.requests) - before

    assert attempts() == 4
    assert attempts(retries=False) == 1
    fast = RetryPolicy(max_attempts=2, initial_backoff=0.01)
    assert attempts(retries=fast) == 2
    assert attempts(options=[("grpc.service_config", "{}")]) == 1  # the caller's config wins


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_wait_for_ready_waits_for_the_gateway_to_come_up(tmp_path: Path) -> None:
    port = _free_port()
    options = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 200)]
    async with AsyncClient(f"127.0.0.1:{port}", wait_for_ready=True, timeout=60, options=options) as client:
        call = asyncio.create_task(client.info())
        channel = client._channel
        state = channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.TRANSIENT_FAILURE:  # nothing listens yet
            await channel.wait_for_state_change(state)
            state = channel.get_state()
        assert not call.done()
        async with running_gateway(tmp_path, port=port):
            response = await call
    assert response.models


def test_policy_as_service_config() -> None:
    config = json.loads(RetryPolicy(max_attempts=3, initial_backoff=0.05).service_config())
    (method_config,) = config["methodConfig"]
    assert method_config["retryPolicy"] == {
        "maxAttempts": 3,
        "initialBackoff": "0.050s",
        "maxBackoff": "5.000s",
        "backoffMultiplier": 2.0,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
    }
    names = {(n["service"], n["method"]) for n in method_config["name"]}
    assert names == set(IDEMPOTENT_METHODS)
    assert ("onespace.v1.DataService", "Upsert") in names
    assert not {m for _, m in names} & {"CreateCollection", "DeleteCollection", "Ingest", "EmbedStream"}
    options = dict(channel_options(True, 1 << 20))
    assert options["grpc.per_rpc_retry_buffer_size"] == 1 << 20  # big requests stay retryable
    assert channel_options(False, 1 << 20) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 1},
        {"max_attempts": 6},
        {"initial_backoff": 0},
        {"status_codes": ()},
        {"methods": ()},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
