"""The cyclic garbage collector in a serving process: keep the start-up heap out of its walks.

A full collection walks every tracked object of the oldest generation while the event loop waits.
A started gateway holds a large heap that never becomes garbage (botocore's service models, the
local provider's tables, the collections' state, the metrics registry), and each full collection
walked all of it: under 5x overload in front of the Bedrock emulator, two full collections of
58-77 ms in each ~10 s run, which every RPC in flight waited through (measured with
`gc.callbacks`); with the start-up heap frozen, one of 5-10 ms. `gc.freeze()` moves that heap to
the permanent generation, out of the collector's sight. Everything allocated later is collected as
before, and frozen objects are still freed by reference counting: only a cycle among them stays.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]


def freeze_startup_heap() -> int:
    """Collect what start-up left as garbage, then freeze the rest; how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
