"""Full-step vs few-step sampling of the shipped models, and the engine's own cost, side by side in one run.

    .venv/bin/python bench/fast_bench.py --threads 1                                # latency + images/s + engine
    .venv/bin/python bench/fast_bench.py --threads 1 --quality 32 --variations 8    # + quality (validation set)
    .venv/bin/python bench/fast_bench.py --no-latency --no-engine --quality 24 --pairs 0 --variations 12 \\
        --set tuning --variant prior=full:prior --variant up=full:upsample --variant dec=full:decoder

Latency: `workflows/text2image.json` and `workflows/text2image_fast.json` run through
`nodegraph.Engine` to the images they save, the 256 px stage included (models loaded once; a new
seed and prompt on every repeat so every node after the loaders executes), batch 1 (the prior's
count = 1) and batch 8 (count = 8); per-node times come from the node-completed events, medians over
the repeats after one warm-up, the two workflows interleaved so that load on the machine hits both
alike.

Quality: `eval.text2image` (the command `nodegraph eval text2image`) on one prompt set (validation by
default; `--set tuning` to tune) through each workflow pair (text → image and variations), same
prompts and seeds, all through one engine (a stage whose inputs did not change is a cache hit).
`--variant NAME=SPEC` adds few-step paths: the shipped fast workflows with one stage set back to its
full-step settings (`full:prior`, `full:decoder`, `full:upsample`), inputs set (`prior.steps=25`), or
another file for their Load LoRA node (`none`: the plain few-step schedule). Each path's difference to
the first is paired image by image (the same prompt and seeds through both): its mean and standard
error, sd(difference) / √n, which is what says whether a gap is within the tolerance (`--quality N`
sets n; about 150 images per row bring it to ≤ 0.03 when the paths disagree on 1 image in 7).

Engine: `bench/engine_bench.py`'s own measurements (its quick sizes and start-up), each size in a
fresh process, so the figures are the ones that script prints.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PATHS = {"full": ("text2image.json", "variation.json"), "fast": ("text2image_fast.json", "variation_fast.json")}
STAGES = {"enc": "text encode", "prior": "prior", "decoder": "decoder", "upsample": "32 → 64 px",
          "upsample_256": "256 px stage"}
PROMPTS = ["a small red circle in the top left corner on a white background",
           "a big blue square at the bottom on a yellow background"]
QUALITY_ROWS = {"unseen": ("color", "shape", "size", "position", "background", "clean"),
                "heldout_pairs": ("color", "shape", "clean"),
                "variations": ("color", "shape", "size", "position", "clean")}
TOLERANCE = 0.03  # the few-step path's allowed loss per attribute


def timed_run(engine, wf: dict, prompt: str, seed: int, count: int, clock: str = "wall") -> dict[str, float]:
    """Per-node seconds and the end-to-end total of one run: wall clock, or (`clock="cpu"`) this
    process's CPU time, which a machine busy with other jobs sways much less (with 1 torch thread it
    is about the wall time the run takes on an idle core; nodes run in this thread)."""
    wf = copy.deepcopy(wf)
    wf["nodes"]["prompt"]["inputs"]["value"] = prompt
    wf["nodes"]["prior"]["inputs"]["count"] = count
    for node in wf["nodes"].values():
        if "seed" in node["inputs"]:
            node["inputs"]["seed"] = seed
    durations: dict[str, float] = {}
    started: dict[str, float] = {}
    now = time.process_time if clock == "cpu" else time.perf_counter

    def sink(event):
        if event.event == "node_started":
            started[event.node] = now()
        elif event.event == "node_completed":
            durations[event.node] = event.duration if clock == "wall" else now() - started[event.node]

    from eval.text2image import saved_images_source

    t0 = now()
    run = engine.run(wf, targets=[saved_images_source(wf)[0]], sink=sink)
    durations["total"] = now() - t0
    if not run.ok:
        raise RuntimeError(run.error)
    return durations


def latency(engine, workflows: dict[str, dict], count: int, repeats: int, clock: str = "wall"
            ) -> dict[str, dict[str, float]]:
    times: dict[str, list[dict[str, float]]] = {k: [] for k in workflows}
    for r in range(repeats + 1):
        for i, (name, wf) in enumerate(workflows.items()):
            # a prompt of its own per run, so that no stage is a cache hit
            d = timed_run(engine, wf, PROMPTS[r % 2] + " " * (2 * r + i) + "." * (count > 1), 1000 + r, count,
                          clock)
            if r:
                times[name].append(d)
    return {name: {k: statistics.median(d.get(k, 0.0) for d in runs) for k in (*STAGES, "total")}
            for name, runs in times.items()}


def with_lora(wf: dict, lora: str) -> dict:
    """The workflow with its Load LoRA node applying `lora` instead (a name, a path, or 'none')."""
    wf = copy.deepcopy(wf)
    nodes = [n for n in wf["nodes"].values() if n["type"] == "lora.load_lora"]
    if not nodes:
        raise SystemExit("--variant needs a few-step workflow with a Load LoRA node (lora.load_lora)")
    for node in nodes:
        node["inputs"]["lora"] = str(Path(lora).resolve()) if lora.endswith(".safetensors") else lora
    return wf


def _take_full_node(wf: dict, full: dict, node: str) -> None:
    """Give `wf`'s NODE the type, version and inputs it has in `full` (in its place, so seeds follow the
    same order), with the nodes it links to that `wf` lacks (the full path's 64 px upsampler loader)."""
    wf["nodes"][node] = {**wf["nodes"][node], **copy.deepcopy(
        {k: full["nodes"][node][k] for k in ("type", "version", "inputs")})}
    for value in full["nodes"][node]["inputs"].values():
        source = value.get("from") if isinstance(value, dict) else None
        if source is not None and source not in wf["nodes"]:
            wf["nodes"] = {source: copy.deepcopy(full["nodes"][source]), **wf["nodes"]}
            _take_full_node(wf, full, source)


def variant(fast: dict, full: dict, spec: str) -> dict:
    """The few-step workflow `fast` changed by `spec`, comma-separated items applied in order:
    `full:NODE` gives NODE the type and inputs it has in the full-step twin `full` (links included, so
    `full:decoder` also drops the LoRA and `full:upsample` brings the 64 px upsampler and its loader), `NODE.PORT=VALUE` sets one input (VALUE parsed as JSON when it
    parses), anything else is a LoRA for the Load LoRA node (`none`, a name or a .safetensors path).
    Items naming a node the workflow lacks (the variation workflow has no prior) are skipped."""
    wf = copy.deepcopy(fast)
    for item in (i.strip() for i in spec.split(",") if i.strip()):
        if item.startswith("full:"):
            node = item[5:]
            if node in wf["nodes"] and node not in full["nodes"]:
                raise SystemExit(f"--variant {spec!r}: the full-step workflow has no node {node!r}")
            if node in wf["nodes"]:
                _take_full_node(wf, full, node)
        elif "=" in item:
            target, value = item.split("=", 1)
            node, _, port = target.partition(".")
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
            if node in wf["nodes"]:
                wf["nodes"][node]["inputs"][port] = parsed
        else:
            wf = with_lora(wf, item)
    return wf


def quality(models: Path | None, threads: int, n: int, variations: int, prompt_set: str,
            variants: dict[str, str], shipped: tuple[str, ...] = tuple(PATHS), pairs: int | None = None
            ) -> dict[str, dict]:
    """The evaluation's rows of one prompt set for the shipped paths (`shipped`) and each variant.

    One engine runs every path, so a stage whose inputs are the same as in a path before it (the
    full prior under `full:prior`, the few-step decoder under `full:upsample`) is a cache hit."""
    from eval.text2image import SETS, Runner, Sizes, evaluate

    if prompt_set.startswith("probe"):
        import fast_probe

        SETS["probe"], SETS["probe-passed"] = fast_probe, fast_probe.PassedOn

    workflows = {name: tuple(json.loads((ROOT / "workflows" / f).read_text()) for f in files)
                 for name, files in PATHS.items()}
    paths = {name: workflows[name] for name in shipped}
    for name, spec in variants.items():
        paths[name] = tuple(variant(fast, full, spec) for fast, full in zip(workflows["fast"], workflows["full"], strict=True))
    out = {}
    with tempfile.TemporaryDirectory(prefix="fast-bench-") as tmp:
        runner = Runner(models, threads, Path(tmp))
        for name, (t2i, var) in paths.items():
            runner.text2image, runner.variation = t2i, var
            t0 = time.time()
            verdicts: dict[str, list] = {}
            report = evaluate(runner, Sizes(full=n, short=0, short_pairs=0, variations=variations,
                                            heldout_pairs=pairs), (prompt_set,), count=4, verdicts=verdicts)
            out[name] = {**report[prompt_set], "seconds": time.time() - t0,
                         "verdicts": {key.split("/", 1)[1]: v for key, v in verdicts.items()}}
            print(f"  quality of {name}: {time.time() - t0:.0f} s  " + "; ".join(
                f"{row} " + " ".join(f"{a} {r[a]:.2f}" for a in attrs if a in r)
                for row, attrs in QUALITY_ROWS.items() if (r := out[name].get(row))), flush=True)
    return out


def dump_verdicts(q: dict[str, dict], path: Path) -> None:
    """Every judged image as one JSON line: path, row, index, what the prompt named, what the analyser
    read and the measurements behind it (radius against the size split, background RGB, template IoU),
    so that misses near a threshold can be told from misses far from it."""
    with path.open("w", encoding="utf-8") as f:
        for name, report in q.items():
            for row, verdicts in report["verdicts"].items():
                for i, v in enumerate(verdicts):
                    a = v.analysis
                    f.write(json.dumps({
                        "path": name, "row": row, "index": i, "named": v.named, "read": a.attributes(),
                        "radius": a.radius, "center": a.center, "area": a.area, "shape_iou": a.shape_iou,
                        "color_rgb": a.color_rgb, "background_rgb": a.background_rgb,
                        "background_distance": v.background_distance, "stray": v.stray, "clean": v.clean}) + "\n")


def print_latency(lat: dict[str, dict[str, float]], count: int) -> None:
    print(f"\nbatch {count} (prior count {count}), seconds:")
    print(f"{'stage':<14}{'full':>9}{'fast':>9}{'speed-up':>10}")
    for key in (*STAGES, "total"):
        full, fast = lat["full"][key], lat["fast"][key]
        label = STAGES.get(key, "end to end")
        # a stage that is not sampling on one path (the fast path's bicubic 64 px) has no speed-up to speak of
        ratio = f"{full / fast:>9.1f}×" if fast >= 0.005 else f"{'–':>10}"
        print(f"{label:<14}{full:>9.3f}{fast:>9.3f}{ratio}")
    print(f"images/s: full {count / lat['full']['total']:.2f}, fast {count / lat['fast']['total']:.2f}", flush=True)


def paired(base: list, other: list, attr: str) -> tuple[float, float, int]:
    """Mean and standard error of the per-image difference other − base (1 right, 0 wrong) over the
    images both judged for `attr`: the same prompts and seeds through both paths, image by image."""
    def score(v) -> float | None:
        if attr == "clean":
            return float(v.clean)
        return float(v.right(attr)) if attr in v.named else None

    d = [b - a for a, b in ((score(x), score(y)) for x, y in zip(base, other, strict=True))
         if a is not None and b is not None]
    if len(d) < 2:
        return (d[0] if d else 0.0), float("nan"), len(d)
    return statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d)), len(d)


