from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import Running, running_gateway


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_gateway(tmp_path / "data") as running:
        yield running
