"""What `onespace ingest` reads: files, folders (recursive) and JSONL manifests, lazily.

Sources are yielded one at a time and hold a path, not bytes: content is read only when the
item is about to be sent (`load`), so memory stays bounded by the stream window, not the folder.
A bad manifest line or an unsupported file named explicitly becomes a `Source` with an `error`:
reported as a failed item, it does not stop the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from onespace_client import content, enums
from onespace_client.v1 import data_pb2

__all__ = ["ManifestError", "Source", "SourceReader", "load", "parse_manifest_line"]

_MANIFEST_KEYS = frozenset({"id", "text", "path", "metadata"})


class ManifestError(ValueError):
    """A manifest line that cannot be used; the message starts with `file:line:`."""


@dataclass(frozen=True)
class Source:
    """One item to ingest: text or a file path, its id and metadata, or why it cannot be sent."""

    id: str
    text: str | None = None
    path: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def _metadata_value(key: str, value: object, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ManifestError(f'{where}: metadata "{key}" must be a string, number or boolean')


def parse_manifest_line(line: str, *, where: str, base: Path, extra: Mapping[str, str] = {}) -> Source:
    """One JSONL line as a Source; `where` is `file:line` for messages, `base` anchors relative paths."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - _MANIFEST_KEYS)
    if unknown:
        raise ManifestError(f'{where}: unknown key "{unknown[0]}" (expected id, text, path, metadata)')
    item_id = record.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise ManifestError(f'{where}: "id" must be a non-empty string')
    text, path = record.get("text"), record.get("path")
    if (text is None) == (path is None):
        raise ManifestError(f'{where}: give exactly one of "text" or "path"')
    if text is not None and not isinstance(text, str):
        raise ManifestError(f'{where}: "text" must be a string')
    if path is not None and (not isinstance(path, str) or not path):
        raise ManifestError(f'{where}: "path" must be a non-empty string')
    raw = record.get("metadata", {})
    if not isinstance(raw, dict):
        raise ManifestError(f'{where}: "metadata" must be an object')
    metadata = {**extra, **{str(k): _metadata_value(str(k), v, where) for k, v in raw.items()}}
    if text is not None:
        return Source(id=item_id, text=text, metadata=metadata)
    assert isinstance(path, str)
    return Source(id=item_id, path=base / path, metadata=metadata)


def _walk(root: Path) -> Iterator[Path]:
    """Files under `root` in a stable order, hidden files and folders left out."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


class SourceReader:
    """Iterates the sources of the given paths; `skipped` counts folder files of unknown type."""

    def __init__(
        self, paths: Sequence[str], *, id_prefix: str = "", metadata: Mapping[str, str] = {}
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.id_prefix = id_prefix
        self.metadata = dict(metadata)
        self.skipped = 0

    def check(self) -> None:
        """Fails fast (FileNotFoundError) on a path that does not exist, before anything is sent."""
        for path in self.paths:
            if not path.exists():
                raise FileNotFoundError(f"no such file or directory: {path}")

    def __iter__(self) -> Iterator[Source]:
        self.skipped = 0
        for path in self.paths:
            if path.is_dir():
                yield from self._folder(path)
            elif path.suffix.lower() == ".jsonl":
                yield from self._manifest(path)
            else:
                yield self._file(path, path.name)

    def count(self) -> int:
        """How many sources iteration will yield (names and lines only, no content read)."""
        total = 0
        for path in self.paths:
            if path.is_dir():
                total += sum(1 for f in _walk(path) if f.suffix.lower() in content.EXTENSIONS)
            elif path.suffix.lower() == ".jsonl":
                with path.open("rb") as lines:
                    total += sum(1 for line in lines if line.strip())
            else:
                total += 1
        return total

    def _file(self, path: Path, relative: str) -> Source:
        item_id = self.id_prefix + relative
        try:
            kind = content.modality_for_path(path)
        except ValueError as exc:
            return Source(id=item_id, path=path, error=str(exc))
        metadata = {**self.metadata, "path": str(path), "modality": enums.modality_name(kind)}
        return Source(id=item_id, path=path, metadata=metadata)

    def _folder(self, root: Path) -> Iterator[Source]:
        for path in _walk(root):
            if path.suffix.lower() not in content.EXTENSIONS:
                self.skipped += 1
                continue
            yield self._file(path, path.relative_to(root).as_posix())

    def _manifest(self, manifest: Path) -> Iterator[Source]:
        base = manifest.parent
        with manifest.open("rb") as lines:  # bytes: one line that is not UTF-8 fails alone
            for number, raw in enumerate(lines, start=1):
                if not raw.strip():
                    continue
                where = f"{manifest.name}:{number}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield Source(id=where, error="not valid UTF-8")
                    continue
                try:
                    yield parse_manifest_line(line, where=where, base=base, extra=self.metadata)
                except ManifestError as exc:  # the id already says where
                    yield Source(id=where, error=str(exc).removeprefix(f"{where}: "))


def load(source: Source) -> data_pb2.Item:
    """The Item to send, reading the file now (blocking: run it off the event loop).

    Raises OSError or ValueError (unsupported type, text that is not UTF-8) for a per-item failure.
    """
    if source.error is not None:
        raise ValueError(source.error)
    if source.text is not None:
        body = content.text(source.text)
    elif source.path is not None:
        body = content.from_path(source.path)
    else:
        raise ValueError(f"{source.id}: nothing to embed")
    return data_pb2.Item(id=source.id, content=body, metadata=source.metadata)
