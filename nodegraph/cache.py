"""The output cache: content-addressed, bounded by an estimate of bytes, least-recently-used eviction.

Values are node outputs keyed by the Merkle keys of :mod:`nodegraph.plan`. Loaded models are
owned by the model store; an output that is a model handle says so with ``__nodegraph_nbytes__``
returning 0, so the cache holds a reference, not a copy, and does not count it.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CacheEntry", "OutputCache", "estimate_nbytes"]

_MAX_VISIT = 10_000  # bound the walk over huge containers; the estimate stays an estimate


_SMALL = (bool, int, float, type(None))


def estimate_nbytes(obj: Any) -> int:
    """Estimate the memory held by ``obj``: arrays, tensors, images, bytes, containers (iterative)."""
    if type(obj) is dict:  # fast path: node outputs that are all numbers/short strings
        total = 0
        for v in obj.values():
            t = type(v)
            if t in _SMALL:
                total += 8
            elif t is str:
                total += len(v)
            else:
                break
        else:
            return total
    total = 0
    seen: set[int] = set()
    stack = [obj]
    visited = 0
    while stack and visited < _MAX_VISIT:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        visited += 1
        hook = getattr(type(x), "__nodegraph_nbytes__", None)
        if hook is not None:
            total += int(hook(x))
        elif x is None or isinstance(x, bool | int | float):
            total += 8
        elif isinstance(x, str | bytes | bytearray | memoryview):
            total += len(x)
        elif hasattr(x, "nbytes") and isinstance(getattr(x, "nbytes", None), int):  # numpy
            total += int(x.nbytes)
        elif hasattr(x, "element_size") and hasattr(x, "nelement"):  # torch.Tensor, without importing torch
            total += int(x.element_size() * x.nelement())
        elif hasattr(x, "getbands") and hasattr(x, "size"):  # PIL.Image
            w, h = x.size
            total += w * h * len(x.getbands())
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list | tuple | set | frozenset):
            stack.extend(x)
        elif hasattr(x, "__dict__"):
            total += sys.getsizeof(x)
            stack.extend(vars(x).values())
        else:
            total += sys.getsizeof(x)
    return total


@dataclass(slots=True)
class CacheEntry:
    """A node's outputs plus what it showed in the UI (files written, previews)."""

    outputs: dict[str, Any]
    ui: dict[str, Any] = field(default_factory=dict)
    nbytes: int = 0


class OutputCache:
    """Thread-safe LRU mapping key → :class:`CacheEntry`, bounded by total estimated bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def put(self, key: str, outputs: dict[str, Any], ui: dict[str, Any] | None = None) -> bool:
        """Store outputs; returns False when the entry alone exceeds the bound (it is not kept)."""
        nbytes = estimate_nbytes(outputs) + 64 * len(outputs)
        if nbytes > self.max_bytes:
            return False
        entry = CacheEntry(outputs, ui if ui is not None else {}, nbytes)
        entries = self._entries
        with self._lock:
            old = entries.setdefault(key, entry)  # one lookup in the usual case, a new key
            if old is not entry:  # a key already there: replaced, and now the most recently used
                entries[key] = entry
                entries.move_to_end(key)
                nbytes -= old.nbytes
            self._bytes += nbytes
            if self._bytes > self.max_bytes:
                while self._bytes > self.max_bytes and entries:
                    _, evicted = entries.popitem(last=False)
                    self._bytes -= evicted.nbytes
                    self.evictions += 1
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "bytes": self._bytes, "max_bytes": self.max_bytes,
                "hits": self.hits, "misses": self.misses, "evictions": self.evictions}
