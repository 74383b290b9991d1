"""`onespace serve` whose collections answer every search with no hits and no work: a benchmark-only
server (`python -m tests.benchmarks.serve_without_search serve ...`) that measures what the Search
RPCs cost without the collection's search (`Collection.search_many`): parsing, admission, query
checks, the search batcher, the responses. Never used outside benchmarks."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from onespace import cli
from onespace.index import CheckedQuery, Collection, Hit, Query


def _no_search(
    self: Collection, queries: Sequence[Query | CheckedQuery], threads: int = 0
) -> list[list[Hit]]:
    """An answer with no hits for every query, at once."""
    return [[] for _ in queries]


Collection.search_many = _no_search  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main())
