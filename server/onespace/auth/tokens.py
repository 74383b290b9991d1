"""The token file: which bearer token belongs to which tenant, with which role.

The file holds SHA-256 hashes only, never tokens (TOML, one `[[tokens]]` table per token):

    [[tokens]]
    name = "ingest-bot"        # a label for logs; optional
    sha256 = "<64 hex digits>" # sha256 of the token's UTF-8 bytes
    tenant = "acme"            # [a-z0-9][a-z0-9_-]{0,31}; "default" owns the unprefixed names
    role = "writer"            # reader | writer | admin
    rate = 200                 # optional: requests per second for this token's tenant
    max_in_flight = 64         # optional: RPCs at once for this token's tenant

`onespace token --tenant acme --role writer` prints a new token and its entry. A presented token
is hashed and compared with every entry by `hmac.compare_digest`, so the time taken does not
depend on how much of a hash matched.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from onespace.auth.tenancy import check_tenant_id

__all__ = ["Principal", "Role", "TokenEntry", "TokenFileError", "TokenTable", "hash_token", "new_token"]


class Role(enum.IntEnum):
    """Ordered: each role may do what the ones below it may."""

    READER = 1  # embed, search, get, list and describe collections, info
    WRITER = 2  # + upsert, ingest, delete items
    ADMIN = 3  # + create, delete, checkpoint and compact collections


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    tenant: str
    role: Role


@dataclass(frozen=True, slots=True)
class TokenEntry:
    digest: bytes
    principal: Principal
    rate: float | None = None
    max_in_flight: int | None = None


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and the entry."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "os_" + secrets.token_urlsafe(32)


class TokenTable:
    def __init__(self, entries: list[TokenEntry], source: Path | None = None) -> None:
        self.entries = entries
        self.source = source
        self._stamp = _stamp(source) if source is not None else None

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise TokenFileError(f"cannot read the token file {path}: {exc}") from exc
        raw = data.get("tokens", [])
        if not isinstance(raw, list):
            raise TokenFileError(f"{path}: `tokens` must be an array of tables ([[tokens]])")
        entries = [_entry(path, i, item) for i, item in enumerate(raw)]
        seen: set[bytes] = set()
        for i, e in enumerate(entries):
            if e.digest in seen:
                raise TokenFileError(f"{path}: tokens[{i}] repeats the hash of an earlier entry")
            seen.add(e.digest)
        return cls(entries, path)

    def changed(self) -> bool:
        return self.source is not None and _stamp(self.source) != self._stamp

    def tenants(self) -> frozenset[str]:
        return frozenset(e.principal.tenant for e in self.entries)

    def find(self, token: str) -> TokenEntry | None:
        """The entry whose hash matches, compared with every entry in constant time."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: TokenEntry | None = None
        for entry in self.entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        return found


def _entry(path: Path, i: int, item: object) -> TokenEntry:
    where = f"{path}: tokens[{i}]"
    if not isinstance(item, dict):
        raise TokenFileError(f"{where} must be a table")
    unknown = set(item) - {"name", "sha256", "tenant", "role", "rate", "max_in_flight"}
    if unknown:
        raise TokenFileError(f"{where}: unknown keys {sorted(unknown)}")
    digest = item.get("sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        raise TokenFileError(f"{where}.sha256 must be 64 hex digits (the token's SHA-256)")
    try:
        raw = bytes.fromhex(digest)
    except ValueError:
        raise TokenFileError(f"{where}.sha256 must be 64 hex digits (the token's SHA-256)") from None
    tenant = item.get("tenant")
    try:
        tenant = check_tenant_id(tenant if isinstance(tenant, str) else "")
    except ValueError as exc:
        raise TokenFileError(f"{where}.tenant: {exc}") from None
    role_name = item.get("role")
    try:
        role = Role[str(role_name).upper()]
    except KeyError:
        raise TokenFileError(f"{where}.role must be reader, writer or admin, not {role_name!r}") from None
    rate = item.get("rate")
    if rate is not None and (not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0):
        raise TokenFileError(f"{where}.rate must be a positive number of requests per second")
    cap = item.get("max_in_flight")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0):
        raise TokenFileError(f"{where}.max_in_flight must be a positive integer")
    name = item.get("name", f"tokens[{i}]")
    if not isinstance(name, str):
        raise TokenFileError(f"{where}.name must be a string")
    return TokenEntry(raw, Principal(name, tenant, role), None if rate is None else float(rate), cap)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
