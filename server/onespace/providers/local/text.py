"""Text: Nova-style truncation, then hashed word unigrams, bigrams and character n-grams.

Text is NFKC-normalised and case-folded first, so "Café", "CAFÉ" and "cafe\u0301" are one word.
Each n-gram family is hashed (signed) into its own block of buckets, weighted sublinearly by count
(1 + log tf) and scaled to unit norm, so short and long texts weigh their families alike. Texts that
share words share buckets and therefore score closer; character n-grams add robustness to typos
and inflections.

`text_features_many` featurises a batch. The per-text part is pure Python (normalise, split, count
n-grams) and kept cheap: a token's bucket and sign (a blake2b digest, ~1 µs) are remembered in a
bounded per-family table, and so are a word's character n-grams. Everything after the counting
(the hashed sums, the per-family norms and weights) is done for the whole batch in a few numpy calls,
in the same order and with the same float64 operations as one text at a time, so the features are
identical bit for bit whatever the batch.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt

from onespace.content import TruncationMode
from onespace.providers.local.hashing import signed_bucket
from onespace.providers.local.projection import Features

__all__ = ["TEXT_FEATURES", "normalize", "text_features", "text_features_many", "truncate"]

_BLOCK = 1024
# (namespace, weight) of each family; each family owns one block of _BLOCK buckets.
_WORDS = (b"text.word", 0.65)
_BIGRAMS = (b"text.bigram", 0.35)
_CHARS = (b"text.char", 0.55)
_FAMILIES = (_WORDS, _BIGRAMS, _CHARS)
_FAMILY_WEIGHTS = np.array([weight for _, weight in _FAMILIES], dtype=np.float64)
TEXT_FEATURES = _BLOCK * len(_FAMILIES) + 1  # + a constant bias so no text maps to zero
_BIAS = 0.02
_CHAR_NGRAMS = (3, 4)
_WORD = re.compile(r"\w+")

# Remembered hashes: token -> bucket << 1 | (sign > 0), one table per family, and word -> its
# character n-grams. Each table is emptied when full (~10 MB at most in all); what is remembered
# never changes a result, only how fast it comes.
_TABLE_LIMIT = 1 << 16
_CODES: tuple[dict[str, int], ...] = tuple({} for _ in _FAMILIES)
_NGRAMS: dict[str, tuple[str, ...]] = {}
# 1 + log(count) for small counts, computed with math.log as one text at a time computes it.
_LOG_TABLE = np.array([0.0] + [1.0 + math.log(c) for c in range(1, 1024)], dtype=np.float64)


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


def _word_ngrams(word: str) -> tuple[str, ...]:
    """The character n-grams of one word, padded with a space each side, by n then position."""
    grams = _NGRAMS.get(word)
    if grams is None:
        padded = f" {word} "
        grams = tuple(padded[i : i + n] for n in _CHAR_NGRAMS for i in range(len(padded) - n + 1))
        if len(_NGRAMS) >= _TABLE_LIMIT:
            _NGRAMS.clear()
        _NGRAMS[word] = grams
    return grams


def _codes(family: int, tokens: Counter[str]) -> list[int]:
    """`bucket << 1 | (sign > 0)` of every token, in the counter's (first occurrence) order."""
    table = _CODES[family]
    codes: list[int | None] = list(map(table.get, tokens))
    if None in codes:
        namespace = _FAMILIES[family][0]
        if len(table) >= _TABLE_LIMIT:
            table.clear()
        for i, token in enumerate(tokens):
            if codes[i] is None:
                bucket, sign = signed_bucket(namespace, token, _BLOCK)
                code = table[token] = bucket << 1 | (sign > 0)
                codes[i] = code
    return codes  # type: ignore[return-value]  # no None left


def _counts(text: str) -> tuple[Counter[str], Counter[str], Counter[str]]:
    norm = normalize(text)
    words = _WORD.findall(norm)
    if not words:  # punctuation or symbols only: their characters are the words
        words = norm.split() or [norm]
    return (
        Counter(words),
        Counter(f"{a} {b}" for a, b in itertools.pairwise(words)),
        Counter(itertools.chain.from_iterable(map(_word_ngrams, words))),
    )


def _log_weights(counts: npt.NDArray[np.int64]) -> Features:
    """1 + log(count), with math.log (bit-identical to the one-text computation)."""
    small = counts < _LOG_TABLE.size
    if small.all():
        return _LOG_TABLE[counts]
    out = _LOG_TABLE[np.where(small, counts, 0)]
    for i in np.flatnonzero(~small):
        out[i] = 1.0 + math.log(int(counts[i]))
    return out


def text_features_many(texts: Sequence[str]) -> Features:
    """The feature vectors (len(texts) x TEXT_FEATURES) of already-truncated `texts`."""
    n = len(texts)
    codes: list[int] = []
    counts: list[int] = []
    bases: list[int] = []  # per (text, family) segment: its first feature index
    sizes: list[int] = []  # per segment: how many distinct tokens
    for i, text in enumerate(texts):
        for family, tokens in enumerate(_counts(text)):
            codes += _codes(family, tokens)
            counts += tokens.values()
            bases.append(i * TEXT_FEATURES + family * _BLOCK)
            sizes.append(len(tokens))
    code = np.array(codes, dtype=np.int64)
    weight = _log_weights(np.array(counts, dtype=np.int64))
    signed = np.where(code & 1 == 1, weight, -weight)
    index = np.repeat(np.array(bases, dtype=np.int64), sizes) + (code >> 1)
    # bincount adds each token's weight into its bucket in input order, from 0.0: the same sums
    # as `block[bucket] += sign * (1 + log tf)` token after token.
    flat = cast(Features, np.bincount(index, weights=signed, minlength=n * TEXT_FEATURES))
    out = flat.reshape(n, TEXT_FEATURES)
    blocks = out[:, : len(_FAMILIES) * _BLOCK].reshape(n, len(_FAMILIES), _BLOCK)
    norms = np.sqrt(np.sum(blocks * blocks, axis=2))[:, :, None]  # each family to unit norm
    np.divide(blocks, norms, out=blocks, where=norms != 0.0)  # an empty family stays zero
    blocks *= _FAMILY_WEIGHTS[None, :, None]
    out[:, -1] = _BIAS
    return out


def text_features(text: str) -> Features:
    """The feature vector (TEXT_FEATURES long) of already-truncated `text`."""
    features: Features = text_features_many([text])[0]
    return features
