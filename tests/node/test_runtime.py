"""Process-wide tuning of the node process (node/runtime.py)."""

from __future__ import annotations

import gc

from node.runtime import GC_THRESHOLDS, release_free_memory, tune_gc


def test_tune_gc_and_release_free_memory() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)
    release_free_memory()  # a no-op or malloc_trim(0): never raises
    release_free_memory()
