"""TLS and mutual TLS on the gRPC port, with certificates swapped in without dropping connections.

The port gets `grpc.dynamic_ssl_server_credentials`: grpc-core asks our fetcher for a newer
certificate configuration at every new TLS handshake, never during one, so connections already
open keep the certificate they were made with and new ones get the new files. The fetcher stats
the files (cheap) and re-reads them only when their stamp (mtime, size, inode) changed or when
`request_reload()` (SIGHUP) asked; a new set is first checked with the stdlib `ssl` module (the
PEM parses, the key matches the certificate, the client CA holds certificates), and a set that
fails keeps the one in use and logs a WARNING once per change of the files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import grpc

from onespace.config import Settings

__all__ = ["CertificateReloader", "TlsConfigError", "add_port", "reloader_for"]

log = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int, int, int] | None, ...]


class TlsConfigError(ValueError):
    """The TLS settings or files cannot be used; the message names the setting or file and why."""


@dataclass(frozen=True, slots=True)
class _Material:
    """One checked set of PEM files, as grpc-core wants them."""

    cert: bytes
    key: bytes
    client_ca: bytes | None

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for part in (self.cert, self.key, self.client_ca or b""):
            h.update(hashlib.sha256(part).digest())
        return h.hexdigest()

    def config(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(self.key, self.cert)], self.client_ca)


def _no_password() -> NoReturn:
    # Called by OpenSSL only for an encrypted key; without it, OpenSSL would prompt on the tty.
    raise TlsConfigError("the private key is encrypted; grpc needs an unencrypted PEM key")


class CertificateReloader:
    """The certificate files behind the port; `fetch` is grpc's fetcher, `request_reload` SIGHUP's."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self.cert_path, self.key_path, self.client_ca_path = cert, key, client_ca
        self._lock = threading.Lock()  # fetch runs on grpc-core threads, request_reload on the loop
        self._stamp = self._stamp_files()
        self.current = self._load()  # a bad set at start is a startup error
        self._pending: grpc.ServerCertificateConfiguration | None = None

    @property
    def require_client_cert(self) -> bool:
        return self.client_ca_path is not None

    def _paths(self) -> tuple[Path, ...]:
        return (self.cert_path, self.key_path, *((self.client_ca_path,) if self.client_ca_path else ()))

    def _stamp_files(self) -> _Stamp:
        stamps: list[tuple[int, int, int, int] | None] = []
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError:
                stamps.append(None)  # missing for a moment while a deploy replaces it
            else:
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
        return tuple(stamps)

    def _read(self) -> _Material:
        try:
            return _Material(
                self.cert_path.read_bytes(),
                self.key_path.read_bytes(),
                self.client_ca_path.read_bytes() if self.client_ca_path else None,
            )
        except OSError as exc:
            raise TlsConfigError(f"cannot read {exc.filename}: {exc.strerror}") from exc

    def _check(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert_path, self.key_path, password=_no_password)
        except ssl.SSLError as exc:
            raise TlsConfigError(
                f"tls_cert {self.cert_path} / tls_key {self.key_path}: not a PEM certificate chain and "
                f"its matching private key ({exc.reason or exc})"
            ) from exc
        if self.client_ca_path is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca_path)
            except ssl.SSLError as exc:
                raise TlsConfigError(
                    f"tls_client_ca {self.client_ca_path}: no PEM CA certificate in it ({exc.reason or exc})"
                ) from exc

    def _load(self) -> _Material:
        """Read, check, read again: the bytes handed to grpc are the ones `ssl` accepted."""
        before = self._read()
        try:
            self._check()
        except OSError as exc:  # removed between the two reads
            raise TlsConfigError(f"cannot read {exc.filename}: {exc.strerror}") from exc
        after = self._read()
        if after != before:
            raise TlsConfigError("the certificate files changed while they were being read")
        return after

    def _refresh(self, force: bool) -> bool:
        """Take a changed, valid set as pending; False when the files on disk cannot be used."""
        stamp = self._stamp_files()
        if not force and stamp == self._stamp:
            return True
        self._stamp = stamp  # a bad set is reported once, then retried when the files change again
        try:
            material = self._load()
        except TlsConfigError as exc:
            log.warning("TLS: keeping the certificate in use (sha256 %.12s): %s", self.current.digest, exc)
            return False
        if material.digest == self.current.digest:
            if force:
                log.info("TLS: reload requested; the certificate files are unchanged")
        else:
            self.current = material
            self._pending = material.config()
            log.info(
                "TLS: new certificate files loaded (sha256 %.12s); new connections use them", material.digest
            )
        return True

    def request_reload(self) -> bool:
        """Re-read the files now (SIGHUP); new handshakes use them. False if they cannot be used."""
        with self._lock:
            return self._refresh(force=True)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc-core's fetcher, called before each new handshake: the new configuration or None."""
        with self._lock:
            self._refresh(force=False)
            config, self._pending = self._pending, None
            return config

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.current.config(),
            self.fetch,  # type: ignore[arg-type]  # the stubs omit None, which grpc takes as "unchanged"
            require_client_authentication=self.require_client_cert,
        )


def reloader_for(settings: Settings) -> CertificateReloader | None:
    """None when TLS is off; a half-configured pair is an error, not a silent plaintext port."""
    cert, key, client_ca = settings.tls_cert, settings.tls_key, settings.tls_client_ca
    if not cert and not key:
        if client_ca:
            raise TlsConfigError("tls_client_ca needs tls_cert and tls_key: client certificates need TLS")
        return None
    if not cert or not key:
        given, missing = ("tls_cert", "tls_key") if cert else ("tls_key", "tls_cert")
        raise TlsConfigError(f"{given} is set but {missing} is not: TLS needs both --tls-cert and --tls-key")
    return CertificateReloader(Path(cert), Path(key), Path(client_ca) if client_ca else None)


def add_port(server: grpc.aio.Server, settings: Settings) -> tuple[int, CertificateReloader | None]:
    """Bind `host:port`, TLS when configured; returns the bound port and the reloader (None: plaintext)."""
    address = f"{settings.host}:{settings.port}"
    reloader = reloader_for(settings)
    try:
        if reloader is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, reloader.credentials())
    except RuntimeError as exc:  # grpc.aio: a bare RuntimeError("Failed to bind to address ...")
        raise OSError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port, reloader
