"""Health checking says what works: the provider behind EmbedService, the data directory behind
the data services, both behind the overall status."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onespace.emulator import EmulatorConfig, running_emulator
from onespace_client.v1 import common_pb2, embed_pb2
from tests.harness import Running, running_gateway
from tests.unit.bedrock.conftest import aws_env  # noqa: F401 - autouse: dummy credentials

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = (
    "",
    "onespace.v1.EmbedService",
    "onespace.v1.SearchService",
    "onespace.v1.DataService",
    "onespace.v1.CollectionService",
    "onespace.v1.InfoService",
)


async def statuses(g: Running) -> dict[str, int]:
    stub = health_pb2_grpc.HealthStub(g.channel)
    return {s: (await stub.Check(health_pb2.HealthCheckRequest(service=s))).status for s in SERVICES}


def expect(provider_ok: bool, store_ok: bool) -> dict[str, int]:
    ok = {
        "": provider_ok and store_ok,
        "onespace.v1.EmbedService": provider_ok,
        "onespace.v1.InfoService": True,
    }
    return {s: SERVING if ok.get(s, store_ok) else NOT_SERVING for s in SERVICES}


async def test_a_data_directory_that_cannot_be_written_takes_the_data_services_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_gateway(tmp_path / "data") as g:
        assert await statuses(g) == expect(provider_ok=True, store_ok=True)
        shutil.rmtree(tmp_path / "data")
        await g.app.rpc.health_monitor.refresh()
        assert await statuses(g) == expect(provider_ok=True, store_ok=False)
        assert "onespace.v1.DataService NOT_SERVING (store: the data directory" in caplog.text
        (tmp_path / "data").mkdir()
        await g.app.rpc.health_monitor.refresh()
        assert await statuses(g) == expect(provider_ok=True, store_ok=True)


async def test_bedrock_without_credentials_is_not_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    async with (
        running_emulator(EmulatorConfig(seed=1)) as emulator,
        running_gateway(tmp_path, provider="bedrock", bedrock_endpoint_url=emulator.url) as g,
    ):
        assert await statuses(g) == expect(provider_ok=False, store_ok=True)
    assert "no AWS credentials found" in caplog.text


async def test_bedrock_refusing_the_credentials_is_not_serving_until_a_call_succeeds(tmp_path: Path) -> None:
    async with (
        running_emulator(EmulatorConfig(seed=1)) as emulator,
        running_gateway(tmp_path, provider="bedrock", bedrock_endpoint_url=emulator.url) as g,
    ):
        assert await statuses(g) == expect(provider_ok=True, store_ok=True)
        emulator.state.force("AccessDeniedException")
        request = embed_pb2.EmbedRequest(items=[common_pb2.Content(text="refused")])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await g.embed.Embed(request)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await g.app.rpc.health_monitor.refresh()
        assert await statuses(g) == expect(provider_ok=False, store_ok=True)
        await g.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text="accepted")]))
        await g.app.rpc.health_monitor.refresh()
        assert await statuses(g) == expect(provider_ok=True, store_ok=True)
