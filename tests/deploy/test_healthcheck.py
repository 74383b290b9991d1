"""deploy/docker/healthcheck.py, run as the image runs it (a separate process), against a real gateway:
exit 0 only while the asked-for health service is SERVING, with plaintext and with TLS."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from grpc_health.v1 import health_pb2

from tests.deploy.paths import DEPLOY
from tests.harness import running_gateway
from tests.pki import Ca

PROBE = DEPLOY / "docker" / "healthcheck.py"
# The health monitor re-checks every health_interval_seconds; a long one keeps a status the test set.
QUIET = 3600.0


async def probe(*args: str, **env: str) -> tuple[int, str]:
    """Run the probe with only `env` of the ONESPACE_* variables; (exit code, its output)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ONESPACE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROBE),
        *args,
        env={**base, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_serving_gateway_passes_with_the_image_defaults(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "data") as g:
        code, out = await probe(ONESPACE_PORT=str(g.app.port))  # HEALTHCHECK passes no arguments
        assert code == 0, out
        assert "SERVING" in out
        code, out = await probe("--target", g.target, "--service", "onespace.v1.InfoService")
        assert code == 0, out


async def test_not_serving_or_unknown_service_fails(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "data", health_interval_seconds=QUIET) as g:
        await g.app.rpc.health.set("onespace.v1.SearchService", health_pb2.HealthCheckResponse.NOT_SERVING)
        code, out = await probe("--target", g.target, "--service", "onespace.v1.SearchService")
        assert code == 1 and "NOT_SERVING" in out, out
        code, out = await probe("--target", g.target, "--service", "onespace.v1.NoSuchService")
        assert code == 1 and "NOT_FOUND" in out, out
        code, out = await probe("--target", g.target)  # the whole gateway still serves
        assert code == 0, out


async def test_nothing_listening_fails() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out = await probe("--target", f"127.0.0.1:{port}", "--timeout", "1")
    assert code == 1, out
    assert "UNAVAILABLE" in out or "DEADLINE_EXCEEDED" in out, out


async def test_tls_probe_checks_the_certificate_for_the_service_name(tmp_path: Path) -> None:
    """As in deploy/k8s/overlays/secured: the certificate names `onespace`, the probe dials 127.0.0.1."""
    ca = Ca.new("onespace test CA")
    cert, key = ca.issue("onespace", server=True, dns_only=True)
    for name, data in (("tls.crt", cert), ("tls.key", key), ("ca.crt", ca.pem)):
        (tmp_path / name).write_bytes(data)
    async with running_gateway(
        tmp_path / "data", tls_cert=str(tmp_path / "tls.crt"), tls_key=str(tmp_path / "tls.key")
    ) as g:
        env = {"ONESPACE_PORT": str(g.app.port), "ONESPACE_TLS_CERT": str(tmp_path / "tls.crt")}
        secured = {
            **env,
            "ONESPACE_HEALTHCHECK_CA": str(tmp_path / "ca.crt"),
            "ONESPACE_HEALTHCHECK_SERVER_NAME": "onespace",
        }
        code, out = await probe(**secured)
        assert code == 0, out
        code, out = await probe("--timeout", "2", **env)  # system roots do not trust the test CA
        assert code == 1, out
        code, out = await probe("--timeout", "2", **{**secured, "ONESPACE_HEALTHCHECK_SERVER_NAME": "other"})
        assert code == 1, out  # the certificate does not name "other"
        code, out = await probe("--no-tls", "--timeout", "2", **secured)  # plaintext to a TLS port
        assert code == 1, out


async def test_mutual_tls_probe_presents_a_client_certificate(tmp_path: Path) -> None:
    ca = Ca.new("onespace test CA")
    cert, key = ca.issue("onespace", server=True, dns_only=True)
    client_cert, client_key = ca.issue("probe", server=False)
    files = {
        "tls.crt": cert,
        "tls.key": key,
        "ca.crt": ca.pem,
        "probe.crt": client_cert,
        "probe.key": client_key,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    async with running_gateway(
        tmp_path / "data",
        tls_cert=str(tmp_path / "tls.crt"),
        tls_key=str(tmp_path / "tls.key"),
        tls_client_ca=str(tmp_path / "ca.crt"),
    ) as g:
        env = {
            "ONESPACE_PORT": str(g.app.port),
            "ONESPACE_TLS_CERT": str(tmp_path / "tls.crt"),
            "ONESPACE_HEALTHCHECK_CA": str(tmp_path / "ca.crt"),
            "ONESPACE_HEALTHCHECK_SERVER_NAME": "onespace",
        }
        code, out = await probe("--timeout", "2", **env)
        assert code == 1, out  # no client certificate: the handshake is refused
        code, out = await probe(
            "--cert", str(tmp_path / "probe.crt"), "--key", str(tmp_path / "probe.key"), **env
        )
        assert code == 0, out
