"""Text: Nova-style truncation, then hashed word unigrams, bigrams and character n-grams.

Text is NFKC-normalised and case-folded first, so "Café", "CAFÉ" and "cafe\u0301" are one word.
Each n-gram family is hashed (signed) into its own block of buckets, weighted sublinearly by count
(1 + log tf) and scaled to unit norm, so short and long texts weigh their families alike. Texts that
share words share buckets and therefore score closer; character n-grams add robustness to typos
and inflections.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

import numpy as np

from onespace.content import TruncationMode
from onespace.providers.local.hashing import signed_bucket
from onespace.providers.local.projection import Features, unit

__all__ = ["TEXT_FEATURES", "normalize", "text_features", "truncate"]

_BLOCK = 1024
# (namespace, weight) of each family; each family owns one block of _BLOCK buckets.
_WORDS = (b"text.word", 0.65)
_BIGRAMS = (b"text.bigram", 0.35)
_CHARS = (b"text.char", 0.55)
_FAMILIES = (_WORDS, _BIGRAMS, _CHARS)
TEXT_FEATURES = _BLOCK * len(_FAMILIES) + 1  # + a constant bias so no text maps to zero
_BIAS = 0.02
_CHAR_NGRAMS = (3, 4)
_WORD = re.compile(r"\w+")


def truncate(text: str, max_chars: int, mode: TruncationMode) -> tuple[str, int | None]:
    """Text cut to `max_chars` as Nova does, and the `truncated_char_length` to report (None if uncut).

    END keeps the first `max_chars` characters and reports `max_chars`: the index after which text
    was dropped. START keeps the last `max_chars` characters and reports how many characters were
    dropped from the start, i.e. the index in the original text where the kept text begins.
    NONE never reaches here over the limit (`content.check` refuses it); it is treated as END.
    """
    if len(text) <= max_chars:
        return text, None
    if mode is TruncationMode.START:
        dropped = len(text) - max_chars
        return text[dropped:], dropped
    return text[:max_chars], max_chars


def normalize(text: str) -> str:
    """Unicode-normalised (NFKC), case-folded text."""
    return unicodedata.normalize("NFKC", text).casefold()


def _char_ngrams(words: list[str]) -> Iterable[str]:
    for word in words:
        padded = f" {word} "
        for n in _CHAR_NGRAMS:
            for i in range(len(padded) - n + 1):
                yield padded[i : i + n]


def _family(counts: Counter[str], namespace: bytes, offset: int, out: Features) -> None:
    block = np.zeros(_BLOCK, dtype=np.float64)
    for token, count in counts.items():  # insertion order: fixed by the text
        bucket, sign = signed_bucket(namespace, token, _BLOCK)
        block[bucket] += sign * (1.0 + math.log(count))
    out[offset : offset + _BLOCK] = unit(block)


def text_features(text: str) -> Features:
    """The feature vector (TEXT_FEATURES long) of already-truncated `text`."""
    norm = normalize(text)
    words = _WORD.findall(norm)
    if not words:  # punctuation or symbols only: their characters are the words
        words = norm.split() or [norm]
    families = (
        Counter(words),
        Counter(f"{a} {b}" for a, b in itertools.pairwise(words)),
        Counter(_char_ngrams(words)),
    )
    out = np.zeros(TEXT_FEATURES, dtype=np.float64)
    for i, (counts, (namespace, weight)) in enumerate(zip(families, _FAMILIES, strict=True)):
        _family(counts, namespace, i * _BLOCK, out)
        out[i * _BLOCK : (i + 1) * _BLOCK] *= weight
    out[-1] = _BIAS
    return out
