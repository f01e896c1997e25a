"""SAM on held-out Shapes: mean IoU against the exact masks (point, box, automatic) and latency. Run by hand.

    .venv/bin/python bench/sam_eval.py                                 # 200 held-out scenes at 128 px, 2 threads
    .venv/bin/python bench/sam_eval.py --objects 2 --sizes 64,128,256  # two-object scenes at three sizes
    .venv/bin/python bench/sam_eval.py --model /path/sam_vit_b_01ec64.pth   # any SAM checkpoint

Held-out scenes: half from the domain's held-out attribute combinations, half from its held-out
colour–shape pairs (seeds 2024 / 2025; training used the training split with seed 0). With
`--objects 2` each image holds two objects of one split (`domain.two_object_scenes`: other grid
cells, other colours, apart) and every prompt is asked once per object. Everything goes through
the pack's own code (the loader, ``encode`` = SamPredictor.set_image, the prompt node =
SamPredictor.predict), with the node's defaults unless said:

- point: one positive point at a random pixel of the object (seeded), 'best' of SAM's 3 masks,
  outline refined (`refine` on, as workflows/sam_mask.json; `nodes.sam.refine`); every prompt below is refined too;
- point, raw: the same without the refinement (SAM's own upsampled mask);
- point (centroid): one positive point at the object's centroid pixel when it lies on the object;
- point single: the same random point, SAM's single-mask output;
- box: the exact bounding box of the object, single-mask output;
- auto best-match: SamAutomaticMaskGenerator (16×16 points, the node's thresholds); for each object
  the IoU of the generated mask that best matches it (0 when none), and how many masks per image;
- auto picked (one object only): the node's default pick ('best_score') with max_area 0.5 (drops
  the background).

Latency (median per call, after a warm-up): embedding one image; one point prompt on an embedded
image; one automatic-mask call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LABELS = {"point": "point (random pixel, best)", "point_raw": "point (random, raw mask)",
          "point_centroid": "point (centroid, best)",
          "point_single": "point (random, single)", "box": "box (exact bbox)",
          "auto_best": "auto best-match", "auto_picked": "auto picked (best_score)"}


def iou(m: np.ndarray, t: np.ndarray) -> float:
    return float((m & t).sum() / max(1, (m | t).sum()))


def held_out_images(seed: int, n: int, objects: int):
    """[(scenes of one image, ...)]: half held-out attribute combinations, half held-out colour–shape pairs."""
    from nodes.shapes import domain

    half = n // 2
    if objects == 1:
        return [(s,) for s in domain.sample_scenes(seed, half, "heldout_combos")
                + domain.sample_scenes(seed + 1, n - half, "heldout_pairs")]
    return (domain.two_object_scenes(seed, half, "heldout_combos")
            + domain.two_object_scenes(seed + 1, n - half, "heldout_pairs"))


def evaluate(sam, handle, images, size: int, seed: int, auto_n: int) -> dict:
    """IoU lists per prompt kind, per-shape point IoU, and latencies, for one image size."""
    import torch
    from segment_anything import SamAutomaticMaskGenerator

    from nodes.sam.encode import encode
    from nodes.sam.prompt import predictor_for
    from nodes.sam.refine import predict
    from nodes.shapes import domain

    rng = np.random.default_rng(seed)
    res: dict[str, list[float]] = {k: [] for k in (*LABELS, "auto_count")}
    times: dict[str, list[float]] = {"embed": [], "point": [], "auto": []}
    by_shape: dict[str, list[float]] = {}
    generator = SamAutomaticMaskGenerator(sam, points_per_side=16, points_per_batch=64, pred_iou_thresh=0.8,
                                          stability_score_thresh=0.8)
    with torch.inference_mode():
        for i, scenes in enumerate(images):
            image_u8, truths = domain.render_layers(list(scenes), size)
            t = time.perf_counter()
            emb = encode(handle, image_u8[None].astype(np.float32) / 255.0)
            times["embed"].append(time.perf_counter() - t)
            pred = predictor_for(emb, 0)
            found = None
            if i < auto_n:
                t = time.perf_counter()
                found = generator.generate(image_u8)
                times["auto"].append(time.perf_counter() - t)
                res["auto_count"].append(len(found))
            guide = image_u8.astype(np.float32) / 255.0
            for scene, truth in zip(scenes, truths, strict=True):
                ys, xs = np.nonzero(truth)
                k = int(rng.integers(len(xs)))
                pt = np.array([[xs[k], ys[k]]], np.float32)
                t = time.perf_counter()
                masks, scores = predict(pred, guide, True, point_coords=pt, point_labels=np.array([1]),
                                        multimask_output=True)
                times["point"].append(time.perf_counter() - t)
                res["point"].append(iou(masks[int(np.argmax(scores))], truth))
                by_shape.setdefault(f"{scene.shape}/{scene.size}", []).append(res["point"][-1])
                masks, scores = predict(pred, guide, False, point_coords=pt, point_labels=np.array([1]),
                                        multimask_output=True)
                res["point_raw"].append(iou(masks[int(np.argmax(scores))], truth))
                masks, _ = predict(pred, guide, True, point_coords=pt, point_labels=np.array([1]),
                                   multimask_output=False)
                res["point_single"].append(iou(masks[0], truth))
                cy, cx = int(round(ys.mean())), int(round(xs.mean()))
                if truth[cy, cx]:
                    masks, scores = predict(pred, guide, True, point_coords=np.array([[cx, cy]], np.float32),
                                            point_labels=np.array([1]), multimask_output=True)
                    res["point_centroid"].append(iou(masks[int(np.argmax(scores))], truth))
                box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)
                masks, _ = predict(pred, guide, True, box=box, multimask_output=False)
                res["box"].append(iou(masks[0], truth))
                if found is not None:
                    res["auto_best"].append(max((iou(m["segmentation"], truth) for m in found), default=0.0))
                    if len(scenes) == 1:
                        small = [m for m in found if m["area"] <= 0.5 * truth.size]
                        small.sort(key=lambda m: m["predicted_iou"], reverse=True)
                        res["auto_picked"].append(iou(small[0]["segmentation"], truth) if small else 0.0)
    return {"iou": res, "by_shape": by_shape, "times": times}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "models" / "sam-shapes"))
    p.add_argument("--model-type", default="auto")
    p.add_argument("--n", type=int, default=200, help="images (each holds --objects objects)")
    p.add_argument("--objects", type=int, choices=(1, 2), default=1)
    p.add_argument("--sizes", default="128", help="image sizes, comma-separated (e.g. 64,128,256)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--auto-n", type=int, default=None, help="images for the automatic masks (default: n)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from nodegraph import ModelHandle
    from nodes.sam.model import load_sam, stock_type

    t0 = time.perf_counter()
    sam, config = load_sam(args.model, args.model_type)
    load_s = time.perf_counter() - t0
    handle = ModelHandle(sam, args.model, "sam.SAM")
    images = held_out_images(args.seed, args.n, args.objects)
    auto_n = args.n if args.auto_n is None else args.auto_n

    name = stock_type(config) or Path(args.model).name
    params = sum(p.numel() for p in sam.parameters()) / 1e6
    print(f"model {name}: {params:.2f} M parameters, {config['img_size']}-px encoder, "
          f"{config['img_size'] // config['patch_size']}² embedding; loaded in {load_s:.2f} s")
    ms = lambda xs: 1000 * statistics.median(xs[1:] or xs)  # noqa: E731 - skip the warm-up call
    for size in (int(s) for s in args.sizes.split(",")):
        out = evaluate(sam, handle, images, size, args.seed, auto_n)
        print(f"\nheld-out images: {args.n} with {args.objects} object(s) at {size} px (seeds {args.seed}/"
              f"{args.seed + 1}); threads {args.threads}")
        print(f"{'prompt':<28}{'mean IoU':>9}{'IoU≥0.85':>10}{'n':>6}")
        for key, label in LABELS.items():
            v = np.array(out["iou"][key])
            if len(v):
                print(f"{label:<28}{v.mean():>9.3f}{(v >= 0.85).mean():>10.2f}{len(v):>6}")
        if out["iou"]["auto_count"]:
            print(f"auto masks per image: mean {np.mean(out['iou']['auto_count']):.1f}")
        print("point IoU by shape/size: " + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in sorted(out["by_shape"].items())))
        t = out["times"]
        print(f"latency (median): embed {ms(t['embed']):.1f} ms/image, point {ms(t['point']):.1f} ms/prompt"
              + (f", auto masks {ms(t['auto']):.0f} ms/image" if t["auto"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
