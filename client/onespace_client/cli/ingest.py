"""`onespace ingest`: files, folders and JSONL manifests into a collection over the Ingest stream.

The collection is looked up first, so a wrong name stops the run with one line before any file
is read. Sources are walked and read lazily in a worker thread, one item at a time, and the
client keeps at most `--max-in-flight` items between reading and the server's ack (per stream;
`--streams` spreads the items over more, by id) and reads at most 64 MiB ahead of what it has
sent, so a folder of any size streams in bounded memory. Per-item failures (local or from the
server) do not stop the run; they are listed after the summary (`--json`: grouped by reason) and
make the exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from onespace_client._streams import READ_AHEAD_BYTES
from onespace_client.async_client import DEFAULT_MAX_IN_FLIGHT
from onespace_client.cli._common import (
    EXIT_FAILURES,
    CliError,
    client_for,
    connection_parent,
    key_value,
    positive,
    print_json,
    runner,
    status_name,
)
from onespace_client.cli.sources import Source, SourceReader, load
from onespace_client.errors import OnespaceClientError
from onespace_client.v1 import data_pb2

__all__ = ["IngestReport", "add_parser"]


@dataclass
class IngestReport:
    """Counts and failures of one run; `summary()` is the line the command ends with."""

    collection: str = ""
    sent: int = 0
    stored: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return max(time.perf_counter() - self.started, 1e-9)

    def summary(self) -> str:
        elapsed = self.elapsed()
        rate = self.stored / elapsed
        failed = len(self.failures)
        return f"ingested {self.stored} items ({failed} failed) in {elapsed:.2f}s ({rate:.1f} items/s)"

    def to_json(self, error: str | None = None) -> dict[str, Any]:
        """The run for machines: counts, failures grouped by reason (most frequent first), rate."""
        by_reason: dict[str, list[str]] = {}
        for item_id, reason in self.failures:
            by_reason.setdefault(reason, []).append(item_id)
        groups = sorted(by_reason.items(), key=lambda group: (-len(group[1]), group[0]))
        elapsed = self.elapsed()
        report: dict[str, Any] = {
            "collection": self.collection,
            "sent": self.sent,
            "stored": self.stored,
            "failed": len(self.failures),
            "skipped": self.skipped,
            "failures": [{"reason": reason, "count": len(ids), "ids": ids} for reason, ids in groups],
            "elapsed_seconds": round(elapsed, 3),
            "items_per_second": round(self.stored / elapsed, 1),
        }
        if error is not None:
            report["error"] = error
        return report


def _next_loaded(sources: Iterator[Source]) -> tuple[Source, data_pb2.Item | str] | None:
    """The next source with its Item, or the reason it cannot be sent; None at the end."""
    source = next(sources, None)
    if source is None:
        return None
    try:
        return source, load(source)
    except (OSError, ValueError) as exc:  # includes UnicodeDecodeError
        return source, str(exc)


def _finish(args: argparse.Namespace, report: IngestReport, reader: SourceReader, error: str | None) -> None:
    """The summary on stdout (JSON with --json); skipped files and failures on stderr otherwise."""
    report.skipped = reader.skipped
    if args.json:
        print_json(report.to_json(error))
        return
    print(report.summary())
    if error is not None:
        return  # what got in before the stream failed; the error line follows
    if reader.skipped:
        print(f"skipped {reader.skipped} files with unsupported extensions", file=sys.stderr)
    for item_id, reason in report.failures:
        print(f"failed: {item_id}: {reason}", file=sys.stderr)


@runner
async def _ingest(args: argparse.Namespace) -> int:
    """Ingest files, folders and manifests."""
    reader = SourceReader(args.paths, id_prefix=args.id_prefix, metadata=dict(args.metadata or ()))
    try:
        reader.check()
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    async with client_for(args) as client:
        await client.get_collection(args.collection)  # NOT_FOUND here: nothing read, nothing sent
        show = not args.quiet and not args.json and sys.stderr.isatty()
        total = await asyncio.to_thread(reader.count) if show else None
        report = IngestReport(collection=args.collection)
        bar = _progress(total, show)

        async def items() -> AsyncIterator[data_pb2.Item]:
            sources = iter(reader)
            while (loaded := await asyncio.to_thread(_next_loaded, sources)) is not None:
                source, item = loaded
                if isinstance(item, str):
                    report.failures.append((source.id, item))
                    bar.update()
                else:
                    report.sent += 1
                    yield item

        try:
            acks = client.ingest(
                args.collection, items(), max_in_flight=args.max_in_flight, streams=args.streams
            )
            async for ack in acks:
                if ack.HasField("error"):
                    reason = f"{status_name(ack.error.code)}: {ack.error.message}"
                    report.failures.append((ack.id or f"request {ack.request_id}", reason))
                else:
                    report.stored += 1
                bar.update()
        except OnespaceClientError as exc:
            bar.close()
            _finish(args, report, reader, str(exc))
            raise
        bar.close()
    _finish(args, report, reader, None)
    return EXIT_FAILURES if report.failures else 0


class _Bar(Protocol):
    def update(self, n: int = 1) -> object: ...

    def close(self) -> None: ...


def _progress(total: int | None, show: bool) -> _Bar:
    """A tqdm bar on stderr when shown; imported only then (it costs a noticeable start time)."""
    if not show:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # onespace-client without the `progress` extra: no bar, same summary
        return _NoBar()

    return tqdm(total=total, unit="item", file=sys.stderr, dynamic_ncols=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `ingest`."""
    parser = commands.add_parser(
        "ingest",
        parents=[connection_parent(timeout=None)],
        help="ingest files, folders or a JSONL manifest into a collection",
        description=(
            "Ingest files (modality from the extension), folders (recursive) or JSONL manifests "
            '(lines {"id": ..., "text": ...} or {"id": ..., "path": ..., "metadata": {...}}).'
        ),
    )
    parser.add_argument("--collection", "-c", required=True, help="target collection")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="file, folder, or manifest ending in .jsonl")
    parser.add_argument("--id-prefix", default="", help="prepended to ids derived from file paths")
    parser.add_argument(
        "--metadata", action="append", type=key_value, metavar="KEY=VALUE", help="metadata for every item"
    )
    parser.add_argument(
        "--max-in-flight",
        type=positive,
        default=DEFAULT_MAX_IN_FLIGHT,
        help=f"items read but not yet acked, per stream (default {DEFAULT_MAX_IN_FLIGHT}; what is read "
        f"and not yet sent is also bounded, at {READ_AHEAD_BYTES >> 20} MiB)",
    )
    parser.add_argument(
        "--streams",
        type=positive,
        default=1,
        help="streams to spread the items over, by id, each with its own window: more items in flight "
        "for a large load (default 1)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the summary as JSON (sent, stored, failed, failures grouped by reason, elapsed, "
        "items/s) instead of text; no progress bar",
    )
    parser.set_defaults(func=_ingest)
