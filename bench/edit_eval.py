"""Measure the edit pack on the shipped Shapes models (run by hand; not a test).

    nice -n 10 .venv/bin/python bench/edit_eval.py [--swaps 40] [--inpaints 40] [--recolors 40] [--steps 25] [--threads 2]
                                                   [--json out.json]

The measurement itself lives in `nodes/edit/evaluate.py` (also `nodegraph eval edit`), where the
method is described; the tests on the shipped weights reuse its cases at a smaller size.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodes.edit.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
