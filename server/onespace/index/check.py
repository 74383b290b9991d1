"""Offline consistency check of a data directory (`onespace check DATA_DIR`); no server needed.

It only reads. SQLite is opened read-only (`file:...?mode=ro`; with `immutable=1` when there is no
`-wal` file, i.e. nothing has the database open, so not even the `-wal`/`-shm` side files get
created), vector files are read through read-only mappings, nothing is repaired. With a `-wal`
file present (a server running, or one that crashed) SQLite may create or refresh the `-shm`
wal-index, which is shared memory, not data. Run it on a stopped server: a compaction running
meanwhile switches vector files under it and shows up as spurious problems.

Per collection (`DATA_DIR/collections/<name>/`):

    config.json    parses and names its directory
    items.sqlite   `PRAGMA integrity_check` (or `quick_check`), storage format 2, the meta counters
    vector file    vectors-<gen>.bin and slots-<gen>.bin hold the `vector_rows` committed rows;
                   slot keys strictly increase and are below `next_key`; every live item of
                   `items` has a row, with the same modality code; the crc32 of every live row
                   (its bytes in the stored dtype) matches its slot record
    checkpoint     checkpoint.json parses, its index file matches its sha256 and size, and its
                   seq is not ahead of the store's

Errors are corruption: data is lost or wrong, or the server would refuse to open the collection
or drop items while opening it. Warnings are things the server repairs by itself: an unusable
index checkpoint (the index is derived data, rebuilt from the vectors on start) and files left by
an interrupted compaction, checkpoint, create or delete.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from onespace.errors import OnespaceError
from onespace.index.checkpoint import CHECKPOINT_FILE, Checkpoint
from onespace.index.config import CollectionConfig, config_from_json
from onespace.index.persistence import CONFIG_FILE, file_digest
from onespace.index.sqlstore import DB_FILE, FORMAT
from onespace.index.vectorfile import SLOT_DTYPE, row_crcs, slots_path, vectors_path

__all__ = [
    "CheckReport",
    "CollectionReport",
    "NotADataDir",
    "check_collection",
    "check_data_dir",
    "render",
]

_META_KEYS = ("format", "seq", "next_key", "vector_generation", "vector_rows")
_CHUNK_ROWS = 4096  # rows read per step of the crc pass
_SHOWN = 5  # ids or messages quoted per problem
_SQLITE_ERRORS = 20  # integrity_check stops after this many


class NotADataDir(Exception):
    """The path is not a onespace data directory (a usage error, not corruption)."""


@dataclass
class CollectionReport:
    name: str
    path: str
    items: int = 0  # live items in SQLite
    rows: int = 0  # committed rows of the vector file (meta vector_rows)
    dead_rows: int = 0  # committed rows no live item uses (reclaimed by compaction)
    seq: int = 0
    checkpoint_seq: int | None = None  # None: no usable index checkpoint
    dimension: int = 0
    stored_dtype: str = ""
    disk_bytes: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class CheckReport:
    data_dir: str
    collections: list[CollectionReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about the data directory itself

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.collections)

    @property
    def exit_code(self) -> int:
        """0 when no collection is corrupt, 1 otherwise."""
        return 0 if self.ok else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "ok": self.ok,
            "collections": [{**asdict(c), "ok": c.ok} for c in self.collections],
            "warnings": list(self.warnings),
        }


def check_data_dir(path: Path | str, *, quick: bool = False) -> CheckReport:
    """Check every collection under `path/collections`; NotADataDir when there is no such thing."""
    data_dir = Path(path)
    if not data_dir.is_dir():
        raise NotADataDir(f"no such directory: {data_dir}")
    root = data_dir / "collections"
    if not root.is_dir():
        raise NotADataDir(f"{data_dir} is not a onespace data directory: it has no collections/ directory")
    report = CheckReport(str(data_dir))
    for leftovers in ("staging", "trash"):
        directory = data_dir / leftovers
        if directory.is_dir() and any(directory.iterdir()):
            report.warnings.append(
                f"{leftovers}/ holds leftovers of an interrupted create or delete (removed on the next start)"
            )
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (directory / CONFIG_FILE).exists():
            report.warnings.append(
                f"collections/{directory.name} has no {CONFIG_FILE}; the server ignores it"
            )
            continue
        report.collections.append(check_collection(directory, quick=quick))
    return report


def check_collection(directory: Path, *, quick: bool = False) -> CollectionReport:
    """Check one collection directory (see the module docstring for what is checked)."""
    report = CollectionReport(name=directory.name, path=str(directory))
    report.disk_bytes = _disk_bytes(directory)
    config = _read_config(directory, report)
    if config is None:
        return report
    report.dimension = config.dimension
    report.stored_dtype = config.stored_dtype.value
    db = directory / DB_FILE
    if not db.is_file():
        report.errors.append(f"{DB_FILE} is missing")
        return report
    try:
        conn = _open_read_only(db)
    except sqlite3.Error as exc:
        report.errors.append(f"{DB_FILE} cannot be opened: {exc}")
        return report
    meta: dict[str, int] | None = None
    try:
        meta = _check_store(directory, config, conn, report, quick)
    except sqlite3.Error as exc:
        report.errors.append(f"{DB_FILE} cannot be read: {exc}")
    finally:
        conn.close()
    _check_checkpoint(directory, report, None if meta is None else meta["seq"])
    return report


# --- pieces --------------------------------------------------------------------------------------


def _disk_bytes(directory: Path) -> int:
    """Allocated bytes of the collection's files (the vector files are grown sparsely)."""
    total = 0
    for path in directory.iterdir():
        try:
            total += path.stat().st_blocks * 512
        except OSError:
            continue
    return total


