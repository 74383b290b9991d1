from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.client.fake_gateway import FakeGateway, serve


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    yield from serve()
