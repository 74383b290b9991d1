"""Milvus failures as onespace errors, translated where they are raised (`onespace.errors`).

A Milvus that cannot be reached (connection refused, gRPC UNAVAILABLE or a call timing out) is
Unavailable, retryable, like any upstream that is down; Milvus's rate limiter and quota denials
are ResourceExhausted; "collection not found" (another gateway dropped it) is NotFound; anything
else is Internal with Milvus's message. Messages never carry the URI's credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from pymilvus.exceptions import MilvusException, MilvusUnavailableException  # type: ignore[import-untyped]

from onespace.errors import Internal, NotFound, OnespaceError, ResourceExhausted, Unavailable

__all__ = ["RETRY_AFTER_SECONDS", "milvus_errors", "translate"]

RETRY_AFTER_SECONDS = 1.0
_CONNECT_FAILED = 2
_RATE_LIMIT = 8
_FORCE_DENY = 9
_COLLECTION_NOT_FOUND = 100
_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def translate(exc: Exception, action: str) -> OnespaceError:
    """The onespace error for `exc`, raised while doing `action` (e.g. "search collection 'x'")."""
    if isinstance(exc, OnespaceError):
        return exc
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if code in _UNREACHABLE:
            return Unavailable(
                f"Milvus did not answer to {action}: {code}", retry_after_seconds=RETRY_AFTER_SECONDS
            )
        return Internal(f"Milvus failed to {action}: {code}")
    if isinstance(exc, MilvusException):
        message = str(getattr(exc, "message", "") or exc)
        code = getattr(exc, "code", None)
        if (
            isinstance(exc, MilvusUnavailableException)
            or code == _CONNECT_FAILED
            or "unavailable" in message.lower()
        ):
            return Unavailable(
                f"Milvus is unreachable ({action}): {message}", retry_after_seconds=RETRY_AFTER_SECONDS
            )
        if code in (_RATE_LIMIT, _FORCE_DENY):
            return ResourceExhausted(
                f"Milvus refused to {action} (rate limit or quota): {message}",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        if code == _COLLECTION_NOT_FOUND:
            return NotFound(f"cannot {action}: the Milvus collection is gone ({message})")
        return Internal(f"Milvus failed to {action}: {message}")
    return Internal(f"Milvus failed to {action}: {type(exc).__name__}: {exc}")


@contextmanager
def milvus_errors(action: str) -> Iterator[None]:
    try:
        yield
    except (MilvusException, grpc.RpcError) as exc:
        raise translate(exc, action) from exc
