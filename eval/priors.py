"""The DALL·E 2 paper's prior comparison on our domain: diffusion prior vs autoregressive prior vs no prior.

    python -m eval priors [--set validation] [--n 32] [--splits heldout_combos,heldout_pairs] [--json out.json]
    python -m eval priors --tune [--n 32]       # the AR prior's sampling settings, tuning prompts, CLIP space

For the same prompts, the same decoder and upsampler seeds, the image embedding comes from

- `diffusion`: the shipped diffusion prior (`prior/`, as `workflows/text2image.json` sets it);
- `autoregressive`: the AR prior (`prior_ar/`, as `workflows/text2image_ar.json` sets it);
- `no prior`: the CLIP text embedding itself, the paper's first ablation;
- `caption only`: no image embedding at all — the decoder's learned null embedding (what it was
  trained with when the image embedding was dropped, 10 % of the time, for classifier-free guidance),
  so the caption alone conditions it: the paper's second ablation,

then the decoder (with the caption) and the upsampler make the image. One table: per split and
source, the pixel analyser's accuracy per attribute, all five right, clean scenes, the CLIP score
(100 × cosine of the image's and the prompt's embeddings) and the seconds per sample of the prior
alone (batched, on this machine). Report on the validation prompts; tune the samplers' settings on
`--set tuning` (its own prompt generator and seeds), or first with `--tune`: the AR prior's settings
on the tuning prompts in CLIP space, without the decoder.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _judge as judge
from . import _tuning_prompts as tuning_prompts
from . import _validation_prompts as validation_prompts
from .shapes import DEFAULT_MODEL, Settings, Stack, _to_numpy

log = logging.getLogger("eval.priors")
SETS = {"tuning": tuning_prompts, "validation": validation_prompts}
SOURCES = ("diffusion", "autoregressive", "no prior", "caption only")
SPLIT_NAMES = {"heldout_combos": "unseen combinations", "heldout_pairs": "held-out pairs"}
COLUMNS = ("color", "shape", "size", "position", "background", "all_named", "clean", "clip_score", "prior_s")


@dataclass
class ARSettings:
    """The AR Prior node's sampling settings."""

    guidance: float
    temperature: float
    top_k: int


def _embeddings(stack: Stack, ar, source: str, cond, seed: int, ars: ARSettings):
    from nodes.unclip.api import sample_ar_prior, sample_prior

    s = stack.s
    gen = stack.gen(seed)
    if source == "diffusion":
        return sample_prior(stack.prior, cond, stack.empty, guidance=s.prior_guidance, steps=s.prior_steps,
                            generator=gen)
    if source == "autoregressive":
        return sample_ar_prior(ar, cond, stack.empty, guidance=ars.guidance, temperature=ars.temperature,
                               top_k=ars.top_k, generator=gen)
    if source == "caption only":  # the decoder's null image embedding: only the caption conditions it
        null = stack.decoder.text_proj.learned_classifier_free_guidance_embeddings  # (1, D)
        return null.expand(cond.embeds.shape[0], -1)
    return cond.embeds  # the ablation: the text embedding in place of an image embedding


def run_source(stack: Stack, ar, source: str, prompts, seed: int, ars: ARSettings) -> dict:
    """Generate and judge one source on prompts (a list of `Prompt`), in batches."""
    from nodes.unclip.api import sample_decoder, upsample

    torch = stack.torch
    s = stack.s
    verdicts, scores, prior_seconds = [], [], 0.0
    for i in range(0, len(prompts), s.batch):
        chunk = prompts[i:i + s.batch]
        texts = [p.text for p in chunk]
        with torch.no_grad():
            cond = stack.clip.encode_text(texts)
            t0 = time.perf_counter()
            emb = _embeddings(stack, ar, source, cond, seed + 1000 * i, ars)
            prior_seconds += time.perf_counter() - t0
            # the same decoder and upsampler noise for every source: only the embedding differs
            images = sample_decoder(stack.decoder, emb, cond, stack.empty, guidance=s.decoder_guidance,
                                    steps=s.decoder_steps, generator=stack.gen(seed + 1000 * i + 1))
            if stack.upsampler is not None:
                images = upsample(stack.upsampler, images, steps=s.upsample_steps,
                                  generator=stack.gen(seed + 1000 * i + 2), fix_colors=True)
        scores.extend(stack.clip_score(images, texts).tolist())
        verdicts.extend(judge.judge(img, p.named) for img, p in zip(_to_numpy(images), chunk, strict=True))
    out = judge.summarise(verdicts)
    out["clip_score"] = float(np.mean(scores))
    out["prior_s"] = prior_seconds / max(1, len(prompts))
    return out


