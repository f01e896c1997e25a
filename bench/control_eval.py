"""Measure the shipped LoRA and ControlNet on the shipped Shapes models (run by hand).

    python bench/control_eval.py [--n 64] [--seed 0] [--threads 2] [--only lora|controlnet|latency]

- LoRA concept rate: prompts naming the new colour ("a large pink star at the top on a blue
  background", random other attributes) through CLIP → prior → decoder, with and without the LoRA
  (same seeds). The pixel analyser measures the object's colour; it counts as the concept when the
  nearest colour among the 8 palette colours + the LoRA's colour is the LoRA's. Also: colour
  accuracy on ordinary palette prompts with and without the LoRA (what the LoRA must not break).
- ControlNet IoU: prompts naming all attributes including a position P; the control image is the
  silhouette of the same shape and size at another position Q. IoU between the analyser's mask of
  the generated object and the control silhouette, with the ControlNet (strength 1) and without.
- Latency: seconds per image (batch 8, 25 prior + 25 decoder steps) for plain decoding, with the
  LoRA merged, and with the ControlNet; and the one-off cost of merging the LoRA.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nodes.shapes import domain  # noqa: E402
from nodes.shapes.analyse import analyse, mask_iou  # noqa: E402

BUNDLE = ROOT / "models" / "shapes-unclip"
LORA = ROOT / "models" / "loras" / "shapes-pink.safetensors"
CONTROLNET = ROOT / "models" / "controlnet-shapes"
PINK = (255, 105, 180)
# decoder guidance 1.5, the Decoder node's default: stronger guidance pulls objects towards the centre
PRIOR_STEPS, DECODER_STEPS, PRIOR_GUIDANCE, DECODER_GUIDANCE = 25, 25, 4.0, 1.5


def load_bundle(path: Path = BUNDLE) -> dict:
    from nodes.unclip.models import load_clip, load_decoder, load_prior

    return {"clip": load_clip(path / "clip"), "prior": load_prior(path), "decoder": load_decoder(path)}


@torch.no_grad()
def generate(models: dict, prompts: list[str], seed: int, decoder=None, batch: int = 8, prior=None) -> np.ndarray:
    """Images (N, 32, 32, 3) in [0, 1] for prompts, CLIP → prior → decoder; seeds fixed per batch."""
    from nodes.unclip.models import sample_decoder, sample_prior

    clip, prior, dec = models["clip"], prior or models["prior"], decoder or models["decoder"]
    uncond = clip.encode_text([""])
    out = []
    for i in range(0, len(prompts), batch):
        cond = clip.encode_text(prompts[i:i + batch])
        emb = sample_prior(prior, cond, uncond, guidance=PRIOR_GUIDANCE, steps=PRIOR_STEPS,
                           generator=torch.Generator().manual_seed(seed + i))
        img = sample_decoder(dec, emb, cond, uncond, guidance=DECODER_GUIDANCE, steps=DECODER_STEPS,
                             generator=torch.Generator().manual_seed(seed + 10_000 + i))
        out.append(img.permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def lora_decoder(models: dict, lora_path: Path, strength: float = 1.0):
    """The decoder with the LoRA merged (as the Load LoRA node does it)."""
    import dataclasses

    from nodes.lora.lora import assign, patch, read_lora, subset

    dec = models["decoder"]
    lora = subset(assign(read_lora(lora_path), {"unet": dec.unet, "text_proj": dec.text_proj}), ("unet", "text_proj"))
    parts = patch({"unet": dec.unet, "text_proj": dec.text_proj}, lora, strength)
    return dataclasses.replace(dec, unet=parts["unet"], text_proj=parts["text_proj"])


def lora_prior(models: dict, lora_path: Path, strength: float = 1.0):
    """The prior with the LoRA's prior weights merged (the prior itself when the file has none)."""
    import dataclasses

    from nodes.lora.lora import patch, read_lora, subset

    pri = models["prior"]
    lora = read_lora(lora_path)
    if "prior" not in lora.components():
        return pri
    parts = patch({"prior": pri.prior}, subset(lora, ("prior",)), strength)
    return dataclasses.replace(pri, prior=parts["prior"])


