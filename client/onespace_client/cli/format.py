"""Plain-text rendering for the CLI: aligned tables, abbreviated metadata, timings, vectors.

Pure functions returning strings, so the commands stay thin and the layout is tested directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from google.protobuf import json_format
from google.protobuf.message import Message

from onespace_client.v1 import common_pb2

__all__ = [
    "abbreviate",
    "key_values",
    "l2_norm",
    "message_dict",
    "table",
    "timings_text",
    "vector_preview",
]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell, a dashed rule under the headers; `right` aligns right."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def key_values(pairs: Sequence[tuple[str, object]]) -> str:
    """`key  value` lines with the values aligned, for one record."""
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in pairs)


def abbreviate(metadata: Mapping[str, str], width: int = 48) -> str:
    """`k=v, k=v` in key order, cut to `width` characters with an ellipsis."""
    text = ", ".join(f"{k}={metadata[k]}" for k in sorted(metadata))
    if len(text) <= width:
        return text
    return text[: max(width - 3, 0)] + "..."


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def timings_text(timings: common_pb2.Timings, *, index: bool = True) -> str:
    """`queue 0.12 ms, provider 80.00 ms, index 0.41 ms, total 81.20 ms`."""
    parts = [f"queue {_ms(timings.queue_seconds)}", f"provider {_ms(timings.provider_seconds)}"]
    if index:
        parts.append(f"index {_ms(timings.index_seconds)}")
    parts.append(f"total {_ms(timings.total_seconds)}")
    return ", ".join(parts)


def l2_norm(values: Sequence[float]) -> float:
    return math.sqrt(math.fsum(v * v for v in values))


def vector_preview(values: Sequence[float], count: int = 8) -> str:
    """The first `count` values to 4 decimals, `...` when there are more."""
    head = ", ".join(f"{v:.4f}" for v in values[:count])
    return f"[{head}, ...]" if len(values) > count else f"[{head}]"


def message_dict(message: Message) -> dict[str, object]:
    """A message as the canonical proto3 JSON mapping, field names as in the .proto, zeros shown."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
