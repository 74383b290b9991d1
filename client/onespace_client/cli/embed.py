"""`onespace embed`: one input in, its vector(s) out, with model, dimension and timings."""

from __future__ import annotations

import argparse

from onespace_client import content, enums, vectors
from onespace_client.cli._common import CliError, client_for, connection_parent, positive, print_json, runner
from onespace_client.cli.format import key_values, l2_norm, message_dict, timings_text, vector_preview
from onespace_client.v1 import common_pb2, embed_pb2

__all__ = ["add_content_arguments", "add_parser", "content_from_args", "render"]


def content_from_args(args: argparse.Namespace) -> common_pb2.Content | None:
    """The Content named by --text/--image/--audio/--video (shared with `search`), or None."""
    try:
        if args.text is not None:
            return content.text(args.text)
        if args.image is not None:
            return content.image(args.image)
        if args.audio is not None:
            return content.audio(args.audio)
        if args.video is not None:
            return content.video(args.video)
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return None


def add_content_arguments(group: argparse._MutuallyExclusiveGroup) -> None:
    group.add_argument("--text", help="text to embed")
    group.add_argument("--image", metavar="FILE", help="image file (png, jpeg, gif, webp)")
    group.add_argument("--audio", metavar="FILE", help="audio file (wav, mp3, ogg)")
    group.add_argument("--video", metavar="FILE", help="video file (mp4, mov, mkv, webm, ...)")


def render(response: embed_pb2.EmbedResponse, *, values: int = 8) -> str:
    """Model, dimension, timings, then each embedding's type, norm and first values."""
    lines = [
        key_values(
            [
                ("model", response.model),
                ("dimension", response.dimension),
                ("timings", timings_text(response.timings, index=False)),
            ]
        )
    ]
    for result in response.results:
        for embedding in result.embeddings:
            notes = [enums.embedding_type_name(embedding.type), f"norm {l2_norm(embedding.values):.4f}"]
            notes.append(f"{len(embedding.values)} values")
            if result.cached:
                notes.append("cached")
            if embedding.HasField("truncated_char_length"):
                notes.append(f"truncated at {embedding.truncated_char_length} chars")
            lines.append("")
            lines.append(", ".join(notes))
            lines.append(vector_preview(embedding.values, values))
    return "\n".join(lines)


@runner
async def _embed(args: argparse.Namespace) -> int:
    """Embed one input and print its vector."""
    item = content_from_args(args)
    assert item is not None  # the argument group is required
    async with client_for(args) as client:
        response = await client.embed(
            [item], model=args.model, dimension=args.dimension, purpose=args.purpose
        )
    for result in response.results:
        for embedding in result.embeddings:
            vectors.expand(embedding)  # shown as numbers, in the table and in JSON
    if args.json:
        print_json(message_dict(response))
    else:
        print(render(response))
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `embed`."""
    parser = commands.add_parser(
        "embed", parents=[connection_parent()], help="embed one text, image, audio or video input"
    )
    add_content_arguments(parser.add_mutually_exclusive_group(required=True))
    parser.add_argument("--model", help="model id (default: the server's default)")
    parser.add_argument("--dimension", type=positive, help="output dimension (default: the model's)")
    parser.add_argument("--purpose", choices=list(enums.PURPOSE_NAMES), help="embedding purpose")
    parser.add_argument("--json", action="store_true", help="print the full response as JSON")
    parser.set_defaults(func=_embed)
