"""The auth interceptor: bearer token -> principal -> role check -> tenant limits -> tenant scope.

Every RPC except gRPC health checking carries `authorization: Bearer <token>`. A missing or
unknown token is UNAUTHENTICATED; a role below what the method needs is PERMISSION_DENIED; a
tenant over its rate or in-flight bound is RESOURCE_EXHAUSTED with `grpc-retry-pushback-ms`.
An admitted call runs inside `tenant_scope(tenant)`, so every collection it names is its
tenant's (`onespace.auth.tenancy`). Methods not in `REQUIRED_ROLE` need ADMIN: a method added
later is closed until someone decides who may call it.

The token file is re-read when it changes (checked at most once a second) or on `reload()`
(SIGHUP); a file that no longer parses keeps the previous table and logs a warning.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from onespace.auth.limits import TenantLimits, TenantQuota
from onespace.auth.tenancy import tenant_scope
from onespace.auth.tokens import Principal, Role, TokenFileError, TokenTable
from onespace.errors import OnespaceError, PermissionDenied, ResourceExhausted, Unauthenticated
from onespace.metrics import Metrics
from onespace.rpc.access import current_call
from onespace.rpc.intercept import Scope, ScopeInterceptor
from onespace.rpc.status import abort

__all__ = ["OPEN_SERVICES", "REQUIRED_ROLE", "AuthInterceptor"]

log = logging.getLogger(__name__)
Ctx = grpc.aio.ServicerContext[Any, Any]

OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
REQUIRED_ROLE: Mapping[str, Role] = {
    "onespace.v1.EmbedService/Embed": Role.READER,
    "onespace.v1.EmbedService/EmbedStream": Role.READER,
    "onespace.v1.EmbedService/EmbedStreamPacked": Role.READER,
    "onespace.v1.SearchService/Search": Role.READER,
    "onespace.v1.SearchService/SearchBatch": Role.READER,
    "onespace.v1.DataService/Get": Role.READER,
    "onespace.v1.CollectionService/GetCollection": Role.READER,
    "onespace.v1.CollectionService/ListCollections": Role.READER,
    "onespace.v1.InfoService/Info": Role.READER,
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Role.READER,
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Role.READER,
    "onespace.v1.DataService/Upsert": Role.WRITER,
    "onespace.v1.DataService/Ingest": Role.WRITER,
    "onespace.v1.DataService/IngestPacked": Role.WRITER,
    "onespace.v1.DataService/Delete": Role.WRITER,
    "onespace.v1.CollectionService/CreateCollection": Role.ADMIN,
    "onespace.v1.CollectionService/DeleteCollection": Role.ADMIN,
    "onespace.v1.CollectionService/CheckpointCollection": Role.ADMIN,
    "onespace.v1.CollectionService/CompactCollection": Role.ADMIN,
    "onespace.v1.CollectionService/UpdateCollection": Role.ADMIN,
    "onespace.v1.CollectionService/TuneCollection": Role.ADMIN,
}
_RELOAD_CHECK_SECONDS = 1.0
_BEARER = "bearer "


class AuthInterceptor(ScopeInterceptor):
    def __init__(
        self,
        token_file: Path,
        metrics: Metrics,
        *,
        tenant_rate: float,
        tenant_burst: float,
        tenant_max_in_flight: int,
        pushback_seconds: float,
    ) -> None:
        self._metrics = metrics
        self._default_rate = tenant_rate or None
        self._default_burst = tenant_burst
        self._default_in_flight = tenant_max_in_flight or None
        self.limits = TenantLimits(pushback_seconds)
        self.table = TokenTable.load(token_file)  # a bad file at start is a startup error
        self._configure()
        self._checked = time.monotonic()

    # --- the token table ---------------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the token file; keep the current table if the new one cannot be used."""
        assert self.table.source is not None
        try:
            table = TokenTable.load(self.table.source)
        except TokenFileError as exc:
            log.warning("token file not reloaded, keeping the previous one: %s", exc)
            return False
        self.table = table
        self._configure()
        log.info("token file reloaded: %d tokens, %d tenants", len(table.entries), len(table.tenants()))
        return True

    def _configure(self) -> None:
        quotas: dict[str, TenantQuota] = {}
        for entry in self.table.entries:
            tenant = entry.principal.tenant
            rate = entry.rate or self._default_rate
            cap = entry.max_in_flight or self._default_in_flight
            old = quotas.get(tenant)
            if old is not None:  # several tokens of one tenant: the most generous entry wins
                rate = None if rate is None or old.rate is None else max(rate, old.rate)
                cap = None if cap is None or old.max_in_flight is None else max(cap, old.max_in_flight)
            burst = max(self._default_burst, rate or 0.0, 1.0)
            quotas[tenant] = TenantQuota(rate, burst, cap)
        self.limits.configure(quotas)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked >= _RELOAD_CHECK_SECONDS:
            self._checked = now
            if self.table.changed():
                self.reload()

    # --- per call --------------------------------------------------------------------------------
    def authenticate(self, method: str, metadata: Any) -> Principal:
        """The caller's principal, allowed to call `method`; raises Unauthenticated/PermissionDenied."""
        self._maybe_reload()
        token = _bearer(metadata)
        if token is None:
            self._metrics.auth_failures.labels("missing_token").inc()
            raise Unauthenticated("missing credentials: send metadata `authorization: Bearer <token>`")
        entry = self.table.find(token)
        if entry is None:
            self._metrics.auth_failures.labels("invalid_token").inc()
            raise Unauthenticated("invalid token")
        principal = entry.principal
        needed = REQUIRED_ROLE.get(method.lstrip("/"), Role.ADMIN)
        if principal.role < needed:
            self._metrics.auth_failures.labels("permission_denied").inc()
            self._metrics.tenant_requests.labels(principal.tenant, "permission_denied").inc()
            raise PermissionDenied(
                f"role {principal.role.name.lower()} may not call {method.rpartition('/')[2]} "
                f"(needs {needed.name.lower()})"
            )
        return principal

    def admit(self, principal: Principal) -> None:
        tenant = principal.tenant
        try:
            self.limits.acquire(tenant)
        except ResourceExhausted:
            self._metrics.tenant_requests.labels(tenant, "limited").inc()
            self._metrics.rejected.labels("tenant_limit").inc()
            raise
        self._metrics.tenant_requests.labels(tenant, "admitted").inc()
        self._metrics.tenant_in_flight.labels(tenant).set(self.limits.in_flight(tenant))

    def release(self, principal: Principal) -> None:
        self.limits.release(principal.tenant)
        self._metrics.tenant_in_flight.labels(principal.tenant).set(self.limits.in_flight(principal.tenant))

    def scope_for(self, details: grpc.HandlerCallDetails) -> Scope | None:
        method = details.method
        if method.lstrip("/").partition("/")[0] in OPEN_SERVICES:
            return None
        return _guarded(self, method, details.invocation_metadata)


def _bearer(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value[:7].lower() == _BEARER:
            return value[7:].strip() or None
    return None


def _guarded(auth: AuthInterceptor, method: str, metadata: Any) -> Scope:
    """A handler's behaviour run only for an admitted caller, inside its tenant's scope."""

    @contextlib.asynccontextmanager
    async def admitted(context: Ctx) -> AsyncIterator[None]:
        call = current_call.get()
        try:
            if call is not None:
                call.tenant = "-"  # not known unless the token is
            principal = auth.authenticate(method, metadata)
            if call is not None:
                call.tenant = principal.tenant
            auth.admit(principal)
        except OnespaceError as exc:
            await abort(context, exc)
        try:
            with tenant_scope(principal.tenant):
                yield
        finally:
            auth.release(principal)

    return admitted
