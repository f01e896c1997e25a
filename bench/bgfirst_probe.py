"""Background-first captions of the second training writer through `workflows/text2image.json`.

    PYTHONPATH=. .venv/bin/python bench/bgfirst_probe.py [--n 16] [--threads 1]

A probe for choosing (training writer, its own seeds; never the validation generator): `--n`
captions of `captions.caption` that name the background before the object and name colour, shape
and background, of held-out (colour, shape) pairs (seed 9301) and of held-out combinations (seed
9302), run through the shipped workflow as `eval text2image` runs it (one image each), and judged by
`eval/_judge.py`. Prints each image's misses and each group's summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16, help="captions per group")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(ROOT / "bench"))
    from factor_readout import group_of, writer_captions

    from eval import _judge as judge
    from eval.text2image import Runner

    groups = {}
    for split, seed in (("heldout_pairs", 9301), ("heldout_combos", 9302)):
        groups[split] = [(t, named) for t, named, scene in writer_captions("writer 2", split, 600, seed)
                         if group_of(t, named, scene) == "background first"
                         and set(named) >= {"color", "shape", "background"}][:args.n]
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(None, args.threads, Path(tmp))
        items = [it for g in groups.values() for it in g]
        verdicts = []
        for i in range(0, len(items), 8):
            chunk = items[i:i + 8]
            for (text, named), image in zip(chunk, runner.text([t for t, _ in chunk], 7000 + i, 1), strict=True):
                v = judge.judge(image, named)
                verdicts.append(v)
                got = v.analysis.attributes()
                misses = {a: f"{named[a]}->{got[a]}" for a in named if got[a] != named[a]}
                print(f"{'ok ' if not misses else 'BAD'} {misses} {text!r}")
    k = 0
    for split, g in groups.items():
        summary = judge.summarise(verdicts[k:k + len(g)])
        k += len(g)
        print(split, ", ".join(f"{a} {v:.2f}" for a, v in summary.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
