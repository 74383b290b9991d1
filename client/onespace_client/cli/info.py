"""`onespace info`: what the gateway serves (provider, models, dimensions, limits)."""

from __future__ import annotations

import argparse

from onespace_client import enums
from onespace_client.cli._common import client_for, connection_parent, print_json, runner
from onespace_client.cli.format import key_values, message_dict, table
from onespace_client.v1 import info_pb2

__all__ = ["add_parser", "render"]


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} B"


def _dimensions(model: info_pb2.ModelInfo) -> str:
    return " ".join(f"{d}*" if d == model.default_dimension else str(d) for d in model.dimensions)


def render(response: info_pb2.InfoResponse) -> str:
    """Header, one row per model (default dimension starred), formats, server limits, notice."""
    parts = [
        key_values(
            [
                ("provider", response.provider),
                ("version", response.version),
                ("default model", response.default_model),
            ]
        )
    ]
    rows = [
        [
            m.id,
            " ".join(enums.modality_name(x) for x in m.modalities),
            _dimensions(m),
            m.limits.max_text_chars,
            _bytes(m.limits.max_inline_bytes),
            f"{m.limits.max_media_seconds:g}s",
            m.limits.max_batch,
            "yes" if m.semantic_across_modalities else "no",
        ]
        for m in response.models
    ]
    headers = ("MODEL", "MODALITIES", "DIMENSIONS", "TEXT CHARS", "INLINE", "MEDIA", "BATCH", "CROSS-MODAL")
    parts.append(table(headers, rows, right=(3, 4, 5, 6)))
    for m in response.models:
        formats = [
            f"{kind} {' '.join(values)}"
            for kind, values in (
                ("image", m.limits.image_formats),
                ("audio", m.limits.audio_formats),
                ("video", m.limits.video_formats),
            )
            if values
        ]
        lines = [f"{m.id}: {m.description}" if m.description else m.id]
        if formats:
            lines.append(f"  formats: {'; '.join(formats)}")
        parts.append("\n".join(lines))
    limits = response.limits
    parts.append(
        "server limits: "
        f"{limits.max_items_per_request} items/request, {_bytes(limits.max_request_bytes)}/request, "
        f"queue {limits.queue_capacity}, stream window {limits.stream_window}, max k {limits.max_k}"
    )
    notice = _unsaid(response.notice, [f"{m.id}: {m.description}" for m in response.models if m.description])
    if notice:
        parts.append(f"notice: {notice}")
    return "\n\n".join(parts)


def _unsaid(notice: str, said: list[str]) -> str:
    """The notice without the model descriptions printed above it (the server builds its notice
    from them: the non-semantic models' `id: description`), so nothing is printed twice."""
    for line in said:
        notice = notice.replace(line, "")
    return notice.strip()


@runner
async def _info(args: argparse.Namespace) -> int:
    """Show what the gateway serves."""
    async with client_for(args) as client:
        response = await client.info()
    if args.json:
        print_json(message_dict(response))
    else:
        print(render(response))
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `info`."""
    parser = commands.add_parser("info", parents=[connection_parent()], help="show models and limits")
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    parser.set_defaults(func=_info)
