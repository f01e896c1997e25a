"""Measurements of the edit pack (and Recolour Embedding) on the shipped Shapes models (`python -m eval edit`).

    nice -n 10 .venv/bin/python -m eval edit [--swaps 40] [--inpaints 40] [--recolors 40] [--steps 25] [--threads 2]
                                                   [--model models/shapes-unclip] [--json out.json]

Judged by the pixel analyser (`nodes/shapes/analyse.py`), never by a learned model:

- Prompt-to-Prompt: `--swaps` seeded cases, half colour-word swaps, half shape-word swaps, of the
  canonical captions of training-split scenes ("a large red circle in the center on a white
  background" → "… blue circle …"; targets avoid the held-out colour-shape pairs). Source and target image embeddings come from the prior with
  the same seed; source and edit are decoded with the same seed. Per case: does the edited image
  show the target attribute (colour or shape), and the IoU of its object mask with the source
  image's. The baseline is the same target decoded without injection (cross_replace = self_replace
  = 0), i.e. plain text-to-image with the same seeds.
- Inpainting: `--inpaints` rendered 64-px scenes; the mask is the object's bounding box grown by
  3 px (what one would draw); the prompt names a new colour and shape (same size, position and
  background; never a held-out colour-shape pair), its embedding from the prior. Per case: mean |output − input| outside the mask
  (in 1/255 units) and whether the analyser finds the new colour and shape.
- Recolouring: `--recolors` rendered training-split scenes → CLIP image embedding → Recolour
  Embedding to a new colour → decoder with the empty prompt (a variation in another colour). Half
  the targets are the colour held out for the scene's shape (a pair no model saw). Per case: does
  the analyser find the new colour, the old shape and the old position.
- Latency at batch 1 with `--threads` torch threads, median of 3: plain decoding vs each node's
  sampling (P2P: source + edit; inpainting; a 6-frame strip).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from nodes.shapes import analyse, domain

ROOT = Path(__file__).resolve().parents[1]

P2P_DEFAULTS = {"cross_replace": 0.4, "self_replace": 0.0, "image_tokens": True}  # the node's defaults


class Stack:
    def __init__(self, path: Path, steps: int, guidance: float, prior_steps: int, embeddings: str = "prior"):
        import torch

        from nodes.unclip.api import load_clip, load_decoder, load_prior

        self.torch = torch
        self.clip, self.decoder = load_clip(path), load_decoder(path)
        self.prior = load_prior(path) if embeddings == "prior" else None
        self.steps, self.guidance, self.prior_steps = steps, guidance, prior_steps
        with torch.inference_mode():
            self.empty = self.clip.encode_text([""])

    def embed(self, prompt: str, seed: int, attrs: dict | None = None):
        """The image embedding for a prompt: the prior's (seeded), or with `--embeddings render` the CLIP
        image embedding of a rendered scene with the prompt's attributes (no prior needed)."""
        from nodes.unclip.api import sample_prior

        with self.torch.inference_mode():
            cond = self.clip.encode_text([prompt])
            if self.prior is None:
                a = attrs or {}
                scene = domain.make_scene(np.random.default_rng(seed), a["color"], a["background"], a["shape"],
                                          a["size"], a["position"])
                img = self.torch.from_numpy(domain.render(scene, 64).astype(np.float32) / 255).permute(2, 0, 1)
                return self.clip.encode_image(img[None]), cond
            emb = sample_prior(self.prior, cond, self.empty, guidance=4.0, steps=self.prior_steps,
                               generator=self.torch.Generator().manual_seed(seed))
        return emb, cond


def to_np(images) -> np.ndarray:
    return images.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def swap_cases(n: int, seed: int) -> list[dict]:
    """n cases: source attributes from the training split, one colour or shape word swapped."""
    rng = np.random.default_rng(seed)
    combos = domain.all_combos("train")
    cases = []
    for i in range(n):
        color, background, shape, size, position = combos[int(rng.integers(len(combos)))]
        src = {"color": color, "shape": shape, "size": size, "position": position, "background": background}
        tgt = dict(src)
        kind = "color" if i % 2 == 0 else "shape"
        # targets avoid the held-out (colour, shape) pairs the models never saw
        if kind == "color":
            tgt["color"] = str(rng.choice([c for c in domain.COLORS if c not in (color, background)
                                           and (c, shape) not in domain.HELDOUT_PAIRS]))
        else:
            tgt["shape"] = str(rng.choice([s for s in domain.SHAPES if s != shape
                                           and (color, s) not in domain.HELDOUT_PAIRS]))
        cases.append({"kind": kind, "source": src, "target": tgt, "seed": 1000 + i})
    return cases


