"""Retries of failed calls by gRPC itself, configured as the channel's service config.

A `RetryPolicy` becomes a `retryPolicy` for the idempotent unary methods only: a retried read,
Upsert (by id) or Delete ends in the same state however often it runs, while CreateCollection
or DeleteCollection would turn a success whose answer was lost into ALREADY_EXISTS or NOT_FOUND.
gRPC honours the server's `grpc-retry-pushback-ms` trailer (sent with RESOURCE_EXHAUSTED): the
next attempt waits that long instead of the backoff, so an overloaded gateway paces its callers.
Streams are never retried: their items are acked one by one and the caller sees every failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_RETRY", "IDEMPOTENT_METHODS", "RetryPolicy", "channel_options"]

IDEMPOTENT_METHODS: tuple[tuple[str, str], ...] = (
    ("onespace.v1.EmbedService", "Embed"),
    ("onespace.v1.SearchService", "Search"),
    ("onespace.v1.SearchService", "SearchBatch"),
    ("onespace.v1.DataService", "Get"),
    ("onespace.v1.DataService", "Upsert"),
    ("onespace.v1.DataService", "Delete"),
    ("onespace.v1.CollectionService", "GetCollection"),
    ("onespace.v1.CollectionService", "ListCollections"),
    ("onespace.v1.CollectionService", "UpdateCollection"),
    ("onespace.v1.InfoService", "Info"),
)
"""(service, method) pairs retried by default (UpdateCollection sets values, so a repeat does
what the first did); CreateCollection, DeleteCollection, the maintenance calls (checkpoint,
compact) and the streams are not."""

_MAX_ATTEMPTS = 5  # gRPC silently caps maxAttempts at 5


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How gRPC retries a failed call: `max_attempts` in all (2..5, the first included), waiting a
    random time up to `initial_backoff * backoff_multiplier**n` (at most `max_backoff`) seconds
    between attempts unless the server's pushback says otherwise. Attempts share the call's
    deadline: a retry never extends it."""

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    backoff_multiplier: float = 2.0
    status_codes: tuple[str, ...] = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
    methods: tuple[tuple[str, str], ...] = IDEMPOTENT_METHODS

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= _MAX_ATTEMPTS:
            raise ValueError(f"max_attempts must be 2..{_MAX_ATTEMPTS}, got {self.max_attempts}")
        if self.initial_backoff <= 0 or self.max_backoff <= 0 or self.backoff_multiplier <= 0:
            raise ValueError("initial_backoff, max_backoff and backoff_multiplier must be positive")
        if not self.status_codes:
            raise ValueError("status_codes must name at least one status code")
        if not self.methods:
            raise ValueError("methods must name at least one (service, method)")

    def service_config(self) -> str:
        """The policy as gRPC service config JSON (`grpc.service_config`)."""
        policy = {
            "maxAttempts": self.max_attempts,
            "initialBackoff": _duration(self.initial_backoff),
            "maxBackoff": _duration(self.max_backoff),
            "backoffMultiplier": self.backoff_multiplier,
            "retryableStatusCodes": list(self.status_codes),
        }
        names = [{"service": service, "method": method} for service, method in self.methods]
        return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


DEFAULT_RETRY = RetryPolicy()


def channel_options(retries: bool | RetryPolicy, max_message_bytes: int) -> list[tuple[str, Any]]:
    """The channel options for `retries`: True = `DEFAULT_RETRY`, False = no retry policy (gRPC's
    transparent retries of calls that never left the client remain).

    gRPC keeps a copy of each request to be able to resend it, by default only up to 256 KiB:
    a larger request (an inline image, a big Upsert) would never be retried. The buffer is
    raised to the largest message the client sends.
    """
    if retries is False:
        return []
    policy = DEFAULT_RETRY if retries is True else retries
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", policy.service_config()),
        ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
    ]
