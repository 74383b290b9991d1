"""Logging for `onespace serve`: one format, and nothing secret or private in any line.

Two layers, because one is not enough:
- Libraries that log whole requests at DEBUG (botocore and aiobotocore log every body, so texts
  and base64 images, and the signed headers; aiohttp and urllib3 log connections and headers)
  are held at WARNING whatever `--log-level` says. onespace's own DEBUG lines name sizes, ids of
  calls and timings, never payloads.
- A filter on the handler rewrites anything that looks like a credential in what remains:
  bearer tokens, `Authorization`/`X-Amz-Security-Token` values, AWS access key ids, SigV4
  signatures, `aws_secret_access_key = ...`.
"""

from __future__ import annotations

import logging
import re

__all__ = ["QUIET_LOGGERS", "RedactingFilter", "configure_logging", "redact"]

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


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
