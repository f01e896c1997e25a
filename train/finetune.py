"""What the add-on trainers (LoRA, ControlNet) share: finding the frozen base bundle, the decoder's
denoising loss (the model library's `decoder_loss`: v-prediction, min-SNR-5, as `train/decoder.py`
trains it), and rendering scenes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nodes.shapes import domain
from nodes.unclip.models.decoder import alphas_cumprod, decoder_loss  # noqa: F401 - re-exported for the trainers
from train.common import ROOT
from train.common import start as start_run

MODELS = ROOT / "models"


def bundle_dir(out: Path, bundle: str = "") -> Path:
    """The frozen base models: `bundle` if given; else `<out>/shapes-unclip` (out = a models folder);
    else `out` itself (`python -m train all --smoke --out DIR` puts every stage in DIR)."""
    if bundle:
        return Path(bundle)
    if (out / "shapes-unclip" / "decoder").is_dir():
        return out / "shapes-unclip"
    return out


def load_frozen(bundle: Path, prior: bool = False):
    """(clip, decoder[, prior]) of a bundle, eval mode, no gradients."""
    from nodes.unclip.models import load_decoder, load_prior
    from train.common import load_clip_frozen

    clip = load_clip_frozen(bundle)
    dec = load_decoder(bundle)
    for m in (dec.text_proj, dec.unet):
        m.requires_grad_(False).eval()
    if not prior:
        return clip, dec
    pri = load_prior(bundle)
    pri.prior.requires_grad_(False).eval()
    return clip, dec, pri


def start(cfg_cls, argv: list[str] | None, smoke_preset, prior: bool = False):
    """An add-on trainer's opening: (config, out, clock, base bundle, its frozen models as
    `load_frozen` returns them); the config has `out` and `bundle` (see `bundle_dir`)."""
    cfg, out, timer = start_run(cfg_cls, argv, smoke_preset)
    bundle = bundle_dir(out, cfg.bundle)
    return cfg, out, timer, bundle, load_frozen(bundle, prior=prior)


def render(scenes: list[domain.Scene]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images at 64 px (CLIP's input) and at 32 px (the decoder's), as train/data.py makes them."""
    from train.data import downsample

    im64 = np.stack([domain.render(s, 64) for s in scenes])
    return im64, downsample(im64)