def _read_config(directory: Path, report: CollectionReport) -> CollectionConfig | None:
    try:
        data = json.loads((directory / CONFIG_FILE).read_text("utf-8"))
        config = config_from_json(data)
    except (OSError, ValueError) as exc:
        report.errors.append(f"{CONFIG_FILE} cannot be read: {exc}")
        return None
    except OnespaceError as exc:
        report.errors.append(f"{CONFIG_FILE} is invalid: {exc}")
        return None
    if config.name != directory.name:
        report.errors.append(f"{CONFIG_FILE} names collection {config.name!r}, not {directory.name!r}")
    return config


def _open_read_only(db: Path) -> sqlite3.Connection:
    """A read-only connection that creates no file when nothing has the database open."""
    wal = db.with_name(db.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?{mode}", uri=True, isolation_level=None)
    conn.execute("PRAGMA query_only=1")
    return conn


def _check_store(
    directory: Path, config: CollectionConfig, conn: sqlite3.Connection, report: CollectionReport, quick: bool
) -> dict[str, int] | None:
    """The store's meta counters when they could be read (None otherwise)."""
    pragma = "quick_check" if quick else "integrity_check"
    messages = [str(row[0]) for row in conn.execute(f"PRAGMA {pragma}({_SQLITE_ERRORS})")]
    if messages != ["ok"]:
        shown = "; ".join(messages[:_SHOWN])
        more = " (and more)" if len(messages) > _SHOWN else ""
        report.errors.append(f"{DB_FILE} failed {pragma}: {shown}{more}")
    conn.execute("BEGIN")  # one snapshot for meta and items
    try:
        meta = _read_meta(conn, report)
        if meta is None:
            return None
        report.seq, report.rows = meta["seq"], meta["vector_rows"]
        cursor = conn.execute("SELECT key, modality FROM items ORDER BY key")
        pairs = np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, 2)
        keys = pairs[:, 0].astype(np.uint64)
        report.items = len(keys)
        if len(keys) and int(keys[-1]) >= meta["next_key"]:
            report.errors.append(
                f"live item keys reach {int(keys[-1])}, past next_key {meta['next_key']} "
                "(new writes would reuse keys)"
            )
        _check_vectors(directory, config, conn, meta, keys, pairs[:, 1], report)
    finally:
        conn.execute("COMMIT")
    return meta


def _read_meta(conn: sqlite3.Connection, report: CollectionReport) -> dict[str, int] | None:
    try:
        rows = conn.execute("SELECT name, value FROM meta").fetchall()
    except sqlite3.DatabaseError as exc:
        report.errors.append(f"{DB_FILE} is not a onespace store: {exc}")
        return None
    meta = {str(name): value for name, value in rows}
    if meta.get("format") != FORMAT:
        report.errors.append(
            f"{DB_FILE} has storage format {meta.get('format')!r}; this onespace reads format {FORMAT}"
        )
        return None
    missing = [k for k in _META_KEYS if not isinstance(meta.get(k), int)]
    if missing:
        report.errors.append(f"{DB_FILE} meta lacks {', '.join(missing)}")
        return None
    out = {k: int(meta[k]) for k in _META_KEYS}
    negative = [k for k, v in out.items() if v < 0]
    if negative:
        report.errors.append(f"{DB_FILE} meta has negative {', '.join(negative)}")
        return None
    return out


