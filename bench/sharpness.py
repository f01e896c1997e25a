"""Edge sharpness of the super-resolution cascade against exact 256 px renders of the same scenes. Run by hand.

    .venv/bin/python bench/sharpness.py                       # 48 held-out scenes, 12 prompts, 2 threads
    .venv/bin/python bench/sharpness.py --steps 2,3,4,6 --prompts 0   # the 256 stage's step count only
    .venv/bin/python bench/sharpness.py --flat-threshold 0 --prompts 0   # without the stage's flat-area gate

Edge width (`nodes.shapes.analyse.edge_width`) is the object's mean 10–90 % edge width in pixels of
the 256 px image; PSNR is against the exact render; flat RMS is the difference from the render, in
0–255 levels, where the render is flat (more than 3 px from its edges): the noise a stage adds
there. Scenes are the domain's held-out attribute combinations (seed 5101; the training script evaluates on seed 5001 and trains on the training split).

1. `64 → 256`: exact 64 px renders (the 4×4 area average of the 256 px render) → the 256 stage
   (2 steps, `fix_colors` on with `color_sigma` 8, `flat_threshold` 0.02, as in the workflows); `64 blurred →
   256`: the same input blurred (σ = 1 px at 64 px), about as soft as the 64 px upsampler's output;
2. `32 → 64 → 256`: exact 32 px renders → the shipped 64 px upsampler (7 steps) → the 256 stage;
3. `text → image`: `workflows/text2image.json` as shipped (its `upsample_256` node), through the engine, on full
   captions of
   held-out combinations (4 images each): each 256 px image against a 256 px render of the scene
   the analyser reads in it (shape, centre, radius, colours); and how often the analyser reads the
   same five attributes at 256 px as at 64 px (the `upsample` node's output).

A bicubic enlargement is the reference in 1 and 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def widths(images) -> float:
    """Mean edge width of images (B, 3, S, S) in [0, 1] (nan-safe)."""
    from nodes.shapes.analyse import edge_width

    return float(np.nanmean([edge_width(im.permute(1, 2, 0).numpy()) for im in images]))


def psnr(images, truth) -> float:
    import torch

    mse = ((images - truth) ** 2).mean((1, 2, 3)).clamp(min=1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def flat_rms(images, truth) -> float:
    """RMS difference (0–255 levels) from the render where the render is flat (farther than 3 px from any of its
    edges): noise and texture the stage adds to flat areas; a bicubic enlargement of an exact 64 px render
    has none there."""
    import torch.nn.functional as F

    dx = (truth[..., :, 1:] - truth[..., :, :-1]).abs().amax(1, keepdim=True)
    dy = (truth[..., 1:, :] - truth[..., :-1, :]).abs().amax(1, keepdim=True)
    edge = ((F.pad(dx, (0, 1)) + F.pad(dy, (0, 0, 0, 1))) > 0).float()
    flat = F.max_pool2d(edge, 7, stride=1, padding=3) == 0  # (B, 1, S, S)
    diff = ((images - truth) ** 2).mean(1, keepdim=True)[flat]
    return float(255 * diff.mean().sqrt())


def stage_rows(args, up64, up256, steps_list: list[int]) -> None:
    import torch
    import torch.nn.functional as F
    from torchvision.transforms.functional import gaussian_blur

    from nodes.shapes import domain
    from nodes.unclip.models import upsample
    from nodes.unclip.models.upsampler import upscale_condition

    scenes = domain.sample_scenes(args.seed, args.n, "heldout_combos")
    truth = torch.from_numpy(np.stack([domain.render(s, 256) for s in scenes])).permute(0, 3, 1, 2) / 255.0
    low64 = F.avg_pool2d(truth, 4)
    low32 = F.avg_pool2d(truth, 8)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with torch.inference_mode():
        mid = upsample(up64, low32, steps=7, generator=gen(), fix_colors=True) if "cascade" in args.inputs else None
    inputs = {"64 → 256": low64, "64 blurred → 256": gaussian_blur(low64, 7, 1.0), "32 → 64 → 256": mid}
    inputs = {name: x for (name, x), key in zip(inputs.items(), ("exact", "blurred", "cascade"), strict=True)
              if key in args.inputs.split(",")}
    print(f"{args.n} held-out scenes (seed {args.seed}); exact 256 px renders: edge width {widths(truth):.2f} px")
    print(f"{'input':<20}{'method':<22}{'edge px':>9}{'PSNR dB':>9}{'flat RMS':>9}{'s/image':>9}")
    for name, inp in inputs.items():
        out = upscale_condition(inp, 256).clamp(0, 1)
        print(f"{name:<20}{'bicubic':<22}{widths(out):>9.2f}{psnr(out, truth):>9.2f}{flat_rms(out, truth):>9.2f}"
              f"{'':>9}")
        for steps in steps_list:
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = torch.cat([upsample(up256, inp[i:i + 1], steps=steps, generator=gen(), fix_colors=True,
                                          color_sigma=args.color_sigma, flat_threshold=args.flat_threshold)
                                 for i in range(len(inp))])
            per = (time.perf_counter() - t0) / len(inp)
            print(f"{'':<20}{f'256 stage, {steps} steps':<22}{widths(out):>9.2f}{psnr(out, truth):>9.2f}"
                  f"{flat_rms(out, truth):>9.2f}{per:>9.2f}")


def text2image_rows(args) -> None:
    from nodegraph import Engine, Settings
    from nodes.shapes import analyse, domain

    settings = Settings(model_dirs=[args.models], output_dir=Path("/tmp/nodegraph-bench-out"),
                        temp_dir=Path("/tmp/nodegraph-bench-out/.temp"), entry_point_packs=False, threads=args.threads)
    engine = Engine.from_settings(settings)
    workflow = json.loads((ROOT / "workflows" / "text2image.json").read_text())
    rng = np.random.default_rng(args.seed)
    scenes = domain.sample_scenes(args.seed + 1, args.prompts, "heldout_combos")
    generated, truth, same = [], [], []
    for scene in scenes:
        workflow["nodes"]["prompt"]["inputs"]["value"] = domain.full_caption(scene, rng)
        run = engine.run(workflow, targets=["upsample", "upsample_256"])
        if not run.ok:
            raise SystemExit(f"text2image.json failed: {run.error}")
        for small, big in zip(run.outputs["upsample"]["images"], run.outputs["upsample_256"]["images"], strict=True):
            seen = analyse.analyse(big)
            same.append(seen.attributes() == analyse.analyse(small).attributes())
            if not seen.found:
                continue
            generated.append(analyse.edge_width(big))
            look = domain.Scene(color="", shape=seen.shape, size="", position="", background="",
                                fg_rgb=seen.color_rgb, bg_rgb=seen.background_rgb, cx=seen.center[0],
                                cy=seen.center[1], r=seen.radius)
            truth.append(analyse.edge_width(domain.render(look, big.shape[0])))
    print(f"\ntext → image (workflows/text2image.json + the 256 stage), {args.prompts} held-out-combination prompts, "
          f"{len(same)} images at {big.shape[0]} px")
    print(f"edge width: generated {np.nanmean(generated):.2f} px, renders of the same scenes {np.nanmean(truth):.2f} px "
          f"({len(generated)} images with an object)")
    print(f"analyser reads the same 5 attributes at 256 px as at 64 px: {np.mean(same):.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=ROOT / "models", help="a folder with shapes-unclip/ and "
                   "shapes-unclip-sr256/ (`python -m train upsampler_256` writes the latter into models/)")
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--prompts", type=int, default=12, help="text → image prompts (0: skip that part)")
    p.add_argument("--inputs", default="exact,blurred,cascade", help="rows: exact 64 px renders, the same "
                   "blurred, the 64 px upsampler's output (comma-separated)")
    p.add_argument("--steps", default="2", help="256 stage steps to compare, comma-separated (the workflows': 2)")
    p.add_argument("--seed", type=int, default=5101)
    p.add_argument("--color-sigma", type=float, default=8.0, help="the 256 stage's colour fix (the workflows' value)")
    p.add_argument("--flat-threshold", type=float, default=0.02, help="the 256 stage's flat_threshold (the "
                   "workflows' value; 0: off)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from nodes.unclip.models import load_upsampler

    up64 = load_upsampler(args.models / "shapes-unclip")
    up256 = load_upsampler(args.models / "shapes-unclip-sr256")
    if args.n:
        stage_rows(args, up64, up256, [int(s) for s in args.steps.split(",")])
    if args.prompts:
        text2image_rows(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
