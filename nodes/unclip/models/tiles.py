"""Tile-sparse denoising: run a fully convolutional UNet only on the tiles of a frame that need it.

A super-resolution stage that keeps the bicubic enlargement wherever its input is flat
(`upsampler.keep_flat`) throws away what its UNet drew there. On Shapes scenes 4–11 % of a 256 px
frame is not flat, so the UNet runs on a batch of crops instead of the frame: each active tile
(a square of `tile` px holding a pixel the output keeps) with a `halo` of context on every side,
clamped inside the frame. An upsampler without attention trained on random crops (the 256 px
stage: 64 px crops) sees such crops in training, so the tiles are exact in spirit, not in bits:
the UNet's GroupNorm statistics and its receptive field beyond the halo differ from a frame's.

Pixels no tile covers get the prediction of a clean image equal to the conditioning (the
bicubic enlargement), so a multi-step sampler's later steps see sensible context in the halos.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Tiles:
    """Where the UNet runs: crop k of side `size` at `crops[k]` (b, y, x) in frame b, whose
    prediction is kept on `tiles[k]` (y0, y1, x0, x1); `covered` (B, 1, H, W) marks those pixels."""

    size: int
    crops: list[tuple[int, int, int]]
    tiles: list[tuple[int, int, int, int]]
    covered: torch.Tensor


def plan_tiles(active: torch.Tensor, tile: int, halo: int, multiple: int = 1) -> Tiles | None:
    """The tiles of a `tile` px grid holding an `active` pixel ((B, 1, H, W) bool), with crops of
    side tile + 2 × halo; None when the crops would cost as much as the frames (or do not fit)."""
    if tile < 1 or halo < 0:
        raise ValueError(f"tile must be ≥ 1 and halo ≥ 0, got tile={tile}, halo={halo}")
    size = tile + 2 * halo
    if size % multiple:
        raise ValueError(f"tile + 2 × halo = {size} px, but this UNet takes sides that are multiples of "
                         f"{multiple}; pick a tile size (or halo) that makes it one")
    batch, _, height, width = active.shape
    if height < size or width < size:
        return None
    ny, nx = -(-height // tile), -(-width // tile)
    padded = F.pad(active.float(), (0, nx * tile - width, 0, ny * tile - height))
    hits = F.max_pool2d(padded, tile).nonzero().tolist()  # [b, 0, i, j] per active tile
    if len(hits) * size * size >= batch * height * width:
        return None
    covered = torch.zeros_like(active, dtype=torch.bool)
    crops, tiles = [], []
    for b, _, i, j in hits:
        y0, x0 = i * tile, j * tile
        y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
        crops.append((b, min(max(y0 - halo, 0), height - size), min(max(x0 - halo, 0), width - size)))
        tiles.append((y0, y1, x0, x1))
        covered[b, :, y0:y1, x0:x1] = True
    return Tiles(size, crops, tiles, covered)


def tiled_forward(net, sample: torch.Tensor, timestep, tiles: Tiles, fill: torch.Tensor,
                  chunk: int = 64, class_labels: torch.Tensor | None = None) -> torch.Tensor:
    """`net(sample, timestep).sample` on the tiles' crops, batched `chunk` at a time, pasted into
    `fill` ((B, C_out, H, W), the prediction wherever no tile runs); `class_labels` (B, T), if any,
    go with each crop's frame."""
    if not tiles.crops:  # a flat frame: the input's enlargement is the whole answer
        return fill
    s = tiles.size
    crops = torch.stack([sample[b, :, y:y + s, x:x + s] for b, y, x in tiles.crops])
    labels = None if class_labels is None else class_labels[[b for b, _, _ in tiles.crops]]
    preds = torch.cat([net(sample=crops[i:i + chunk], timestep=timestep,
                           **({} if labels is None else {"class_labels": labels[i:i + chunk]})).sample
                       for i in range(0, crops.shape[0], chunk)])
    out = fill.clone()
    for pred, (b, y, x), (y0, y1, x0, x1) in zip(preds, tiles.crops, tiles.tiles, strict=True):
        out[b, :, y0:y1, x0:x1] = pred[:, y0 - y:y1 - y, x0 - x:x1 - x]
    return out


def clean_prediction(sched, x0: torch.Tensor, latents: torch.Tensor, timestep) -> torch.Tensor | None:
    """The model output that predicts the clean image `x0` from `latents` at `timestep` under the
    scheduler's prediction type; None when the scheduler's latents are not on the DDPM scale
    (Euler-style σ scaling) or its prediction type is another."""
    acp = getattr(sched, "alphas_cumprod", None)
    if acp is None or float(sched.init_noise_sigma) != 1.0:
        return None
    pred = sched.config.get("prediction_type", "epsilon")
    if pred == "sample":
        return x0
    a = acp[int(timestep)].to(latents.dtype)
    eps = (latents - a.sqrt() * x0) / (1 - a).sqrt()
    if pred == "epsilon":
        return eps
    if pred == "v_prediction":
        return a.sqrt() * eps - (1 - a).sqrt() * x0
    return None


def gaussian_blur(images: torch.Tensor, sigma: float, kernel: int | None = None) -> torch.Tensor:
    """torchvision's `gaussian_blur` (same kernel, reflect padding) as two 1-D passes: at σ = 8 px
    its 49 × 49 kernel costs 25× more than the separable pair."""
    k = kernel or 2 * round(3 * sigma) + 1
    half = (k - 1) * 0.5
    x = torch.linspace(-half, half, steps=k, dtype=images.dtype)
    pdf = torch.exp(-0.5 * (x / sigma).pow(2))
    k1 = (pdf / pdf.sum()).to(images.device)
    c = images.shape[1]
    out = F.pad(images, (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    out = F.conv2d(out, k1.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(out, k1.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
