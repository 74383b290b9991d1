"""Per-tenant admission: a token bucket for the request rate and a count of RPCs in flight.

One tenant's burst must not starve the others, so each tenant has its own bucket and its own
bound; past either the call is refused at once with RESOURCE_EXHAUSTED and a retry hint sized
to when the bucket will have a token again. Owned by the event loop (no locks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from onespace.errors import ResourceExhausted

__all__ = ["TenantLimits", "TenantQuota"]


@dataclass(frozen=True, slots=True)
class TenantQuota:
    rate: float | None  # requests per second; None: unlimited
    burst: float
    max_in_flight: int | None  # None: unlimited


@dataclass(slots=True)
class _Bucket:
    quota: TenantQuota
    tokens: float
    stamp: float = field(default_factory=time.monotonic)
    in_flight: int = 0


class TenantLimits:
    def __init__(self, pushback_seconds: float) -> None:
        self._pushback = pushback_seconds
        self._buckets: dict[str, _Bucket] = {}

    def configure(self, quotas: dict[str, TenantQuota]) -> None:
        """Set each tenant's quota (on start and when the token file changes); in-flight counts
        of tenants still present carry over."""
        buckets: dict[str, _Bucket] = {}
        for tenant, quota in quotas.items():
            old = self._buckets.get(tenant)
            bucket = _Bucket(quota, quota.burst)
            if old is not None:
                bucket.in_flight = old.in_flight
                bucket.tokens = min(old.tokens, quota.burst)
            buckets[tenant] = bucket
        self._buckets = buckets

    def in_flight(self, tenant: str) -> int:
        bucket = self._buckets.get(tenant)
        return 0 if bucket is None else bucket.in_flight

    def acquire(self, tenant: str) -> None:
        """Admit one RPC of `tenant` (pair with `release`), or raise ResourceExhausted."""
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(TenantQuota(None, 0.0, None), 0.0)
        quota = bucket.quota
        if quota.max_in_flight is not None and bucket.in_flight >= quota.max_in_flight:
            raise ResourceExhausted(
                f"tenant {tenant!r} has {bucket.in_flight} RPCs in flight, its limit "
                f"(max_in_flight {quota.max_in_flight}); retry later",
                retry_after_seconds=self._pushback,
            )
        if quota.rate is not None:
            now = time.monotonic()
            bucket.tokens = min(quota.burst, bucket.tokens + (now - bucket.stamp) * quota.rate)
            bucket.stamp = now
            if bucket.tokens < 1.0:
                wait = (1.0 - bucket.tokens) / quota.rate
                raise ResourceExhausted(
                    f"tenant {tenant!r} is over its request rate ({quota.rate:g}/s); "
                    f"retry in {wait * 1000:.0f} ms",
                    retry_after_seconds=max(wait, 0.001),
                )
            bucket.tokens -= 1.0
        bucket.in_flight += 1

    def release(self, tenant: str) -> None:
        bucket = self._buckets.get(tenant)
        if bucket is not None and bucket.in_flight > 0:
            bucket.in_flight -= 1
