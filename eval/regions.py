"""MultiDiffusion on the shipped Shapes models (`python -m eval regions`): region prompts and panoramas.

    nice -n 5 .venv/bin/python -m eval regions [--layouts 20] [--panoramas 4] [--strides 32,16,8]
                                               [--steps 25] [--isolate 1.0] [--seed 1000] [--json out.json] [--save DIR]

Judged by the pixel analyser (`nodes/shapes/analyse.py`), never by a learned model:

- Regions: `--layouts` seeded layouts on one 32 px decoder canvas (upsampled to 64 px): a background
  colour and three small objects of distinct colours (never a held-out colour–shape pair) at three
  grid positions at least two cells apart, each in its box (the position's centre ± 0.22 of the
  side), each prompt naming its object, position and the shared background. Per region: the
  analyser on the box's crop of the 64 px image finds the prompted colour and shape.
- Panoramas: `--panoramas` seeded prompts ("a small yellow star in the center on a blue
  background") on a 32×96 canvas, upsampled to 64×192, with windows every `--strides` pixels
  (32: side-by-side tiles, no fusion between them, the baseline).
- Seams, on every image: along each line where a window or region border lies, the median over the
  line of the colour step between the two pixels across it (RGB distance, 0–441); a seam is a step
  the whole line shares. Reported beside the same statistic on every other line of the image (the
  scene's own texture) and the scene's own edges (the mean of the largest 2 % of all steps: the
  object outlines).

`--seed` draws the layouts; the default is a validation seed nothing was tuned on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from nodes.shapes import analyse, domain

ROOT = Path(__file__).resolve().parents[1]
BOX_HALF = 0.22
OUTER = [p for p in domain.POSITION_NAMES if p != "center"]


def _cell(position: str) -> tuple[int, int]:
    return domain.POSITIONS[position]


def layouts(n: int, seed: int) -> list[dict]:
    """n layouts: background, and three (colour, shape, position) objects two grid cells apart."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        pos = [OUTER[i] for i in rng.choice(len(OUTER), 3, replace=False)]
        if any(max(abs(_cell(a)[0] - _cell(b)[0]), abs(_cell(a)[1] - _cell(b)[1])) < 2
               for i, a in enumerate(pos) for b in pos[i + 1:]):
            continue
        bg, *colors = [domain.COLORS[i] for i in rng.choice(len(domain.COLORS), 4, replace=False)]
        shapes = [domain.SHAPES[i] for i in rng.integers(len(domain.SHAPES), size=3)]
        if any((c, s) in domain.HELDOUT_PAIRS for c, s in zip(colors, shapes, strict=True)):
            continue
        objects = [{"color": c, "shape": s, "position": p, "size": "small", "background": bg}
                   for c, s, p in zip(colors, shapes, pos, strict=True)]
        out.append({"background": bg, "objects": objects})
    return out


def box(position: str) -> tuple[float, float, float, float]:
    col, row = domain.POSITIONS[position]
    cx, cy = domain.GRID[col], domain.GRID[row]
    return (max(0.0, cx - BOX_HALF), max(0.0, cy - BOX_HALF), min(1.0, cx + BOX_HALF), min(1.0, cy + BOX_HALF))


