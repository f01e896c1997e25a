"""Full-step vs few-step sampling of the shipped models, side by side in one run.

    .venv/bin/python bench/fast_bench.py                       # latency + images/s, 2 threads
    .venv/bin/python bench/fast_bench.py --quality 16 --variations 4   # + the evaluation's figures

Latency: `workflows/text2image.json` and `workflows/text2image_fast.json` run through
`nodegraph.Engine` (models loaded once; a new seed and prompt on every repeat so every node after the
loaders executes), batch 1 (the prior's count = 1) and batch 8 (count = 8); per-node times come from
the node-completed events, medians over the repeats after one warm-up, the two workflows
interleaved so that load on the machine hits both alike. Quality: `eval.text2image` (the command
`nodegraph eval text2image`) on its validation set through each workflow pair (text → image and
variations), same prompts and seeds; the fast path's differences to the full-step one are printed.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PATHS = {"full": ("text2image.json", "variation.json"), "fast": ("text2image_fast.json", "variation_fast.json")}
STAGES = {"enc": "text encode", "prior": "prior", "decoder": "decoder", "upsample": "upsampler"}
PROMPTS = ["a small red circle in the top left corner on a white background",
           "a big blue square at the bottom on a yellow background"]


def timed_run(engine, wf: dict, prompt: str, seed: int, count: int) -> dict[str, float]:
    """Per-node seconds and the end-to-end total of one run."""
    wf = copy.deepcopy(wf)
    wf["nodes"]["prompt"]["inputs"]["value"] = prompt
    wf["nodes"]["prior"]["inputs"]["count"] = count
    for node in wf["nodes"].values():
        if "seed" in node["inputs"]:
            node["inputs"]["seed"] = seed
    durations: dict[str, float] = {}

    def sink(event):
        if event.event == "node_completed":
            durations[event.node] = event.duration

    t0 = time.perf_counter()
    run = engine.run(wf, targets=["upsample"], sink=sink)
    durations["total"] = time.perf_counter() - t0
    if not run.ok:
        raise RuntimeError(run.error)
    return durations


def latency(engine, workflows: dict[str, dict], count: int, repeats: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[dict[str, float]]] = {k: [] for k in workflows}
    for r in range(repeats + 1):
        for i, (name, wf) in enumerate(workflows.items()):
            # a prompt of its own per run, so that no stage is a cache hit
            d = timed_run(engine, wf, PROMPTS[r % 2] + " " * (2 * r + i) + "." * (count > 1), 1000 + r, count)
            if r:
                times[name].append(d)
    return {name: {k: statistics.median(d.get(k, 0.0) for d in runs) for k in (*STAGES, "total")}
            for name, runs in times.items()}


def quality(models: Path | None, threads: int, n: int, variations: int) -> dict[str, dict]:
    from eval.text2image import Runner, Sizes, evaluate

    out = {}
    for name, (t2i, var) in PATHS.items():
        with tempfile.TemporaryDirectory(prefix="fast-bench-") as tmp:
            runner = Runner(models, threads, Path(tmp), ROOT / "workflows" / t2i, ROOT / "workflows" / var)
            t0 = time.time()
            report = evaluate(runner, Sizes(full=n, short=0, short_pairs=0, variations=variations),
                              ("validation",), count=4)
            out[name] = {**report["validation"], "seconds": time.time() - t0}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=None, help="a models folder (default: models/)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine with other load: "
                   "2 threads on 2 busy cores wait on each other)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quality", type=int, default=0, help="prompts per validation row (0: no quality figures)")
    p.add_argument("--variations", type=int, default=0, help="variation scenes for the quality figures")
    args = p.parse_args()

    from nodegraph import Engine, Settings

    overrides = {"threads": args.threads, "output_dir": Path(tempfile.mkdtemp(prefix="fast-bench-out-"))}
    if args.models is not None:
        overrides["model_dirs"] = [args.models]
    engine = Engine.from_settings(Settings.from_env(**overrides))
    workflows = {name: json.loads((ROOT / "workflows" / t2i).read_text()) for name, (t2i, _) in PATHS.items()}
    print(f"{args.threads} threads, medians of {args.repeats} runs after a warm-up; seconds")
    for count in (1, 8):
        lat = latency(engine, workflows, count, args.repeats)
        print(f"\nbatch {count} (prior count {count}):")
        print(f"{'stage':<14}{'full':>9}{'fast':>9}{'speed-up':>10}")
        for key in (*STAGES, "total"):
            full, fast = lat["full"][key], lat["fast"][key]
            label = STAGES.get(key, "end to end")
            print(f"{label:<14}{full:>9.3f}{fast:>9.3f}{full / fast if fast else float('nan'):>9.1f}×")
        print(f"images/s: full {count / lat['full']['total']:.2f}, fast {count / lat['fast']['total']:.2f}")
    if args.quality:
        q = quality(args.models, args.threads, args.quality, args.variations)
        print(f"\nquality: eval.text2image validation set, {args.quality} prompts a row, "
              f"{args.variations} variation scenes (× the workflow's 4 variations)")
        print(f"{'row / attribute':<26}{'full':>7}{'fast':>7}{'fast − full':>13}")
        for row in ("unseen", "heldout_pairs", "variations"):
            if row not in q["full"]:
                continue
            for attr in ("color", "shape", "size", "position", "background", "clean"):
                if attr in q["full"][row]:
                    a, b = q["full"][row][attr], q["fast"][row][attr]
                    print(f"{row + ' / ' + attr:<26}{a:>7.2f}{b:>7.2f}{b - a:>+13.2f}")
        print(f"eval wall time: full {q['full']['seconds']:.0f} s, fast {q['fast']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