def eval_p2p(stack: Stack, n: int, seed: int, params: dict, target: str = "prior", diff_amount: float = 0.35) -> dict:
    """target: the edited run's image embedding — `prior` (the prior on the target prompt, same seed) or
    `textdiff` (the source embedding moved by the text diff source → target prompt, `diff_amount` = θ)."""
    from nodes.edit.prompt2prompt import prompt_to_prompt
    from nodes.unclip.api import sample_decoder, text_diff

    torch = stack.torch
    rows = []
    for case in swap_cases(n, seed):
        src_prompt = domain.canonical_caption(case["source"])
        tgt_prompt = domain.canonical_caption(case["target"])
        emb_s, _ = stack.embed(src_prompt, case["seed"], case["source"])
        emb_t, cond_t = stack.embed(tgt_prompt, case["seed"], case["target"])
        if target == "textdiff":
            with torch.inference_mode():
                emb_t = text_diff(emb_s, stack.clip.encode_text([src_prompt]).embeds, cond_t.embeds, diff_amount)
        with torch.inference_mode():
            src, edit = prompt_to_prompt(stack.decoder, stack.clip, emb_s, emb_t, src_prompt, tgt_prompt,
                                         guidance=stack.guidance, steps=stack.steps, seed=case["seed"], **params)
            plain = sample_decoder(stack.decoder, emb_t, cond_t, stack.empty, guidance=stack.guidance,
                                   steps=stack.steps, generator=torch.Generator().manual_seed(case["seed"]))
        a_s, a_e, a_p = (analyse.analyse(to_np(x)[0]) for x in (src, edit, plain))
        key = case["kind"]
        # where the edited object should be: the source's own mask for a colour swap; for a shape swap
        # the target shape at the source object's centre and radius (two different shapes of one
        # radius overlap with IoU 0.52-0.61, except circle/square 0.83, so the source mask itself
        # cannot be the reference)
        layout = None
        if a_s.found:
            layout = a_s.mask if key == "color" else analyse.template_mask(
                case["target"]["shape"], a_s.center, a_s.radius, a_s.mask.shape[0])
        rows.append({
            "kind": key, "source": src_prompt, "target": tgt_prompt,
            "source_ok": a_s.attributes()[key] == case["source"][key],
            "edited": a_e.attributes()[key] == case["target"][key],
            "iou": analyse.mask_iou(a_s.mask, a_e.mask) if a_s.found and a_e.found else 0.0,
            "layout_iou": analyse.mask_iou(layout, a_e.mask) if layout is not None and a_e.found else 0.0,
            "baseline_edited": a_p.attributes()[key] == case["target"][key],
            "baseline_layout_iou": analyse.mask_iou(layout, a_p.mask) if layout is not None and a_p.found else 0.0,
            "baseline_iou": analyse.mask_iou(a_s.mask, a_p.mask) if a_s.found and a_p.found else 0.0,
        })

    def summary(sel: list[dict]) -> dict:
        if not sel:
            return {}
        return {
            "n": len(sel),
            "source_correct": float(np.mean([r["source_ok"] for r in sel])),
            "edited_attribute": float(np.mean([r["edited"] for r in sel])),
            "mean_iou": float(np.mean([r["iou"] for r in sel])),
            "iou_ge_0.7": float(np.mean([r["iou"] >= 0.7 for r in sel])),
            "edited_and_iou_ge_0.7": float(np.mean([r["edited"] and r["iou"] >= 0.7 for r in sel])),
            "mean_layout_iou": float(np.mean([r["layout_iou"] for r in sel])),
            "edited_and_layout_iou_ge_0.7": float(np.mean([r["edited"] and r["layout_iou"] >= 0.7 for r in sel])),
            "baseline_edited_and_layout_iou_ge_0.7": float(np.mean([r["baseline_edited"] and r["baseline_layout_iou"] >= 0.7
                                                                    for r in sel])),
            "baseline_edited_attribute": float(np.mean([r["baseline_edited"] for r in sel])),
            "baseline_mean_iou": float(np.mean([r["baseline_iou"] for r in sel])),
            "baseline_iou_ge_0.7": float(np.mean([r["baseline_iou"] >= 0.7 for r in sel])),
        }

    return {"all": summary(rows), "color": summary([r for r in rows if r["kind"] == "color"]),
            "shape": summary([r for r in rows if r["kind"] == "shape"]), "params": params, "target": target,
            "diff_amount": diff_amount, "cases": rows}


