"""Stage 5: the second super-resolution stage 64 → 256 px (a `UNet2DModel`, 6 input channels, Karlo style).

The paper's second upsampler, small enough for a CPU: input [noisy 256 px image, bicubic-upsampled
64 px image]; no attention (fully convolutional), so it trains on random 64 × 64 crops of 256 px
scenes (a quarter of the side, as in the paper) and runs on full frames. As in the paper the
low-resolution conditioning is degraded during training, more strongly than for the first stage
(their BSR-style degradations): a Gaussian blur of random width, a 32 px round trip, Gaussian and
low-frequency colour noise — what the 64 px images of the first upsampler look like — while the
target is the exact 256 px render, so the stage learns to draw sharp edges from soft ones.

Scenes are rendered on the fly from the domain's training split (coverage at 256 px, 4× supersampled;
a 256 px render costs ~2 ms), with random RGB colours for a fraction of them and sometimes a second
object, so every edge contrast is seen; most crops are centred on an object's outline. The 64 px input is the exact 4×4
area average of the 256 px render. The network predicts the clean image (x₀, "sample" prediction)
under the cosine schedule, with the loss weight in x₀ terms clamp(SNR, 1, 5) (min-SNR-5 with a floor
of 1, so the noisiest steps, where the conditioning alone decides, still count): an x₀ model never
leaves sampling noise behind at few steps. The shipped scheduler is DPM-Solver++ (few steps). Written as its own Karlo-layout folder (`super_res_first/`,
`super_res_scheduler/`; default `models/shapes-unclip-sr256`), loaded by the same upsampler loader.

`--full-every N` makes every N-th step one of whole 256 px frames (`--full-batch` of them) and `--init` continues
a folder; the shipped weights use neither (docs/unclip.md says what a continuation on frames gave).

    python -m train.upsampler256 [--smoke] [--steps N] [--stop-at N] [--threads T] [--out DIR] [--init DIR]
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DPMSolverMultistepScheduler, UNet2DModel
from diffusers.training_utils import EMAModel
from torchvision.transforms.functional import gaussian_blur

from nodes.shapes import domain
from nodes.unclip.models.upsampler import upscale_condition
from train.common import ROOT, cosine_lr, record_time, start, write_model_index

log = logging.getLogger("train.upsampler256")

SIZE, LOW = 256, 64
# the colour fix's scale for this stage (the Upsample node's color_sigma in the workflows): the input's
# edges are 4× enlarged and soft, so the default (half the factor, 2 px) would put them back
COLOR_SIGMA = 8.0


@dataclass
class Config:
    out: str = str(ROOT / "models" / "shapes-unclip-sr256")
    steps: int = 2000  # the learning-rate schedule's length
    stop_at: int = 1000  # stop after this many steps (0: all of them); the shipped weights stopped at 1000
    batch: int = 16
    crop: int = 64
    lr: float = 1e-3
    warmup: int = 100
    channels: str = "16,32,64,96"
    ema: float = 0.995
    seed: int = 5
    threads: int = 1
    init: str = ""  # a folder (with super_res_first/) to continue from, same architecture; "" = from scratch
    # scenes
    p_rgb: float = 0.3  # random RGB object and background colours instead of the palette's
    p_second: float = 0.25  # a second object over the first
    p_edge_crop: float = 0.75  # crops centred on an object's outline (the rest anywhere)
    full_every: int = 0  # every n-th step trains on whole 256 px frames instead of crops (0: never)
    full_batch: int = 1  # frames in such a step (one frame costs as much as 16 crops of 64 px)
    # degradations of the 64 px conditioning
    p_blur: float = 0.7
    max_blur: float = 1.5  # Gaussian sigma, in 64 px pixels
    p_roundtrip: float = 0.25  # 64 → 32 → 64 (area down, bicubic up)
    p_noise: float = 0.5
    max_noise: float = 0.08  # Gaussian noise sigma in [-1, 1] units
    max_blotch: float = 0.05  # low-frequency (8 × 8) colour noise amplitude
    edge_weight: float = 0.0  # extra loss weight on edge pixels (and their 1-pixel rim): where sharpness is learnt
    log_every: int = 100
    save_every: int = 500
    eval_n: int = 24
    eval_seed: int = 5001


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke-sr256", steps=2, stop_at=0, batch=2, crop=32, channels="8,16", log_every=1,
                  save_every=1000, eval_n=1)


def scheduler() -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2M) on the cosine schedule, x₀ prediction: good samples in a few steps."""
    return DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                       prediction_type="sample", algorithm_type="dpmsolver++", solver_order=2,
                                       timestep_spacing="trailing")


