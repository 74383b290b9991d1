"""What a validated request asks for: the inputs to embed and how to shape the answer.

Each family module turns a request body into an `Invocation`; the app then admits, delays and
embeds it the same way for every model. The emulated S3 lives here because Nova's
`s3Location` sources are resolved while a request is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onespace.content import Content
from onespace.emulator.errors import EmulatedError
from onespace.models import Modality
from onespace.providers.base import ProviderResult

__all__ = ["Invocation", "S3Store"]


@dataclass(slots=True)
class Invocation:
    """`contents` are embedded at `dimension`; `respond` turns their results into the body."""

    contents: list[Content]
    dimension: int
    modality: Modality
    respond: Callable[[list[ProviderResult]], dict[str, Any]]
    batch_size: int = 1
    input_token_count: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class S3Store:
    """Objects readable through `s3://bucket/key`: put over the admin API, or files under `root`
    (`root/bucket/key`). Anything else is refused the way Bedrock refuses an unreadable object."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self._objects: dict[tuple[str, str], bytes] = {}

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self._objects[(bucket, key)] = data

    def clear(self) -> None:
        self._objects.clear()

    def get(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if (bucket, key) in self._objects:
            return self._objects[(bucket, key)]
        if self.root is not None and key:
            path = (self.root / bucket / key).resolve()
            if path.is_relative_to(self.root.resolve()) and path.is_file():
                return path.read_bytes()
        raise EmulatedError(
            "ValidationException",
            f"Unable to access the S3 object {uri}: it does not exist or you do not have "
            "permission to read it.",
        )
