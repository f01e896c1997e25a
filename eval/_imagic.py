"""Imagic's evaluation: renders of scenes → `workflows/imagic.json` through the engine, with a target
text naming a new colour ("a blue square") or a new shape ("a green star"); judged by the analyser:
the named attribute changed, position and size kept. The stages are cached, so several η cost one
optimisation and one fine-tuning per image.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from nodes.shapes import analyse, domain

ROOT = Path(__file__).resolve().parents[1]
IMAGIC = ROOT / "workflows" / "imagic.json"
SEEDS = {"tuning": 31, "validation": 2417}
HELDOUT_PAIRS = {("red", "star"), ("blue", "triangle"), ("yellow", "circle"), ("purple", "square")}


def cases(which: str, n: int) -> list[dict]:
    """Scenes with an edit each, alternately colour and shape, avoiding the held-out (colour, shape) pairs."""
    rng = np.random.default_rng(SEEDS[which])
    out = []
    while len(out) < n:
        s = domain.sample_scene(rng, "train")
        kind = "color" if len(out) % 2 == 0 else "shape"
        options = [c for c in domain.COLORS if c not in (s.color, s.background)] if kind == "color" \
            else [h for h in domain.SHAPES if h != s.shape]
        new = options[int(rng.integers(len(options)))]
        color, shape = (new, s.shape) if kind == "color" else (s.color, new)
        if (color, shape) in HELDOUT_PAIRS:
            continue
        out.append({"scene": s, "kind": kind, "new": new, "target": f"a {color} {shape}"})
    return out


def eval_imagic(which: str, n: int, steps: int, threads: int, etas: tuple[float, ...] = (0.6, 0.8, 1.0)) -> dict:
    import nodegraph

    work = Path(tempfile.mkdtemp(prefix="imagic-eval-"))
    engine = nodegraph.Engine.from_settings(nodegraph.Settings.from_env(threads=threads, input_dir=work,
                                                                        output_dir=work / "out"))
    wf0 = json.loads(IMAGIC.read_text())
    results: dict[float, list[dict]] = {eta: [] for eta in etas}
    t0 = time.time()
    stage_seconds = []
    for i, case in enumerate(cases(which, n)):
        Image.fromarray(domain.render(case["scene"], 64)).save(work / f"case{i}.png")
        for eta in etas:
            overrides = {"image.image": f"case{i}.png", "prompt.value": case["target"], "mix.eta": eta,
                         "dec.batch": 1, "dec.steps": steps, "target.steps": steps, "target.seed": i,
                         "optimise.seed": i, "finetune.seed": i, "dec.seed": i}
            wf, issues = nodegraph.apply_overrides(wf0, overrides)
            if wf is None or issues:
                raise SystemExit(f"bad overrides: {issues}")
            t = time.time()
            run = engine.run(wf, targets=["dec"])
            if not run.ok:
                raise SystemExit(f"imagic.json failed: {run.error}")
            if eta == etas[0]:
                stage_seconds.append(time.time() - t)
            img = (run.outputs["dec"]["images"][0] * 255).round().astype(np.uint8)
            a = analyse.analyse(img)
            s = case["scene"]
            results[eta].append({"changed": getattr(a, case["kind"]) == case["new"],
                                 "position": a.position == s.position, "size": a.size == s.size,
                                 "kind": case["kind"]})
    report: dict = {"set": which, "n": n, "seconds_per_image_all_stages": round(float(np.mean(stage_seconds)), 1),
                    "wall_seconds": round(time.time() - t0, 1)}
    for eta, rows in results.items():
        report[f"eta={eta:g}"] = {
            "changed": float(np.mean([r["changed"] for r in rows])),
            "changed_color": float(np.mean([r["changed"] for r in rows if r["kind"] == "color"] or [np.nan])),
            "changed_shape": float(np.mean([r["changed"] for r in rows if r["kind"] == "shape"] or [np.nan])),
            "position_kept": float(np.mean([r["position"] for r in rows])),
            "size_kept": float(np.mean([r["size"] for r in rows]))}
    return report
