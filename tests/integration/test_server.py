"""Health, reflection, Info and the metrics endpoint."""

from __future__ import annotations

import urllib.request

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from onespace_client.v1 import common_pb2, embed_pb2, info_pb2
from tests.harness import Running


async def test_health_reports_serving(gateway: Running) -> None:
    stub = health_pb2_grpc.HealthStub(gateway.channel)
    for service in ("", "onespace.v1.EmbedService", "onespace.v1.SearchService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_onespace_services(gateway: Running) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(gateway.channel)

    async def ask():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for reply in stub.ServerReflectionInfo(ask()):
        names |= {s.name for s in reply.list_services_response.service}
    assert {
        "onespace.v1.EmbedService",
        "onespace.v1.CollectionService",
        "onespace.v1.DataService",
        "onespace.v1.SearchService",
        "onespace.v1.InfoService",
        "grpc.health.v1.Health",
    } <= names


async def test_info_describes_provider_models_and_limits(gateway: Running) -> None:
    info = await gateway.info.Info(info_pb2.InfoRequest())
    assert info.provider == "local"
    assert info.default_model == "onespace.local-multimodal-v1"
    model = info.models[0]
    assert list(model.dimensions) == [256, 384, 1024, 3072] and len(model.modalities) == 4
    assert not model.semantic_across_modalities and "NOT semantic" in info.notice
    assert info.limits.queue_capacity > 0 and info.limits.max_k == 1000
    assert info.limits.stream_window == 256 and info.limits.stream_window_bytes == 64 * 1024 * 1024


async def test_metrics_endpoint_exports_rpc_latency(gateway: Running) -> None:
    await gateway.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text="metrics")]))
    port = gateway.app.metrics_port
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'onespace_rpc_duration_seconds_count{code="OK",method="Embed"} 1.0' in body
    assert "onespace_provider_call_duration_seconds_bucket" in body
    assert "onespace_queue_depth" in body
