"""The decoder boundary: foreign decoder errors become InvalidArgument, and media limits are checked.

Pillow, libsndfile and FFmpeg raise a zoo of exception types (OSError, RuntimeError, ValueError,
SyntaxError, EOFError, av.FFmpegError, ...) on bytes that merely look right. Everything raised while
decoding is caller input being wrong, so it is translated here, once, with the cause kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from onespace.errors import InvalidArgument, OnespaceError
from onespace.models import ModelSpec

__all__ = ["DURATION_TOLERANCE_SECONDS", "check_duration", "decode_errors", "short_reason"]

# Containers often report a few tens of milliseconds beyond the nominal length (AAC priming,
# rounded timestamps): a "30 s" clip must not be refused for 30.02 s.
DURATION_TOLERANCE_SECONDS = 0.1
_MAX_REASON = 160
_OBJECT_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


def short_reason(exc: BaseException) -> str:
    """A one-line, bounded description of a decoder error, without errno codes or object addresses."""
    strerror = getattr(exc, "strerror", None)  # FFmpeg and OS errors: the message without the errno
    text = strerror if isinstance(strerror, str) and strerror else str(exc)
    text = " ".join(_OBJECT_REPR.sub("", text).split()) or type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


@contextmanager
def decode_errors(field: str, what: str) -> Iterator[None]:
    """Translate any decoder failure inside the block to `InvalidArgument(field, "cannot decode ...")`."""
    try:
        yield
    except OnespaceError:
        raise
    except Exception as exc:  # every decoder failure is bad input, never a server fault
        raise InvalidArgument(field, f"cannot decode {what}: {short_reason(exc)}") from exc


def check_duration(field: str, seconds: float, spec: ModelSpec) -> None:
    """Refuse media longer than the model's synchronous limit (Nova: 30 s)."""
    limit = spec.limits.max_media_seconds
    if seconds > limit + DURATION_TOLERANCE_SECONDS:
        raise InvalidArgument(
            field,
            f"duration {seconds:.1f} s exceeds the {limit:g} s limit of {spec.id} "
            "(split the media into shorter clips)",
        )