def print_quality(q: dict[str, dict], prompt_set: str, n: int, variations: int) -> None:
    names = list(q)
    print(f"\nquality: eval.text2image {prompt_set} set, {n} prompts a row, {variations} variation scenes "
          f"(× the workflow's 4 variations); Δ = path − {names[0]} and ± its standard error, paired image by "
          f"image (same prompts and seeds)")
    print(f"{'row / attribute':<26}" + "".join(f"{k:>9}" for k in names)
          + "".join(f"{'Δ ' + k:>17}" for k in names[1:]))
    for row, attrs in QUALITY_ROWS.items():
        base = q[names[0]]
        if row not in base:
            continue
        for attr in attrs:
            if attr not in base[row]:
                continue
            vals = [q[k][row][attr] for k in names]
            deltas = ""
            for k in names[1:]:
                d, se, _ = paired(base["verdicts"][row], q[k]["verdicts"][row], attr)
                deltas += f"{d:>+10.3f}{'*' if d < -TOLERANCE else ' '}±{se:.3f}"
            print(f"{row + ' / ' + attr:<26}" + "".join(f"{v:>9.2f}" for v in vals) + deltas)
    print(f"(* more than {TOLERANCE} below {names[0]}; images per row: "
          + ", ".join(f"{row} {int(q[names[0]][row]['n'])}" for row in QUALITY_ROWS if row in q[names[0]])
          + ")  eval wall time: " + ", ".join(f"{k} {q[k]['seconds']:.0f} s" for k in names))


