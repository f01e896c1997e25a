"""The shipped models through the shipped workflows, on the tuning set and the validation set, side by side.

    .venv/bin/nodegraph eval text2image [--quick] [--models DIR] [--json out.json] [--save-images DIR]

Every image comes from running `workflows/text2image.json` (or `workflows/variation.json`) with the
engine, as `nodegraph run` does: only the prompt (one per line: a batch), the seeds, the prior's
count and, for variations, the input image (a `shapes.scene` render in place of the file loader) are
set. The images judged are the ones the workflow saves. Rows:

- `unseen`: prompts naming all five attributes of held-out attribute combinations;
- `heldout_pairs`: the same for the four (colour, shape) pairs never rendered in training;
- `short`: prompts naming one to three attributes, `count` images each (the workflow's 4): named
  attributes, clean scenes and distinct backgrounds over the prompt's images;
- `short_heldout_pairs`: "a red star" and the like;
- `variations`: renders of held-out combinations → the variation workflow; attributes kept.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nodes.shapes import domain

from . import _judge as judge
from . import _tuning_hard_prompts as tuning_hard_prompts
from . import _tuning_prompts as tuning_prompts
from . import _validation_prompts as validation_prompts
from ._validation_prompts import Prompt

log = logging.getLogger("eval.text2image")
ROOT = Path(__file__).resolve().parents[1]
TEXT2IMAGE = ROOT / "workflows" / "text2image.json"
VARIATION = ROOT / "workflows" / "variation.json"
# the targets, per row (validation set)
TARGETS = {
    "unseen": {"color": 0.95, "shape": 0.95, "size": 0.95, "position": 0.95, "background": 0.95},
    "heldout_pairs": {"color": 0.85, "shape": 0.85},
    "short": {"all_named": 0.90, "clean": 0.90, "distinct_backgrounds": 3.0},
    "variations": {"color": 0.95, "shape": 0.95},
}
# generation seeds per row (the prompts have their own, in their generators)
ROW_SEEDS = {"unseen": 101, "heldout_pairs": 202, "short": 303, "short_heldout_pairs": 404}
# tuning and tuning_hard are looked at and tuned on; validation only reports (the README quotes it)
SETS = {"tuning": tuning_prompts, "tuning_hard": tuning_hard_prompts, "validation": validation_prompts}


@dataclass
class Sizes:
    full: int = 100  # prompts per full-caption row
    short: int = 40  # short prompts
    short_pairs: int = 16
    variations: int = 25  # scenes; the workflow makes its decoder batch of variations of each
    batch: int = 8  # prompts per run of the full-caption rows
    heldout_pairs: int | None = None  # prompts in the held-out pairs row; None: as many as `full`


def saved_images_source(wf: dict) -> tuple[str, str]:
    """(node, output) of the images the workflow's first `core.save_image` saves."""
    for node in wf["nodes"].values():
        if node["type"] == "core.save_image":
            link = node["inputs"]["images"]
            return link["from"], link["output"]
    raise ValueError("the workflow saves no images (no core.save_image node)")


def _set_seeds(wf: dict, seed: int) -> None:
    for i, node in enumerate(n for n in wf["nodes"].values() if "seed" in n["inputs"]):
        node["inputs"]["seed"] = seed + 97 * i


class Runner:
    """An engine and the two workflows, run with prompts, seeds and counts set."""

    def __init__(self, models: Path | None, threads: int, output_dir: Path, text2image: Path = TEXT2IMAGE,
                 variation: Path = VARIATION):
        from nodegraph import Engine, Settings

        overrides = {"threads": threads, "output_dir": output_dir}
        if models is not None:
            overrides["model_dirs"] = [models]
        self.engine = Engine.from_settings(Settings.from_env(**overrides))
        self.text2image = json.loads(text2image.read_text())
        self.variation = json.loads(variation.read_text())

    def _run(self, wf: dict) -> np.ndarray:
        node, output = saved_images_source(wf)
        run = self.engine.run(wf, targets=[node])
        if not run.ok:
            raise RuntimeError(f"workflow failed: {run.error}")
        images = np.asarray(run.outputs[node][output])
        return np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)

    def text(self, prompts: list[str], seed: int, count: int) -> np.ndarray:
        """(len(prompts) × count, H, W, 3) uint8; with count > 1, one prompt per run (the decoder takes one
        prompt per embedding or one for all)."""
        if count > 1 and len(prompts) > 1:
            return np.concatenate([self.text([p], seed + i, count) for i, p in enumerate(prompts)])
        wf = copy.deepcopy(self.text2image)
        wf["nodes"]["prompt"]["inputs"]["value"] = "\n".join(prompts)
        for node in wf["nodes"].values():  # every prior (a workflow may chain two)
            if "count" in node["inputs"]:
                node["inputs"]["count"] = count
        _set_seeds(wf, seed)
        return self._run(wf)

    def variations(self, scene: domain.Scene, seed: int) -> np.ndarray:
        wf = copy.deepcopy(self.variation)
        node = next(k for k, v in wf["nodes"].items() if v["type"] == "core.load_image")
        wf["nodes"][node] = {"type": "shapes.scene", "version": 1, "inputs": {
            "color": scene.color, "shape": scene.shape, "size": scene.size, "position": scene.position,
            "background": scene.background, "resolution": 64, "seed": seed}}
        _set_seeds(wf, seed)
        wf["nodes"][node]["inputs"]["seed"] = seed
        return self._run(wf)


