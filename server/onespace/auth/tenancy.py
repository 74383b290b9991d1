"""Collection names scoped to the calling tenant.

A tenant's collection `docs` is stored as `<tenant>~docs`: `~` can never appear in a name a
caller sends, so no tenant can name another tenant's collection, and a name that does not exist
for this tenant is simply NOT_FOUND (whether or not another tenant has one of that name). The
default tenant (auth off, or a token whose tenant is `default`) keeps plain names, so data
written before authentication was turned on stays reachable by it.

The tenant of the RPC being served is a context variable, set by the auth layer for the duration
of one call (asyncio copies it into the tasks and threads the call starts).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from onespace.index.config import TENANT_PATTERN, check_collection_name

__all__ = [
    "DEFAULT_TENANT",
    "TENANT_PATTERN",
    "check_tenant_id",
    "current_tenant",
    "local_name",
    "owned_by",
    "qualify",
    "tenant_scope",
]

DEFAULT_TENANT = "default"
SEPARATOR = "~"

_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("onespace_tenant", default=DEFAULT_TENANT)


def check_tenant_id(tenant: str) -> str:
    """Tenant ids label metrics, so they must be short and plain: `[a-z0-9][a-z0-9_-]{0,31}`."""
    if not TENANT_PATTERN.fullmatch(tenant):
        raise ValueError(f"tenant {tenant!r} must match [a-z0-9][a-z0-9_-]{{0,31}}")
    return tenant


def current_tenant() -> str:
    return _tenant.get()


@contextlib.contextmanager
def tenant_scope(tenant: str) -> Iterator[None]:
    """Run the enclosed code on behalf of `tenant`."""
    token = _tenant.set(tenant)
    try:
        yield
    finally:
        _tenant.reset(token)


def qualify(name: str, field: str = "name") -> str:
    """The stored name of the calling tenant's collection `name` (checked: a caller's name may
    not carry a tenant prefix of its own)."""
    check_collection_name(name, field_name=field)
    tenant = _tenant.get()
    return name if tenant == DEFAULT_TENANT else f"{tenant}{SEPARATOR}{name}"


def owned_by(stored: str, tenant: str) -> bool:
    if tenant == DEFAULT_TENANT:
        return SEPARATOR not in stored
    return stored.startswith(tenant + SEPARATOR)


def local_name(stored: str) -> str:
    """The name the owning tenant knows a stored collection by."""
    return stored.rpartition(SEPARATOR)[2]
