"""Evaluation of the shipped Shapes unCLIP stack, judged by the pixel analyser (`python -m eval shapes`).

For fixed, seeded prompt sets that no training caption described — full captions of attribute
combinations held out of training (`unseen`) and of the held-out (colour, shape) pairs
(`heldout_pairs`) — it generates text → prior → decoder → upsampler through the model library and
reports, per set, the analyser's accuracy on object colour, shape, size, position and background,
the CLIP score (100 × cosine of the generated image's and the prompt's embeddings, shipped CLIP),
both sets once more through `workflows/text2image_factored.json`'s path (the same prompts →
Factor Out Colour → prior → Recolour Embedding to the colour it read → decoder with the prompt;
`unseen_factored`, `heldout_pairs_factored`), the held-out pairs through `workflows/recolor.json`'s
path (the prompt without its colour → prior → Recolour Embedding to the named colour → decoder;
`heldout_pairs_recolor`),
the same with the prior replaced by the text embedding itself (the paper's ablation), variation
faithfulness (a rendered image → CLIP image embedding → decoder → upsampler; attributes kept), and
latency per image and stage at batch 1 on this machine.

    python -m eval shapes [--quick] [--n 160] [--json out.json]     # or: nodegraph eval shapes ...
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from nodes.shapes import analyse, domain
from nodes.shapes.textcolor import DEFAULT_METHOD as FACTOR_METHOD  # Factor Out Colour's defaults
from nodes.shapes.textcolor import DEFAULT_STRENGTH as FACTOR_STRENGTH
from nodes.shapes.textcolor import Method as FactorMethod

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "shapes-unclip"
TARGETS = {
    "unseen": {"color": 0.90, "shape": 0.90, "position": 0.85, "size": 0.85, "background": 0.80},
    "heldout_pairs": {"color": 0.75, "shape": 0.75},
    # the same targets through workflows/text2image_factored.json (the same plain prompts)
    "unseen_factored": {"color": 0.90, "shape": 0.90, "position": 0.85, "size": 0.85, "background": 0.80},
    "heldout_pairs_factored": {"color": 0.75, "shape": 0.75},
    "variations": {"color": 0.80, "shape": 0.80},
}


@dataclass
class Settings:
    prior_guidance: float = 4.0
    decoder_guidance: float = 1.5
    prior_steps: int = 25
    decoder_steps: int = 25
    upsample_steps: int = 7
    scheduler: str | None = None
    batch: int = 16
    upsample: bool = True


def prompt_set(split: str, n: int, seed: int) -> list[tuple[str, dict[str, str]]]:
    """n (prompt, attributes) pairs of full captions from a held-out split, seeded."""
    rng = np.random.default_rng(seed)
    scenes = domain.sample_scenes(seed, n, split)  # type: ignore[arg-type]
    return [(domain.full_caption(s, rng), s.attributes()) for s in scenes]


def prompt_set_without_color(split: str, n: int, seed: int) -> list[tuple[str, dict[str, str]]]:
    """The scenes of `prompt_set(split, n, seed)`, captioned without their colour (which is in the attributes)."""
    rng = np.random.default_rng(seed + 7)
    scenes = domain.sample_scenes(seed, n, split)  # type: ignore[arg-type]
    no_color = tuple(a for a in domain.ATTRIBUTES if a != "color")
    return [(domain.caption(s, rng, include=no_color), s.attributes()) for s in scenes]


def _accuracy(results: list[analyse.Analysis], truths: list[dict[str, str]]) -> dict[str, float]:
    out = {a: float(np.mean([r.attributes()[a] == t[a] for r, t in zip(results, truths, strict=True)]))
           for a in domain.ATTRIBUTES}
    out["all"] = float(np.mean([all(r.attributes()[a] == t[a] for a in domain.ATTRIBUTES)
                                for r, t in zip(results, truths, strict=True)]))
    out["found"] = float(np.mean([r.found for r in results]))
    return out


class Stack:
    """The four shipped models and the full text → image path, in batches."""

    def __init__(self, path: Path, settings: Settings):
        import torch

        from nodes.unclip.api import load_clip, load_decoder, load_prior, load_upsampler

        self.torch = torch
        self.s = settings
        self.clip = load_clip(path)
        self.prior = load_prior(path)
        self.decoder = load_decoder(path)
        self.upsampler = load_upsampler(path) if settings.upsample else None
        with torch.no_grad():
            self.empty = self.clip.encode_text([""])

    @cached_property
    def color_map(self):
        """Recolour Embedding's map of the shipped CLIP's image space."""
        from nodes.shapes.recolor import fit_color_map

        return fit_color_map(self.clip)

    @cached_property
    def text_color_map(self):
        """Factor Out Colour's map of the shipped CLIP's text tower."""
        from nodes.shapes.textcolor import fit_text_color_map

        return fit_text_color_map(self.clip)

    def gen(self, seed: int):
        return self.torch.Generator().manual_seed(seed)

    def text_to_image(self, prompts: list[str], seed: int, use_prior: bool = True, recolor: list[str] | None = None,
                      factor: float | None = None, factor_method: str = FACTOR_METHOD):
        """(B, 3, S, S) images in [0, 1] for prompts; seed offsets per stage. `recolor`: a colour name per
        prompt, applied to the prior's samples with Recolour Embedding's fitted map (the workflow
        `recolor.json`). `factor`: Factor Out Colour (`factor_method`, at this strength for "linear")
        before the prior, then Recolour to the colour it read (the workflow `text2image_factored.json`)."""
        from nodes.shapes.recolor import parse_color
        from nodes.shapes.textcolor import factor_encoding
        from nodes.unclip.api import sample_decoder, sample_prior, upsample

        s = self.s
        with self.torch.no_grad():
            cond = self.clip.encode_text(prompts)
            prior_cond = cond
            if factor is not None:
                prior_cond, recolor, _ = factor_encoding(self.text_color_map, self.clip, cond, prompts, factor_method,
                                                         factor)
            if use_prior:
                emb = sample_prior(self.prior, prior_cond, self.empty, guidance=s.prior_guidance, steps=s.prior_steps,
                                   generator=self.gen(seed))
            else:
                emb = cond.embeds  # the paper's ablation: the text embedding in place of the image embedding
            if recolor is not None:
                # a prompt read with two colours ("orange/purple") goes to the prior whole and keeps its
                # sample here: the workflow's Recolour Embedding gives the two their roles from the sample
                recolor = ["" if "/" in c else c for c in recolor]
                rgb = self.torch.tensor([parse_color(c) if c else (0, 0, 0) for c in recolor],
                                        dtype=self.torch.float32) / 255
                keep = self.torch.tensor([not c for c in recolor])[:, None]
                emb = self.torch.where(keep, emb, self.color_map.apply(emb, rgb))
            images = sample_decoder(self.decoder, emb, cond, self.empty, guidance=s.decoder_guidance,
                                    steps=s.decoder_steps, generator=self.gen(seed + 1), scheduler=s.scheduler)
            if self.upsampler is not None:
                images = upsample(self.upsampler, images, steps=s.upsample_steps, generator=self.gen(seed + 2),
                                  fix_colors=True)
        return images

    def variations(self, images, seed: int):
        from nodes.unclip.api import sample_decoder, upsample

        s = self.s
        with self.torch.no_grad():
            emb = self.clip.encode_image(images)
            out = sample_decoder(self.decoder, emb, self.empty, self.empty, guidance=s.decoder_guidance,
                                 steps=s.decoder_steps, generator=self.gen(seed + 1), scheduler=s.scheduler)
            if self.upsampler is not None:
                out = upsample(self.upsampler, out, steps=s.upsample_steps, generator=self.gen(seed + 2), fix_colors=True)
        return out

    def clip_score(self, images, prompts: list[str]) -> np.ndarray:
        """100 × cosine(image embedding, text embedding), per image."""
        torch = self.torch
        with torch.no_grad():
            a = torch.nn.functional.normalize(self.clip.encode_image(images), dim=-1)
            b = torch.nn.functional.normalize(self.clip.encode_text(prompts).embeds, dim=-1)
        return (100 * (a * b).sum(-1)).numpy()


def _batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield i, items[i:i + size]


def _to_numpy(images) -> list[np.ndarray]:
    return [im for im in (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)]


def run_text_split(stack: Stack, pairs, seed: int, use_prior: bool = True, save: Callable | None = None,
                   recolor: bool = False, score_with: list[str] | None = None, factor: float | None = None,
                   factor_method: str = FACTOR_METHOD) -> dict:
    """Generate for (prompt, attributes) pairs and judge. `recolor`: recolour the prior's samples to each
    pair's colour; `factor`: the text2image_factored.json path (`factor_method`; this strength for "linear");
    `score_with`: the texts the CLIP score compares with (default: the prompts)."""
    results, truths, scores = [], [], []
    t0 = time.time()
    for i, chunk in _batched(pairs, stack.s.batch):
        prompts = [p for p, _ in chunk]
        colors = [a["color"] for _, a in chunk] if recolor else None
        images = stack.text_to_image(prompts, seed + 1000 * i, use_prior=use_prior, recolor=colors, factor=factor,
                                     factor_method=factor_method)
        texts = prompts if score_with is None else score_with[i:i + len(chunk)]
        scores.extend(stack.clip_score(images, texts).tolist())
        for (_, attrs), img in zip(chunk, _to_numpy(images), strict=True):
            results.append(analyse.analyse(img))
            truths.append(attrs)
            if save is not None:
                save(img, attrs)
    acc = _accuracy(results, truths)
    acc["clip_score"] = float(np.mean(scores))
    acc["n"] = len(pairs)
    acc["seconds_per_image_batched"] = (time.time() - t0) / max(1, len(pairs))
    return acc


def run_variations(stack: Stack, n: int, seed: int) -> dict:
    import torch

    scenes = domain.sample_scenes(seed, n, "heldout_combos")
    kept, gt_results = [], []
    for i, chunk in _batched(scenes, stack.s.batch):
        src = torch.from_numpy(np.stack([domain.render(s, 64) for s in chunk])).permute(0, 3, 1, 2).float() / 255
        out = stack.variations(src, seed + 1000 * i)
        for s, img in zip(chunk, _to_numpy(out), strict=True):
            kept.append(analyse.analyse(img))
            gt_results.append(s.attributes())
    return {**_accuracy(kept, gt_results), "n": n}


def reference_clip_score(stack: Stack, pairs) -> float:
    """CLIP score of the ground-truth renders of the same prompts (the ceiling)."""
    import torch

    imgs = torch.from_numpy(np.stack([domain.render(domain.make_scene(np.random.default_rng(i), **_named(a)), 64)
                                      for i, (_, a) in enumerate(pairs)])).permute(0, 3, 1, 2).float() / 255
    return float(np.mean(stack.clip_score(imgs, [p for p, _ in pairs])))


def _named(attrs: dict[str, str]) -> dict[str, str]:
    return {"color": attrs["color"], "background": attrs["background"], "shape": attrs["shape"],
            "size": attrs["size"], "position": attrs["position"]}


def latency(stack: Stack, repeats: int = 3) -> dict[str, float]:
    """Seconds per image at batch 1 for each stage and end to end (median of `repeats`)."""
    from nodes.unclip.api import sample_decoder, sample_prior, upsample

    torch = stack.torch
    s = stack.s
    times: dict[str, list[float]] = {"text_encode": [], "prior": [], "decoder": [], "upsample": [], "total": []}
    prompt = "a small red circle in the top left corner on a white background"
    with torch.no_grad():
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            cond = stack.clip.encode_text([prompt])
            t1 = time.perf_counter()
            emb = sample_prior(stack.prior, cond, stack.empty, guidance=s.prior_guidance, steps=s.prior_steps,
                               generator=stack.gen(r))
            t2 = time.perf_counter()
            img = sample_decoder(stack.decoder, emb, cond, stack.empty, guidance=s.decoder_guidance,
                                 steps=s.decoder_steps, generator=stack.gen(r), scheduler=s.scheduler)
            t3 = time.perf_counter()
            if stack.upsampler is not None:
                upsample(stack.upsampler, img, steps=s.upsample_steps, generator=stack.gen(r), fix_colors=True)
            t4 = time.perf_counter()
            if r == 0:
                continue  # warm-up
            for k, v in (("text_encode", t1 - t0), ("prior", t2 - t1), ("decoder", t3 - t2), ("upsample", t4 - t3),
                         ("total", t4 - t0)):
                times[k].append(v)
    return {k: float(np.median(v)) for k, v in times.items()}


def evaluate(model: Path, n: int, n_aux: int, settings: Settings, seed: int = 1234,
             save_dir: Path | None = None, factor: float = FACTOR_STRENGTH, factor_method: str = FACTOR_METHOD) -> dict:
    stack = Stack(model, settings)
    report: dict = {"model": str(model), "settings": settings.__dict__, "seed": seed}
    splits = {"unseen": prompt_set("heldout_combos", n, seed), "heldout_pairs": prompt_set("heldout_pairs", n, seed + 1)}
    for name, pairs in splits.items():
        saver = None
        if save_dir is not None:
            (save_dir / name).mkdir(parents=True, exist_ok=True)
            counter = iter(range(10**9))

            def saver(img, attrs, name=name, counter=counter):
                from PIL import Image

                Image.fromarray(img).save(save_dir / name / f"{next(counter):04d}.png")

        log.info("text → image on %s (%d prompts)", name, len(pairs))
        report[name] = run_text_split(stack, pairs, seed, save=saver)
        report[name]["reference_clip_score"] = reference_clip_score(stack, pairs)
    log.info("held-out pairs, recoloured: the prompt without its colour, the prior's sample recoloured")
    report["heldout_pairs_recolor"] = run_text_split(
        stack, prompt_set_without_color("heldout_pairs", n, seed + 1), seed, recolor=True,
        score_with=[p for p, _ in splits["heldout_pairs"]])  # the same scenes; scored against their full captions
    for name, pairs in splits.items():
        log.info("%s, colour factored: Factor Out Colour (%s) → prior → Recolour to the colour it read", name,
                 factor_method if factor_method == "words" else f"linear, strength {factor:.1f}")
        report[f"{name}_factored"] = run_text_split(stack, pairs, seed, factor=factor, factor_method=factor_method)
        report[f"{name}_factored"]["method"] = factor_method
    log.info("prior ablation (text embedding as image embedding)")
    report["unseen_no_prior"] = run_text_split(stack, splits["unseen"][:n_aux], seed, use_prior=False)
    log.info("variations")
    report["variations"] = run_variations(stack, n_aux, seed + 2)
    log.info("latency")
    report["latency_s"] = latency(stack, repeats=2 if n <= 16 else 5)
    report["targets"] = TARGETS
    return report


def table(report: dict) -> str:
    cols = ["color", "shape", "size", "position", "background", "all", "clip_score"]
    lines = [f"{'set':<22} {'n':>4} " + " ".join(f"{c:>10}" for c in cols)]
    for key in ("unseen", "unseen_factored", "heldout_pairs", "heldout_pairs_factored", "heldout_pairs_recolor",
                "unseen_no_prior", "variations"):
        r = report[key]
        vals = [f"{r[c]:>10.3f}" if c in r and c != "clip_score" else (f"{r[c]:>10.1f}" if c in r else f"{'-':>10}")
                for c in cols]
        lines.append(f"{key:<22} {r['n']:>4} " + " ".join(vals))
    for key in ("unseen", "heldout_pairs"):
        lines.append(f"reference CLIP score of ground-truth renders ({key}): {report[key]['reference_clip_score']:.1f}")
    lat = report["latency_s"]
    lines.append("latency per image, batch 1 (s): " + ", ".join(f"{k} {v:.3f}" for k, v in lat.items()))
    lines.append("targets: " + "; ".join(f"{k}: " + ", ".join(f"{a} ≥ {v:.2f}" for a, v in t.items())
                                         for k, t in report["targets"].items()))
    misses = [f"{k}.{a} {report[k][a]:.3f} < {v:.2f}" for k, t in report["targets"].items() for a, v in t.items()
              if report[k][a] < v]
    lines.append("all targets met" if not misses else "targets missed: " + "; ".join(misses))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nodegraph eval shapes", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="shapes-unclip bundle directory")
    p.add_argument("--n", type=int, default=160, help="prompts per text split")
    p.add_argument("--n-aux", type=int, default=None, help="prompts for the ablation and the variations (n/2)")
    p.add_argument("--quick", action="store_true", help="a small sample (8 per split, fewer steps) for tests")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--prior-guidance", type=float, default=Settings.prior_guidance)
    p.add_argument("--decoder-guidance", type=float, default=Settings.decoder_guidance)
    p.add_argument("--steps", type=int, default=25, help="prior and decoder steps")
    p.add_argument("--upsample-steps", type=int, default=Settings.upsample_steps)
    p.add_argument("--scheduler", default=None, help="decoder scheduler (default: the checkpoint's)")
    p.add_argument("--no-upsample", action="store_true", help="judge the decoder's 32 px output")
    p.add_argument("--factor-strength", type=float, default=FACTOR_STRENGTH,
                   help="Factor Out Colour's strength for the *_factored rows (method linear, and words' fallback)")
    p.add_argument("--factor-method", choices=typing.get_args(FactorMethod), default=FACTOR_METHOD,
                   help="Factor Out Colour's method for the *_factored rows")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.add_argument("--save-images", type=Path, default=None, help="write the generated images here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    import torch

    torch.set_num_threads(args.threads)
    n = 8 if args.quick else args.n
    steps = min(args.steps, 10) if args.quick else args.steps
    settings = Settings(prior_guidance=args.prior_guidance, decoder_guidance=args.decoder_guidance,
                        prior_steps=steps, decoder_steps=steps, upsample_steps=args.upsample_steps,
                        scheduler=args.scheduler, upsample=not args.no_upsample)
    n_aux = args.n_aux if args.n_aux is not None else max(8, n // 2)
    report = evaluate(args.model, n, n_aux, settings, seed=args.seed, save_dir=args.save_images,
                      factor=args.factor_strength, factor_method=args.factor_method)
    print(table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