def nearest_with(rgb, extra: dict[str, tuple[int, int, int]]) -> str:
    names = [*domain.COLORS, *extra]
    table = np.array([*(domain.PALETTE[c] for c in domain.COLORS), *extra.values()], dtype=np.float32)
    return names[int(((table - np.asarray(rgb, dtype=np.float32)) ** 2).sum(-1).argmin())]


def concept_prompts(n: int, seed: int, word: str = "pink") -> list[str]:
    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(n):
        s = domain.sample_scene(rng, "any")
        prompts.append(domain.canonical_caption({**s.attributes(), "color": word}))
    return prompts


def concept_hits(images: np.ndarray, word: str = "pink", rgb=PINK) -> list[bool]:
    hits = []
    for img in images:
        a = analyse(img)
        hits.append(bool(a.found and nearest_with(a.color_rgb, {word: rgb}) == word))
    return hits


def concept_rate(models: dict, lora_path: Path = LORA, n: int = 64, seed: int = 0) -> tuple[float, float]:
    """(rate with the LoRA, rate without) of pink objects for pink prompts; the LoRA patches the
    decoder and, when the file has prior weights, the prior (as workflows/lora.json does)."""
    prompts = concept_prompts(n, seed)
    with_lora = generate(models, prompts, seed, decoder=lora_decoder(models, lora_path),
                         prior=lora_prior(models, lora_path))
    without = generate(models, prompts, seed)
    return float(np.mean(concept_hits(with_lora))), float(np.mean(concept_hits(without)))


def palette_accuracy(models: dict, decoder, n: int, seed: int, prior=None) -> float:
    """Object colour right (analyser) for ordinary palette prompts of the held-out-combination split."""
    rng = np.random.default_rng(seed)
    scenes = [domain.sample_scene(rng, "heldout_combos") for _ in range(n)]
    images = generate(models, [domain.canonical_caption(s.attributes()) for s in scenes], seed, decoder=decoder,
                      prior=prior)
    return float(np.mean([analyse(img).color == s.color for img, s in zip(images, scenes, strict=True)]))


# --- ControlNet -----------------------------------------------------------------------------------

def control_cases(n: int, seed: int) -> list[tuple[domain.Scene, domain.Scene]]:
    """(prompted scene at position P, control scene: same shape/size/colours at another position Q)."""
    import dataclasses

    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        s = domain.sample_scene(rng, "any")
        other = [p for p in domain.POSITION_NAMES if p != s.position]
        q = other[int(rng.integers(len(other)))]
        ref = domain.make_scene(rng, s.color, s.background, s.shape, s.size, q)
        cases.append((s, dataclasses.replace(ref, fg_rgb=s.fg_rgb, bg_rgb=s.bg_rgb)))
    return cases


def controlled_decoder(models: dict, controlnet, control: np.ndarray, strength: float = 1.0):
    """The decoder with the ControlNet attached (as Apply ControlNet does it); control (N, S, S) bool."""
    import dataclasses

    from nodes.controlnet.model import Control, ControlledUNet

    dec = models["decoder"]
    image = torch.from_numpy(np.repeat(control[:, None].astype(np.float32), 3, axis=1))
    n_train = int(dec.scheduler.config.get("num_train_timesteps", 1000))
    return dataclasses.replace(dec, unet=ControlledUNet(dec.unet, (Control(controlnet, image, strength, 0.0, 1.0,
                                                                            n_train),)))


def control_iou(models: dict, controlnet_path: Path = CONTROLNET, n: int = 64, seed: int = 0,
                strength: float = 1.0, batch: int = 8) -> dict:
    """IoU of generated masks with control silhouettes whose position differs from the prompt's."""
    from nodes.controlnet.model import load_controlnet

    cn = load_controlnet(controlnet_path)
    cases = control_cases(n, seed)
    size = models["decoder"].sample_size
    iou_c, iou_base, follows = [], [], []
    for i in range(0, n, batch):
        chunk = cases[i:i + batch]
        prompts = [domain.canonical_caption(s.attributes()) for s, _ in chunk]
        masks = np.stack([domain.object_mask(q, size) for _, q in chunk])
        with_cn = generate(models, prompts, seed + i, decoder=controlled_decoder(models, cn, masks, strength),
                           batch=batch)
        base = generate(models, prompts, seed + i, batch=batch)
        for img_c, img_b, m, (_, q) in zip(with_cn, base, masks, chunk, strict=True):
            a, b = analyse(img_c), analyse(img_b)
            iou_c.append(mask_iou(a.mask, m) if a.found else 0.0)
            iou_base.append(mask_iou(b.mask, m) if b.found else 0.0)
            follows.append(a.found and a.position == q.position)
    return {"iou_controlnet": float(np.mean(iou_c)), "iou_without": float(np.mean(iou_base)),
            "iou_ge_0.6_rate": float(np.mean(np.array(iou_c) >= 0.6)),
            "position_follows_control": float(np.mean(follows)), "n": n}


