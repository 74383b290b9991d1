from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from onespace.logs import JsonFormatter, RedactingFilter, RequestIdFilter
from tests.harness import Running, running_gateway


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_gateway(tmp_path / "data") as running:
        yield running


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The access log at INFO as `--log-format json` writes it (filters included), in memory."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("onespace.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
