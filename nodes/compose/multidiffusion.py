"""MultiDiffusion (Bar-Tal et al., 2023) for an unCLIP decoder: fused diffusion paths over windows.

A *path* is one prompt (a row of image embeddings and text) denoised on one decoder-sized window of
the canvas, with a per-pixel weight over that window. At every step each path predicts on its
window (all paths in one UNet batch); the predictions are fused by the weighted average of the
paths covering each pixel, which is the closed-form solution of the paper's least-squares
objective; then the scheduler takes one step on the whole canvas. Fusing the model outputs
rather than each path's stepped sample is the same for a deterministic sampler (DDIM, the shipped
default: the step is affine in the prediction) and keeps one noise draw per pixel for a
stochastic one.

Two ways to lay out paths:

- `region_paths`: each region (a mask on the canvas) is one path on the window centred on the
  region (or several, slid over a region larger than a window), weight 1 inside the region, 0
  inside the other regions, `background` elsewhere: outside every region the prompts share the
  background, as in the paper's region-based generation;
- `panorama_paths`: windows slid across the canvas with a stride, each with weight 1 (the paper's
  panorama), prompt k on window k when several prompts are given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..unclip.api import TextEncoding, decoder_conditioning, schedulers


@dataclass(frozen=True)
class DiffusionPath:
    """One prompt on one window: `row` of the embeddings/text, window origin (y0, x0), weight (S, S)."""

    row: int
    y0: int
    x0: int
    weight: torch.Tensor
    region: torch.Tensor | None = None  # (S, S) bool: the path's own region
    others: torch.Tensor | None = None  # (S, S) bool: the other regions, hidden from this path when isolating


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Origins of windows of `size` every `stride` pixels along `length`, the last one flush with the end."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def panorama_paths(height: int, width: int, size: int, stride: int, prompts: int) -> list[DiffusionPath]:
    """Sliding windows over the canvas, weight 1; with several prompts, prompt k on window k (row-major)."""
    origins = [(y, x) for y in window_starts(height, size, stride) for x in window_starts(width, size, stride)]
    if prompts not in (1, len(origins)):
        raise ValueError(f"a {width}×{height} canvas with stride {stride} has {len(origins)} windows but "
                         f"{prompts} prompts were given; give one prompt, or one per window")
    ones = torch.ones(size, size)
    return [DiffusionPath(k if prompts > 1 else 0, y, x, ones) for k, (y, x) in enumerate(origins)]


def region_paths(masks: torch.Tensor, size: int, background: float, stride: int = 16) -> list[DiffusionPath]:
    """Paths of region masks (R, H, W) in [0, 1]: the decoder window centred on each region, or, for a
    region larger than one window, windows slid by `stride` over it."""
    regions, height, width = masks.shape
    union = masks.amax(0)
    paths = []
    for r in range(regions):
        ys, xs = torch.nonzero(masks[r] > 0, as_tuple=True)
        if ys.numel() == 0:
            raise ValueError(f"region {r + 1} is empty; give every region a box or mask of at least one pixel")
        origins = [(y0, x0) for y0 in _span(int(ys.min()), int(ys.max()) + 1, height, size, stride)
                   for x0 in _span(int(xs.min()), int(xs.max()) + 1, width, size, stride)]
        for y0, x0 in origins:
            own = masks[r, y0:y0 + size, x0:x0 + size]
            others = (union - masks[r]).clamp(0, 1)[y0:y0 + size, x0:x0 + size]
            free = 1 - union[y0:y0 + size, x0:x0 + size]
            paths.append(DiffusionPath(r, y0, x0, own + background * free * (1 - others), own > 0, others > 0))
    return paths


def _span(lo: int, hi: int, length: int, size: int, stride: int) -> list[int]:
    """Window origins covering [lo, hi): one window centred on it, or windows slid over it when wider."""
    if hi - lo <= size:
        return [min(max((lo + hi) // 2 - size // 2, 0), max(length - size, 0))]
    return [lo + s for s in window_starts(hi - lo, size, stride)]


def coverage(paths: list[DiffusionPath], height: int, width: int) -> torch.Tensor:
    """Total weight on each canvas pixel, (H, W)."""
    total = torch.zeros(height, width)
    for p in paths:
        total[p.y0:p.y0 + p.weight.shape[0], p.x0:p.x0 + p.weight.shape[1]] += p.weight
    return total


def check_coverage(paths: list[DiffusionPath], height: int, width: int) -> None:
    empty = coverage(paths, height, width) <= 0
    if bool(empty.any()):
        ys, xs = torch.nonzero(empty, as_tuple=True)
        raise ValueError(f"{int(empty.sum())} canvas pixels (x {int(xs.min())}–{int(xs.max())}, y {int(ys.min())}–"
                         f"{int(ys.max())}) are in no window with weight (on a canvas larger than the decoder's window, "
                         "the regions' windows must cover it); raise the background weight, add a region there, or "
                         "make the canvas smaller")


def sample_multidiffusion(model, image_embeds: torch.Tensor, cond: TextEncoding, uncond: TextEncoding,
                          paths: list[DiffusionPath], height: int, width: int, guidance: float = 1.5,
                          steps: int = 25, generator: torch.Generator | None = None, scheduler: str | None = None,
                          callback=None, isolate: float = 0.0) -> torch.Tensor:
    """Decode one (1, 3, H, W) canvas in [0, 1] from prompts (P, D) / `cond` (1 or P rows) fused over `paths`.

    isolate: over that fraction of the first steps, a region path sees the other regions in its window
    replaced by the shared background (the mean of the current clean-image estimate outside every
    region) noised to the current step, so a decoder trained on one object per image never sees
    another region's object while painting its own (the paper's bootstrapping, with the background
    in place of its random solid colour and the region's own surroundings kept).
    """
    from diffusers.utils.torch_utils import randn_tensor

    unet = model.unet
    dtype = unet.dtype
    size, channels = model.sample_size, unet.config.in_channels
    if height < size or width < size:
        raise ValueError(f"the canvas {width}×{height} is smaller than the decoder's {size}×{size} window")
    if image_embeds.shape[-1] != model.embedding_dim:
        raise ValueError(f"this decoder expects CLIP embeddings of width {model.embedding_dim}, got "
                         f"{image_embeds.shape[-1]}; use the CLIP and prior of the decoder's bundle")
    check_coverage(paths, height, width)
    prompts = image_embeds.shape[0]
    cond = cond.expand(prompts)
    do_cfg = guidance != 1.0
    text = TextEncoding.cat([uncond.expand(prompts), cond]) if do_cfg else cond
    text = TextEncoding(text.embeds.to(dtype), text.hidden.to(dtype), text.mask)
    hidden, additive, mask = decoder_conditioning(model, image_embeds.to(dtype), text, do_cfg)
    rows = torch.tensor([p.row for p in paths])
    if do_cfg:  # [uncond rows; cond rows] as the conditioning is laid out
        rows = torch.cat([rows, rows + prompts])
    hidden, additive, mask = hidden[rows], additive[rows], mask[rows]
    weights = torch.stack([p.weight for p in paths])[:, None].to(dtype)  # (N, 1, S, S)
    total = coverage(paths, height, width).to(dtype)

    sched = schedulers.make_scheduler(model.scheduler, scheduler)
    ts = schedulers.timesteps(sched, steps)
    latents = randn_tensor((1, channels, height, width), generator=generator, dtype=dtype) * sched.init_noise_sigma
    isolated = round(isolate * len(ts)) if any(p.others is not None and bool(p.others.any()) for p in paths) else 0
    abar = getattr(sched, "alphas_cumprod", None)
    if isolated and (abar is None or float(sched.init_noise_sigma) != 1.0):
        raise ValueError(f"isolating regions noises the background for a variance-preserving sampler, but the "
                         f"scheduler is {type(sched).__name__}; set isolate to 0 or use 'ddim'/'ddpm'")
    free = coverage([DiffusionPath(0, p.y0, p.x0, p.region.float()) for p in paths if p.region is not None],
                    height, width) == 0  # (H, W): outside every region
    estimate = latents
    for i, t in enumerate(ts):
        x = sched.scale_model_input(latents, t)
        windows = torch.cat([x[:, :, p.y0:p.y0 + size, p.x0:p.x0 + size] for p in paths])  # (N, C, S, S)
        if i < isolated:
            background = estimate[0][:, free].mean(-1) if bool(free.any()) else torch.zeros(channels)
            windows = _isolate(windows, paths, background.clamp(-1, 1), abar[int(t)], generator)
        if do_cfg:
            windows = torch.cat([windows, windows])
        pred = unet(sample=windows, timestep=t, encoder_hidden_states=hidden, class_labels=additive,
                    attention_mask=mask).sample
        if do_cfg:
            p_uncond, p_text = pred.chunk(2)
            pred = p_uncond[:, :channels] + guidance * (p_text[:, :channels] - p_uncond[:, :channels])
            pred = torch.cat([pred, p_text[:, channels:]], dim=1)
        fused = torch.zeros(1, pred.shape[1], height, width, dtype=dtype)
        for k, p in enumerate(paths):
            fused[:, :, p.y0:p.y0 + size, p.x0:p.x0 + size] += pred[k:k + 1] * weights[k]
        fused = fused / total
        out = schedulers.step(sched, fused, t, latents, schedulers.prev_timestep(ts, i), generator)
        latents = out.prev_sample
        estimate = getattr(out, "pred_original_sample", None)
        estimate = latents if estimate is None else estimate
        if callback is not None:
            callback(i + 1, len(ts), schedulers.preview(out, latents))
    return latents.clamp(-1, 1) * 0.5 + 0.5


def _isolate(windows: torch.Tensor, paths: list[DiffusionPath], background: torch.Tensor, abar: torch.Tensor,
             generator) -> torch.Tensor:
    """Windows (N, C, S, S) with the other regions of each path replaced by `background` (C,) at noise level abar."""
    out = windows.clone()
    for k, p in enumerate(paths):
        if p.others is None or not bool(p.others.any()):
            continue
        noise = torch.randn(windows[k:k + 1].shape, generator=generator)
        bg = (abar.sqrt() * background[None, :, None, None] + (1 - abar).sqrt() * noise).to(windows.dtype)
        out[k:k + 1] = torch.where(p.others, bg, windows[k:k + 1])
    return out
