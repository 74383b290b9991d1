"""The full vectors of one collection: fixed-size rows in a memory-mapped, append-only file.

One generation is two files written side by side, row `s` (a *slot*) in each:

    vectors-<gen>.bin    rows of `dimension` values in the stored dtype (little-endian f16 or f32)
    slots-<gen>.bin      one 16-byte record per row: key (u64), crc32 of the vector row (u32),
                         modality code (u8), 3 bytes of padding

Rows are only ever appended; the store's SQLite database says how many rows are committed
(`vector_rows`) and which keys are live, so rows past that count (a write that crashed before its
transaction committed) are simply overwritten by the next append. The files are grown by doubling
(`ftruncate`), so appends rarely change the mapping; readers keep whatever mapping they took, and
an older mapping stays valid for every row it covers.

Appends are `pwrite`s, made durable by `sync()` (fsync of both files) *before* the transaction
that references them commits: a committed row is never torn. Not thread-safe for writers: the
collection's write lock serialises `append`, `sync` and `truncate`.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["SLOT_DTYPE", "VectorFile", "VectorRows", "row_crcs", "slots_path", "vectors_path"]

SLOT_DTYPE = np.dtype([("key", "<u8"), ("crc", "<u4"), ("code", "u1"), ("pad", "V3")])
_MIN_CAPACITY = 1024


def vectors_path(directory: Path, generation: int) -> Path:
    return directory / f"vectors-{generation:06d}.bin"


def slots_path(directory: Path, generation: int) -> Path:
    return directory / f"slots-{generation:06d}.bin"


def row_crcs(rows: npt.NDArray[np.generic]) -> npt.NDArray[np.uint32]:
    """crc32 of each row's bytes (what `check` verifies offline)."""
    contiguous = np.ascontiguousarray(rows)
    return np.fromiter((zlib.crc32(row.tobytes()) for row in contiguous), dtype=np.uint32, count=len(rows))


@dataclass(frozen=True)
class VectorRows:
    """A read-only mapping of the files: `vectors[s]` and `slots[s]` for every slot below `capacity`."""

    vectors: npt.NDArray[np.generic]
    slots: npt.NDArray[np.void]


class VectorFile:
    def __init__(self, directory: Path, generation: int, dimension: int, dtype: str) -> None:
        self.directory = directory
        self.generation = generation
        self.dimension = dimension
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.dtype.itemsize * dimension
        self.rows = 0  # rows in use (committed, plus appended ones whose commit is pending)
        self._vec_fd = -1
        self._slot_fd = -1
        self.capacity = 0
        self.mapped: VectorRows | None = None

    @property
    def vectors_path(self) -> Path:
        return vectors_path(self.directory, self.generation)

    @property
    def slots_path(self) -> Path:
        return slots_path(self.directory, self.generation)

    def open(self, committed_rows: int) -> int:
        """Open (creating if needed) with `committed_rows` rows in use; returns how many are intact.

        Fewer than `committed_rows` intact means a file was truncated behind our back; the caller
        decides what to do with the missing rows (it drops them and says so).
        """
        flags = os.O_RDWR | os.O_CREAT
        self._vec_fd = os.open(self.vectors_path, flags, 0o644)
        self._slot_fd = os.open(self.slots_path, flags, 0o644)
        on_disk = min(
            os.fstat(self._vec_fd).st_size // self.row_bytes,
            os.fstat(self._slot_fd).st_size // SLOT_DTYPE.itemsize,
        )
        intact = min(committed_rows, on_disk)
        self.rows = intact
        self._map(max(_MIN_CAPACITY, on_disk, intact))
        return intact

    def close(self) -> None:
        for fd in (self._vec_fd, self._slot_fd):
            if fd >= 0:
                os.close(fd)
        self._vec_fd = self._slot_fd = -1
        self.mapped = None

    def append(
        self, keys: npt.NDArray[np.uint64], vectors: npt.NDArray[np.generic], codes: npt.NDArray[np.int8]
    ) -> int:
        """Write rows after the last one in use; returns the first slot. Not durable until `sync`."""
        n = len(keys)
        start = self.rows
        if start + n > self.capacity:
            self._map(max(2 * self.capacity, start + n))
        data = np.ascontiguousarray(vectors, dtype=self.dtype)
        records = np.zeros(n, dtype=SLOT_DTYPE)
        records["key"] = keys
        records["crc"] = row_crcs(data)
        records["code"] = codes
        _pwrite_all(self._vec_fd, data.tobytes(), start * self.row_bytes)
        _pwrite_all(self._slot_fd, records.tobytes(), start * SLOT_DTYPE.itemsize)
        self.rows = start + n
        return start

    def truncate(self, rows: int) -> None:
        """Forget rows past `rows` (an append whose commit failed); they will be overwritten."""
        self.rows = min(self.rows, rows)

    def sync(self) -> None:
        os.fsync(self._vec_fd)
        os.fsync(self._slot_fd)

    def _map(self, capacity: int) -> None:
        if capacity > self.capacity:
            os.ftruncate(self._vec_fd, capacity * self.row_bytes)
            os.ftruncate(self._slot_fd, capacity * SLOT_DTYPE.itemsize)
        self.capacity = capacity
        vectors = np.memmap(self.vectors_path, dtype=self.dtype, mode="r", shape=(capacity, self.dimension))
        slots = np.memmap(self.slots_path, dtype=SLOT_DTYPE, mode="r", shape=(capacity,))
        self.mapped = VectorRows(vectors, slots)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
