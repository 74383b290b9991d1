"""Upgrading a collection written in storage format 1 (snapshots saved at shutdown) to format 2.

Format 1 kept `manifest.json` (and `manifest.prev.json`) naming a generation's checksummed files:
`vectors-<gen>.npy` (float32), `items-<gen>.json` (ids, keys, modality codes, metadata) and an
index file. Migration reads the newest intact generation, writes a complete format-2 collection
(stored dtype f32, so vectors read back exactly as before) in `staging/`, moves the old directory
to `migrated-v1/<name>` (kept as a backup: nothing is deleted) and renames the new one into place.
A crash between the two renames is repaired on the next start by moving the backup back, after
which the migration simply runs again.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from onespace.errors import Internal
from onespace.index import maintenance
from onespace.index.config import StoredDtype
from onespace.index.persistence import file_digest, fsync_dir, read_config
from onespace.index.writes import PreparedRecord, UpsertOp

__all__ = ["BACKUP_DIR", "is_format_1", "migrate_format_1", "restore_interrupted"]

log = logging.getLogger(__name__)

BACKUP_DIR = "migrated-v1"
_MANIFESTS = ("manifest.json", "manifest.prev.json")
_CHUNK = 10_000


def is_format_1(directory: Path) -> bool:
    return not (directory / "items.sqlite").exists() and any((directory / m).exists() for m in _MANIFESTS)


def restore_interrupted(data_dir: Path, root: Path) -> None:
    """Move back a format-1 backup whose replacement never arrived (crash mid-migration)."""
    backups = data_dir / BACKUP_DIR
    if not backups.exists():
        return
    for backup in backups.iterdir():
        target = root / backup.name
        if backup.is_dir() and not target.exists():
            log.warning("collection %s: an interrupted migration is undone; it will run again", backup.name)
            backup.rename(target)
            fsync_dir(root)


def migrate_format_1(directory: Path, data_dir: Path, *, durable: bool) -> None:
    """Replace the format-1 collection in `directory` by a format-2 one (see the module doc)."""
    config = replace(read_config(directory), stored_dtype=StoredDtype.F32).validated()
    manifest, vectors, items = _read_newest(directory)
    staging = data_dir / "staging" / f"{config.name}-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    collection = maintenance.create_collection(staging, config, durable=durable)
    try:
        ids, codes, metadata = items["ids"], items["modalities"], items["metadata"]
        for start in range(0, len(ids), _CHUNK):
            records = tuple(
                PreparedRecord(str(ids[i]), vectors[i], int(codes[i]), dict(metadata[i]))
                for i in range(start, min(start + _CHUNK, len(ids)))
            )
            collection.apply([UpsertOp(records, len(records))])
        maintenance.checkpoint(collection)
    finally:
        maintenance.close(collection)
    backup = data_dir / BACKUP_DIR / directory.name
    backup.parent.mkdir(parents=True, exist_ok=True)
    directory.rename(backup)
    staging.rename(directory)
    fsync_dir(directory.parent)
    log.warning(
        "collection %s: migrated %d items from storage format 1 (generation %s) to format 2; "
        "the old files are kept in %s (remove them once satisfied)",
        config.name,
        len(ids),
        manifest["generation"],
        backup,
    )


def _read_newest(directory: Path) -> tuple[dict[str, Any], np.ndarray, dict[str, Any]]:
    problems: list[str] = []
    for name in _MANIFESTS:
        path = directory / name
        if not path.exists():
            continue
        try:
            manifest = json.loads(path.read_text("utf-8"))
            files = manifest["files"]
            for part in ("vectors", "items"):
                entry = files[part]
                if file_digest(directory / entry["name"]) != (entry["sha256"], entry["bytes"]):
                    raise ValueError(f"{entry['name']} does not match its checksum")
            vectors = np.load(directory / files["vectors"]["name"], allow_pickle=False)
            items = json.loads((directory / files["items"]["name"]).read_text("utf-8"))
            if len(vectors) != len(items["ids"]) or vectors.dtype != np.float32:
                raise ValueError("vectors and items disagree")
            return manifest, vectors, items
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{name}: {exc}")
    raise Internal(f"cannot migrate {directory}: no intact format-1 snapshot ({'; '.join(problems)})")
