"""The one table mapping the onespace error tree to gRPC status codes, and how to abort with it.

Machine-readable details travel as trailing metadata: `grpc-retry-pushback-ms` (the gRPC retry
hint) on RESOURCE_EXHAUSTED/UNAVAILABLE, and `onespace-upstream-request-id` when an upstream call
(Bedrock) was involved.
"""

from __future__ import annotations

import math
from typing import NoReturn

import grpc

from onespace import errors

__all__ = ["MAX_DETAILS_BYTES", "STATUS", "abort", "bounded_details", "metadata_for", "status_for"]

STATUS: dict[type[errors.OnespaceError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Internal: grpc.StatusCode.INTERNAL,
}


def status_for(exc: errors.OnespaceError) -> grpc.StatusCode:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return grpc.StatusCode.INTERNAL


def metadata_for(exc: errors.OnespaceError) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    retry_after = getattr(exc, "retry_after_seconds", None)
    if retry_after is not None:
        pairs.append(("grpc-retry-pushback-ms", str(max(0, math.ceil(retry_after * 1000)))))
    if exc.request_id:
        pairs.append(("onespace-upstream-request-id", exc.request_id))
    return tuple(pairs)


MAX_DETAILS_BYTES = 1024


def bounded_details(message: str) -> str:
    """`message` cut to MAX_DETAILS_BYTES of UTF-8. Messages quote what the caller sent (a 1 MB id
    or collection name), and the status message travels as a header: past the client's metadata
    limit (8-16 KB by default) the caller got RESOURCE_EXHAUSTED "Stream removed" instead."""
    raw = message.encode("utf-8", "replace")
    if len(raw) <= MAX_DETAILS_BYTES:
        return message
    return raw[:MAX_DETAILS_BYTES].decode("utf-8", "ignore") + f"... (cut; {len(raw)} bytes in all)"


async def abort(context: grpc.aio.ServicerContext[object, object], exc: errors.OnespaceError) -> NoReturn:
    await context.abort(status_for(exc), bounded_details(str(exc)), trailing_metadata=metadata_for(exc))
    raise AssertionError("unreachable: context.abort raises")
