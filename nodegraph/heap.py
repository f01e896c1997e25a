"""Keeping Python's cyclic garbage collector out of the engine's own work on big graphs.

Validating, planning and walking a workflow allocate many small objects that all stay alive for
the whole run. Each full collection rescans every live object, so with the collector running the
engine's cost per node grows with the size of the heap. Two tools, for two situations:

- :func:`gc_paused` for pure code that makes no reference cycles (validation, planning): the
  collector is off while it runs, and what it built goes straight to the oldest generation.
- :func:`heap_frozen` for a run, where nodes execute arbitrary code: the collector stays on, but
  what existed before the run (the plan, the registry, loaded models) is moved out of its reach
  (:func:`gc.freeze`) until the run ends, so it scans only what the run allocates. A long run calls
  :func:`refreeze` every few thousand nodes, so what it keeps (cached outputs, the events a sink
  holds) is not rescanned by every full collection either.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["gc_paused", "heap_frozen", "refreeze"]

_lock = threading.Lock()
_frozen_runs = 0  # runs (in any thread) inside heap_frozen; the heap is unfrozen when the last one ends


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic collector is off inside (for code that makes no reference cycles)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            _promote()
            gc.enable()


def _promote() -> None:
    """Move every object to the oldest generation without scanning it, and reset the allocation
    counts: otherwise the first allocation after a pause scans everything the paused code built."""
    with _lock:
        gc.freeze()  # constant time; also resets the counts
        if _frozen_runs == 0:
            gc.unfreeze()  # a frozen run unfreezes when it ends


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """Objects alive on entry are ignored by the collector until the last concurrent run leaves.

    Cyclic garbage that existed on entry is collected after the run instead of during it; nothing
    is lost. Both :func:`gc.freeze` and :func:`gc.unfreeze` only splice lists (constant time).
    """
    global _frozen_runs
    with _lock:
        _frozen_runs += 1
        gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _frozen_runs -= 1
            if _frozen_runs == 0:
                gc.unfreeze()


def refreeze() -> None:
    """Inside :func:`heap_frozen`: collect the young generations, then move everything still alive out
    of the collector's reach too, until the run ends.

    Without it, the full collections of a run rescan all that the run keeps (a 100,000-node run
    with an event sink keeps hundreds of thousands of objects): a quarter more each time, so their
    cost per node grows with the run. Cyclic garbage that is already old when this is called is
    collected after the run instead of during it, as in :func:`heap_frozen`.
    """
    gc.collect(1)
    with _lock:
        if _frozen_runs:
            gc.freeze()
