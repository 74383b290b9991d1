"""The onespace error tree. Every failure the gateway reports is one of these.

    OnespaceError                      message (names the field and the reason), request_id
    ├── InvalidArgument                field, reason          bad input: never retried
    ├── NotFound                                              unknown collection / id / model
    ├── AlreadyExists                                         creating a collection twice
    ├── FailedPrecondition                                    a state that forbids the call
    ├── Unauthenticated                                       no valid bearer token
    ├── PermissionDenied                                      role too low; upstream refused our credentials
    ├── ResourceExhausted              retry_after_seconds    queue full, upstream throttling or quota
    ├── DeadlineExceeded                                      the caller's deadline passed first
    ├── Cancelled                                             the caller went away
    ├── Unavailable                    retry_after_seconds    upstream down, server shutting down
    └── Internal                                              bugs and upstream model errors

`onespace.rpc.status` is the one table that maps these to gRPC status codes; foreign errors
(botocore, usearch, decoders) are translated where they are raised, `raise ... from exc`.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OnespaceError",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]


class OnespaceError(Exception):
    """Base of every error the gateway reports to a caller."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (request id {self.request_id})"
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle with every attribute (a local provider's worker process sends errors back): the
        default would call `cls(message)`, which InvalidArgument(field, reason) cannot take."""
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[OnespaceError], args: tuple[object, ...], state: dict[str, object]) -> OnespaceError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InvalidArgument(OnespaceError):
    """The request itself is wrong; `field` is its path, e.g. `items[3].image`."""

    def __init__(self, field: str, reason: str, *, request_id: str | None = None) -> None:
        super().__init__(f"{field}: {reason}", request_id=request_id)
        self.field = field
        self.reason = reason

    def at(self, prefix: str) -> InvalidArgument:
        """The same error with its field placed under `prefix` (e.g. `items[2]`)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return InvalidArgument(field, self.reason, request_id=self.request_id)


class NotFound(OnespaceError):
    pass


class AlreadyExists(OnespaceError):
    pass


class FailedPrecondition(OnespaceError):
    pass


class PermissionDenied(OnespaceError):
    pass


class Unauthenticated(OnespaceError):
    pass


class ResourceExhausted(OnespaceError):
    def __init__(
        self, message: str, *, retry_after_seconds: float | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.retry_after_seconds = retry_after_seconds


class DeadlineExceeded(OnespaceError):
    pass


class Cancelled(OnespaceError):
    pass


class Unavailable(OnespaceError):
    def __init__(
        self, message: str, *, retry_after_seconds: float | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.retry_after_seconds = retry_after_seconds


class Internal(OnespaceError):
    pass