def inpaint_cases(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    combos = domain.all_combos("train")
    cases = []
    for i in range(n):
        color, background, shape, size, position = combos[int(rng.integers(len(combos)))]
        scene = domain.make_scene(rng, color, background, shape, size, position)
        new = scene.attributes()
        pairs = [(c, s) for c in domain.COLORS for s in domain.SHAPES
                 if c not in (color, background) and s != shape and (c, s) not in domain.HELDOUT_PAIRS]
        new["color"], new["shape"] = pairs[int(rng.integers(len(pairs)))]
        cases.append({"scene": scene, "new": new, "seed": 2000 + i})
    return cases


def box_mask(scene, side: int, margin: int) -> np.ndarray:
    """The bounding box of the object's exact mask, grown by `margin` px, as float (side, side)."""
    m = domain.object_mask(scene, side)
    ys, xs = np.nonzero(m)
    out = np.zeros((side, side), np.float32)
    out[max(0, ys.min() - margin):ys.max() + margin + 1, max(0, xs.min() - margin):xs.max() + margin + 1] = 1
    return out


def eval_inpaint(stack: Stack, n: int, seed: int, side: int = 64, margin: int = 3, strength: float = 1.0) -> dict:
    from nodes.edit.inpaint import inpaint

    torch = stack.torch
    rows = []
    for case in inpaint_cases(n, seed):
        image = domain.render(case["scene"], side).astype(np.float32) / 255.0
        mask = box_mask(case["scene"], side, margin)
        prompt = domain.canonical_caption(case["new"])
        emb, cond = stack.embed(prompt, case["seed"], case["new"])
        with torch.inference_mode():
            out = inpaint(stack.decoder, torch.from_numpy(image).permute(2, 0, 1)[None],
                          torch.from_numpy(mask)[None, None], emb, cond, stack.empty, stack.guidance, stack.steps,
                          case["seed"], strength=strength)
        out_np = to_np(out)[0]
        outside = mask == 0
        a = analyse.analyse(out_np)
        rows.append({
            "prompt": prompt,
            "outside_diff_255": float(np.abs(out_np[outside] - image[outside]).mean() * 255),
            "color": a.color == case["new"]["color"], "shape": a.shape == case["new"]["shape"],
            "position": a.position == case["new"]["position"],
        })
    return {
        "n": len(rows),
        "outside_mean_abs_diff_255_max": max(r["outside_diff_255"] for r in rows),
        "color": float(np.mean([r["color"] for r in rows])),
        "shape": float(np.mean([r["shape"] for r in rows])),
        "color_and_shape": float(np.mean([r["color"] and r["shape"] for r in rows])),
        "position_kept": float(np.mean([r["position"] for r in rows])),
        "cases": rows,
    }


def recolor_cases(n: int, seed: int) -> list[dict]:
    """n cases: a training-split scene and a new object colour. Even cases take the one colour held out
    for the scene's shape (e.g. a triangle → blue: a pair no model saw), odd ones another colour."""
    rng = np.random.default_rng(seed)
    held_for = {shape: color for color, shape in domain.HELDOUT_PAIRS}
    cases = []
    while len(cases) < n:
        scene = domain.sample_scene(rng, "train")
        if len(cases) % 2 == 0:
            new = held_for[scene.shape]
        else:
            new = str(rng.choice([c for c in domain.COLORS if c != scene.color
                                  and (c, scene.shape) not in domain.HELDOUT_PAIRS]))
        if new in (scene.color, scene.background):
            continue
        cases.append({"scene": scene, "color": new, "heldout_pair": (new, scene.shape) in domain.HELDOUT_PAIRS})
    return cases


def eval_recolor(stack: Stack, n: int, seed: int) -> dict:
    """Recolour Embedding on variations: a rendered scene → CLIP image embedding → recoloured → decoder
    (empty prompt, as variations are decoded). Per case: the analyser's colour, shape and position."""
    from nodes.shapes.recolor import fit_color_map, parse_color
    from nodes.unclip.api import sample_decoder

    torch = stack.torch
    cmap = fit_color_map(stack.clip)
    rows = []
    for i, case in enumerate(recolor_cases(n, seed)):
        s = case["scene"]
        img = torch.from_numpy(domain.render(s, 64).astype(np.float32) / 255).permute(2, 0, 1)[None]
        rgb = torch.tensor(parse_color(case["color"]), dtype=torch.float32) / 255
        with torch.inference_mode():
            emb = cmap.apply(stack.clip.encode_image(img), rgb)
            out = sample_decoder(stack.decoder, emb, stack.empty, stack.empty, guidance=stack.guidance,
                                 steps=stack.steps, generator=torch.Generator().manual_seed(seed + i))
        a = analyse.analyse(to_np(out)[0]).attributes()
        rows.append({"source": s.attributes(), "color": case["color"], "heldout_pair": case["heldout_pair"],
                     "found": a, "color_ok": a["color"] == case["color"], "shape_ok": a["shape"] == s.shape,
                     "position_ok": a["position"] == s.position})

    def summary(sel: list[dict]) -> dict:
        return {"n": len(sel), **{k: float(np.mean([r[k] for r in sel])) for k in ("color_ok", "shape_ok", "position_ok")},
                "color_and_shape": float(np.mean([r["color_ok"] and r["shape_ok"] for r in sel]))}

    return {"all": summary(rows), "heldout_pair_targets": summary([r for r in rows if r["heldout_pair"]]),
            "training_pair_targets": summary([r for r in rows if not r["heldout_pair"]]),
            "map_explained": cmap.explained, "cases": rows}


def latency(stack: Stack, repeats: int = 3) -> dict:
    from nodes.edit.inpaint import inpaint
    from nodes.edit.interpolate import decode_frames
    from nodes.edit.prompt2prompt import prompt_to_prompt
    from nodes.unclip.api import sample_decoder

    torch = stack.torch
    prompt = "a large red circle in the center on a white background"
    emb, cond = stack.embed(prompt, 0, {"color": "red", "shape": "circle", "size": "large", "position": "center",
                                        "background": "white"})
    image = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    g, s = stack.guidance, stack.steps
    jobs = {
        "plain_decode": lambda: sample_decoder(stack.decoder, emb, cond, stack.empty, guidance=g, steps=s,
                                               generator=torch.Generator().manual_seed(0)),
        "prompt_to_prompt": lambda: prompt_to_prompt(stack.decoder, stack.clip, emb, emb, prompt,
                                                     prompt.replace("red", "blue"), guidance=g, steps=s),
        "inpaint": lambda: inpaint(stack.decoder, image, mask, emb, cond, stack.empty, g, s, 0),
        "strip_6_frames": lambda: decode_frames(stack.decoder, emb.expand(6, -1), cond, stack.empty, g, s, 0),
    }
    out = {}
    with torch.inference_mode():
        for name, fn in jobs.items():
            fn()  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            out[name] = statistics.median(times)
    base = out["plain_decode"]
    return {"seconds": out, "ratio_to_plain": {k: v / base for k, v in out.items()},
            "strip_per_frame_ratio": out["strip_6_frames"] / 6 / base}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nodegraph eval edit", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "models" / "shapes-unclip"))
    p.add_argument("--swaps", type=int, default=40)
    p.add_argument("--inpaints", type=int, default=40)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--prior-steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=1.5)
    p.add_argument("--cross-replace", type=float, default=P2P_DEFAULTS["cross_replace"])
    p.add_argument("--self-replace", type=float, default=P2P_DEFAULTS["self_replace"])
    p.add_argument("--image-tokens", action=argparse.BooleanOptionalAction, default=P2P_DEFAULTS["image_tokens"])
    p.add_argument("--p2p-target", choices=["prior", "textdiff"], default="prior",
                   help="the edit's image embedding: the prior on the target prompt (same seed), or the source "
                        "embedding moved by the text diff")
    p.add_argument("--diff-amount", type=float, default=0.35, help="θ of the text diff (--p2p-target textdiff)")
    p.add_argument("--strength", type=float, default=1.0, help="inpainting strength")
    p.add_argument("--recolors", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--embeddings", choices=["prior", "render"], default="prior",
                   help="image embeddings from the prior (default) or CLIP-encoded renders of the attributes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", default="", help="comma-separated: p2p, inpaint, recolor, latency")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    stack = Stack(Path(args.model), args.steps, args.guidance, args.prior_steps, args.embeddings)
    skip = set(filter(None, args.skip.split(",")))
    report: dict = {"args": vars(args)}
    t0 = time.time()
    if "p2p" not in skip:
        params = {"cross_replace": args.cross_replace, "self_replace": args.self_replace,
                  "image_tokens": args.image_tokens}
        report["prompt_to_prompt"] = eval_p2p(stack, args.swaps, args.seed, params, args.p2p_target,
                                              args.diff_amount)
        print("prompt-to-prompt", json.dumps({k: report["prompt_to_prompt"][k] for k in ("all", "color", "shape")},
                                             indent=1), f"({time.time() - t0:.0f} s)", flush=True)
    if "inpaint" not in skip:
        report["inpaint"] = eval_inpaint(stack, args.inpaints, args.seed, strength=args.strength)
        print("inpaint", json.dumps({k: v for k, v in report["inpaint"].items() if k != "cases"}, indent=1),
              f"({time.time() - t0:.0f} s)", flush=True)
    if "recolor" not in skip:
        report["recolor"] = eval_recolor(stack, args.recolors, args.seed)
        print("recolor", json.dumps({k: v for k, v in report["recolor"].items() if k != "cases"}, indent=1),
              f"({time.time() - t0:.0f} s)", flush=True)
    if "latency" not in skip:
        report["latency"] = latency(stack)
        print("latency", json.dumps(report["latency"], indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
