"""The client's one error type: a gRPC failure with its status code, details and retry hint kept.

Callers catch one class and still branch on the status code; the original `grpc.aio.AioRpcError`
stays reachable as `__cause__`. It is not a `grpc.RpcError`: that type's `code()`/`details()` are
methods, and here they are plain attributes.
"""

from __future__ import annotations

import grpc
import grpc.aio

__all__ = ["PUSHBACK_KEY", "OnespaceClientError", "pushback_ms"]

PUSHBACK_KEY = "grpc-retry-pushback-ms"


def pushback_ms(metadata: grpc.aio.Metadata | None) -> int | None:
    """The server's retry hint in milliseconds, or None when absent or malformed."""
    if metadata is None:
        return None
    for key, value in metadata:
        if key.lower() != PUSHBACK_KEY:
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        try:
            return int(text.strip())
        except ValueError:
            return None
    return None


class OnespaceClientError(Exception):
    """A failed RPC: `.code` (grpc.StatusCode), `.details`, `.retry_pushback_ms` (int or None)."""

    def __init__(self, code: grpc.StatusCode, details: str, *, retry_pushback_ms: int | None = None) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.retry_pushback_ms = retry_pushback_ms

    @classmethod
    def from_rpc_error(cls, exc: grpc.aio.AioRpcError) -> OnespaceClientError:
        """Copies code, details and the pushback hint from the trailing metadata."""
        return cls(exc.code(), exc.details() or "", retry_pushback_ms=pushback_ms(exc.trailing_metadata()))

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}"
