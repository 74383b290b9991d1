"""Opening a collection (recovery), index checkpoints, compaction and statistics.

Opening brings the derived state up to date with the durable one:

1. SQLite (the source of truth) is opened; its format must be this version's.
2. The vector file is mapped with the committed row count; if a file was truncated behind our
   back, the items whose vectors are gone are dropped from SQLite, and a line says how many.
3. The slot arrays are rebuilt from the slots file and the live keys.
4. The index checkpoint is verified (sha256) and loaded, then brought up to date by replaying the
   commits after its `seq` (keys removed since, rows added since); with no usable checkpoint the
   index is rebuilt from the vectors. Either way a line says what was done.

Compaction copies the live rows into a new vector-file generation and rebuilds the index when
usearch's removed entries pass a threshold, without holding the write lock except for a short
catch-up at the end; searches never wait for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from onespace.errors import Internal, NotFound
from onespace.index.checkpoint import (
    Checkpoint,
    commit_checkpoint,
    read_checkpoint,
    remove_temp_index_files,
    temp_index_path,
)
from onespace.index.collection import ADD_CHUNK, Collection, CollectionStats
from onespace.index.config import CollectionConfig
from onespace.index.hnsw import HnswIndex
from onespace.index.persistence import fsync_dir, read_config, write_config
from onespace.index.slots import IDS_DTYPE, SlotTable, SlotView
from onespace.index.sqlstore import SqlStore, UnknownFormat
from onespace.index.vectorfile import VectorFile, slots_path, vectors_path

__all__ = [
    "COMPACT_DEAD_RATIO",
    "REBUILD_TOMBSTONE_RATIO",
    "checkpoint",
    "close",
    "compact",
    "create_collection",
    "open_collection",
    "stats",
]

log = logging.getLogger(__name__)

COMPACT_DEAD_RATIO = 0.3  # compact the vector file when this share of its rows is dead
REBUILD_TOMBSTONE_RATIO = 0.3  # rebuild the index when this share of its entries is removed
_MIN_DEAD = 1024  # never bother for fewer dead rows than this


def create_collection(directory: Path, config: CollectionConfig, *, durable: bool = True) -> Collection:
    """Initialise an empty collection in `directory` (which must exist and be empty)."""
    write_config(directory, config)
    sql = SqlStore(directory, durable=durable)
    sql.create()
    sql.close()
    return open_collection(directory, durable=durable)


def open_collection(directory: Path, *, durable: bool = True) -> Collection:
    config = read_config(directory)
    sql = SqlStore(directory, durable=durable)
    try:
        meta = sql.open()
    except UnknownFormat as exc:
        sql.close()
        raise Internal(f"collection {config.name!r} in {directory}: {exc}") from exc
    vectors = VectorFile(directory, meta["vector_generation"], config.dimension, config.stored_dtype.numpy)
    intact = vectors.open(meta["vector_rows"])
    _remove_other_generations(directory, meta["vector_generation"])
    mapped = vectors.mapped
    assert mapped is not None
    records = np.array(mapped.slots[:intact])
    keys = records["key"].astype(np.uint64)
    live_keys, live_ids, live_described = sql.live_items()
    pos = np.minimum(np.searchsorted(keys, live_keys), max(intact - 1, 0))
    present = (keys[pos] == live_keys) if intact else np.zeros(len(live_keys), dtype=bool)
    if not present.all():
        lost = live_keys[~present]
        log.error(
            "collection %s: the vector file holds %d of %d committed rows; dropping the %d items "
            "whose vectors are gone",
            config.name,
            intact,
            meta["vector_rows"],
            len(lost),
        )
        meta["seq"] += 1
        sql.drop_keys([int(k) for k in lost], meta["seq"])
        sql.set_meta({"vector_rows": intact})
    live = np.zeros(intact, dtype=bool)
    live[pos[present]] = True
    ids = np.zeros(intact, dtype=IDS_DTYPE)  # a dead slot keeps no id
    ids[pos[present]] = np.asarray(live_ids, dtype=IDS_DTYPE)[present]
    described = np.zeros(intact, dtype=bool)
    described[pos[present]] = live_described[present]
    slots = SlotTable()
    slots.load(keys, records["code"].astype(np.int8), live, ids, described)
    collection = Collection(directory, config, sql, vectors, slots, HnswIndex(config), meta, durable=durable)
    _restore_index(collection)
    return collection


def _remove_other_generations(directory: Path, generation: int) -> None:
    """Files of an unfinished or superseded compaction (the database names the current one)."""
    keep = {vectors_path(directory, generation).name, slots_path(directory, generation).name}
    for pattern in ("vectors-*.bin", "slots-*.bin"):
        for path in directory.glob(pattern):
            if path.name not in keep:
                path.unlink(missing_ok=True)
    remove_temp_index_files(directory)


def _restore_index(collection: Collection) -> None:
    config, view = collection.config, collection.view
    found = read_checkpoint(collection.directory, config.name)
    if found is not None:
        checkpoint, path = found
        try:
            index = HnswIndex.load_file(config, path, checkpoint.tombstones)
            added, removed = collection.sql.changed_since(checkpoint.seq)
            index.remove([int(k) for k in removed])
            _add_rows(collection, index, view, view.rows_for_keys(added))
            if len(index) != view.live_count:
                raise Internal(f"index holds {len(index)} entries after replay, the store {view.live_count}")
            collection.index = index
            collection.checkpoint = checkpoint
            collection.count_unsaved(len(added) + len(removed))  # replayed again at every start until saved
            log.info(
                "collection %s: index checkpoint at seq %d loaded, %d added and %d removed since replayed",
                config.name,
                checkpoint.seq,
                len(added),
                len(removed),
            )
            return
        except Internal as exc:
            log.warning("collection %s: %s; rebuilding the index from the vectors", config.name, exc)
    collection.index = _build_index(collection, view)
    collection.count_unsaved(view.live_count)
    if view.live_count:
        log.info("collection %s: index rebuilt from %d stored vectors", config.name, view.live_count)


def _build_index(collection: Collection, view: SlotView) -> HnswIndex:
    index = HnswIndex(collection.config)
    _add_rows(collection, index, view, view.live_rows())
    return index


def _add_rows(collection: Collection, index: HnswIndex, view: SlotView, rows: npt.NDArray[np.int64]) -> None:
    rows = rows[rows >= 0]
    for start in range(0, len(rows), ADD_CHUNK):
        chunk = rows[start : start + ADD_CHUNK]
        index.add_stored(view.keys[chunk], view.vectors[chunk])


def checkpoint(collection: Collection, *, background: bool = False) -> Checkpoint | None:
    """Save the index with the commit it reflects; None when nothing changed since the last one.

    In the background (`checkpointer`), a child process builds the checkpoint from the durable
    files, so the serving process never stalls: usearch's `save` holds the GIL for its whole run
    (about 1 s per million 256-d f16 vectors). Otherwise (shutdown) the live index is saved under
    the write lock (usearch writes corrupt files if an add runs during a save). Either way the
    file is then hashed, fsynced and committed, and the removal records it covers are forgotten.
    """
    with collection.maintenance_lock:
        with contextlib.nullcontext() if background else collection.index_lock, collection.write_lock:
            if collection.closed:
                return None
            last = collection.checkpoint
            if last is not None and last.seq == collection.seq:
                return None
            collection.changes_since_checkpoint = 0
            collection.unsaved_since = 0.0
            if not background:  # the saved index must reflect every commit up to `seq`
                collection._index_tail(holding_write_lock=True)
                seq, count, tombstones = collection.seq, len(collection.index), collection.index.tombstones
                tmp = temp_index_path(collection.directory)
                collection.index.save(tmp)
        if background:
            built = _build_in_child(collection)
            if built is None:
                return None
            tmp, seq, count, tombstones = built
        try:
            done = commit_checkpoint(collection.directory, tmp, seq, count, tombstones)
        except OSError as exc:
            raise Internal(f"checkpointing collection {collection.name!r} failed: {exc}") from exc
        with collection.write_lock:
            if not collection.closed:
                collection.sql.forget_removed(seq)
            collection.checkpoint = done
        return done


def _build_in_child(collection: Collection) -> tuple[Path, int, int, int] | None:
    """Run `checkpointer` on the collection; (file, seq, count, tombstones), or None if it was
    stopped because the collection is closing."""
    command = [sys.executable, "-m", "onespace.index.checkpointer", str(collection.directory)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    collection.checkpointer = process
    try:
        out, err = process.communicate()
    finally:
        collection.checkpointer = None
    if collection.closed or process.returncode == -signal.SIGKILL:  # stopped by stop_checkpointer
        return None
    if process.returncode != 0:
        tail = " ".join(err.strip().splitlines()[-3:])
        raise Internal(
            f"collection {collection.name!r}: the checkpoint process failed ({process.returncode}): {tail}"
        )
    built = json.loads(out.strip().splitlines()[-1])
    path = collection.directory / Path(str(built["file"])).name
    return path, int(built["seq"]), int(built["count"]), int(built["tombstones"])


def stop_checkpointer(collection: Collection) -> None:
    """Kill a background checkpoint of a collection that is being closed or deleted."""
    process = collection.checkpointer
    if process is not None and process.poll() is None:
        process.kill()


def compact(collection: Collection, *, force: bool = False) -> bool:
    """Reclaim dead rows and removed index entries past their thresholds; returns whether it did."""
    with collection.maintenance_lock:
        did = False
        slots = collection.slots
        if (slots.dead_count >= _MIN_DEAD and slots.dead_count > COMPACT_DEAD_RATIO * slots.count) or (
            force and slots.dead_count
        ):
            _compact_vectors(collection)
            did = True
        index = collection.index
        if (
            index.tombstones >= _MIN_DEAD and index.tombstones > REBUILD_TOMBSTONE_RATIO * max(len(index), 1)
        ) or (force and index.tombstones):
            _rebuild_index(collection)
            did = True
        return did


def _compact_vectors(collection: Collection) -> None:
    directory, config = collection.directory, collection.config
    old = collection.vectors
    view = collection.view
    keep = view.live_rows()
    new = VectorFile(directory, old.generation + 1, config.dimension, config.stored_dtype.numpy)
    new.open(0)
    try:
        _copy_rows(view, keep, new)
        with collection.write_lock:  # catch up with what was written meanwhile, then switch
            current = collection.view
            extra = np.arange(view.count, current.count, dtype=np.int64)
            _copy_rows(current, extra[current.live[extra]], new)
            all_old = np.concatenate([keep, extra[current.live[extra]]])
            new.sync()
            fsync_dir(directory)  # the new files' names are durable before the database points at them
            collection.sql.set_meta({"vector_generation": new.generation, "vector_rows": new.rows})
            slots = SlotTable()
            slots.load(
                current.keys[all_old],
                current.codes[all_old],
                current.live[all_old],
                current.ids[all_old],
                current.described[all_old],
            )
            collection.vectors, collection.slots = new, slots
            collection.publish()
    except BaseException:
        new.close()
        raise
    old.close()
    for path in (old.vectors_path, old.slots_path):
        path.unlink(missing_ok=True)  # readers' mappings stay valid until they let go
    log.info("collection %s: compacted the vector file from %d to %d rows", config.name, view.count, new.rows)


def _copy_rows(view: SlotView, rows: npt.NDArray[np.int64], into: VectorFile) -> None:
    for start in range(0, len(rows), ADD_CHUNK):
        chunk = rows[start : start + ADD_CHUNK]
        into.append(view.keys[chunk], np.asarray(view.vectors[chunk]), view.codes[chunk])


def _rebuild_index(collection: Collection) -> None:
    """Build a fresh index off the lock from a snapshot, catch up under it, swap."""
    with collection.write_lock:  # the snapshot and the seq it reflects, taken together
        view, seq = collection.view, collection.seq
    fresh = _build_index(collection, view)
    with collection.index_lock, collection.write_lock:
        added, removed = collection.sql.changed_since(seq)
        fresh.remove([int(k) for k in removed])
        current = collection.view
        _add_rows(collection, fresh, current, current.rows_for_keys(added))
        fresh.search_calls = collection.index.search_calls
        fresh.retune(collection.config)  # tuned while it was being built
        collection.index = fresh
        collection.indexed_below = collection.next_key  # the fresh index holds every committed row
        collection.pending_removals = []
    log.info("collection %s: index rebuilt without its removed entries", collection.name)


def close(collection: Collection) -> None:
    with collection.index_lock, collection.write_lock:
        collection.closed = True
        collection.sql.close()
        collection.vectors.close()


def stats(collection: Collection) -> CollectionStats:
    """NotFound once the collection is deleted (a request or the maintainer may hold its handle)."""
    with collection.index_lock:  # usearch's memory_usage segfaults while an add runs (2.26)
        collection._check_open()  # close() takes this lock: the index stays open until we leave
        slots, index, index_bytes = collection.slots, collection.index, collection.index.memory_usage
    directory = collection.directory
    disk = 0
    try:
        paths = list(directory.iterdir())
    except FileNotFoundError:
        raise NotFound(f"collection {collection.name!r} not found (it was deleted)") from None
    for path in paths:
        try:
            disk += os.stat(path).st_blocks * 512
        except OSError:
            continue
    wal = directory / (collection.sql.path.name + "-wal")
    last = collection.checkpoint
    return CollectionStats(
        items=slots.live_count,
        dead_slots=slots.dead_count,
        index_tombstones=index.tombstones,
        disk_bytes=disk,
        index_bytes=index_bytes,
        vector_bytes=slots.count * collection.vectors.row_bytes,
        seq=collection.seq,
        checkpoint_seq=last.seq if last else 0,
        checkpoint_time=last.written_at if last else 0.0,
        log_bytes=wal.stat().st_size if wal.exists() else 0,
        changes_since_checkpoint=collection.changes_since_checkpoint,
        unsaved_since=collection.unsaved_since,
        unindexed_rows=collection.unindexed_rows(),
        unindexed_limit=collection.config.unindexed_limit,
    )
