"""Index checkpoints: the HNSW index (derived data) saved with the commit sequence it reflects.

    index-<seq>.usearch    the usearch file, as of commit `seq`
    checkpoint.json        the commit point: seq, file name, sha256, size, count, usearch tombstones

The usearch file is saved to a temp name (under the collection's write lock: usearch writes
corrupt files if an add runs meanwhile), then hashed, fsynced and renamed outside the lock;
`checkpoint.json` is replaced atomically last, so a crash at any point leaves the previous
checkpoint in force. On open the file is checked against its sha256 *before* usearch reads it (a
corrupt graph loads silently and then crashes the process on search); any problem means "no
checkpoint", and the index is rebuilt from the vectors.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from onespace.index.persistence import file_digest, fsync_dir, write_json

__all__ = [
    "CHECKPOINT_FILE",
    "Checkpoint",
    "commit_checkpoint",
    "read_checkpoint",
    "remove_temp_index_files",
    "temp_index_path",
]

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.json"


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    file: str
    sha256: str
    bytes: int
    count: int
    tombstones: int
    written_at: float


def temp_index_path(directory: Path) -> Path:
    """Where this process saves an index before it becomes a checkpoint. Named per process: an
    orphaned checkpoint builder (its server killed) can never write into another's file."""
    return directory / f"index.{os.getpid()}.usearch.tmp"


def remove_temp_index_files(directory: Path) -> None:
    for path in directory.glob("index.*.usearch.tmp"):
        path.unlink(missing_ok=True)


def commit_checkpoint(directory: Path, tmp: Path, seq: int, count: int, tombstones: int) -> Checkpoint:
    """Make the index saved at `tmp` the checkpoint for `seq`; older index files go."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    sha256, size = file_digest(tmp)
    final = directory / f"index-{seq:012d}.usearch"
    os.replace(tmp, final)
    checkpoint = Checkpoint(seq, final.name, sha256, size, count, tombstones, time.time())
    write_json(directory / CHECKPOINT_FILE, checkpoint.__dict__)
    fsync_dir(directory)
    for path in directory.glob("index-*.usearch"):
        if path.name != final.name:
            path.unlink(missing_ok=True)
    return checkpoint


def read_checkpoint(directory: Path, name: str) -> tuple[Checkpoint, Path] | None:
    """The committed checkpoint and its verified file, or None (logged) when there is none usable."""
    path = directory / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        checkpoint = Checkpoint(**json.loads(path.read_text("utf-8")))
        if "/" in checkpoint.file or not checkpoint.file.endswith(".usearch"):
            raise ValueError(f"bad file name {checkpoint.file!r}")
        index_path = directory / checkpoint.file
        sha256, size = file_digest(index_path)
        if (sha256, size) != (checkpoint.sha256, checkpoint.bytes):
            raise ValueError(f"{checkpoint.file} does not match its checksum")
    except (OSError, ValueError, TypeError) as exc:
        log.warning(
            "collection %s: index checkpoint unusable (%s); rebuilding the index from the vectors", name, exc
        )
        return None
    return checkpoint, index_path
