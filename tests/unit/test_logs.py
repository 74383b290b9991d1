"""The redacting log filter: credentials that reach a log line come out masked."""

from __future__ import annotations

import logging
import sys

import pytest

from onespace.logs import RedactingFilter, redact


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("metadata authorization: Bearer os_abc.def-123", "os_abc.def-123"),
        (
            "{'Authorization': 'AWS4-HMAC-SHA256 Credential=AKIAABCDEFGHIJKLMNOP/x, Signature=9f8e'}",
            "AKIAABCD",
        ),
        ("headers {'X-Amz-Security-Token': 'FwoGZXIvYXdzEJr//////////wEaDG'}", "FwoGZXIvYXdzEJr"),
        ("key ASIAQWERTYUIOPASDFGH in use", "ASIAQWERTYUIOPASDFGH"),
        ("url ?X-Amz-Signature=0123456789abcdef0123456789abcdef", "0123456789abcdef0123"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
    ],
)
def test_credentials_are_masked(line: str, secret: str) -> None:
    assert secret not in redact(line)
    assert "redacted" in redact(line)


def test_ordinary_lines_are_untouched() -> None:
    line = "collection docs: 1,024 items upserted in 3.2 ms, request id 7f3a-11"
    assert redact(line) == line
    plain = "embedding queue is full (4096 items waiting, capacity 4096); retry later"
    assert redact(plain) == plain


def test_the_filter_masks_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "sent %s", ("Bearer os_topsecret",), None)
    try:
        raise RuntimeError("Authorization: Bearer os_inexception")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    assert "os_topsecret" not in record.getMessage()
    assert record.exc_text is not None and "os_inexception" not in record.exc_text