def run_prompts(runner: Runner, prompts: list[Prompt], seed: int, count: int, batch: int,
                save: Callable[[np.ndarray, Prompt], None] | None = None) -> tuple[dict, list[judge.Verdict]]:
    verdicts: list[judge.Verdict] = []
    t0 = time.time()
    step = batch if count == 1 else 1
    for i in range(0, len(prompts), step):
        chunk = prompts[i:i + step]
        images = runner.text([p.text for p in chunk], seed + 1009 * i, count)
        for k, img in enumerate(images):
            p = chunk[k // count]
            verdicts.append(judge.judge(img, p.named))
            if save is not None:
                save(img, p)
    summary = judge.summarise(verdicts, group=count)
    summary["seconds_per_image"] = (time.time() - t0) / max(1, len(verdicts))
    return summary, verdicts


def run_variations(runner: Runner, scenes: list[domain.Scene], seed: int,
                   verdicts: list[judge.Verdict] | None = None) -> dict:
    verdicts = [] if verdicts is None else verdicts
    for i, s in enumerate(scenes):
        for img in runner.variations(s, seed + i):
            verdicts.append(judge.judge(img, s.attributes()))
    return judge.summarise(verdicts)


def evaluate(runner: Runner, sizes: Sizes, which: tuple[str, ...], count: int,
             save_dir: Path | None = None, verdicts: dict[str, list[judge.Verdict]] | None = None) -> dict:
    """The rows of each prompt set in `which`; `verdicts`, when given, receives every row's per-image
    verdicts under "SET/ROW", in a fixed order (paired comparisons of two workflows)."""
    report: dict = {}
    for set_name in which:
        gen = SETS[set_name]
        rows = {
            "unseen": (gen.full_prompts("heldout_combos", sizes.full), 1),
            "heldout_pairs": (gen.full_prompts("heldout_pairs", sizes.full if sizes.heldout_pairs is None
                                               else sizes.heldout_pairs), 1),
            "short": (gen.short_prompts(sizes.short), count),
            "short_heldout_pairs": (gen.short_prompts(sizes.short_pairs, heldout_pairs=True), count),
        }
        report[set_name] = {}
        for row, (prompts, k) in rows.items():
            if not prompts:
                continue
            save = None
            if save_dir is not None:
                folder = save_dir / set_name / row
                folder.mkdir(parents=True, exist_ok=True)
                counter = iter(range(10**9))

                def save(img, p, folder=folder, counter=counter):
                    from PIL import Image

                    Image.fromarray(img).save(folder / f"{next(counter):04d}.png")
                    with open(folder / "prompts.txt", "a", encoding="utf-8") as f:
                        f.write(p.text + "\n")

            log.info("%s / %s: %d prompts × %d", set_name, row, len(prompts), k)
            summary, row_verdicts = run_prompts(runner, prompts, seed=ROW_SEEDS[row], count=k, batch=sizes.batch,
                                                save=save)
            if verdicts is not None:
                verdicts[f"{set_name}/{row}"] = row_verdicts
            report[set_name][row] = summary
            log.info("%s / %s: %s", set_name, row, _fmt(summary))
        if sizes.variations:
            log.info("%s / variations: %d scenes", set_name, sizes.variations)
            collected: list[judge.Verdict] = []
            report[set_name]["variations"] = run_variations(runner, gen.variation_scenes(sizes.variations), 31,
                                                            collected)
            if verdicts is not None:
                verdicts[f"{set_name}/variations"] = collected
    return report


def _fmt(summary: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in summary.items() if k != "n")


COLUMNS = ("color", "shape", "size", "position", "background", "all_named", "clean", "distinct_backgrounds")


def table(report: dict) -> str:
    sets = list(report)
    rows = []
    for row in ("unseen", "heldout_pairs", "short", "short_heldout_pairs", "variations"):
        if not any(row in report[s] for s in sets):
            continue
        for s in sets:
            r = report[s].get(row)
            if r is None:
                continue
            cells = [f"{r[c]:.2f}" if c in r else "–" for c in COLUMNS]
            rows.append(f"| {row} | {s} | {int(r['n'])} | " + " | ".join(cells) + " |")
    head = "| row | set | images | " + " | ".join(COLUMNS) + " |"
    sep = "|---|---|---:|" + "---:|" * len(COLUMNS)
    lines = [head, sep, *rows]
    if "validation" in report:
        measured = [(f"{row}.{a}", report["validation"][row][a], v) for row, t in TARGETS.items()
                    if row in report["validation"] for a, v in t.items() if a in report["validation"][row]]
        misses = [f"{name} {got:.2f} < {v:g}" for name, got, v in measured if got < v]
        lines.append("")
        lines.append("validation targets missed: " + "; ".join(misses) if misses
                     else "validation targets met (of those measured)")
    return "\n".join(lines)


# the README's rows: (row, label, the columns it quotes)
README_ROWS = (
    ("unseen", "unseen attribute combinations: colour / shape / size / position / background",
     ("color", "shape", "size", "position", "background")),
    ("heldout_pairs", "held-out (colour, shape) pairs: colour / shape", ("color", "shape")),
    ("short", "short prompts, {count} images each: named attributes right / clean scene / distinct backgrounds",
     ("all_named", "clean", "distinct_backgrounds")),
    ("short_heldout_pairs", "short held-out pairs (\"a red star\"), {count} images each: named right / clean",
     ("all_named", "clean")),
    ("variations", "variations of unseen-combination renders: colour / shape kept", ("color", "shape")),
)


def readme_table(rows: dict, count: int = 4) -> str:
    """The README's table of one set's rows: measure (images), figures, targets; `count` images per short prompt."""
    lines = ["| validation set (images) | figures | targets |", "|---|---|---|"]
    for row, label, cols in README_ROWS:
        r = rows.get(row)
        if r is None:
            continue
        figures = " / ".join(f"{r[c]:.2f}" if c in r else "–" for c in cols)
        target = TARGETS.get(row, {})
        wanted = [f"≥ {target[c]:g}" if c in target else "–" for c in cols]
        goals = "–" if not target else f"{wanted[0]} each" if len(set(wanted)) == 1 < len(wanted) else " / ".join(wanted)
        n = int(r["n"])
        lines.append(f"| {label.format(count=count)} ({n}) | {figures} | {goals} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nodegraph eval text2image", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=None, help="a models folder holding shapes-unclip (default: models/)")
    p.add_argument("--workflow", type=Path, default=TEXT2IMAGE, help="the text→image workflow (default: the shipped one)")
    p.add_argument("--variation-workflow", type=Path, default=VARIATION,
                   help="the variation workflow (default: the shipped one)")
    p.add_argument("--sets", default="tuning,validation", help="comma-separated: tuning, tuning_hard (a harder tuning set), validation")
    p.add_argument("--quick", action="store_true", help="a few prompts per row (a code-path check)")
    p.add_argument("--full", type=int, default=Sizes.full, help="prompts per full-caption row")
    p.add_argument("--short", type=int, default=Sizes.short, help="short prompts")
    p.add_argument("--short-pairs", type=int, default=Sizes.short_pairs, help="short held-out-pair prompts")
    p.add_argument("--variations", type=int, default=Sizes.variations, help="variation scenes")
    p.add_argument("--batch", type=int, default=Sizes.batch,
                   help="prompts per run of the full-caption rows (1 for a workflow that takes one prompt at a time)")
    p.add_argument("--count", type=int, default=4, help="images per short prompt (the workflow's prior count)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--save-images", type=Path, default=None)
    p.add_argument("--readme", action="store_true", help="also print the validation rows as the README's table")
    args = p.parse_args(argv)
    unknown = [s for s in args.sets.split(",") if s not in SETS]
    if unknown:
        p.error(f"--sets: unknown set {', '.join(map(repr, unknown))}; choose from {', '.join(SETS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    sizes = Sizes(2, 4, 2, 1, 2) if args.quick else Sizes(args.full, args.short, args.short_pairs, args.variations,
                                                             args.batch)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="eval-text2image-") as tmp:
        runner = Runner(args.models, args.threads, Path(tmp), args.workflow, args.variation_workflow)
        t0 = time.time()
        report = evaluate(runner, sizes, tuple(args.sets.split(",")), args.count, args.save_images)
    report["seconds"] = round(time.time() - t0, 1)
    print(table({k: v for k, v in report.items() if k in SETS}))
    if args.readme and "validation" in report:
        print()
        print(readme_table(report["validation"], args.count))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
