"""The set of collections in one Milvus database (`index.backend.Backend`).

A gateway with this backend holds no state that must survive it: every item and every
collection's config live in Milvus (the config in the collection's `onespace.config` property,
`layout`), so any number of gateway replicas can serve the same collections. What a gateway keeps
are caches: the name -> collection map and per-collection counts. The map is re-read from Milvus
at most every `refresh_seconds` when a name is missing from it or when the collections are listed,
so a collection created or dropped through another replica is seen here within that time (that
refresh is one `list_collections` call, made on the caller's thread).

Creating a collection is one Milvus call for the collection with its schema and config property,
then one per index and a load; if a crash leaves it without its indexes or unloaded, `open`
finishes the job. Deleting drops the
Milvus collection. Maintenance maps onto Milvus's own: `checkpoint` is a flush (seal the growing
segments to object storage; Milvus also does it by itself, so the maintainer never asks for one:
`changes_since_checkpoint` is always 0), `compact` with `force` (the Compact RPC) asks Milvus for
a compaction, which otherwise runs on Milvus's schedule. Stats that describe the embedded files
(dead slots, tombstones, bytes, log bytes) are 0 here.

`uri` is a Milvus address (`http://host:19530`, `https://...`) or a local path ending in `.db`,
which pymilvus serves with milvus-lite inside this process (tests, a laptop); `close` stops that
local server so the same path can be opened again.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pymilvus import MilvusClient  # type: ignore[import-untyped]

from onespace.errors import AlreadyExists, Internal, InvalidArgument, NotFound
from onespace.index.backend import CollectionHandle
from onespace.index.collection import CollectionStats
from onespace.index.config import CollectionConfig, Tuning
from onespace.milvus import layout
from onespace.milvus.collection import MilvusCollection
from onespace.milvus.errors import milvus_errors, translate
from onespace.milvus.names import from_milvus, to_milvus

__all__ = ["CONSISTENCY_LEVELS", "MilvusBackend", "display_uri", "read_token_file"]

log = logging.getLogger(__name__)

CONSISTENCY_LEVELS = ("Strong", "Session", "Bounded", "Eventually")


def read_token_file(path: str) -> str:
    """The Milvus token held in `path` (surrounding whitespace dropped); "" for no path. A file
    rather than a setting's value, so the token never shows in `ps`, `--help` or a log line."""
    if not path:
        return ""
    try:
        return Path(path).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the Milvus token file {path}: {exc}") from exc


