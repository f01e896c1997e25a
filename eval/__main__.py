"""``python -m eval NAME [ARGS]``: run one evaluation of the shipped models."""

from __future__ import annotations

import importlib
import sys

from . import NAMES


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in NAMES:
        print(f"usage: python -m eval {{{','.join(NAMES)}}} [ARGS]", file=sys.stderr)
        return 2
    return int(importlib.import_module(f"{__package__}.{argv[0]}").main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
