"""Evaluations of the shipped models, run from a source checkout (not part of the installed packs).

Each module ``eval/NAME.py`` has ``main(argv) -> exit code``: ``python -m eval NAME [ARGS]`` or
``nodegraph eval NAME [ARGS]`` runs it. They use the packs' libraries on the shipped weights in
``models/`` and judge images with the Shapes pixel analyser.
"""

from __future__ import annotations

from pathlib import Path

NAMES = tuple(sorted(p.stem for p in Path(__file__).parent.glob("*.py") if not p.stem.startswith("_")))