# --- latency ---------------------------------------------------------------------------------------

def latency(models: dict, repeats: int = 2) -> dict:
    from nodes.controlnet.model import load_controlnet

    prompts = concept_prompts(8, 99)

    def timed(decoder) -> float:
        generate(models, prompts[:8], 0, decoder=decoder)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            generate(models, prompts, 0, decoder=decoder)
        return (time.perf_counter() - t0) / (repeats * len(prompts))

    out = {"plain_s_per_image": timed(None)}
    if LORA.is_file():
        t0 = time.perf_counter()
        dec = lora_decoder(models, LORA)
        out["lora_merge_s"] = time.perf_counter() - t0
        out["lora_s_per_image"] = timed(dec)
    if CONTROLNET.is_dir():
        cn = load_controlnet(CONTROLNET)
        mask = domain.object_mask(domain.make_scene(np.random.default_rng(0), "red", "blue", "circle", "large",
                                                    "center"), models["decoder"].sample_size)[None]
        out["controlnet_s_per_image"] = timed(controlled_decoder(models, cn, mask))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", choices=["lora", "controlnet", "latency"], default=None)
    p.add_argument("--skip-palette", action="store_true", help="skip the palette-colour check of the LoRA")
    p.add_argument("--bundle", type=Path, default=BUNDLE, help="the base shapes-unclip bundle")
    p.add_argument("--lora", type=Path, default=LORA)
    p.add_argument("--controlnet", type=Path, default=CONTROLNET)
    p.add_argument("--decoder-guidance", type=float, default=None, help="default: DECODER_GUIDANCE")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    global DECODER_GUIDANCE
    if args.decoder_guidance is not None:
        DECODER_GUIDANCE = args.decoder_guidance
    lora_path, cn_path = args.lora, args.controlnet
    models = load_bundle(args.bundle)
    results: dict = {"n": args.n, "seed": args.seed, "threads": args.threads, "bundle": str(args.bundle),
                     "lora": str(lora_path), "decoder_guidance": DECODER_GUIDANCE}
    if args.only in (None, "lora") and lora_path.is_file():
        with_lora, without = concept_rate(models, lora_path, args.n, args.seed)
        results["lora_concept_rate"] = {"with_lora": with_lora, "without": without}
        print(f"LoRA 'pink': concept in {with_lora:.0%} of images with the LoRA, {without:.0%} without "
              f"(n={args.n})", flush=True)
        if not args.skip_palette:
            results["palette_colour_accuracy"] = {
                "with_lora": palette_accuracy(models, lora_decoder(models, lora_path), args.n, args.seed + 1,
                                              prior=lora_prior(models, lora_path)),
                "without": palette_accuracy(models, None, args.n, args.seed + 1)}
            print(f"palette prompts, object colour right: {results['palette_colour_accuracy']}", flush=True)
    if args.only in (None, "controlnet") and cn_path.is_dir():
        res = control_iou(models, cn_path, args.n, args.seed)
        results["controlnet"] = res
        print(f"ControlNet: mean IoU with the control silhouette {res['iou_controlnet']:.2f} "
              f"(without: {res['iou_without']:.2f}); IoU ≥ 0.6 in {res['iou_ge_0.6_rate']:.0%}; object at the "
              f"control's position in {res['position_follows_control']:.0%}", flush=True)
    if args.only in (None, "latency"):
        lat = latency(models)
        results["latency"] = lat
        base = lat["plain_s_per_image"]
        print("latency (s/image, batch 8, 25+25 steps): " + ", ".join(
            f"{k} {v:.3f}" + (f" ({v / base:.2f}×)" if k.endswith("per_image") else "") for k, v in lat.items()))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
