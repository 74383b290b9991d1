"""TLS, mutual TLS and certificate reload on the real gateway, with throwaway CAs made per test.

Every client gets its own subchannel pool, so each new client really makes a new connection
(and a new handshake) instead of sharing one with an earlier client of the same target.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from onespace.app import App
from onespace.rpc.tls import CertificateReloader, TlsConfigError
from onespace_client import AsyncClient, Client, OnespaceClientError, vector
from onespace_client.async_client import PemSource
from tests import harness
from tests.harness import Running, running_gateway
from tests.pki import Ca

_OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)
_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Files:
    """The server's certificate files, rewritten in place by the reload tests."""

    cert: Path
    key: Path
    ca: Path

    def write(self, cert: bytes, key: bytes) -> None:
        self.cert.write_bytes(cert)
        self.key.write_bytes(key)


@pytest.fixture
def ca() -> Ca:
    return Ca.new("onespace test CA")


@pytest.fixture
def files(tmp_path: Path, ca: Ca) -> Files:
    files = Files(tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem")
    files.write(*ca.issue("onespace server", server=True))
    files.ca.write_bytes(ca.pem)
    return files


def client(
    target: str,
    ca: PemSource | None = None,
    cert: PemSource | None = None,
    key: PemSource | None = None,
    *,
    tls: bool | None = None,
) -> AsyncClient:
    return AsyncClient(
        target, timeout=30, options=_OWN_CONNECTION, tls=tls, tls_ca=ca, tls_cert=cert, tls_key=key
    )


async def refused(c: AsyncClient) -> grpc.StatusCode:
    """The status of an Info call that the handshake is expected to stop."""
    async with c:
        with pytest.raises(OnespaceClientError) as failed:
            await c.info()
    return failed.value.code


async def works(c: AsyncClient) -> None:
    async with c:
        assert (await c.info()).models


async def test_tls_round_trip(tmp_path: Path, files: Files) -> None:
    async with running_gateway(tmp_path / "data", tls_cert=str(files.cert), tls_key=str(files.key)) as g:
        async with client(g.target, files.ca) as c:
            info = await c.info()
            assert info.models
            embedded = await c.embed(["one endpoint, one index"])
            assert len(vector(embedded.results[0].embeddings[0])) == embedded.dimension > 0
        # the same certificate by host name (DNS:localhost), CA given as bytes
        port = g.target.rpartition(":")[2]
        await works(client(f"localhost:{port}", files.ca.read_bytes()))
        # the blocking client makes the same channel
        with Client(g.target, tls_ca=files.ca, options=_OWN_CONNECTION) as sync:
            assert (await asyncio.to_thread(sync.info)).models


async def test_plaintext_client_or_untrusting_client_is_refused(tmp_path: Path, files: Files) -> None:
    async with running_gateway(tmp_path / "data", tls_cert=str(files.cert), tls_key=str(files.key)) as g:
        assert await refused(client(g.target)) == grpc.StatusCode.UNAVAILABLE  # loopback: plaintext
        assert await refused(client(g.target, tls=True)) == grpc.StatusCode.UNAVAILABLE  # public roots
        assert await refused(client(g.target, Ca.new("other").pem)) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate_from_the_client_ca(
    tmp_path: Path, ca: Ca, files: Files
) -> None:
    good_cert, good_key = ca.issue("good client", server=False)
    stranger_cert, stranger_key = Ca.new("another CA").issue("stranger", server=False)
    async with running_gateway(
        tmp_path / "data", tls_cert=str(files.cert), tls_key=str(files.key), tls_client_ca=str(files.ca)
    ) as g:
        assert g.app.rpc.certificates is not None and g.app.rpc.certificates.require_client_cert
        assert await refused(client(g.target, files.ca)) == grpc.StatusCode.UNAVAILABLE
        stranger = client(g.target, files.ca, stranger_cert, stranger_key)
        assert await refused(stranger) == grpc.StatusCode.UNAVAILABLE
        await works(client(g.target, files.ca, good_cert, good_key))


async def test_reload_keeps_open_connections_and_new_ones_get_the_new_certificate(
    tmp_path: Path, files: Files
) -> None:
    async with running_gateway(tmp_path / "data", tls_cert=str(files.cert), tls_key=str(files.key)) as g:
        certificates = g.app.rpc.certificates
        assert certificates is not None
        async with client(g.target, files.ca) as old:
            assert (await old.info()).models  # the connection is open

            second = Ca.new("second CA")
            files.write(*second.issue("onespace server", server=True))
            assert certificates.request_reload()  # SIGHUP's path; new handshakes would see it anyway

            assert (await old.info()).models  # the open connection keeps its certificate
            await works(client(g.target, second.pem))  # a new one gets the new certificate
            assert await refused(client(g.target, files.ca)) == grpc.StatusCode.UNAVAILABLE
            assert (await old.info()).models


async def test_changed_files_are_picked_up_at_the_next_handshake(tmp_path: Path, files: Files) -> None:
    async with running_gateway(tmp_path / "data", tls_cert=str(files.cert), tls_key=str(files.key)) as g:
        await works(client(g.target, files.ca))
        second = Ca.new("second CA")
        files.write(*second.issue("onespace server", server=True))
        await works(client(g.target, second.pem))  # no reload requested: the fetcher saw the change


async def test_an_invalid_replacement_keeps_the_old_certificate_and_warns(
    tmp_path: Path, ca: Ca, files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="onespace.rpc.tls")
    async with running_gateway(tmp_path / "data", tls_cert=str(files.cert), tls_key=str(files.key)) as g:
        certificates = g.app.rpc.certificates
        assert certificates is not None
        # a key that does not match the certificate, noticed by the next handshake
        other_cert, _ = ca.issue("onespace server", server=True)
        files.cert.write_bytes(other_cert)
        await works(client(g.target, files.ca))
        assert "keeping the certificate in use" in caplog.text and str(files.cert) in caplog.text
        # garbage, on request
        caplog.clear()
        files.write(b"not a certificate", b"not a key")
        assert not certificates.request_reload()
        assert "keeping the certificate in use" in caplog.text
        await works(client(g.target, files.ca))
        # a missing file
        caplog.clear()
        files.key.unlink()
        assert not certificates.request_reload()
        assert "cannot read" in caplog.text
        await works(client(g.target, files.ca))
        # repaired: taken again
        second = Ca.new("second CA")
        files.write(*second.issue("onespace server", server=True))
        assert certificates.request_reload()
        await works(client(g.target, second.pem))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tls_cert": "CERT"}, "tls_cert is set but tls_key is not"),
        ({"tls_key": "KEY"}, "tls_key is set but tls_cert is not"),
        ({"tls_client_ca": "CA"}, "tls_client_ca needs tls_cert and tls_key"),
        ({"tls_cert": "KEY", "tls_key": "KEY"}, "not a PEM certificate chain"),
        ({"tls_cert": "CERT", "tls_key": "CERT"}, "its matching private key"),
        ({"tls_cert": "CERT", "tls_key": "KEY", "tls_client_ca": "KEY"}, "tls_client_ca"),
        ({"tls_cert": "CERT", "tls_key": "MISSING"}, "cannot read"),
    ],
)
async def test_bad_tls_settings_are_startup_errors(
    tmp_path: Path, files: Files, settings: dict[str, str], message: str
) -> None:
    paths = {"CERT": str(files.cert), "KEY": str(files.key), "CA": str(files.ca), "MISSING": "/no/such.pem"}
    with pytest.raises(TlsConfigError, match=message):
        App.build(harness.test_settings(tmp_path / "data", **{k: paths[v] for k, v in settings.items()}))


def test_an_encrypted_key_is_named(tmp_path: Path, files: Files) -> None:
    key = serialization.load_pem_private_key(files.key.read_bytes(), None)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(TlsConfigError, match="encrypted"):
        CertificateReloader(files.cert, files.key, None)


async def test_running_gateway_without_tls_has_no_certificates(gateway: Running) -> None:
    assert gateway.app.rpc.certificates is None
    await works(client(gateway.target))