def evaluate(model: Path, set_name: str, n: int, splits: tuple[str, ...], settings: Settings, ars: ARSettings,
             sources: tuple[str, ...] = SOURCES, seed: int = 4242) -> dict:
    from nodes.unclip.api import load_ar_prior

    stack = Stack(model, settings)
    ar = load_ar_prior(model) if "autoregressive" in sources else None
    report: dict = {"model": str(model), "set": set_name, "n": n, "settings": settings.__dict__,
                    "ar_settings": ars.__dict__, "rows": {}}
    for split in splits:
        prompts = SETS[set_name].full_prompts(split, n)
        for source in sources:
            log.info("%s / %s: %d prompts", split, source, len(prompts))
            r = run_source(stack, ar, source, prompts, seed, ars)
            report["rows"][f"{split}/{source}"] = r
            log.info("%s / %s: %s", split, source, ", ".join(f"{k} {v:.3f}" for k, v in r.items() if k != "n"))
    return report


GRID = ((1.0, 1.0, 0), (2.0, 1.0, 0), (3.0, 1.0, 0), (2.0, 0.7, 0), (3.0, 0.7, 0), (2.0, 1.0, 8), (3.0, 0.5, 0),
        (2.0, 0.0, 0))


def tune(model: Path, n: int, splits: tuple[str, ...], grid=GRID, seed: int = 77) -> str:
    """The AR prior's settings on the tuning prompts, judged without the decoder: how close (cosine) each sample
    is to the CLIP image embedding of a render of its prompt's scene, and how often that render is the
    nearest of all the prompts' renders. The diffusion prior at its workflow settings for reference."""
    import torch

    from nodes.shapes import domain
    from nodes.unclip.api import load_ar_prior, load_clip, load_prior, sample_ar_prior, sample_prior
    clip, ar, prior = load_clip(model), load_ar_prior(model), load_prior(model)
    prompts = [p for split in splits for p in tuning_prompts.full_prompts(split, n)]
    renders = np.stack([domain.render(domain.make_scene(np.random.default_rng(i), **p.named), 64)
                        for i, p in enumerate(prompts)])
    with torch.no_grad():
        target = torch.nn.functional.normalize(clip.encode_image(torch.from_numpy(renders).permute(0, 3, 1, 2).float() / 255), dim=-1)
        cond, empty = clip.encode_text([p.text for p in prompts]), clip.encode_text([""])

    def score(emb) -> str:
        sim = torch.nn.functional.normalize(emb, dim=-1) @ target.T
        own = sim.diagonal().mean().item()
        nearest = (sim.argmax(1) == torch.arange(len(prompts))).float().mean().item()
        return f"{own:.3f} | {nearest:.2f}"

    lines = ["| prior | guidance | temperature | top_k | cosine to own scene | own scene nearest |", "|---|---:|---:|---:|---:|---:|"]
    with torch.no_grad():
        emb = sample_prior(prior, cond, empty, guidance=Settings.prior_guidance, steps=Settings.prior_steps,
                           generator=torch.Generator().manual_seed(seed))
        lines.append(f"| diffusion | {Settings.prior_guidance:g} | – | – | {score(emb)} |")
        for g, t, k in grid:
            emb = sample_ar_prior(ar, cond, empty, guidance=g, temperature=t, top_k=k,
                                  generator=torch.Generator().manual_seed(seed))
            lines.append(f"| autoregressive | {g:g} | {t:g} | {k} | {score(emb)} |")
    return "\n".join(lines)