def build(cfg: Config) -> UNet2DModel:
    ch = tuple(int(c) for c in cfg.channels.split(","))
    return UNet2DModel(sample_size=SIZE, in_channels=6, out_channels=3, layers_per_block=1, block_out_channels=ch,
                       down_block_types=("DownBlock2D",) * len(ch), up_block_types=("UpBlock2D",) * len(ch),
                       add_attention=False, resnet_time_scale_shift="scale_shift", norm_num_groups=8)


# --- data -------------------------------------------------------------------------------------

def _random_rgb(rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    while True:  # keep the edge visible: at least 80 apart in RGB
        c = rng.uniform(0, 255, 3).astype(np.float32)
        if np.linalg.norm(c - other) >= 80:
            return c


def render_batch(cfg: Config, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, np.ndarray]:
    """n scenes at 256 px, (n, 3, 256, 256) in [-1, 1], and each one's first-object coverage (n, 256, 256)."""
    images, alphas = [], []
    for _ in range(n):
        s = domain.sample_scene(rng, "train")
        a = domain.coverage(s, SIZE)[..., None]
        fg, bg = np.asarray(s.fg_rgb, np.float32), np.asarray(s.bg_rgb, np.float32)
        if rng.random() < cfg.p_rgb:
            bg = _random_rgb(rng, fg)
            fg = _random_rgb(rng, bg)
        img = a * fg + (1 - a) * bg
        if rng.random() < cfg.p_second:
            t = domain.sample_scene(rng, "train")
            a2 = domain.coverage(t, SIZE)[..., None]
            img = a2 * _random_rgb(rng, bg) + (1 - a2) * img
        images.append(img)
        alphas.append(a[..., 0])
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2) / 127.5 - 1
    return x, np.stack(alphas)


def degrade(low: torch.Tensor, cfg: Config, rng: np.random.Generator) -> torch.Tensor:
    """The conditioning augmentation of 64 px images (B, 3, 64, 64) in [-1, 1]."""
    out = []
    for x in low:
        x = x[None]
        if rng.random() < cfg.p_roundtrip:
            x = upscale_condition(F.avg_pool2d(x, 2), LOW)
        if rng.random() < cfg.p_blur:
            sigma = float(rng.uniform(0.3, cfg.max_blur))
            x = gaussian_blur(x, 2 * int(np.ceil(3 * sigma)) + 1, sigma)
        if rng.random() < cfg.p_noise:
            gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
            x = x + float(rng.uniform(0, cfg.max_noise)) * torch.randn(x.shape, generator=gen)
            blotch = torch.randn((1, 3, 8, 8), generator=gen)
            x = x + float(rng.uniform(0, cfg.max_blotch)) * F.interpolate(blotch, size=(LOW, LOW), mode="bilinear")
        out.append(x)
    return torch.cat(out)


