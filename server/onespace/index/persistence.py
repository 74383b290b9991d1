"""Small file-safety helpers shared by the store: atomic writes, directory fsyncs, checksums, and
the collection's `config.json`.

`write_atomic` writes `<name>.tmp`, fsyncs it and `os.replace`s it over `<name>`, so a reader (or
a restart after a crash) sees the old file or the new one, never a mix; `fsync_dir` makes the
rename itself durable.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from onespace.errors import Internal, OnespaceError
from onespace.index.config import CollectionConfig, config_from_json, config_to_json

__all__ = [
    "CONFIG_FILE",
    "file_digest",
    "fsync_dir",
    "read_config",
    "write_atomic",
    "write_config",
    "write_json",
]

CONFIG_FILE = "config.json"
_CHUNK = 1 << 20


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _HashingWriter:
    """File-like object that hashes what passes through."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._out.write(data)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[Sink], object]) -> dict[str, Any]:
    """Write `path` through a temp file, fsync, rename; returns its name, sha256 and size."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw:
        hashing = _HashingWriter(raw)
        write(hashing)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, path)
    return {"name": path.name, "sha256": hashing.sha256.hexdigest(), "bytes": hashing.size}


def write_json(path: Path, data: object) -> dict[str, Any]:
    encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return write_atomic(path, lambda out: out.write(encoded))


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 (hex) and size of a file, streamed."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def write_config(directory: Path, config: CollectionConfig) -> None:
    write_json(directory / CONFIG_FILE, config_to_json(config))
    fsync_dir(directory)


def read_config(directory: Path) -> CollectionConfig:
    try:
        data = json.loads((directory / CONFIG_FILE).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise Internal(f"cannot read {directory / CONFIG_FILE}: {exc}") from exc
    try:
        return config_from_json(data)
    except OnespaceError as exc:
        raise Internal(f"{directory / CONFIG_FILE} is invalid: {exc}") from exc
