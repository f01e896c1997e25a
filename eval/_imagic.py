"""Imagic's evaluation: renders of scenes → `workflows/imagic.json` through the engine, with a target
text naming a new colour ("a blue square") or a new shape ("a green star"); judged by the analyser:
the named attribute changed, position and size kept. One run per image gives the reconstruction
(η 0), every η of the Imagic: Edit node's sweep (same noise) and the η its CLIP-score rule picks.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from nodes.shapes import analyse, domain

log = logging.getLogger("eval.imagic")
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


def _judge(img: np.ndarray, case: dict) -> dict:
    a = analyse.analyse((img * 255).round().astype(np.uint8))
    s = case["scene"]
    return {"changed": getattr(a, case["kind"]) == case["new"], "position": a.position == s.position,
            "size": a.size == s.size, "kind": case["kind"],
            "reconstructed": all(getattr(a, k) == v for k, v in s.attributes().items())}


def _row(rows: list[dict]) -> dict:
    def mean(key: str, kind: str | None = None) -> float:
        values = [r[key] for r in rows if kind is None or r["kind"] == kind]
        return round(float(np.mean(values)), 3) if values else float("nan")

    return {"changed": mean("changed"), "changed_color": mean("changed", "color"),
            "changed_shape": mean("changed", "shape"), "position_kept": mean("position"), "size_kept": mean("size")}


def eval_imagic(which: str, n: int, steps: int, threads: int,
                thresholds: tuple[float, ...] = (0.4, 0.5, 0.6, 0.7, 0.8, 1.0), overrides: dict | None = None) -> dict:
    """Each case through `imagic.json` up to its Imagic: Edit node: the reconstruction (η 0), every η of
    the node's sweep, and the η each CLIP-score threshold picks (the workflow's own threshold among them)."""
    import nodegraph
    from nodes.personalise.imagic import choose_eta, parse_etas

    work = Path(tempfile.mkdtemp(prefix="imagic-eval-"))
    engine = nodegraph.Engine.from_settings(nodegraph.Settings.from_env(threads=threads, input_dir=work,
                                                                        output_dir=work / "out"))
    wf0 = json.loads(IMAGIC.read_text())
    edit_inputs = wf0["nodes"]["edit"]["inputs"]
    etas = parse_etas(str((overrides or {}).get("edit.etas", edit_inputs.get("etas", "0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0"))))
    default_threshold = float((overrides or {}).get("edit.threshold", edit_inputs["threshold"]))
    thresholds = tuple(sorted({*thresholds, default_threshold}))
    recon: list[dict] = []
    by_eta: dict[float, list[dict]] = {eta: [] for eta in etas}
    by_thr: dict[float, list[dict]] = {t: [] for t in thresholds}
    chosen: dict[float, list[float]] = {t: [] for t in thresholds}
    t0 = time.time()
    seconds = []
    for i, case in enumerate(cases(which, n)):
        Image.fromarray(domain.render(case["scene"], 64)).save(work / f"case{i}.png")
        o = {"image.image": f"case{i}.png", "prompt.value": case["target"], "edit.steps": steps,
             "target.steps": steps, "target.seed": i, "optimise.seed": i, "finetune.seed": i, "edit.seed": i,
             **(overrides or {})}
        wf, issues = nodegraph.apply_overrides(wf0, o)
        if wf is None or issues:
            raise SystemExit(f"bad overrides: {issues}")
        t = time.time()
        run = engine.run(wf, targets=["edit"])
        if not run.ok:
            raise SystemExit(f"imagic.json failed: {run.error}")
        seconds.append(time.time() - t)
        out = run.outputs["edit"]
        sweep = out["sweep"]
        scores = [float(v) for v in out["scores"].split(",")]
        recon.append(_judge(sweep[0], case))
        for k, eta in enumerate(etas):
            by_eta[eta].append(_judge(sweep[k + 1], case))
        for thr in thresholds:
            k = choose_eta(scores[1:], scores[0], thr)
            by_thr[thr].append(by_eta[etas[k]][-1])
            chosen[thr].append(etas[k])
        k = etas.index(chosen[default_threshold][-1])
        log.info("case %d/%d %r → %r: %.0f s, η %g, %s", i + 1, n, case["scene"].attributes(), case["target"],
                 seconds[-1], etas[k], {key: v for key, v in by_eta[etas[k]][-1].items() if key != "kind"})
    report: dict = {"set": which, "n": n, "seconds_per_image_all_stages": round(float(np.mean(seconds)), 1),
                    "wall_seconds": round(time.time() - t0, 1),
                    "reconstruction_all_attributes": round(float(np.mean([r["reconstructed"] for r in recon])), 3),
                    "workflow_threshold": default_threshold}
    for thr in thresholds:
        report[f"auto threshold={thr:g}"] = {**_row(by_thr[thr]), "mean_eta": round(float(np.mean(chosen[thr])), 3)}
    for eta in etas:
        report[f"eta={eta:g}"] = _row(by_eta[eta])
    return report
