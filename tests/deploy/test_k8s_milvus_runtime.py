"""deploy/k8s/overlays/milvus gives its pods no data volume. Its rendered settings run a real
gateway here (milvus-lite in process in place of the Helm chart's Milvus, the local provider in
place of Bedrock) with a data directory that cannot exist, and the readiness probe's health
service answers SERVING: nothing the Milvus store does needs a writable directory."""

# ruff: noqa: E402  (the imports follow the check that the `milvus` extra is installed)
from __future__ import annotations

from tests.milvus.conftest import skip_without_milvus

skip_without_milvus()

from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pymilvus import MilvusClient  # type: ignore[import-untyped]

from onespace.app import App
from tests.deploy.kustomize import render
from tests.deploy.paths import DEPLOY, settings_from_env

MILVUS = DEPLOY / "k8s" / "overlays" / "milvus"


def _secret_file(docs: list[dict[str, Any]], name: str, key: str, into: Path) -> Path:
    """The Secret's file as the pod would see it mounted."""
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name]
    into.write_text(secret["stringData"][key])
    return into


async def test_the_milvus_variant_serves_without_a_data_directory(tmp_path: Path) -> None:
    docs = render(MILVUS)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # nothing can be created below a file, whoever runs the test
    settings = settings_from_env(config["data"]).replace(
        host="127.0.0.1",  # the pod listens on 0.0.0.0; here loopback and free ports
        port=0,
        metrics_port=0,
        provider="local",  # no Bedrock here
        milvus_uri=str(tmp_path / "milvus.db"),
        milvus_token_file=str(_secret_file(docs, "onespace-milvus", "token", tmp_path / "token")),
        auth_tokens=str(_secret_file(docs, "onespace-auth", "tokens.toml", tmp_path / "tokens.toml")),
        data_dir=blocked / "data",
    )
    assert settings.store == "milvus"
    # The database must exist before a gateway starts (deploy/README.md creates it likewise).
    setup = MilvusClient(uri=settings.milvus_uri)
    setup.create_database(settings.milvus_database)
    setup.close()

    app = App.build(settings)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            service = container["readinessProbe"]["grpc"]["service"]
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service)
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await app.stop()
    assert not settings.data_dir.exists()