def display_uri(uri: str) -> str:
    """`uri` without credentials, for messages and logs."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class MilvusBackend:
    def __init__(
        self,
        uri: str,
        *,
        token: str = "",
        database: str = "",
        consistency: str = "Strong",
        timeout: float = 30.0,
        refresh_seconds: float = 5.0,
    ) -> None:
        if not uri:
            raise ValueError("the Milvus backend needs a URI: a Milvus address or a local path ending in .db")
        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"consistency {consistency!r} is not one of {', '.join(CONSISTENCY_LEVELS)}")
        self._uri = uri
        self._token = token
        self._database = database
        self._consistency = consistency
        self._timeout = timeout
        self._refresh_seconds = refresh_seconds
        self._client: Any = None
        self._collections: dict[str, MilvusCollection] = {}
        self._busy: set[str] = set()  # names being created or deleted: a refresh leaves them alone
        self._lock = threading.Lock()  # guards the map and `_busy`; held for dict operations only
        self._refreshing = threading.Lock()
        self._refreshed_at = 0.0
        self._counted_at: dict[str, float] = {}

    @property
    def uri(self) -> str:
        return display_uri(self._uri)

    @property
    def local(self) -> bool:
        """Whether the URI is a milvus-lite path served inside this process."""
        return self._uri.endswith(".db")

    # --- lifecycle ---

    def open(self) -> None:
        """Connect and open every onespace collection in the database."""
        if self.local:
            try:
                Path(self._uri).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise Internal(f"cannot create the directory of {self._uri}: {exc}") from exc
        with milvus_errors(f"connect to Milvus at {self.uri}"):
            self._client = MilvusClient(
                uri=self._uri, token=self._token, db_name=self._database, timeout=self._timeout
            )
        found = self._scan()
        with self._lock:
            self._collections = found
            self._refreshed_at = time.monotonic()
        log.info("opened %d collection(s) from Milvus at %s", len(found), self.uri)

    def _scan(self, known: dict[str, MilvusCollection] | None = None) -> dict[str, MilvusCollection]:
        """Every onespace collection in Milvus, reusing the handles in `known`."""
        with milvus_errors(f"list the collections in Milvus at {self.uri}"):
            names = self._client.list_collections(timeout=self._timeout)
        out: dict[str, MilvusCollection] = {}
        for milvus_name in sorted(names):
            stored = from_milvus(milvus_name)
            if stored is None:
                continue
            if known is not None and stored in known and not known[stored].closed:
                out[stored] = known[stored]
                continue
            collection = self._open_one(milvus_name, stored)
            if collection is not None:
                out[stored] = collection
        return out

    def _open_one(self, milvus_name: str, stored: str) -> MilvusCollection | None:
        with milvus_errors(f"describe Milvus collection {milvus_name!r}"):
            described = self._client.describe_collection(milvus_name, timeout=self._timeout)
        config = layout.config_from_properties(milvus_name, described.get("properties") or {})
        if config is None:
            log.warning(
                "ignoring Milvus collection %s: it has no %s property", milvus_name, layout.CONFIG_PROPERTY
            )
            return None
        if config.name != stored:
            raise Internal(f"Milvus collection {milvus_name!r} holds collection {config.name!r}")
        self._make_ready(milvus_name, config)
        collection = self._handle(milvus_name, config)
        collection.refresh_counts()
        self._counted_at[stored] = time.monotonic()
        return collection

    def _make_ready(self, milvus_name: str, config: CollectionConfig, *, fresh: bool = False) -> None:
        """Create missing indexes (a create interrupted by a crash) and load the collection."""
        with milvus_errors(f"load Milvus collection {milvus_name!r}"):
            present = set(self._client.list_indexes(milvus_name, timeout=self._timeout))
            missing = tuple(f for f in layout.indexed_fields(config) if f not in present)
            if missing:
                if not fresh:
                    log.warning("Milvus collection %s lacked its index on %s: created", milvus_name, missing)
                self._client.create_index(  # building runs in Milvus; sync=False: no polling
                    milvus_name, layout.index_params(config, missing), timeout=self._timeout, sync=False
                )
            self._client.load_collection(milvus_name, timeout=self._timeout)

    def _handle(self, milvus_name: str, config: CollectionConfig) -> MilvusCollection:
        return MilvusCollection(
            self._client, milvus_name, config, consistency=self._consistency, timeout=self._timeout
        )

    def close(self) -> None:
        """Disconnect (every acknowledged write is already in Milvus); stop a local milvus-lite."""
        with self._lock:
            collections, self._collections = self._collections, {}
        for collection in collections.values():
            collection.closed = True
        client, self._client = self._client, None
        if client is not None:
            client.close()
        if self.local:
            from milvus_lite import server_manager_instance  # type: ignore[import-untyped]

            server_manager_instance.release_server(self._uri)

    # --- the set of collections ---

    def create(self, config: CollectionConfig) -> MilvusCollection:
        config = config.validated()
        _refuse_unindexed_limit(config, "config.max_unindexed_rows")
        name = config.name
        milvus_name = to_milvus(name)
        with self._lock:
            if name in self._collections or name in self._busy:
                raise AlreadyExists(f"collection {name!r} already exists")
            self._busy.add(name)
        try:
            with milvus_errors(f"create collection {name!r}"):
                if self._client.has_collection(milvus_name, timeout=self._timeout):
                    raise AlreadyExists(f"collection {name!r} already exists")
                self._client.create_collection(
                    milvus_name,
                    schema=layout.schema(config),
                    properties=layout.properties(config),
                    consistency_level=self._consistency,
                    timeout=self._timeout,
                )
            self._make_ready(milvus_name, config, fresh=True)
            collection = self._handle(milvus_name, config)
            with self._lock:
                self._collections[name] = collection
        finally:
            with self._lock:
                self._busy.discard(name)
        return collection

    def get(self, name: str) -> MilvusCollection:
        with self._lock:
            collection = self._collections.get(name)
        if (collection is None or collection.closed) and self._refresh():
            with self._lock:
                collection = self._collections.get(name)
        if collection is None or collection.closed:
            raise NotFound(f"collection {name!r} not found")
        return collection

    def list(self) -> builtins.list[MilvusCollection]:
        """Every collection, sorted by name."""
        self._refresh()
        with self._lock:
            return [self._collections[name] for name in sorted(self._collections)]

    def _refresh(self) -> bool:
        """Re-read the set of collections if the last read is `refresh_seconds` old; whether it did.
        A failed refresh keeps the map as it was (logged): reads of known collections go on."""
        if self._client is None or time.monotonic() - self._refreshed_at < self._refresh_seconds:
            return False
        if not self._refreshing.acquire(blocking=False):
            return False
        try:
            with self._lock:
                known = dict(self._collections)
            try:
                found = self._scan(known)
            except Exception as exc:
                log.warning(
                    "cannot refresh the collections from Milvus: %s", translate(exc, "list collections")
                )
                return False
            with self._lock:
                current: dict[str, MilvusCollection] = {}
                for name, collection in found.items():
                    if name not in self._busy and not collection.closed:  # create/delete own those
                        current[name] = self._collections.get(name, collection)
                current.update({n: c for n, c in self._collections.items() if n in self._busy})
                for name, collection in self._collections.items():
                    if name not in current:
                        collection.closed = True  # dropped through another gateway
                self._collections = current
                self._refreshed_at = time.monotonic()
            return True
        finally:
            self._refreshing.release()

    def delete(self, name: str) -> None:
        with self._lock:
            collection = self._collections.get(name)
            if collection is None:
                raise NotFound(f"collection {name!r} not found")
            del self._collections[name]
            self._busy.add(name)
        collection.closed = True  # requests already on their way get NotFound
        try:
            with milvus_errors(f"delete collection {name!r}"):
                self._client.drop_collection(collection.milvus_name, timeout=self._timeout)
        finally:
            with self._lock:
                self._busy.discard(name)
                self._counted_at.pop(name, None)

    # --- maintenance ---

    def checkpoint(self, collection: CollectionHandle) -> bool:
        """Flush: Milvus seals the collection's growing segments into object storage now."""
        c = _milvus(collection)
        with milvus_errors(f"flush collection {c.name!r}"):
            self._client.flush(c.milvus_name, timeout=self._timeout)
        c.checkpoint_time = time.time()
        return True

    def compact(self, collection: CollectionHandle, *, force: bool = False) -> bool:
        """Only when forced (the Compact RPC): Milvus compacts by itself otherwise."""
        c = _milvus(collection)
        if not force:
            return False
        with milvus_errors(f"compact collection {c.name!r}"):
            self._client.compact(c.milvus_name, timeout=self._timeout)
        return True

    def tune(self, collection: CollectionHandle, tuning: Tuning) -> CollectionConfig:
        """Store the tuned config in the collection's properties; this gateway searches by it at
        once, another gateway on the same Milvus once it opens the collection again."""
        c = _milvus(collection)
        c.check_open()
        config = tuning.applied_to(c.config)
        _refuse_unindexed_limit(config, "max_unindexed_rows")
        if config != c.config:
            with milvus_errors(f"store the settings of collection {c.name!r}"):
                self._client.alter_collection_properties(
                    c.milvus_name, properties=layout.properties(config), timeout=self._timeout
                )
            c.retune(config)
        return config

    def stats(self, collection: CollectionHandle) -> CollectionStats:
        """Items from Milvus (re-counted at most every `refresh_seconds`); the embedded store's file
        and index figures do not exist here and are 0. NotFound once the collection is deleted."""
        c = _milvus(collection)
        c.check_open()  # deleted (here or through another gateway) since the caller got the handle
        now = time.monotonic()
        if now - self._counted_at.get(c.name, 0.0) >= self._refresh_seconds:
            c.refresh_counts()
            self._counted_at[c.name] = now
        return CollectionStats(
            items=len(c),
            dead_slots=0,
            index_tombstones=0,
            disk_bytes=0,
            index_bytes=0,
            vector_bytes=0,
            seq=c.commits,
            checkpoint_seq=0,
            checkpoint_time=c.checkpoint_time,
            log_bytes=0,
            changes_since_checkpoint=0,
        )

    def check(self) -> str | None:
        """Why writes could not be stored now: Milvus does not answer (None: it does)."""
        client = self._client
        if client is None:
            return f"not connected to Milvus at {self.uri}"
        try:
            client.get_server_version(timeout=min(self._timeout, 5.0))
        except Exception as exc:
            return f"Milvus at {self.uri} does not answer: {translate(exc, 'answer a health check')}"
        return None


def _refuse_unindexed_limit(config: CollectionConfig, field: str) -> None:
    if config.max_unindexed_rows:
        raise InvalidArgument(
            field,
            "the milvus backend has no unindexed tail of its own (Milvus indexes on its own "
            "schedule); leave it 0",
        )


def _milvus(collection: CollectionHandle) -> MilvusCollection:
    if not isinstance(collection, MilvusCollection):
        raise TypeError(f"{collection!r} is not a collection of the Milvus backend")
    return collection
