"""Safe defaults for what the gateway exposes, checked before it binds anything.

Without authentication anyone who reaches the port can read, overwrite and delete every
collection, and without TLS tokens and payloads cross the network in clear text. Both are fine
on loopback (only this machine's processes can connect) and refused elsewhere unless the
operator says `--insecure`.
"""

from __future__ import annotations

import ipaddress
import logging

from onespace.config import Settings

__all__ = ["ExposureError", "check", "is_loopback"]

log = logging.getLogger(__name__)


class ExposureError(ValueError):
    """The settings would expose the gateway unprotected; the message says what to add."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check(settings: Settings) -> None:
    """Refuse a non-loopback bind without TLS and tokens (unless `insecure`); log what is off."""
    tls = bool(settings.tls_cert)
    auth = bool(settings.auth_tokens)
    if is_loopback(settings.host):
        if not auth:
            log.info("authentication is off: serving on loopback %s only", settings.host)
        return
    missing = [what for what, on in (("TLS (--tls-cert/--tls-key)", tls), ("--auth-tokens", auth)) if not on]
    if not missing:
        return
    if not settings.insecure:
        raise ExposureError(
            f"refusing to serve on {settings.host}, reachable from other machines, without "
            f"{' and '.join(missing)}; add them, bind a loopback address, or pass --insecure"
        )
    log.warning(
        "serving on %s without %s (--insecure): anyone who reaches the port can use every collection",
        settings.host,
        " and ".join(missing),
    )
