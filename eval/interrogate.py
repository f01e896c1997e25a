"""The CLIP interrogator on the shipped Shapes CLIP (`python -m eval interrogate`): captions and round trips.

    nice -n 5 .venv/bin/python -m eval interrogate [--renders 100] [--generated 24] [--round-trip 16]
                                                   [--passes 4] [--reference 512] [--cache-weight 30]
                                                   [--seed 2000] [--cache runs/interrogate] [--json out.json]

Captions come from `nodes/interrogate/rank.py` with the Shapes vocabulary (`domain.vocabulary`),
the interrogator's library as the CLIP Interrogator node runs it, calibrated against `--reference`
renders of training-split scenes and with those renders and their true attributes as a reference
cache (`--cache-weight`), as `workflows/interrogate.json` does (`--reference 0`: plain cosine); they are read back into
attributes with `domain.attributes_of` and judged against:

- renders: `--renders` scenes of the held-out splits (unseen attribute combinations and held-out
  colour–shape pairs, half each) rendered at 64 px; truth: the scene's attributes;
- generated: `--generated` images of `workflows/text2image.json` on the canonical captions of other
  held-out scenes (kept per seed and count in `--cache`, so re-scoring costs no generation); truth:
  what the pixel analyser reads in each image (images where it finds no object are left out and counted);
- round trip: the captions of the first `--round-trip` renders → `workflows/text2image.json` → the
  analyser on the new image, against the render's attributes (and, beside it, the same text2image
  run on the render's true canonical caption: the generator's own error, the round trip's floor).

The figure of each set: colour, shape, position and background each, and all four right together.
`--seed` draws the scenes (2000: validation; nothing was tuned on it).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nodes.shapes import analyse, domain

ROOT = Path(__file__).resolve().parents[1]
NAMED = ("color", "shape", "position", "background")


def score(found: list[dict], truth: list[dict]) -> dict[str, float]:
    out = {a: float(np.mean([f.get(a) == t[a] for f, t in zip(found, truth, strict=True)])) for a in NAMED}
    out["all_four"] = float(np.mean([all(f.get(a) == t[a] for a in NAMED) for f, t in zip(found, truth, strict=True)]))
    out["n"] = len(found)
    return out


CALIBRATED = ("color", "background")  # workflows/interrogate.json's `calibrated` (tuned on seed 3000)
CACHE_WEIGHT, CACHE_SHARPNESS = 30.0, 5.0  # its reference cache (tuned on seeds 1000 and 3000)


class Captioner:
    def __init__(self, model: Path, passes: int, references: int = 0, calibrated: tuple[str, ...] | None = CALIBRATED,
                 cache_weight: float = CACHE_WEIGHT, cache_sharpness: float = CACHE_SHARPNESS):
        import torch

        from nodes.unclip.api import load_clip

        self.torch, self.clip, self.passes, self.calibrated = torch, load_clip(model), passes, calibrated
        self.cache_weight, self.cache_sharpness = cache_weight, cache_sharpness
        self.reference = self.labels = None
        if references:  # the Shapes Vocabulary node's reference renders and labels, at its default seed
            scenes = domain.sample_scenes(0, references, "train")
            self.reference = self.embed(np.stack([domain.render(s, 64) for s in scenes]))
            self.labels = [domain.choices_of(s.attributes()) for s in scenes]

    def embed(self, images: np.ndarray):
        x = self.torch.from_numpy(images.astype(np.float32) / 255).permute(0, 3, 1, 2)
        with self.torch.inference_mode():
            return self.torch.cat([self.clip.encode_image(x[i:i + 64]) for i in range(0, len(x), 64)])

    def __call__(self, images: np.ndarray) -> list:
        """uint8 (B, H, W, 3) → Captions."""
        from nodes.interrogate.rank import interrogate

        emb = self.embed(images)
        with self.torch.inference_mode():
            return interrogate(lambda texts: self.clip.encode_text(texts).embeds, emb, domain.VOCABULARY_TEMPLATE,
                               domain.vocabulary(), passes=self.passes, reference=self.reference,
                               calibrated=self.calibrated, reference_labels=self.labels,
                               cache_weight=self.cache_weight, cache_sharpness=self.cache_sharpness)


def held_out_scenes(n: int, seed: int) -> list[domain.Scene]:
    half = n // 2
    return domain.sample_scenes(seed, n - half, "heldout_combos") + domain.sample_scenes(seed + 1, half,
                                                                                          "heldout_pairs")


def generated_images(runner, n: int, seed: int, cache: Path | None = None) -> np.ndarray:
    """`workflows/text2image.json`'s images (n, H, W, 3) uint8 on the canonical captions of n held-out scenes
    of `seed`; kept in `cache/generated_<seed>_<n>.npz` (with their prompts, checked on reading) so
    that re-scoring the captioner on the same images costs no generation. Delete the file after
    changing the models or the workflow."""
    prompts = [domain.canonical_caption(s.attributes()) for s in held_out_scenes(n, seed + 10)]
    path = None if cache is None else cache / f"generated_{seed}_{n}.npz"
    if path is not None and path.exists():
        saved = np.load(path)
        if list(saved["prompts"]) == prompts:
            return saved["images"]
    images = np.concatenate([runner().text(prompts[i:i + 8], seed + i, 1) for i in range(0, n, 8)])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, images=images, prompts=np.array(prompts))
    return images


def analysed(images: np.ndarray) -> list[dict]:
    out = []
    for img in images:
        a = analyse.analyse(img)
        out.append(a.attributes() if a.found else {})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nodegraph eval interrogate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "models" / "shapes-unclip"))
    p.add_argument("--renders", type=int, default=100)
    p.add_argument("--generated", type=int, default=24)
    p.add_argument("--round-trip", type=int, default=16)
    p.add_argument("--passes", type=int, default=4)
    p.add_argument("--reference", type=int, default=512, help="reference renders to calibrate against and to "
                   "cache (0: none)")
    p.add_argument("--cache-weight", type=float, default=CACHE_WEIGHT, help="weight of the reference cache "
                   "(Tip-Adapter; 0: off)")
    p.add_argument("--cache-sharpness", type=float, default=CACHE_SHARPNESS)
    p.add_argument("--calibrated", default=",".join(CALIBRATED), help="comma-separated slots ranked with the "
                   "calibration ('': all)")
    p.add_argument("--seed", type=int, default=2000, help="scene seed (2000: validation; tune on another)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=str(ROOT / "runs" / "interrogate"), help="folder keeping the generated "
                   "images per seed and count ('': none)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    caption = Captioner(Path(args.model), args.passes, args.reference,
                        tuple(w for w in args.calibrated.split(",") if w) or None, args.cache_weight,
                        args.cache_sharpness)
    report: dict = {"args": vars(args)}
    t0 = time.time()
    scenes = held_out_scenes(args.renders, args.seed)
    renders = np.stack([domain.render(s, 64) for s in scenes])
    caps = caption(renders)
    found = [domain.attributes_of(c.choices) for c in caps]
    truth = [s.attributes() for s in scenes]
    report["renders"] = score(found, truth)
    report["renders"]["seconds_per_image"] = (time.time() - t0) / len(scenes)
    for split in ("heldout_combos", "heldout_pairs"):
        idx = [i for i, s in enumerate(scenes) if domain.split_of(s.color, s.background, s.shape, s.size,
                                                                   s.position) == split]
        report[f"renders_{split}"] = score([found[i] for i in idx], [truth[i] for i in idx])
        print(split, json.dumps(report[f"renders_{split}"]), flush=True)
    report["examples"] = [{"truth": domain.canonical_caption(s.attributes()), "caption": c.text}
                          for s, c in list(zip(scenes, caps, strict=True))[:6]]
    print("renders", json.dumps(report["renders"]), flush=True)

    @functools.cache
    def runner():
        from eval.text2image import Runner

        return Runner(Path(args.model).parent, args.threads, Path(tempfile.mkdtemp()))

    if args.generated:
        images = generated_images(runner, args.generated, args.seed, Path(args.cache) if args.cache else None)
        truth = analysed(images)
        keep = [i for i, t in enumerate(truth) if t]
        gen_caps = caption(images[keep])
        report["generated"] = score([domain.attributes_of(c.choices) for c in gen_caps], [truth[i] for i in keep])
        report["generated"]["no_object"] = len(truth) - len(keep)
        print("generated", json.dumps(report["generated"]), flush=True)
    if args.round_trip:
        k = min(args.round_trip, len(scenes))
        back = runner().text([c.text for c in caps[:k]], args.seed + 100, 1)
        floor = runner().text([domain.canonical_caption(s.attributes()) for s in scenes[:k]], args.seed + 100, 1)
        truth = [s.attributes() for s in scenes[:k]]
        report["round_trip"] = {"from_caption": score(analysed(back), truth),
                                "from_true_caption": score(analysed(floor), truth)}
        print("round trip", json.dumps(report["round_trip"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
