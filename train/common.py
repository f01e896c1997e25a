"""Small helpers the training scripts share: threads, seeds, timing records, CLI parsing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "shapes-unclip"


def setup(seed: int, threads: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _flag(value: str) -> bool:
    """A boolean option's value: 1/true/yes/on or 0/false/no/off."""
    v = value.strip().lower()
    if v not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return v in ("1", "true", "yes", "on")


def parse(cfg_cls, argv: list[str] | None, smoke_preset):
    """A dataclass config from the command line: --smoke picks the smoke preset, --key value overrides."""
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help="a few steps on tiny models (CI)")
    for f in dataclasses.fields(cfg_cls):
        typ = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str,
                                                       "bool": _flag}.get(f.type, str)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=typ, default=None)
    args = p.parse_args(argv)
    cfg = smoke_preset() if args.smoke else cfg_cls()
    for f in dataclasses.fields(cfg_cls):
        v = getattr(args, f.name)
        if v is not None:
            setattr(cfg, f.name, v)
    return cfg


def start(cfg_cls, argv: list[str] | None, smoke_preset):
    """A training script's opening: (config from the command line, its `out` folder, a started clock),
    with logging, threads and seeds set from the config."""
    cfg = parse(cfg_cls, argv, smoke_preset)
    setup(cfg.seed, cfg.threads)
    return cfg, Path(cfg.out), Timer()


def record_time(out: Path, stage: str, seconds: float, extra: dict | None = None) -> None:
    """Append a stage's wall time to `<out>/training_log.json` (kept with the weights as a model card)."""
    path = out / "training_log.json"
    log = json.loads(path.read_text()) if path.exists() else {}
    log[stage] = {"wall_seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "threads": torch.get_num_threads(), **(extra or {})}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(log, indent=2) + "\n")


class Timer:
    def __init__(self) -> None:
        self.t0 = time.time()

    def __call__(self) -> float:
        return time.time() - self.t0


def write_model_index(out: Path) -> None:
    """`model_index.json` in the Karlo layout for the components present (CLIP is open_clip, in clip/)."""
    import diffusers

    classes = {
        "prior": ["diffusers", "PriorTransformer"],
        "text_proj": ["unclip", "UnCLIPTextProjModel"],
        "decoder": ["diffusers", "UNet2DConditionModel"],
        "super_res_first": ["diffusers", "UNet2DModel"],
        "super_res_last": ["diffusers", "UNet2DModel"],
        "super_res_embed": ["nodes.unclip.models.upsampler", "UpsamplerEmbedding"],
        "clip": ["open_clip", "ShapesCLIP"],
    }
    index: dict = {"_class_name": "UnCLIPPipeline", "_diffusers_version": diffusers.__version__}
    for sub in sorted(p.name for p in out.iterdir() if p.is_dir()):
        if sub.endswith("_scheduler"):
            cfg = json.loads((out / sub / "scheduler_config.json").read_text())
            index[sub] = ["diffusers", cfg["_class_name"]]
        elif sub in classes:
            index[sub] = classes[sub]
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def embedded_data(cfg, out: Path, timer: Timer, embed=None):
    """The training scenes of `cfg.data_seed` / `cfg.n_data`, the bundle's frozen CLIP, and the
    scenes' CLIP image embeddings (N, D) (`embed(clip, ds)`, default: encode every 64 px image):
    what the stages after CLIP train on."""
    from train.data import load

    ds = load(cfg.data_seed, cfg.n_data)
    clip = load_clip_frozen(out)
    emb = embed(clip, ds) if embed else image_embeddings(clip, ds.images64)
    logging.getLogger("train").info("image embeddings %s in %.0f s", tuple(emb.shape), timer())
    return ds, clip, emb


def load_clip_frozen(out: Path):
    """The CLIP trained by stage 1, frozen, for the later stages."""
    from nodes.unclip.models import load_clip

    clip = load_clip(out / "clip")
    for p in clip.parameters():
        p.requires_grad_(False)
    return clip.eval()


@torch.no_grad()
def image_embeddings(clip, images_uint8: np.ndarray, batch: int = 500) -> torch.Tensor:
    """CLIP image embeddings (N, D) of uint8 images (N, H, W, 3)."""
    from train.data import to_tensor

    return torch.cat([clip.encode_image(to_tensor(images_uint8[i:i + batch]))
                      for i in range(0, len(images_uint8), batch)])


def cosine_lr(opt, warmup: int, total: int):
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(s, total) / total))))
