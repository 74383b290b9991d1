from __future__ import annotations

import numpy as np
import pytest

from onespace.content import EmbeddingType, TruncationMode
from onespace.errors import InvalidArgument
from onespace.models import LOCAL_MODEL
from onespace.providers.local import FULL_DIMENSION, embed_content
from onespace.providers.local.text import normalize, truncate

from .helpers import assert_unit, cos, text, vector

MAX = LOCAL_MODEL.limits.max_text_chars


def test_text_is_unit_float32_and_typed() -> None:
    result = embed_content(text("The cat sat on the mat."), 3072)
    assert len(result.embeddings) == 1
    embedding = result.embeddings[0]
    assert embedding.type is EmbeddingType.TEXT
    assert embedding.truncated_char_length is None
    assert_unit(embedding.vector, FULL_DIMENSION)


def test_same_text_same_vector_bit_for_bit() -> None:
    a = vector(text("deterministic vectors, please"))
    b = vector(text("deterministic vectors, please"))
    assert a.tobytes() == b.tobytes()


def test_different_texts_differ() -> None:
    assert not np.array_equal(vector(text("alpha beta")), vector(text("alpha gamma")))


@pytest.mark.parametrize("dimension", [256, 384, 1024])
def test_every_offered_dimension_is_the_renormalised_prefix(dimension: int) -> None:
    content = text("Matryoshka embeddings keep their meaning when truncated")
    full = vector(content, 3072).astype(np.float64)
    short = vector(content, dimension)
    assert_unit(short, dimension)
    prefix = full[:dimension] / np.linalg.norm(full[:dimension])
    np.testing.assert_allclose(short, prefix, atol=1e-6)


def test_prefixes_keep_similarity_order() -> None:
    query = text("the quick brown fox jumps over the lazy dog")
    near = text("a quick brown fox jumped over a lazy dog")
    far = text("quarterly revenue grew in every region")
    for dimension in LOCAL_MODEL.dimensions:
        q, n, f = (vector(c, dimension) for c in (query, near, far))
        assert cos(q, n) > cos(q, f) + 0.2


def test_undeclared_dimension_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(text("hello"), 512)
    assert info.value.field == "options.dimension"


def test_shared_words_score_clearly_closer() -> None:
    base = vector(text("Cats sleep most of the day and hunt at night"))
    related = vector(text("A cat sleeps all day and hunts at night"))
    unrelated = vector(text("Bond yields rose as stock markets fell on Monday"))
    assert cos(base, related) > 0.4
    assert cos(base, related) > cos(base, unrelated) + 0.3


def test_case_and_unicode_forms_do_not_matter() -> None:
    assert normalize("CAFE\u0301") == normalize("café")
    np.testing.assert_array_equal(vector(text("Café au LAIT")), vector(text("cafe\u0301 au lait")))


def test_punctuation_only_text_embeds() -> None:
    assert_unit(vector(text("?!... :-)")), 3072)


def test_truncate_end_keeps_the_first_chars() -> None:
    kept, at = truncate("abcdef", 4, TruncationMode.END)
    assert (kept, at) == ("abcd", 4)


def test_truncate_start_keeps_the_last_chars() -> None:
    kept, at = truncate("abcdef", 4, TruncationMode.START)
    assert (kept, at) == ("cdef", 2)


def test_truncate_leaves_short_text_alone() -> None:
    assert truncate("abc", 4, TruncationMode.START) == ("abc", None)


def _long_text() -> str:
    words = [f"word{i % 997}" for i in range(2000)]
    return " ".join(words)  # ~15,000 characters


def test_end_truncation_embeds_the_head_and_reports_the_limit() -> None:
    long = _long_text()
    result = embed_content(text(long, TruncationMode.END), 1024).embeddings[0]
    assert result.truncated_char_length == MAX
    np.testing.assert_array_equal(result.vector, vector(text(long[:MAX]), 1024))


def test_start_truncation_embeds_the_tail_and_reports_chars_dropped() -> None:
    long = _long_text()
    result = embed_content(text(long, TruncationMode.START), 1024).embeddings[0]
    assert result.truncated_char_length == len(long) - MAX
    np.testing.assert_array_equal(result.vector, vector(text(long[-MAX:]), 1024))


def test_no_truncation_over_the_limit_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(text("x " * MAX, TruncationMode.NONE), 256)
    assert info.value.field == "content.text"
    assert "truncation" in info.value.reason


def test_empty_text_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(text("   "), 256)
    assert info.value.field == "content.text"