def line_steps(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W, 3) floats → median step across each vertical line x|x−1 (W−1,), each horizontal line (H−1,),
    and every step of the image (for the scene's own edges)."""
    dx = np.sqrt(((img[:, 1:] - img[:, :-1]) ** 2).sum(-1))  # (H, W-1): step between x-1 and x
    dy = np.sqrt(((img[1:] - img[:-1]) ** 2).sum(-1))
    return np.median(dx, axis=0), np.median(dy, axis=1), np.concatenate([dx.ravel(), dy.ravel()])


def seams(img: np.ndarray, xs: set[int], ys: set[int]) -> dict[str, float]:
    """Border lines (pixel index of the first pixel after the border) vs every other line and the edges."""
    vx, vy, every = line_steps(img)
    border = [vx[x - 1] for x in xs if 0 < x < img.shape[1]] + [vy[y - 1] for y in ys if 0 < y < img.shape[0]]
    other = [v for x, v in enumerate(vx, start=1) if x not in xs] + [v for y, v in enumerate(vy, start=1)
                                                                         if y not in ys]
    top = np.sort(every)[-max(1, len(every) // 50):]
    return {"border": float(max(border)) if border else 0.0, "other": float(max(other)),
            "other_median": float(np.median(other)), "edges": float(top.mean())}


class Stack:
    def __init__(self, path: Path, steps: int):
        import torch

        from nodes.unclip.api import load_clip, load_decoder, load_prior, load_upsampler

        self.torch = torch
        self.clip, self.prior = load_clip(path), load_prior(path)
        self.decoder, self.upsampler = load_decoder(path), load_upsampler(path)
        self.steps = steps
        with torch.inference_mode():
            self.empty = self.clip.encode_text([""])

    def render(self, prompts: list[str], width: int, height: int, paths, seed: int,
               isolate: float = 1.0) -> np.ndarray:
        """Prompts → prior embeddings → MultiDiffusion canvas → upsampler: uint8-range floats (H, W, 3)."""
        from nodes.compose.multidiffusion import sample_multidiffusion
        from nodes.unclip.api import generator, sample_prior, upsample

        with self.torch.inference_mode():
            cond = self.clip.encode_text(prompts)
            emb = sample_prior(self.prior, cond, self.empty, guidance=4.0, steps=25, generator=generator(seed))
            low = sample_multidiffusion(self.decoder, emb, cond, self.empty, paths, height, width, guidance=1.5,
                                        steps=self.steps, generator=generator(seed), isolate=isolate)
            big = upsample(self.upsampler, low, steps=10, generator=generator(seed), fix_colors=True)
        return big[0].permute(1, 2, 0).numpy() * 255.0


def prompt(obj: dict) -> str:
    return f"a small {obj['color']} {obj['shape']} {domain.POSITION_PHRASES[obj['position']][0]} " \
           f"on a {obj['background']} background"


def eval_regions(stack: Stack, n: int, seed: int, save: Path | None, isolate: float) -> dict:
    import torch

    from nodes.compose.multidiffusion import region_paths

    hits = {"color": [], "shape": [], "both": []}
    seam_rows, cases = [], []
    for k, lay in enumerate(layouts(n, seed)):
        boxes = [box(o["position"]) for o in lay["objects"]]
        masks = torch.zeros(3, 32, 32)
        for r, (x0, y0, x1, y1) in enumerate(boxes):
            masks[r, round(y0 * 32):round(y1 * 32), round(x0 * 32):round(x1 * 32)] = 1
        img = stack.render([prompt(o) for o in lay["objects"]], 32, 32, region_paths(masks, 32, 1.0), seed + k,
                           isolate)
        side = img.shape[0]
        found = []
        for o, (x0, y0, x1, y1) in zip(lay["objects"], boxes, strict=True):
            a = analyse.analyse(img[round(y0 * side):round(y1 * side), round(x0 * side):round(x1 * side)])
            ok_c, ok_s = a.color == o["color"], a.shape == o["shape"]
            hits["color"].append(ok_c)
            hits["shape"].append(ok_s)
            hits["both"].append(ok_c and ok_s)
            found.append({"color": a.color, "shape": a.shape})
        xs = {round(v * side) for b in boxes for v in (b[0], b[2])}
        ys = {round(v * side) for b in boxes for v in (b[1], b[3])}
        seam_rows.append(seams(img, xs, ys))
        cases.append({"layout": lay, "found": found})
        if save is not None:
            from PIL import Image

            Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).save(save / f"regions_{k:02d}.png")
        print(f"  layout {k}: {found}", flush=True)
    return {"regions": len(hits["both"]), **{k: float(np.mean(v)) for k, v in hits.items()},
            "layouts_all_right": float(np.mean([all(hits["both"][3 * i:3 * i + 3]) for i in range(len(cases))])),
            "seams": {s: float(np.max([r[s] for r in seam_rows])) for s in ("border", "other", "other_median")},
            "edges_min": float(np.min([r["edges"] for r in seam_rows])), "cases": cases}


def eval_panoramas(stack: Stack, n: int, seed: int, strides: list[int], save: Path | None) -> dict:
    from nodes.compose.multidiffusion import panorama_paths, window_starts

    rng = np.random.default_rng(seed + 1)
    out = {}
    prompts = []
    for _ in range(n):
        bg, color = (domain.COLORS[i] for i in rng.choice(len(domain.COLORS), 2, replace=False))
        prompts.append(f"a small {color} {domain.SHAPES[rng.integers(len(domain.SHAPES))]} in the center "
                       f"on a {bg} background")
    for stride in strides:
        rows = []
        t0 = time.time()
        for k, text in enumerate(prompts):
            img = stack.render([text], 96, 32, panorama_paths(32, 96, 32, stride, 1), seed + k)
            scale = img.shape[0] // 32
            xs = {scale * v for x0 in window_starts(96, 32, stride) for v in (x0, x0 + 32)}
            rows.append(seams(img, xs, set()))
            if save is not None:
                from PIL import Image

                Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).save(
                    save / f"panorama_s{stride}_{k:02d}.png")
        out[str(stride)] = {"border_max": float(np.max([r["border"] for r in rows])),
                            "border_mean": float(np.mean([r["border"] for r in rows])),
                            "other_max": float(np.max([r["other"] for r in rows])),
                            "other_median": float(np.median([r["other_median"] for r in rows])),
                            "edges_min": float(np.min([r["edges"] for r in rows])),
                            "seconds_per_image": (time.time() - t0) / len(prompts)}
        print(f"  stride {stride}: {out[str(stride)]}", flush=True)
    return {"prompts": prompts, "strides": out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nodegraph eval regions", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "models" / "shapes-unclip"))
    p.add_argument("--layouts", type=int, default=20)
    p.add_argument("--panoramas", type=int, default=4)
    p.add_argument("--strides", default="32,16,8")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--seed", type=int, default=1000, help="layout seed (1000: validation; tune on another)")
    p.add_argument("--isolate", type=float, default=1.0, help="regions: the node's isolate fraction")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--save", default=None, help="folder for the images")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    save = Path(args.save) if args.save else None
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
    stack = Stack(Path(args.model), args.steps)
    report: dict = {"args": vars(args)}
    if args.layouts:
        report["regions"] = eval_regions(stack, args.layouts, args.seed, save, args.isolate)
        print("regions", json.dumps({k: v for k, v in report["regions"].items() if k != "cases"}), flush=True)
    if args.panoramas:
        strides = [int(s) for s in args.strides.split(",") if s]
        report["panoramas"] = eval_panoramas(stack, args.panoramas, args.seed, strides, save)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
