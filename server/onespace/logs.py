"""Logging for `onespace serve`: one format, and nothing secret or private in any line.

Two layers, because one is not enough:
- Libraries that log whole requests at DEBUG (botocore and aiobotocore log every body, so texts
  and base64 images, and the signed headers; aiohttp and urllib3 log connections and headers)
  are held at WARNING whatever `--log-level` says. onespace's own DEBUG lines name sizes, ids of
  calls and timings, never payloads.
- A filter on the handler rewrites anything that looks like a credential in what remains:
  bearer tokens, `Authorization`/`X-Amz-Security-Token` values, AWS access key ids, SigV4
  signatures, `aws_secret_access_key = ...`.

`--log-format json` writes one JSON object per line (time, level, logger, message, request_id,
exception, and trace_id inside a traced RPC); the request id is the RPC's (`onespace.rpc.access`),
empty outside RPCs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time

__all__ = [
    "QUIET_LOGGERS",
    "JsonFormatter",
    "RedactingFilter",
    "RequestIdFilter",
    "configure_logging",
    "redact",
    "request_id",
    "trace_id",
]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("onespace_request_id", default="")
# the RPC's trace id (32 hex digits) while a traced RPC runs (docs/tracing.md), so a log line
# leads to its trace
trace_id: contextvars.ContextVar[str] = contextvars.ContextVar("onespace_trace_id", default="")

QUIET_LOGGERS = ("botocore", "aiobotocore", "boto3", "aioboto3", "s3transfer", "urllib3", "aiohttp")

_VALUE = r"(['\"]?\s*[:=]\s*['\"]?)"  # the separator between a key and its value in headers, dicts, ini
_PATTERNS = (
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (re.compile(r"(?i)(authorization|x-amz-security-token)" + _VALUE + r"[^'\",}\n]+"), r"\1\2[redacted]"),
    (re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16}\b"), "[redacted-key-id]"),
    (re.compile(r"(?i)(signature=)[0-9a-f]{16,}"), r"\1[redacted]"),
    (re.compile(r"(?i)(secret_access_key|session_token)" + _VALUE + r"[^'\",}\s]+"), r"\1\2[redacted]"),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message (and traceback) with `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id of the RPC that made it (at emit time, inside the
    RPC's context; a formatter may run later)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        if not hasattr(record, "trace_id"):
            record.trace_id = trace_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, for log pipelines."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
        }
        traced = getattr(record, "trace_id", "")
        if traced:
            entry["trace_id"] = traced
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        for kind in (RedactingFilter, RequestIdFilter):
            if not any(isinstance(f, kind) for f in handler.filters):
                handler.addFilter(kind())
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
