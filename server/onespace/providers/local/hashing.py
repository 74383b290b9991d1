"""Stable hashing for features and seeds.

Python's `hash()` is salted per process, so every hash here is blake2b: the same token maps to the
same bucket and sign in every process, which is what makes the local vectors reproducible.
"""

from __future__ import annotations

import hashlib

__all__ = ["seed_for", "signed_bucket"]

_VERSION = b"onespace.local.v1"


def seed_for(name: str) -> int:
    """A 64-bit seed derived from `name` (e.g. the projection of one feature space)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, key=_VERSION).digest()
    return int.from_bytes(digest, "big")


def signed_bucket(namespace: bytes, token: str, buckets: int) -> tuple[int, float]:
    """The bucket in `[0, buckets)` and the sign (+1/-1) of `token` within `namespace`.

    The sign makes colliding tokens cancel on average instead of piling up (the hashing trick).
    """
    digest = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8, person=namespace)
    value = int.from_bytes(digest.digest(), "big")
    return (value >> 1) % buckets, (1.0 if value & 1 else -1.0)
