"""On-disk snapshots of one collection: atomic, checksummed, with the previous one kept.

A collection directory holds:

    config.json                   written once, at create
    vectors-<gen>.npy             full vectors of the live rows, float32 (n, dimension)
    items-<gen>.json              ids, keys, modality codes, metadata, next key
    index-<gen>.usearch           the HNSW index over the prefixes (derived data)
    manifest.json                 the commit point: generation, count, sha256 + size of each file
    manifest.prev.json            the previous manifest, whose files are kept too

Every file is written to `<name>.tmp`, fsynced and `os.replace`d; a generation's files get new
names, so the manifest — replaced last — switches atomically from one complete snapshot to the
next, and a crash at any point leaves the last committed snapshot intact. On load each file is
checked against the manifest's sha256 before it is parsed (usearch loads corrupt graphs silently
and then segfaults); if only the index is bad it is rebuilt from the vectors, if the vectors or
items are bad the previous generation is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from onespace.errors import Internal, OnespaceError
from onespace.index.config import CollectionConfig, config_from_json, config_to_json

__all__ = [
    "CONFIG_FILE",
    "MANIFEST_FILE",
    "PREVIOUS_MANIFEST_FILE",
    "Snapshot",
    "fsync_dir",
    "read_config",
    "read_snapshot",
    "write_atomic",
    "write_config",
    "write_snapshot",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

FORMAT = 1
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
PREVIOUS_MANIFEST_FILE = "manifest.prev.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Snapshot:
    """A collection's persistent state (live rows only) and its serialised index, if any."""

    ids: list[str]
    keys: npt.NDArray[np.uint64]
    codes: npt.NDArray[np.int8]
    metadata: list[dict[str, str]]
    vectors: npt.NDArray[np.float32]
    next_key: int
    index_tombstones: int
    index_path: Path | None = None  # on load: the verified index file; None: rebuild it


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _HashingWriter:
    """File-like object that hashes what passes through (np.save writes to it in chunks)."""

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
    """Write `path` through a temp file, fsync, rename; returns its sha256 and size."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw:
        hashing = _HashingWriter(raw)
        write(hashing)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, path)
    return {"name": path.name, "sha256": hashing.sha256.hexdigest(), "bytes": hashing.size}


def _write_json(path: Path, data: object) -> dict[str, Any]:
    encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    return write_atomic(path, lambda out: out.write(encoded))


def write_config(directory: Path, config: CollectionConfig) -> None:
    _write_json(directory / CONFIG_FILE, config_to_json(config))
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


def write_snapshot(directory: Path, snapshot: Snapshot, write_index: Callable[[Path], None]) -> None:
    """Commit `snapshot` as the next generation; `write_index(path)` serialises the HNSW index."""
    current = _read_manifest(directory / MANIFEST_FILE)
    previous = _read_manifest(directory / PREVIOUS_MANIFEST_FILE)
    generation = 1 + max((m["generation"] for m in (current, previous) if m), default=0)
    files = {
        "vectors": write_atomic(
            directory / f"vectors-{generation:06d}.npy",
            lambda out: np.save(out, np.ascontiguousarray(snapshot.vectors), allow_pickle=False),
        ),
        "items": _write_json(
            directory / f"items-{generation:06d}.json",
            {
                "ids": snapshot.ids,
                "keys": [int(k) for k in snapshot.keys],
                "modalities": [int(c) for c in snapshot.codes],
                "metadata": snapshot.metadata,
            },
        ),
        "index": _write_usearch(directory / f"index-{generation:06d}.usearch", write_index),
    }
    manifest = {
        "format": FORMAT,
        "generation": generation,
        "count": len(snapshot.ids),
        "next_key": snapshot.next_key,
        "index_tombstones": snapshot.index_tombstones,
        "files": files,
    }
    if current:
        _write_json(directory / PREVIOUS_MANIFEST_FILE, current)
    else:  # manifest.json unreadable: the previous manifest stays the fallback, with its files
        current = previous
    _write_json(directory / MANIFEST_FILE, manifest)
    fsync_dir(directory)
    _remove_unreferenced(directory, [manifest, current])


def _write_usearch(path: Path, write_index: Callable[[Path], None]) -> dict[str, Any]:
    """usearch writes by path only: save to the temp name, then hash, fsync and rename it."""
    tmp = path.with_name(path.name + ".tmp")
    write_index(tmp)
    digest, size = hashlib.sha256(), 0
    with open(tmp, "rb+") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return {"name": path.name, "sha256": digest.hexdigest(), "bytes": size}


def _remove_unreferenced(directory: Path, manifests: list[dict[str, Any] | None]) -> None:
    keep = {CONFIG_FILE, MANIFEST_FILE, PREVIOUS_MANIFEST_FILE}
    for manifest in manifests:
        if manifest:
            keep.update(entry["name"] for entry in manifest["files"].values())
    for path in directory.iterdir():
        if path.is_file() and path.name not in keep:
            path.unlink(missing_ok=True)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text("utf-8"))
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("generation"), int):
            raise ValueError(f"unsupported manifest format {manifest.get('format')!r}")
        for part in ("vectors", "items", "index"):
            entry = manifest["files"][part]
            if not (isinstance(entry["name"], str) and "/" not in entry["name"] and entry["sha256"]):
                raise ValueError(f"bad entry for {part}")
        return dict(manifest)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable manifest %s: %s", path, exc)
        return None


def _verified(directory: Path, entry: dict[str, Any]) -> Path:
    """The file named by a manifest entry, once its size and sha256 match (streamed, not loaded)."""
    path = directory / str(entry["name"])
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if size != entry["bytes"] or digest.hexdigest() != entry["sha256"]:
        raise ValueError(f"{path.name} does not match its checksum")
    return path


def read_snapshot(directory: Path, config: CollectionConfig, restore: Callable[[Snapshot], T]) -> T | None:
    """`restore` applied to the newest intact snapshot; None if the collection was never saved.

    A generation whose files fail their checksum, or that `restore` refuses with ValueError, is
    skipped for the previous one. Raises Internal when snapshots exist but none is intact: losing
    data silently is worse than refusing to start.
    """
    errors: list[str] = []
    found_any = False
    for name in (MANIFEST_FILE, PREVIOUS_MANIFEST_FILE):
        found_any = found_any or (directory / name).exists()
        manifest = _read_manifest(directory / name)
        if manifest is None:
            continue
        try:
            restored = restore(_load_generation(directory, manifest, config))
        except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
            errors.append(f"generation {manifest['generation']}: {exc}")
            log.warning("collection %s: generation %s unusable: %s", config.name, manifest["generation"], exc)
            continue
        if name == PREVIOUS_MANIFEST_FILE:
            # The newest generation is bad: make the one just loaded the commit point again, so the
            # next save builds on it and keeps it as its fallback instead of the bad one.
            log.warning("collection %s: fell back to generation %s", config.name, manifest["generation"])
            _write_json(directory / MANIFEST_FILE, manifest)
            fsync_dir(directory)
        return restored
    if found_any:
        reasons = "; ".join(errors)
        raise Internal(f"collection {config.name!r} in {directory} has no intact snapshot: {reasons}")
    return None


def _load_generation(directory: Path, manifest: dict[str, Any], config: CollectionConfig) -> Snapshot:
    files = manifest["files"]
    vectors = np.load(_verified(directory, files["vectors"]), allow_pickle=False)
    items = json.loads(_verified(directory, files["items"]).read_text("utf-8"))
    count = manifest["count"]
    if vectors.dtype != np.float32 or vectors.shape != (count, config.dimension):
        expected = f"float32 ({count}, {config.dimension})"
        raise ValueError(f"vectors are {vectors.dtype} {vectors.shape}, expected {expected}")
    ids, keys, codes, metadata = items["ids"], items["keys"], items["modalities"], items["metadata"]
    if not len(ids) == len(keys) == len(codes) == len(metadata) == count:
        raise ValueError("items do not match the manifest's count")
    if not all(isinstance(m, dict) and all(isinstance(v, str) for v in m.values()) for m in metadata):
        raise ValueError("metadata is malformed")
    index_path: Path | None
    try:
        index_path = _verified(directory, files["index"])
    except (OSError, ValueError) as exc:
        log.warning("collection %s: index file unusable (%s); rebuilding it", config.name, exc)
        index_path = None
    return Snapshot(
        ids=[str(i) for i in ids],
        keys=np.asarray(keys, dtype=np.uint64),
        codes=np.asarray(codes, dtype=np.int8),
        metadata=metadata,
        vectors=vectors,
        next_key=int(manifest["next_key"]),
        index_tombstones=int(manifest["index_tombstones"]),
        index_path=index_path,
    )
