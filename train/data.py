"""The Shapes training set: generated from a seed, cached under `data/` (git-ignored), never committed.

Scenes come from `nodes.shapes.domain` (training split only: held-out colour–shape pairs and
held-out attribute combinations never appear). Images are rendered at 64 px and box-downsampled
to 32 px (an exact area average, the same as rendering at 32 px with 8× supersampling). Captions
are drawn fresh at every use from the stored attributes, so every epoch sees new paraphrases.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nodes.shapes import domain

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"

COLOR_IDX = {c: i for i, c in enumerate(domain.COLORS)}
SHAPE_IDX = {s: i for i, s in enumerate(domain.SHAPES)}
SIZE_IDX = {s: i for i, s in enumerate(domain.SIZES)}
POS_IDX = {p: i for i, p in enumerate(domain.POSITION_NAMES)}
# Attribute label columns, in this order: colour, background, shape, size, position.
LABEL_SIZES = (len(domain.COLORS), len(domain.COLORS), len(domain.SHAPES), len(domain.SIZES),
               len(domain.POSITION_NAMES))


@dataclass
class ShapesData:
    """Images and attribute labels of the training split."""

    images64: np.ndarray  # (N, 64, 64, 3) uint8
    images32: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N, 5) int64: colour, background, shape, size, position
    fg_rgb: np.ndarray  # (N, 3) uint8: the jittered object colour
    bg_rgb: np.ndarray  # (N, 3) uint8: the jittered background colour

    def __len__(self) -> int:
        return len(self.labels)

    def attrs(self, i: int) -> dict[str, str]:
        c, b, s, z, p = (int(v) for v in self.labels[i])
        return {"color": domain.COLORS[c], "background": domain.COLORS[b], "shape": domain.SHAPES[s],
                "size": domain.SIZES[z], "position": domain.POSITION_NAMES[p]}

    def captions(self, idx: np.ndarray, rng: np.random.Generator, p_empty: float = 0.0) -> list[str]:
        """Fresh random captions for rows `idx`; with probability p_empty the empty caption."""
        return ["" if rng.random() < p_empty else domain.caption(self.attrs(int(i)), rng) for i in idx]


def generate(seed: int, n: int) -> ShapesData:
    scenes = domain.sample_scenes(seed, n, split="train")
    im64 = np.stack([domain.render(s, 64) for s in scenes])
    im32 = downsample(im64)
    labels = np.array([[COLOR_IDX[s.color], COLOR_IDX[s.background], SHAPE_IDX[s.shape], SIZE_IDX[s.size],
                        POS_IDX[s.position]] for s in scenes], dtype=np.int64)
    fg = np.array([s.fg_rgb for s in scenes], dtype=np.uint8)
    bg = np.array([s.bg_rgb for s in scenes], dtype=np.uint8)
    return ShapesData(im64, im32, labels, fg, bg)


def downsample(im64: np.ndarray) -> np.ndarray:
    """64 px uint8 images (N, 64, 64, 3) → 32 px by an exact 2×2 area average."""
    n = len(im64)
    im32 = im64.reshape(n, 32, 2, 32, 2, 3).astype(np.float32).mean(axis=(2, 4))
    return np.clip(np.rint(im32), 0, 255).astype(np.uint8)


def load(seed: int = 0, n: int = 60_000, cache: bool = True) -> ShapesData:
    """The dataset for (seed, n), from the cache when present."""
    path = DATA_DIR / f"shapes-v2-s{seed}-n{n}.npz"
    if cache and path.exists():
        z = np.load(path)
        return ShapesData(z["images64"], z["images32"], z["labels"], z["fg_rgb"], z["bg_rgb"])
    t0 = time.time()
    data = generate(seed, n)
    log.info("generated %d scenes in %.1f s", n, time.time() - t0)
    if cache:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, images64=data.images64, images32=data.images32, labels=data.labels, fg_rgb=data.fg_rgb,
                 bg_rgb=data.bg_rgb)
        tmp.replace(path)
    return data


def recolor(images: np.ndarray, bg: np.ndarray, fg: np.ndarray, new_fg: np.ndarray) -> np.ndarray:
    """Repaint the object of rendered images (B, H, W, 3) uint8 with `new_fg` (B, 3).

    A rendered pixel is the blend a·fg + (1 − a)·bg, so its coverage a is its projection on the
    bg → fg line; the anti-aliased edges stay exact.
    """
    img = images.astype(np.float32)
    bg, fg, new = (x.astype(np.float32)[:, None, None, :] for x in (bg, fg, new_fg))
    axis = fg - bg
    a = np.clip(((img - bg) * axis).sum(-1, keepdims=True) / np.maximum((axis ** 2).sum(-1, keepdims=True), 1e-6),
                0, 1)
    return np.clip(np.rint(a * new + (1 - a) * bg), 0, 255).astype(np.uint8)


def random_object_colors(rng: np.random.Generator, shapes: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Random RGB object colours (B, 3) for shape indices `shapes`, never forming a held-out pair.

    Rejected: colours whose nearest palette colour is held out for that shape (so no training image
    shows, e.g., anything the analyser would call a red star) and colours too close to the background.
    """
    palette = np.array([domain.PALETTE[c] for c in domain.COLORS], dtype=np.float32)
    out = np.zeros((len(shapes), 3), dtype=np.uint8)
    for i, (shape, b) in enumerate(zip(shapes, bg.astype(np.float32), strict=True)):
        while True:
            rgb = rng.integers(0, 256, size=3).astype(np.float32)
            nearest = domain.COLORS[int(((palette - rgb) ** 2).sum(-1).argmin())]
            if (nearest, domain.SHAPES[int(shape)]) in domain.HELDOUT_PAIRS:
                continue
            if np.sqrt(((rgb - b) ** 2).sum()) < 80:
                continue
            out[i] = rgb.astype(np.uint8)
            break
    return out


def to_tensor(images: np.ndarray):
    """uint8 (B, H, W, 3) → float32 torch (B, 3, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
