"""The cyclic garbage collector in a serving process: keep the start-up heap out of its walks.

A full collection walks every tracked object of the oldest generation while the event loop waits.
A started gateway holds a large heap that never becomes garbage (botocore's service models, the
local provider's tables, the collections' state, the metrics registry), and under load each full
collection walked all of it: 60-87 ms pauses, a few per 15 s run of 5x overload, which every RPC
in flight waited through (measured with `gc.callbacks`). `gc.freeze()` after start-up moves that
heap to the permanent generation, out of the collector's sight; everything allocated later is
collected as before, so cycles made while serving are still freed.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]


def freeze_startup_heap() -> int:
    """Collect what start-up left as garbage, then freeze the rest; how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
