"""Applying ``Settings.threads`` to torch where the engine meets it, never by importing torch.

The engine core does not import torch, so the thread count cannot be set when the engine starts.
It is set where torch starts being used: after a model loader returns (loaders import torch) and
before each node runs once something has imported it. Setting it is process-wide (torch keeps one
intra-op pool), so the last engine to run a node wins.
"""

from __future__ import annotations

import sys

__all__ = ["apply_torch_threads"]


def apply_torch_threads(threads: int | None) -> bool:
    """Give torch ``threads`` intra-op threads if torch is imported; ``True`` when it is (and set)."""
    if threads is None:
        return False
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads"):  # absent, or still being imported
        return False
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return True
