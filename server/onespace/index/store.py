"""The set of collections, each in `data_dir/collections/<name>/` (layout: `persistence`).

Two locks: `_lock` guards the name -> collection map (and names being created) and is held only
for dict operations, never for disk I/O, so `get` stays cheap enough for the event loop;
`_save_lock` serialises `save_all` with `delete`, so a collection's directory is never removed
while it is being written.
A deleted collection's directory is first renamed into `data_dir/trash/` (atomic: a crash never
leaves half a collection under `collections/`), then removed.
"""

from __future__ import annotations

import builtins
import logging
import shutil
import threading
import uuid
from pathlib import Path

from onespace.errors import AlreadyExists, Internal, NotFound
from onespace.index.collection import Collection
from onespace.index.config import CollectionConfig, check_collection_name
from onespace.index.persistence import CONFIG_FILE, fsync_dir, write_config

__all__ = ["CollectionStore"]

log = logging.getLogger(__name__)


class CollectionStore:
    def __init__(self, data_dir: Path) -> None:
        self._data_dir = Path(data_dir)
        self._root = self._data_dir / "collections"
        self._trash = self._data_dir / "trash"
        self._collections: dict[str, Collection] = {}
        self._creating: set[str] = set()
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    def directory(self, name: str) -> Path:
        return self._root / name

    def open(self) -> None:
        """Load every collection under `data_dir` (creating the directories on first use).

        A collection with no intact snapshot raises Internal: starting without it would lose data.
        """
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            self._empty_trash()
            directories = sorted(p for p in self._root.iterdir() if p.is_dir())
        except OSError as exc:
            raise Internal(f"cannot open the data directory {self._data_dir}: {exc}") from exc
        loaded: dict[str, Collection] = {}
        for directory in directories:
            if not (directory / CONFIG_FILE).exists():
                log.warning("ignoring %s: it has no %s", directory, CONFIG_FILE)
                continue
            collection = Collection.load(directory)
            if collection.name != directory.name:
                raise Internal(f"{directory} holds collection {collection.name!r}")
            loaded[collection.name] = collection
        with self._lock:
            self._collections = loaded

    def create(self, config: CollectionConfig) -> Collection:
        collection = Collection(config)  # validates the config first
        name = collection.name
        directory = self.directory(name)
        with self._lock:  # reserve the name; the disk work happens outside the lock
            if name in self._collections or name in self._creating or (directory / CONFIG_FILE).exists():
                raise AlreadyExists(f"collection {name!r} already exists")
            self._creating.add(name)
        try:
            if directory.exists():  # left by a create that crashed before its config was written
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            write_config(directory, collection.config)
            fsync_dir(self._root)
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            with self._lock:
                self._creating.discard(name)
            raise Internal(f"cannot create collection {name!r} in {directory}: {exc}") from exc
        with self._lock:
            self._creating.discard(name)
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
        """Forget the collection and remove its directory."""
        with self._save_lock:
            with self._lock:
                if name not in self._collections:
                    raise NotFound(f"collection {name!r} not found")
                check_collection_name(name)
                del self._collections[name]
            graveyard = self._trash / f"{name}-{uuid.uuid4().hex}"
            try:
                if not self.directory(name).exists():
                    return
                self._trash.mkdir(parents=True, exist_ok=True)
                self.directory(name).rename(graveyard)
                fsync_dir(self._root)
            except OSError as exc:
                raise Internal(f"cannot remove the directory of collection {name!r}: {exc}") from exc
            shutil.rmtree(graveyard, ignore_errors=True)

    def save_all(self) -> int:
        """Snapshot every collection that changed since its last snapshot; returns how many."""
        with self._save_lock:
            saved = 0
            for collection in self.list():
                saved += collection.save(self.directory(collection.name))
            return saved

    def _empty_trash(self) -> None:
        if self._trash.exists():
            for leftover in self._trash.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)