def engine_figures(threads: int) -> None:
    """`bench/engine_bench.py`'s quick table and start-up, each size in a fresh (spawned) process."""
    import engine_bench

    rows = []
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for shape, n in engine_bench.QUICK:
            rows.append(pool.submit(engine_bench.measure, shape, n, 3, "cpu", threads).result())
    print(f"\nengine (bench/engine_bench.py --quick): best of 3, process CPU time, threads {threads}")
    print(f"{'graph':<6}{'nodes':>8}{'validate ms':>13}{'µs/node':>9}{'first µs/node':>15}{'exec µs/node':>14}"
          f"{'cached ms':>11}{'widget ms':>11}")
    for r in rows:
        print(f"{r['shape']:<6}{r['n']:>8,}{r['validate_ms']:>13.1f}{r['validate_us']:>9.1f}{r['first_us']:>15.1f}"
              f"{r['exec_us']:>14.1f}{r['cached_ms']:>11.2f}{r['widget_ms']:>11.1f}")
    times, _ = engine_bench.startup(3, {**os.environ, "NODEGRAPH_THREADS": str(threads)})
    print("start-up, CPU time best / median of 3: " + "; ".join(
        f"{name} {cb:.0f} / {cm:.0f} ms" for name, (_, _, cb, cm) in times.items()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=None, help="a models folder (default: models/)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine with other load: "
                   "2 threads on 2 busy cores wait on each other)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="latency in wall-clock seconds, or "
                   "in this process's CPU seconds (with --threads 1: steadier on a machine busy with other jobs)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency figures")
    p.add_argument("--no-engine", action="store_true", help="skip the engine figures")
    p.add_argument("--quality", type=int, default=0, help="prompts per quality row (0: no quality figures)")
    p.add_argument("--variations", type=int, default=0, help="variation scenes for the quality figures")
    p.add_argument("--set", dest="prompt_set", default="validation", choices=("validation", "tuning", "tuning_hard", "probe", "probe-passed"),
                   help="the evaluation's prompt set (tune on 'tuning' or 'probe', report on 'validation'); "
                   "'probe': bench/fast_probe.py's training-writer captions of held-out combinations, half of "
                   "them background first (unseen row only); 'probe-passed': the same writers' captions that Factor "
                   "Out Colour passes on unfactored (it reads two colours)")
    p.add_argument("--paths", default="full,fast", help="the shipped paths in the quality table, the first "
                   "the reference (full: text2image.json + variation.json; fast: their _fast twins)")
    p.add_argument("--pairs", type=int, default=None, help="prompts in the held-out pairs row (default: "
                   "--quality; 0 skips the row)")
    p.add_argument("--dump", type=Path, default=None, metavar="FILE.jsonl",
                   help="write every judged image's verdict and measurements, one JSON line each")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=SPEC",
                   help="another few-step path: the fast workflows changed by SPEC, comma-separated items: "
                   "a LoRA file (or 'none'), 'full:NODE' (that node as in the full-step workflow), "
                   "'NODE.PORT=VALUE' (e.g. prior.steps=25)")
    args = p.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant)
    print(f"{args.threads} threads; load average at start {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")

    if not args.no_latency:
        from nodegraph import Engine, Settings

        overrides = {"threads": args.threads, "output_dir": Path(tempfile.mkdtemp(prefix="fast-bench-out-"))}
        if args.models is not None:
            overrides["model_dirs"] = [args.models]
        engine = Engine.from_settings(Settings.from_env(**overrides))
        workflows = {name: json.loads((ROOT / "workflows" / t2i).read_text()) for name, (t2i, _) in PATHS.items()}
        print(f"latency: medians of {args.repeats} runs after a warm-up, {args.clock} clock", flush=True)
        for count in (1, 8):
            print_latency(latency(engine, workflows, count, args.repeats, args.clock), count)
    if args.quality:
        shipped = tuple(k for k in args.paths.split(",") if k)
        if not set(shipped) <= set(PATHS):
            raise SystemExit(f"--paths takes a comma-separated subset of {', '.join(PATHS)}; got {args.paths!r}")
        q = quality(args.models, args.threads, args.quality, args.variations, args.prompt_set, variants, shipped,
                    args.pairs)
        print_quality(q, args.prompt_set, args.quality, args.variations)
        if args.dump is not None:
            dump_verdicts(q, args.dump)
    if not args.no_engine:
        engine_figures(args.threads)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