def _check_vectors(
    directory: Path,
    config: CollectionConfig,
    conn: sqlite3.Connection,
    meta: dict[str, int],
    live_keys: npt.NDArray[np.uint64],
    live_codes: npt.NDArray[np.int64],
    report: CollectionReport,
) -> None:
    generation, committed = meta["vector_generation"], meta["vector_rows"]
    vec_path, slot_path = vectors_path(directory, generation), slots_path(directory, generation)
    _note_other_generations(directory, {vec_path.name, slot_path.name}, report)
    dtype = np.dtype(config.stored_dtype.numpy)
    row_bytes = dtype.itemsize * config.dimension
    rows_in = {}
    for path, size in ((vec_path, row_bytes), (slot_path, SLOT_DTYPE.itemsize)):
        try:
            rows_in[path] = path.stat().st_size // size
        except OSError:
            rows_in[path] = 0
            if committed or len(live_keys):
                report.errors.append(f"{path.name} is missing")
                continue
        if rows_in[path] < committed:
            report.errors.append(
                f"{path.name} holds {rows_in[path]} of the {committed} committed rows "
                f"({committed - rows_in[path]} rows missing: the file was truncated)"
            )
    intact = min(committed, *rows_in.values())
    slots = _map(slot_path, SLOT_DTYPE, (intact,))
    vectors = _map(vec_path, dtype, (intact, config.dimension))
    slot_keys = np.array(slots["key"], dtype=np.uint64) if slots is not None else np.zeros(0, np.uint64)
    if len(slot_keys) > 1:
        bad = np.flatnonzero(slot_keys[1:] <= slot_keys[:-1])
        if len(bad):
            report.errors.append(
                f"{slot_path.name}: keys are not strictly increasing ({len(bad)} places, first at row "
                f"{int(bad[0]) + 1}); the server cannot open this collection"
            )
    if len(slot_keys) and int(slot_keys.max()) >= meta["next_key"]:
        report.errors.append(f"{slot_path.name}: a key is at or past next_key {meta['next_key']}")

    # Where each live key sits (a stable sort keeps this right even if the keys are out of order).
    order = np.argsort(slot_keys, kind="stable")
    ordered = slot_keys[order]
    pos = np.minimum(np.searchsorted(ordered, live_keys), max(len(ordered) - 1, 0))
    found = ordered[pos] == live_keys if len(ordered) else np.zeros(len(live_keys), dtype=bool)
    rows = order[pos[found]].astype(np.int64) if len(ordered) else np.zeros(0, np.int64)
    report.dead_rows = max(intact - len(rows), 0)  # rows past a truncation are lost, not dead
    lost = live_keys[~found]
    if len(lost):
        report.errors.append(
            f"{len(lost)} live items have no row in the vector file (ids: {_ids(conn, lost)}); "
            "the server drops them on start"
        )
    if slots is None or vectors is None or not len(rows):
        return
    codes = np.array(slots["code"][rows], dtype=np.int64)
    wrong_code = np.flatnonzero(codes != live_codes[found])
    if len(wrong_code):
        report.errors.append(
            f"{len(wrong_code)} rows have another modality in {slot_path.name} than in {DB_FILE} "
            f"(ids: {_ids(conn, live_keys[found][wrong_code])})"
        )
    expected = np.array(slots["crc"][rows], dtype=np.uint32)
    mismatched = _crc_mismatches(vectors, rows, expected)
    if len(mismatched):
        keys = np.array(slots["key"][rows[mismatched]], dtype=np.uint64)
        report.errors.append(
            f"crc32 mismatch in {len(mismatched)} of {len(rows)} live rows of {vec_path.name} "
            f"(ids: {_ids(conn, keys)})"
        )


def _map(path: Path, dtype: np.dtype[Any], shape: tuple[int, ...]) -> Any:
    """A read-only mapping of the first rows of `path`, or None when there are none."""
    if shape[0] == 0:
        return None
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def _crc_mismatches(
    vectors: npt.NDArray[Any], rows: npt.NDArray[np.int64], expected: npt.NDArray[np.uint32]
) -> npt.NDArray[np.int64]:
    """Positions in `rows` whose row bytes do not hash to `expected` (`row_crcs`, as written)."""
    bad: list[npt.NDArray[np.int64]] = [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(rows), _CHUNK_ROWS):
        crcs = row_crcs(vectors[rows[start : start + _CHUNK_ROWS]])
        bad.append(start + np.flatnonzero(crcs != expected[start : start + len(crcs)]))
    return np.concatenate(bad).astype(np.int64)


