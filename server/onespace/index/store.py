"""The set of collections, each in `data_dir/collections/<name>/` (layout: docs/storage.md).

Create and delete are atomic and durable: a new collection is initialised in
`data_dir/staging/<name>-<uuid>/` and renamed into `collections/` (then the parent is fsynced), a
deleted one is renamed into `data_dir/trash/` before its files are removed. A crash between any
two steps leaves either the old or the new state; leftovers in `staging/` and `trash/` are
removed on the next open.

`_lock` guards the name -> collection map (and names being created) and is held only for dict
operations, never for disk I/O, so `get` stays cheap enough for the event loop.
"""

from __future__ import annotations

import builtins
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from onespace.errors import AlreadyExists, Internal, NotFound
from onespace.index import maintenance, migrate
from onespace.index.backend import CollectionHandle
from onespace.index.collection import Collection, CollectionStats
from onespace.index.config import CollectionConfig, Tuning, check_stored_name
from onespace.index.persistence import CONFIG_FILE, fsync_dir

__all__ = ["CollectionStore"]

log = logging.getLogger(__name__)


class CollectionStore:
    """The embedded backend (`index.backend.Backend`)."""

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        self._data_dir = Path(data_dir)
        self._root = self._data_dir / "collections"
        self._staging = self._data_dir / "staging"
        self._trash = self._data_dir / "trash"
        self._durable = durable
        self._collections: dict[str, Collection] = {}
        self._creating: set[str] = set()
        self._lock = threading.Lock()

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    def directory(self, name: str) -> Path:
        return self._root / name

    def open(self) -> None:
        """Open every collection under `data_dir` (creating the directories on first use)."""
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            for leftovers in (self._staging, self._trash):
                if leftovers.exists():
                    shutil.rmtree(leftovers, ignore_errors=True)
            migrate.restore_interrupted(self._data_dir, self._root)
            for directory in self._root.iterdir():
                if directory.is_dir() and migrate.is_format_1(directory):
                    migrate.migrate_format_1(directory, self._data_dir, durable=self._durable)
            directories = sorted(p for p in self._root.iterdir() if p.is_dir())
        except OSError as exc:
            raise Internal(f"cannot open the data directory {self._data_dir}: {exc}") from exc
        loaded: dict[str, Collection] = {}
        try:
            for directory in directories:
                if not (directory / CONFIG_FILE).exists():
                    log.warning("ignoring %s: it has no %s", directory, CONFIG_FILE)
                    continue
                collection = maintenance.open_collection(directory, durable=self._durable)
                loaded[collection.name] = collection
                if collection.name != directory.name:
                    raise Internal(f"{directory} holds collection {collection.name!r}")
        except BaseException:
            for collection in loaded.values():
                maintenance.close(collection)
            raise
        with self._lock:
            self._collections = loaded

    def create(self, config: CollectionConfig) -> Collection:
        config = config.validated()
        name = config.name
        with self._lock:  # reserve the name; the disk work happens outside the lock
            if name in self._collections or name in self._creating:
                raise AlreadyExists(f"collection {name!r} already exists")
            self._creating.add(name)
        staging = self._staging / f"{name}-{uuid.uuid4().hex}"
        try:
            if self.directory(name).exists():
                raise AlreadyExists(f"collection {name!r} already exists")
            staging.mkdir(parents=True)
            maintenance.close(maintenance.create_collection(staging, config, durable=self._durable))
            fsync_dir(staging)  # every file's name is durable before the collection appears
            staging.rename(self.directory(name))
            fsync_dir(self._root)
            collection = maintenance.open_collection(self.directory(name), durable=self._durable)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise Internal(f"cannot create collection {name!r}: {exc}") from exc
        finally:
            with self._lock:
                self._creating.discard(name)
        with self._lock:
            self._collections[name] = collection
        return collection

    def get(self, name: str) -> Collection:
        with self._lock:
            collection = self._collections.get(name)
        if collection is None:
            raise NotFound(f"collection {name!r} not found")
        return collection

    def list(self) -> builtins.list[Collection]:
        """Every collection, sorted by name."""
        with self._lock:
            return [self._collections[name] for name in sorted(self._collections)]

    def delete(self, name: str) -> None:
        """Forget the collection and remove its directory (atomically: renamed away first)."""
        with self._lock:
            collection = self._collections.get(name)
            if collection is None:
                raise NotFound(f"collection {name!r} not found")
            check_stored_name(name)
            del self._collections[name]
        collection.closed = True  # a background checkpoint that ends now is dropped
        maintenance.stop_checkpointer(collection)
        with collection.maintenance_lock:
            maintenance.close(collection)
        graveyard = self._trash / f"{name}-{uuid.uuid4().hex}"
        try:
            self._trash.mkdir(parents=True, exist_ok=True)
            self.directory(name).rename(graveyard)
            fsync_dir(self._root)
        except OSError as exc:
            raise Internal(f"cannot remove the directory of collection {name!r}: {exc}") from exc
        shutil.rmtree(graveyard, ignore_errors=True)

    def checkpoint(self, collection: CollectionHandle) -> bool:
        """Checkpoint in a child process: the server never stalls on usearch's save."""
        return maintenance.checkpoint(_embedded(collection), background=True) is not None

    def compact(self, collection: CollectionHandle, *, force: bool = False) -> bool:
        return maintenance.compact(_embedded(collection), force=force)

    def tune(self, collection: CollectionHandle, tuning: Tuning) -> CollectionConfig:
        return _embedded(collection).tune(tuning)

    def stats(self, collection: CollectionHandle) -> CollectionStats:
        return maintenance.stats(_embedded(collection))

    def check(self) -> str | None:
        """The data directory must exist and take a small durable write."""
        probe = self._data_dir / ".health-probe"
        try:
            with open(probe, "wb") as f:
                f.write(b"ok")
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as exc:
            return f"the data directory {self._data_dir} cannot be written: {exc.strerror or exc}"
        return None

    def checkpoint_all(self) -> int:
        """Checkpoint every collection whose index changed since its last checkpoint; returns how many."""
        return sum(maintenance.checkpoint(c) is not None for c in self.list())

    def close(self) -> None:
        """Checkpoint and close every collection (shutdown: the live index is saved directly)."""
        for collection in self.list():
            maintenance.stop_checkpointer(collection)
            maintenance.checkpoint(collection)
            maintenance.close(collection)
        with self._lock:
            self._collections = {}


def _embedded(collection: CollectionHandle) -> Collection:
    if not isinstance(collection, Collection):
        raise TypeError(f"{collection!r} is not a collection of the embedded store")
    return collection
