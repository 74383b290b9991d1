"""Building an index checkpoint in a separate process, from the durable files alone.

usearch's `save` holds the GIL for its whole run (about 1 s per million vectors), which would
stall the serving process. So background checkpoints are built here instead, in a child process
(`python -m onespace.index.checkpointer DIR`) that never touches the live index: it reads one
consistent snapshot of SQLite (a read transaction: the commit `seq`, the keys added and removed
since the previous checkpoint), loads the previous checkpoint (or starts empty), replays those
changes from the mapped vector file, and saves the result to the temp index path. It prints
`{"seq", "count", "tombstones"}` as one JSON line; the parent makes it the checkpoint.

It only reads: the rows a commit references are never rewritten, and the parent holds the
collection's maintenance lock meanwhile, so no compaction swaps the vector file under it. The
cost is a second set of HNSW adds (the changes since the last checkpoint) on another core, at a
lower CPU priority than the server.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np

from onespace.index.checkpoint import read_checkpoint, temp_index_path
from onespace.index.hnsw import HnswIndex
from onespace.index.persistence import read_config
from onespace.index.sqlstore import DB_FILE
from onespace.index.vectorfile import SLOT_DTYPE, slots_path, vectors_path

__all__ = ["BUILDER_NICE", "REBUILD_TOMBSTONE_RATIO", "build_checkpoint", "main"]

REBUILD_TOMBSTONE_RATIO = 0.3  # start from scratch when this share of the old file is removed
BUILDER_NICE = 10  # the builder process runs this many nice levels below the server: the server comes first
_CHUNK = 8_192  # rows per add; between chunks the builder checks its server is alive


def build_checkpoint(directory: Path, parent: int | None = None) -> dict[str, object]:
    """Write the index as of the latest commit to `temp_index_path(directory)`; its description.
    Gives up when the process `parent` (the server) is gone: nobody would commit the result."""
    config = read_config(directory)
    db = sqlite3.connect(
        f"{(directory / DB_FILE).absolute().as_uri()}?mode=ro", uri=True, isolation_level=None
    )
    previous = read_checkpoint(directory, config.name)
    try:
        db.execute("BEGIN")  # one snapshot for everything read below
        meta = {str(name): int(value) for name, value in db.execute("SELECT name, value FROM meta")}
        seq, generation, rows = meta["seq"], meta["vector_generation"], meta["vector_rows"]
        live = _keys(db, "SELECT key FROM items ORDER BY key", ())
        if previous is not None:
            checkpoint, path = previous
            index = HnswIndex.load_file(config, path, checkpoint.tombstones)
            added = _keys(db, "SELECT key FROM items WHERE seq > ? ORDER BY key", (checkpoint.seq,))
            removed = _keys(db, "SELECT key FROM removed WHERE seq > ? ORDER BY key", (checkpoint.seq,))
        else:
            index, added, removed = HnswIndex(config), live, np.zeros(0, dtype=np.uint64)
        db.execute("COMMIT")
    finally:
        db.close()
    vectors = np.memmap(
        vectors_path(directory, generation),
        dtype=config.stored_dtype.numpy,
        mode="r",
        shape=(rows, config.dimension),
    )
    slot_keys = np.asarray(
        np.memmap(slots_path(directory, generation), dtype=SLOT_DTYPE, mode="r", shape=(rows,))["key"]
    )
    index.remove([int(k) for k in removed])
    if index.tombstones > REBUILD_TOMBSTONE_RATIO * max(len(index), 1):
        index, added = HnswIndex(config), live  # mostly removed entries: a fresh graph is smaller
    slots = np.searchsorted(slot_keys, added)
    if len(added) and (slots.max() >= rows or not np.array_equal(slot_keys[slots], added)):
        raise RuntimeError("a committed key has no row in the vector file")
    for start in range(0, len(slots), _CHUNK):
        _check_parent(parent)
        chunk = slots[start : start + _CHUNK]
        index.add_stored(slot_keys[chunk], vectors[chunk])
    if len(index) != len(live):
        raise RuntimeError(f"the rebuilt index holds {len(index)} entries, the store {len(live)}")
    _check_parent(parent)
    path = temp_index_path(directory)
    index.save(path)
    return {"file": path.name, "seq": seq, "count": len(index), "tombstones": index.tombstones}


def _check_parent(parent: int | None) -> None:
    if parent is not None and os.getppid() != parent:
        raise SystemExit("the server is gone; abandoning the checkpoint")


def _keys(db: sqlite3.Connection, query: str, args: tuple[int, ...]) -> np.ndarray:
    return np.fromiter((row[0] for row in db.execute(query, args)), dtype=np.uint64)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m onespace.index.checkpointer COLLECTION_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="checkpointer: %(message)s")
    os.nice(BUILDER_NICE)
    parent = os.getppid()
    print(json.dumps(build_checkpoint(Path(args[0]), parent)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
