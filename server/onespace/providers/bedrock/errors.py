"""Bedrock errors → onespace errors, translated once, at the boundary (`map_bedrock_errors`).

    botocore ClientError code            onespace error          retried by the provider
    ThrottlingException (429)            ResourceExhausted       yes ("throttling")
    ModelNotReadyException (429)         Unavailable             yes ("not_ready")
    InternalServerException (500),
    ServiceUnavailableException (503),
    any other 5xx                        Unavailable             yes ("5xx")
    connection / read errors             Unavailable             yes ("connection")
    ValidationException (400)            InvalidArgument(content)
    AccessDeniedException (403) and
    signature / token errors             PermissionDenied
    ResourceNotFoundException (404)      NotFound
    ModelTimeoutException (408)          DeadlineExceeded
    ServiceQuotaExceededException (400)  ResourceExhausted       no: a quota, not a burst
    ModelErrorException (424)            Internal
    anything else                        Internal

A retryable failure is raised as `Transient` (never seen outside the provider): it carries the
onespace error to raise once retries or the deadline run out. Every error carries Bedrock's
request id when the service sent one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from onespace.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    OnespaceError,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)

__all__ = ["Transient", "bedrock_error", "map_bedrock_errors"]

_RETRY_REASONS = {
    "ThrottlingException": "throttling",
    "ModelNotReadyException": "not_ready",
    "InternalServerException": "5xx",
    "ServiceUnavailableException": "5xx",
}
_AUTH_CODES = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
}


class Transient(Exception):
    """A failure worth retrying; `error` is what the caller gets if no retry succeeds."""

    def __init__(self, error: OnespaceError, reason: str, code: str) -> None:
        super().__init__(str(error))
        self.error, self.reason, self.code = error, reason, code


def _details(exc: ClientError) -> tuple[str, str, str | None, int]:
    response: dict[str, Any] = exc.response or {}
    error = response.get("Error") or {}
    meta = response.get("ResponseMetadata") or {}
    code = str(error.get("Code") or "Unknown")
    message = str(error.get("Message") or "") or "(no message)"
    return code, message, meta.get("RequestId") or None, int(meta.get("HTTPStatusCode") or 0)


def bedrock_error(exc: ClientError, model: str) -> OnespaceError | Transient:
    """The onespace error (or a `Transient` wrapping it) for one Bedrock error response."""
    code, message, rid, status = _details(exc)
    text = f"Bedrock {code} for model {model}: {message}"
    reason = _RETRY_REASONS.get(code) or ("5xx" if status >= 500 else None)
    if reason == "throttling":
        return Transient(ResourceExhausted(text, request_id=rid), reason, code)
    if reason is not None:
        return Transient(Unavailable(text, request_id=rid), reason, code)
    if code == "ValidationException":
        return InvalidArgument("content", f"Bedrock ({model}) refused the request: {message}", request_id=rid)
    if code in _AUTH_CODES or status == 403:
        return PermissionDenied(text, request_id=rid)
    if code == "ResourceNotFoundException":
        return NotFound(text, request_id=rid)
    if code == "ModelTimeoutException":
        return DeadlineExceeded(text, request_id=rid)
    if code == "ServiceQuotaExceededException":
        return ResourceExhausted(text, request_id=rid)
    return Internal(text, request_id=rid)


@contextmanager
def map_bedrock_errors(model: str | None) -> Iterator[None]:
    """Translate whatever botocore/aiohttp raise inside the block (`raise ... from exc`);
    `model` is the model being called (None while the client starts)."""
    where = f"model {model}" if model else "the Bedrock client"
    try:
        yield
    except ClientError as exc:
        raise bedrock_error(exc, model or "(none)") from exc
    except (NoCredentialsError, PartialCredentialsError, ProfileNotFound) as exc:
        raise PermissionDenied(
            f"Bedrock credentials for {where}: {exc} (configure the AWS credential chain: "
            "AWS_PROFILE / --bedrock-profile, AWS_ACCESS_KEY_ID, SSO, or an instance/task role)"
        ) from exc
    except (ConnectionError, HTTPClientError, IncompleteReadError, aiohttp.ClientError, OSError) as exc:
        error = Unavailable(f"Bedrock connection error for {where}: {exc}")
        raise Transient(error, "connection", type(exc).__name__) from exc
    except BotoCoreError as exc:
        raise Internal(f"Bedrock client error for {where}: {exc}") from exc
