"""Fixtures for the backend contract: the same tests against the embedded store and against
Milvus (milvus-lite, served inside the test process by pymilvus for a `*.db` path).

Every test module starts with `skip_without_milvus()`: the tests are skipped, with the reason,
only where the `milvus` extra cannot be installed (milvus-lite 3 is pure Python, but it needs
faiss-cpu for its HNSW and pyarrow, which publish wheels for a fixed set of platforms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from onespace.index import CollectionStore
from onespace.index.backend import Backend

EXTRA = ("pymilvus", "milvus_lite", "faiss", "pyarrow")


def skip_without_milvus() -> None:
    """Skip the calling test module (call it before importing pymilvus or onespace.milvus) unless
    the `milvus` extra imports here."""
    for module in EXTRA:
        pytest.importorskip(
            module,
            reason=f"{module} is not installed: no wheel for this platform, or the `milvus` extra "
            "is missing (pip install -e '.[milvus]')",
        )


KINDS = ("embedded", "milvus")
Opener = Callable[[], Backend]


def make_backend(kind: str, directory: Path) -> Backend:
    """A backend over `directory` (not opened); the same directory gives the same data back."""
    if kind == "embedded":
        return CollectionStore(directory / "data")
    from onespace.milvus import MilvusBackend  # pymilvus: only once a test module checked for it

    return MilvusBackend(str(directory / "milvus.db"), refresh_seconds=0.0)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opener(kind: str, tmp_path: Path) -> Iterator[Opener]:
    """Opens a backend over this test's directory; every backend it opened is closed at the end
    (closing twice is harmless), so a test may close one and open the next (a restart)."""
    opened: list[Backend] = []

    def open_one() -> Backend:
        backend = make_backend(kind, tmp_path)
        backend.open()
        opened.append(backend)
        return backend

    yield open_one
    for backend in reversed(opened):
        backend.close()


@pytest.fixture
def backend(opener: Opener) -> Backend:
    return opener()