def add_rows(report: dict, other: dict) -> None:
    """Put `other`'s rows into `report`, per split in SOURCES order; refuse a report of other prompts or decoding."""
    for key in ("set", "n", "settings"):
        mine, theirs = report[key], other[key]
        if key == "settings":  # the diffusion prior's own settings may differ; the decoding may not
            mine, theirs = ({k: v for k, v in d.items() if not k.startswith("prior_")} for d in (mine, theirs))
        if mine != theirs:
            raise SystemExit(f"--add-rows: the report's {key} {theirs} differs from this run's {mine}")
    rows = {**other["rows"], **report["rows"]}
    order = {s: i for i, s in enumerate(SOURCES)}
    report["rows"] = dict(sorted(rows.items(), key=lambda kv: (kv[0].split("/")[0], order.get(kv[0].split("/")[1]))))
    report.setdefault("added_from", []).append({k: other[k] for k in ("seconds", "settings", "ar_settings") if k in other})


def table(report: dict) -> str:
    head = "| prompts | image embedding from | images | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|---|---|---:|" + "---:|" * len(COLUMNS)]
    for key, r in report["rows"].items():
        split, source = key.split("/", 1)
        cells = [("–" if c not in r else f"{r[c]:.1f}" if c == "clip_score" else f"{r[c]:.3f}" if c == "prior_s"
                  else f"{r[c]:.2f}") for c in COLUMNS]
        lines.append(f"| {SPLIT_NAMES.get(split, split)} ({report['set']}) | {source} | {int(r['n'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from nodes.unclip.ar_prior import ARPrior as ARNode

    ar_defaults = ARNode.Inputs.model_fields
    p = argparse.ArgumentParser(prog="nodegraph eval priors", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="shapes-unclip bundle (with prior/ and prior_ar/)")
    p.add_argument("--set", choices=tuple(SETS), default="validation", help="report on validation, tune on tuning")
    p.add_argument("--n", type=int, default=32, help="prompts per split")
    p.add_argument("--splits", default="heldout_combos,heldout_pairs", help="comma-separated held-out splits")
    p.add_argument("--sources", default=",".join(SOURCES), help="comma-separated: " + ", ".join(SOURCES)
                   + " ('': none, to print the --add-rows reports as one table)")
    p.add_argument("--quick", action="store_true", help="4 prompts, 4 steps, no upsampler (a code-path check)")
    p.add_argument("--prior-guidance", type=float, default=Settings.prior_guidance, help="diffusion prior guidance")
    p.add_argument("--prior-steps", type=int, default=Settings.prior_steps)
    p.add_argument("--ar-guidance", type=float, default=ar_defaults["guidance"].default)
    p.add_argument("--ar-temperature", type=float, default=ar_defaults["temperature"].default)
    p.add_argument("--ar-top-k", type=int, default=ar_defaults["top_k"].default)
    p.add_argument("--decoder-steps", type=int, default=Settings.decoder_steps)
    p.add_argument("--no-upsample", action="store_true", help="judge the decoder's 32 px output")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.add_argument("--add-rows", type=Path, nargs="*", default=(), help="JSON reports of other sources or splits on "
                   "the same prompts (same --set, --n, seed and decoder settings), whose rows join this table")
    p.add_argument("--tune", action="store_true", help="only compare the AR prior's settings on the tuning prompts, "
                   "in CLIP space (no decoder)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    import torch

    torch.set_num_threads(args.threads)
    if args.tune:
        print(tune(args.model, 4 if args.quick else args.n, tuple(args.splits.split(","))))
        return 0
    quick = args.quick
    settings = Settings(prior_guidance=args.prior_guidance, prior_steps=4 if quick else args.prior_steps,
                        decoder_steps=4 if quick else args.decoder_steps, upsample=not (quick or args.no_upsample))
    ars = ARSettings(args.ar_guidance, args.ar_temperature, args.ar_top_k)
    t0 = time.time()
    report = evaluate(args.model, args.set, 4 if quick else args.n, tuple(args.splits.split(",")), settings, ars,
                      tuple(s for s in args.sources.split(",") if s))
    report["seconds"] = round(time.time() - t0, 1)
    for path in args.add_rows:
        add_rows(report, json.loads(path.read_text()))
    print(table(report))
    print(f"\nAR prior: guidance {ars.guidance:g}, temperature {ars.temperature:g}, top-k {ars.top_k}; diffusion "
          f"prior: guidance {settings.prior_guidance:g}, {settings.prior_steps} steps; prior_s: seconds per sample "
          f"of the prior alone, batch {settings.batch}; {report['seconds']:.0f} s in all")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