def crop_corners(alphas: np.ndarray, cfg: Config, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left corners of the crops: mostly centred (±1/4 crop) on a pixel of the first object's outline."""
    corners = []
    hi = SIZE - cfg.crop
    for a in alphas:
        ys, xs = np.nonzero((a > 0.02) & (a < 0.98))
        if len(xs) and rng.random() < cfg.p_edge_crop:
            k = int(rng.integers(len(xs)))
            jitter = rng.integers(-cfg.crop // 4, cfg.crop // 4 + 1, size=2)
            y, x = ys[k] - cfg.crop // 2 + jitter[0], xs[k] - cfg.crop // 2 + jitter[1]
        else:
            y, x = rng.integers(0, hi + 1, size=2)
        corners.append((int(np.clip(y, 0, hi)), int(np.clip(x, 0, hi))))
    return corners


def make_batch(cfg: Config, rng: np.random.Generator, full: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(target crops (B, 3, c, c), conditioning crops (B, 3, c, c)), both in [-1, 1]; with `full`, whole frames
    (full_batch, 3, 256, 256) instead: the flat areas and frame borders the stage meets at test time."""
    hr, alphas = render_batch(cfg, rng, cfg.full_batch if full else cfg.batch)
    cond = upscale_condition(degrade(F.avg_pool2d(hr, SIZE // LOW), cfg, rng), SIZE)
    if full:
        return hr, cond
    c = cfg.crop
    corners = crop_corners(alphas, cfg, rng)
    return (torch.stack([hr[i, :, y:y + c, x:x + c] for i, (y, x) in enumerate(corners)]),
            torch.stack([cond[i, :, y:y + c, x:x + c] for i, (y, x) in enumerate(corners)]))


def edge_map(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) 1 on pixels where images (B, 3, H, W) in [-1, 1] change by > 0.1 towards a neighbour, and
    their 1-pixel rim; 0 elsewhere."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().amax(1, keepdim=True)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().amax(1, keepdim=True)
    change = F.pad(dx, (0, 1)) + F.pad(dx, (1, 0)) + F.pad(dy, (0, 0, 0, 1)) + F.pad(dy, (0, 0, 1, 0))
    return F.max_pool2d((change > 0.1).float(), 3, stride=1, padding=1)


# --- evaluation ---------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(folder: Path, cfg: Config, steps: int = 5) -> dict[str, float]:
    """Held-out scenes: 64 px renders (and the same blurred, σ = 1 px) → the saved stage (fp16 weights, the
    workflows' colour fix); edge width and PSNR against the 256 px renders, and the same for a bicubic enlargement."""
    from nodes.shapes.analyse import edge_width
    from nodes.unclip.models import load_upsampler, upsample

    model = load_upsampler(folder)
    scenes = domain.sample_scenes(cfg.eval_seed, cfg.eval_n, "heldout_combos")
    truth = torch.from_numpy(np.stack([domain.render(s, SIZE) for s in scenes])).permute(0, 3, 1, 2) / 255.0
    low = F.avg_pool2d(truth, SIZE // LOW)
    rows: dict[str, float] = {"truth_edge_px": float(np.nanmean([edge_width(t.permute(1, 2, 0)) for t in truth]))}
    for name, inp in (("sharp", low), ("blurred", gaussian_blur(low, 7, 1.0))):
        for method in ("bicubic", "stage"):
            if method == "bicubic":
                out = upscale_condition(inp, SIZE).clamp(0, 1)
            else:
                out = upsample(model, inp, steps=steps, generator=torch.Generator().manual_seed(0), fix_colors=True,
                               color_sigma=COLOR_SIGMA)
            mse = ((out - truth) ** 2).mean((1, 2, 3))
            rows[f"{name}_{method}_edge_px"] = float(np.nanmean([edge_width(o.permute(1, 2, 0)) for o in out]))
            rows[f"{name}_{method}_psnr"] = float((10 * torch.log10(1 / mse)).mean())
    return {k: round(v, 3) for k, v in rows.items()}


# --- training -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    cfg, out, timer = start(Config, argv, smoke)
    unet = build(cfg)
    if cfg.init:
        init_unet = UNet2DModel.from_pretrained(cfg.init, subfolder="super_res_first", torch_dtype=torch.float32)
        shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
        if shapes(init_unet) != shapes(unet):
            raise SystemExit(f"--init {cfg.init}: its architecture differs from the config's")
        unet = init_unet
        log.info("continuing from %s", cfg.init)
    params = list(unet.parameters())
    n_params = sum(p.numel() for p in params)
    log.info("256 px upsampler params: %.2f M", n_params / 1e6)
    ema = EMAModel(params, decay=cfg.ema)  # decay min(ema, (1 + step) / (10 + step)), as the other stages
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    lr_sched = cosine_lr(opt, cfg.warmup, cfg.steps)
    sched = scheduler()
    abar = sched.alphas_cumprod
    rng = np.random.default_rng(cfg.seed)

    def averaged() -> UNet2DModel:
        model = copy.deepcopy(unet).eval()
        ema.copy_to(model.parameters())
        return model

    def save() -> None:
        averaged().to(torch.float16).save_pretrained(out / "super_res_first", safe_serialization=True)
        sched.save_pretrained(out / "super_res_scheduler")
        write_model_index(out)

    unet.train()
    run_loss = None
    last = min(cfg.steps, cfg.stop_at or cfg.steps)
    for step in range(last):
        hr, cond = make_batch(cfg, rng, full=bool(cfg.full_every) and step % cfg.full_every == cfg.full_every - 1)
        t = torch.randint(0, len(abar), (len(hr),))
        a = abar[t].view(-1, 1, 1, 1)
        noise = torch.randn_like(hr)
        xt = a.sqrt() * hr + (1 - a).sqrt() * noise
        weight = (a / (1 - a)).clamp(1.0, 5.0)  # clamp(SNR, 1, 5), (B, 1, 1, 1)
        if cfg.edge_weight:
            weight = weight * (1 + cfg.edge_weight * edge_map(hr))
        loss = (weight * (unet(torch.cat([xt, cond], dim=1), t).sample - hr) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
        ema.step(params)
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if step % cfg.log_every == 0 or step == last - 1:
            log.info("step %d loss %.4f (ema %.4f)  %.0f s", step, loss.item(), run_loss, timer())
        if (step + 1) % cfg.save_every == 0 and step + 1 < last:
            save()
    save()
    train_seconds = timer()
    metrics = evaluate(out, cfg)
    log.info("held-out: %s", metrics)
    extra = {"steps": last, "batch": cfg.batch, "crop": cfg.crop, "params_M": round(n_params / 1e6, 2),
             "config": asdict(cfg), "heldout": metrics}
    if cfg.init:
        # a continuation: keep the record of what it continued
        prev = Path(cfg.init) / "training_log.json"
        extra["continued_from"] = json.loads(prev.read_text()).get("upsampler_256") if prev.is_file() else cfg.init
    record_time(out, "upsampler_256", train_seconds, extra)
    log.info("saved %s in %.0f s", out / "super_res_first", timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
