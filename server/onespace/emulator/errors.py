"""The errors the emulated Bedrock Runtime answers with, at the real HTTP statuses.

Every error response carries `x-amzn-ErrorType: <Code>` and a JSON body `{"message": ...}`:
botocore takes the code from that header and would otherwise misparse a bare 5xx as a generic
error (see docs/bedrock.md). ModelErrorException also carries `originalStatusCode` and
`resourceName`, as the service model declares.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ERROR_STATUS", "EmulatedError", "malformed"]

ERROR_STATUS: dict[str, int] = {
    "AccessDeniedException": 403,
    "InternalServerException": 500,
    "ModelErrorException": 424,
    "ModelNotReadyException": 429,
    "ModelTimeoutException": 408,
    "ResourceNotFoundException": 404,
    "ServiceQuotaExceededException": 400,
    "ServiceUnavailableException": 503,
    "ThrottlingException": 429,
    "ValidationException": 400,
}

_DEFAULT_MESSAGES: dict[str, str] = {
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "InternalServerException": "An internal server error occurred. Retry your request.",
    "ModelErrorException": "The model encountered an error while processing the request.",
    "ModelNotReadyException": "The model is not ready to serve inference requests. Retry your request.",
    "ModelTimeoutException": "The model took too long to process the request. Retry your request.",
    "ResourceNotFoundException": "The specified resource could not be found.",
    "ServiceQuotaExceededException": "Your request exceeds the service quota for your account.",
    "ServiceUnavailableException": "The service isn't currently available. Retry your request.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ValidationException": "The input fails to satisfy the constraints specified by the service.",
}


class EmulatedError(Exception):
    """One Bedrock error response: `code` picks the HTTP status from `ERROR_STATUS`."""

    def __init__(self, code: str, message: str | None = None) -> None:
        if code not in ERROR_STATUS:
            raise ValueError(
                f"unknown Bedrock error code {code!r} (known: {', '.join(sorted(ERROR_STATUS))})"
            )
        self.code = code
        self.message = message or _DEFAULT_MESSAGES[code]
        super().__init__(f"{code}: {self.message}")

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code]

    def body(self, model_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.code == "ModelErrorException":
            out["originalStatusCode"] = 500
            out["resourceName"] = model_id
        return out


def malformed(path: str, reason: str) -> EmulatedError:
    """A schema failure worded like Bedrock's JSON-schema errors (`#/a/b: reason`)."""
    where = "#" + "".join(f"/{p}" for p in path.split(".") if p) if path else "#"
    return EmulatedError(
        "ValidationException",
        f"Malformed input request: {where}: {reason}, please reformat your input and try again.",
    )
