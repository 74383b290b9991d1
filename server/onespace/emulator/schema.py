"""Tiny JSON-schema-like readers that fail the way Bedrock does: with the path and the reason.

Each family module reads its request through `Obj`, so every missing key, wrong type, unknown
key or bad enum value becomes one precise `ValidationException` instead of a KeyError.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection
from typing import Any

from onespace.emulator.errors import malformed

__all__ = ["Obj", "decode_base64", "type_name"]


def type_name(value: object) -> str:
    return {
        dict: "JSONObject",
        list: "JSONArray",
        str: "String",
        bool: "Boolean",
        int: "Integer",
        float: "Number",
        type(None): "Null",
    }.get(type(value), type(value).__name__)


class Obj:
    """A JSON object at `path`; `allowed` keys only (anything else is 'extraneous')."""

    def __init__(self, value: object, path: str, allowed: Collection[str]) -> None:
        if not isinstance(value, dict):
            raise malformed(path, f"expected type: JSONObject, found: {type_name(value)}")
        self.value: dict[str, Any] = value
        self.path = path
        for key in value:
            if key not in allowed:
                raise malformed(path, f"extraneous key [{key}] is not permitted")

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.value

    def raw(self, key: str, *, required: bool = False) -> Any:
        if key not in self.value:
            if required:
                raise malformed(self.path, f"required key [{key}] not found")
            return None
        return self.value[key]

    def obj(self, key: str, allowed: Collection[str], *, required: bool = False) -> Obj | None:
        value = self.raw(key, required=required)
        return None if value is None and not required else Obj(value, self._at(key), allowed)

    def string(self, key: str, *, required: bool = False, max_length: int | None = None) -> str | None:
        value = self.raw(key, required=required)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise malformed(self._at(key), f"expected type: String, found: {type_name(value)}")
        if max_length is not None and len(value) > max_length:
            raise malformed(self._at(key), f"expected maxLength: {max_length}, actual: {len(value)}")
        return value

    def enum(self, key: str, options: Collection[str], *, required: bool = False) -> str | None:
        value = self.string(key, required=required)
        if value is not None and value not in options:
            raise malformed(
                self._at(key), f"{value} is not a valid enum value (expected one of {sorted(options)})"
            )
        return value

    def integer(self, key: str, *, options: Collection[int] | None = None) -> int | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise malformed(self._at(key), f"expected type: Integer, found: {type_name(value)}")
        if options is not None and value not in options:
            raise malformed(
                self._at(key), f"{value} is not a valid enum value (expected one of {sorted(options)})"
            )
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise malformed(self._at(key), f"expected type: Boolean, found: {type_name(value)}")
        return value

    def array(self, key: str, *, max_items: int | None = None, min_items: int = 0) -> list[Any] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise malformed(self._at(key), f"expected type: JSONArray, found: {type_name(value)}")
        if max_items is not None and len(value) > max_items:
            raise malformed(self._at(key), f"expected maximum item count: {max_items}, found: {len(value)}")
        if len(value) < min_items:
            raise malformed(self._at(key), f"expected minimum item count: {min_items}, found: {len(value)}")
        return value

    def strings(self, key: str, **limits: int) -> list[str] | None:
        items = self.array(key, **limits)
        if items is None:
            return None
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise malformed(f"{self._at(key)}.{i}", f"expected type: String, found: {type_name(item)}")
        return items


def decode_base64(value: str, path: str) -> bytes:
    """Strict base64 (what the service's blob fields accept)."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise malformed(path, f"invalid base64 encoding ({exc})") from exc