def _ids(conn: sqlite3.Connection, keys: npt.NDArray[np.uint64]) -> str:
    """The ids of the first few `keys`, for messages."""
    shown = [int(k) for k in keys[:_SHOWN]]
    marks = ",".join("?" * len(shown))
    found = dict(conn.execute(f"SELECT key, id FROM items WHERE key IN ({marks})", shown).fetchall())
    names = [repr(found[k]) if k in found else f"key {k}" for k in shown]
    return ", ".join(names) + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def _note_other_generations(directory: Path, keep: set[str], report: CollectionReport) -> None:
    stale = sorted(
        p.name
        for pattern in ("vectors-*.bin", "slots-*.bin")
        for p in directory.glob(pattern)
        if p.name not in keep
    )
    if stale:
        report.warnings.append(
            f"files of an unfinished compaction (removed on the next start): {', '.join(stale)}"
        )
    for leftover in sorted(directory.glob("index.*.usearch.tmp")):
        report.warnings.append(
            f"{leftover.name} is left from an interrupted checkpoint (removed on the next start)"
        )


def _check_checkpoint(directory: Path, report: CollectionReport, seq: int | None) -> None:
    """Warnings only: the index is rebuilt from the vectors when its checkpoint is unusable."""
    path = directory / CHECKPOINT_FILE
    if not path.exists():
        return
    consequence = "the index is rebuilt from the vectors on start"
    try:
        checkpoint = Checkpoint(**json.loads(path.read_text("utf-8")))
        if "/" in checkpoint.file or os.sep in checkpoint.file or not checkpoint.file.endswith(".usearch"):
            raise ValueError(f"it names a bad file {checkpoint.file!r}")
        sha256, size = file_digest(directory / checkpoint.file)
    except FileNotFoundError as exc:
        missing = Path(str(exc.filename)).name
        report.warnings.append(f"index checkpoint unusable: {missing} is missing; {consequence}")
        return
    except (OSError, ValueError, TypeError) as exc:
        report.warnings.append(f"index checkpoint unusable: {CHECKPOINT_FILE}: {exc}; {consequence}")
        return
    if (sha256, size) != (checkpoint.sha256, checkpoint.bytes):
        report.warnings.append(
            f"index checkpoint unusable: {checkpoint.file} does not match its sha256; {consequence}"
        )
        return
    if seq is not None and checkpoint.seq > seq:
        report.warnings.append(
            f"index checkpoint is at seq {checkpoint.seq}, past the store's seq {seq}; {consequence}"
        )
        return
    report.checkpoint_seq = checkpoint.seq
    stale = sorted(p.name for p in directory.glob("index-*.usearch") if p.name != checkpoint.file)
    if stale:
        report.warnings.append(f"stale index files (removed at the next checkpoint): {', '.join(stale)}")


# --- text output ---------------------------------------------------------------------------------


def render(report: CheckReport) -> str:
    """The human report: one block per collection, its problems indented, then a summary line."""
    lines: list[str] = []
    for c in report.collections:
        status = "ok" if c.ok else "CORRUPT"
        checkpoint = "none" if c.checkpoint_seq is None else f"seq {c.checkpoint_seq}"
        lines.append(f"collection {c.name}: {status}")
        lines.append(
            f"  {c.items} items, {c.rows} rows, {c.dead_rows} dead rows, seq {c.seq}, "
            f"index checkpoint {checkpoint}, {c.stored_dtype or '?'} x {c.dimension}, "
            f"{c.disk_bytes} bytes on disk"
        )
        lines.extend(f"  error: {e}" for e in c.errors)
        lines.extend(f"  warning: {w}" for w in c.warnings)
    lines.extend(f"warning: {w}" for w in report.warnings)
    corrupt = sum(not c.ok for c in report.collections)
    warned = sum(bool(c.warnings) for c in report.collections)
    total = len(report.collections)
    noun = "collection" if total == 1 else "collections"
    lines.append(
        f"checked {total} {noun} in {report.data_dir}: {corrupt} corrupt, {warned} with warnings"
        if total
        else f"no collections in {report.data_dir}"
    )
    return "\n".join(lines)
