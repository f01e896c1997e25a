"""Kandinsky 2.2 at the published sizes with random weights: load time, peak RSS, time per step at 512 px.

    nice -n 10 .venv/bin/python bench/kandinsky_bench.py [--threads 2] [--steps 2] [--only decoder,prior,clip]
        [--dir DIR] [--keep]

No weights are downloaded: every component is built at its real size with random weights and saved
(safetensors, fp32) in the two folder layouts the loaders read, then each folder's components are
loaded by our loaders (`nodes.kandinsky.models`) in a fresh process that reports its load time and
peak RSS (VmHWM) and times the sampling at 512 × 512 (64 × 64 latents, guidance on: batch 2).

Where the sizes come from (there is no hub here):
- CLIP ViT-bigG-14 text and image towers: open_clip's own `ViT-bigG-14.json` (installed with
  open_clip), mapped to transformers' CLIPTextConfig / CLIPVisionConfig (Kandinsky 2.2's prior uses
  laion/CLIP-ViT-bigG-14-laion2B-39B-b160k);
- the UNet and MoVQ: diffusers' `scripts/convert_kandinsky_to_diffusers.py` (UNET_CONFIG and
  MOVQ_CONFIG of Kandinsky 2.1, the same networks), with 2.2's image-only conditioning (addition and
  encoder_hid_dim types "image" / "image_proj", encoder_hid_dim 1280 = the ViT-bigG embedding);
- the prior: diffusers' PriorTransformer with 2.1's shape (32 heads × 64, 20 layers, 77 + 4 tokens)
  at 2.2's embedding width 1280.
ai-forever's Kandinsky 2.2 README lists prior 1B, image encoder 1.8B, U-Net 1.22B, MoVQ 67M; the
parameter counts printed here are checked against those.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

UNET = dict(
    act_fn="silu", addition_embed_type="image", addition_embed_type_num_heads=64, attention_head_dim=64,
    block_out_channels=[384, 768, 1152, 1536], class_embed_type=None, cross_attention_dim=768,
    down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D",
                      "SimpleCrossAttnDownBlock2D"],
    encoder_hid_dim=1280, encoder_hid_dim_type="image_proj", flip_sin_to_cos=True, freq_shift=0, in_channels=4,
    layers_per_block=3, mid_block_type="UNetMidBlock2DSimpleCrossAttn", norm_eps=1e-5, norm_num_groups=32,
    out_channels=8, resnet_time_scale_shift="scale_shift", sample_size=64,
    up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                    "ResnetUpsampleBlock2D"])
MOVQ = dict(
    in_channels=3, out_channels=3, latent_channels=4,
    down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
    up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
    num_vq_embeddings=16384, block_out_channels=[128, 256, 256, 512], vq_embed_dim=4, layers_per_block=2,
    norm_type="spatial")
PRIOR = dict(num_attention_heads=32, attention_head_dim=64, num_layers=20, embedding_dim=1280, num_embeddings=77,
             additional_embeddings=4)
PUBLISHED = {"prior": 1.0e9, "image_encoder": 1.8e9, "unet": 1.22e9, "movq": 67e6}


def bigg():
    import open_clip

    path = Path(open_clip.__file__).parent / "model_configs" / "ViT-bigG-14.json"
    cfg = json.loads(path.read_text())
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    vision = dict(hidden_size=v["width"], num_hidden_layers=v["layers"], num_attention_heads=v["width"] // v["head_width"],
                  intermediate_size=round(v["width"] * v["mlp_ratio"]), patch_size=v["patch_size"],
                  image_size=v["image_size"], projection_dim=cfg["embed_dim"], hidden_act="gelu")
    text = dict(hidden_size=t["width"], num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                intermediate_size=4 * t["width"], max_position_embeddings=t["context_length"],
                vocab_size=t["vocab_size"], projection_dim=cfg["embed_dim"], hidden_act="gelu")
    return text, vision


def build(component: str, root: Path) -> int:
    """Build one component at its real size (random weights) and save it; returns its parameter count."""
    import torch

    torch.manual_seed(0)
    if component == "unet":
        from diffusers import UNet2DConditionModel

        model, folder = UNet2DConditionModel(**UNET), root / "decoder" / "unet"
    elif component == "movq":
        from diffusers import VQModel

        model, folder = VQModel(**MOVQ), root / "decoder" / "movq"
    elif component == "prior":
        from diffusers import PriorTransformer

        model, folder = PriorTransformer(**PRIOR), root / "prior" / "prior"
        with torch.no_grad():
            model.clip_std.fill_(1.0)
    else:
        from transformers import (
            CLIPTextConfig,
            CLIPTextModelWithProjection,
            CLIPVisionConfig,
            CLIPVisionModelWithProjection,
        )

        text, vision = bigg()
        if component == "text_encoder":
            model = CLIPTextModelWithProjection(CLIPTextConfig(**text, bos_token_id=512, eos_token_id=513, pad_token_id=513))
        else:
            model = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision))
        folder = root / "prior" / component
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    return n


COMPONENTS = {"decoder": ("unet", "movq"), "prior": ("prior",), "clip": ("text_encoder", "image_encoder")}


def build_rest(root: Path) -> None:
    """Schedulers, tokenizer, image processor: the small files of the two layouts."""
    from diffusers import DDPMScheduler, UnCLIPScheduler
    from transformers import CLIPImageProcessor

    from nodes.unclip.api import tiny

    UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000,
                    clip_sample=True, clip_sample_range=10.0).save_pretrained(root / "prior" / "scheduler")
    tiny.byte_level_tokenizer(root / "prior" / "tokenizer", max_length=77).save_pretrained(root / "prior" / "tokenizer")
    CLIPImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224}, resample=3,
                       do_center_crop=True, do_normalize=True, do_resize=True,
                       image_mean=[0.48145466, 0.4578275, 0.40821073],
                       image_std=[0.26862954, 0.26130258, 0.27577711]).save_pretrained(root / "prior" / "image_processor")
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
                  clip_sample=False, steps_offset=1).save_pretrained(root / "decoder" / "scheduler")


def _rss() -> dict[str, float]:
    status = Path("/proc/self/status").read_text()
    values = {line.split(":")[0]: int(line.split()[1]) / 1024**2 for line in status.splitlines()
              if line.startswith(("VmRSS", "VmHWM"))}
    return {"rss_gb": values["VmRSS"], "peak_rss_gb": values["VmHWM"]}


def measure(what: str, root: Path, steps: int, threads: int) -> dict:
    """In a fresh process: load one folder's models with our loaders, then time their sampling."""
    import torch

    torch.set_num_threads(threads)
    from nodes.kandinsky.models import load_clip, load_decoder, load_prior, text2image
    from nodes.unclip.api import TextEncoding, sample_prior

    base = _rss()["rss_gb"]
    out: dict = {"what": what, "baseline_rss_gb": base}
    t = time.perf_counter()
    if what == "decoder":
        model = load_decoder(root / "decoder", torch.float32, "cpu")
        modules = [model.unet, model.movq]
    elif what == "prior":
        model = load_prior(root / "prior", torch.float32, "cpu")
        modules = [model.prior]
    else:
        model = load_clip(root / "prior", torch.float32, "cpu")
        modules = [model.text_encoder, model.image_encoder]
    out["load_s"] = time.perf_counter() - t
    out["weights_gb"] = sum(p.numel() * p.element_size() for m in modules for p in m.parameters()) / 1024**3
    out.update(_rss())
    stamps: list[float] = []
    with torch.inference_mode():
        emb = torch.randn(1, 1280)
        t = time.perf_counter()
        if what == "decoder":
            text2image(model, emb, torch.randn(1, 1280), 512, 512, steps=steps, guidance=4.0,
                       generator=torch.Generator().manual_seed(0), callback=lambda *a: stamps.append(time.perf_counter()))
            end = time.perf_counter()
            out["unet_step_s"] = (stamps[-1] - t) / steps
            out["movq_decode_512_s"] = end - stamps[-1]
        elif what == "prior":
            clip_like = torch.randn(1, 1280), torch.randn(1, 77, 1280), torch.ones(1, 77, dtype=torch.bool)
            enc = TextEncoding(*clip_like)
            sample_prior(model, enc, enc, guidance=4.0, steps=steps, generator=torch.Generator().manual_seed(0),
                         callback=lambda *a: stamps.append(time.perf_counter()))
            out["prior_step_s"] = (stamps[-1] - t) / steps
        else:
            model.encode_text(["a red cat on a blue sofa"])
            out["text_encode_s"] = time.perf_counter() - t
            t = time.perf_counter()
            model.zero_embed()
            out["image_encode_224_s"] = time.perf_counter() - t
    out.update(_rss())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="denoising steps timed per stage")
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp dir, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the built folders")
    ap.add_argument("--only", default="decoder,prior,clip",
                    help="which folders' models to build and measure (comma-separated: decoder, prior, clip)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--build", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        print(json.dumps({"params": build(args.build, args.dir)}))
        return 0
    if args.child:
        print(json.dumps(measure(args.child, args.dir, args.steps, args.threads)))
        return 0

    root = args.dir or Path(tempfile.mkdtemp(prefix="kandinsky-bench-"))
    me = [sys.executable, __file__, "--dir", str(root), "--threads", str(args.threads), "--steps", str(args.steps)]

    def child(*extra: str) -> dict:
        res = subprocess.run([*me, *extra], capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(f"{' '.join(extra)} failed:\n{res.stderr}")
        return json.loads(res.stdout.strip().splitlines()[-1])

    try:
        print(f"building in {root} (random weights, fp32 safetensors)", flush=True)
        only = [w for w in ("decoder", "prior", "clip") if w in args.only.split(",")]
        for comp in (c for w in only for c in COMPONENTS[w]):
            t = time.perf_counter()
            n = child("--build", comp)["params"]
            ref = PUBLISHED.get(comp)
            note = f" (published: {ref / 1e9:.3g}B)" if ref else ""
            print(f"  {comp}: {n / 1e9:.3f}B parameters{note}, built and saved in {time.perf_counter() - t:.0f} s",
                  flush=True)
        build_rest(root)
        print(f"load and sample ({args.threads} threads, {args.steps} steps, 512 px, guidance on; load "
              f"average {os.getloadavg()[0]:.1f})", flush=True)
        for what in only:
            r = child("--child", what)
            print("  " + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
