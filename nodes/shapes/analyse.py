"""A pixel analyser for Shapes images, independent of every learned model: the judge of all figures.

image (PIL or array, any size) → background colour, object colour, shape, size, position, object
mask, and a confidence / "no object" flag. It measures pixels only:

1. background: the palette colour most border pixels are nearest to; its RGB is their median;
2. object mask: each pixel's position on the line from the background colour to the object colour
   (≥ 0.5: object), computed in two passes (a rough mask by distance from the background gives the
   object colour, then the projection); the largest 4-connected component is the object, so stray
   blobs of a generated image do not count;
3. object colour: the palette colour nearest to the median of the mask's core pixels (the ones far
   from the background, so anti-aliased edges do not drag it);
4. shape: the best intersection-over-union with the four ideal shapes of the same area and centroid,
   rendered by the domain's own geometry (and small scale changes), so soft edges and slightly
   blobby shapes still match the right template; the IoU is the confidence;
5. size: the radius implied by the area for that shape, split between the two size ranges;
6. position: the centroid on the 3×3 grid, split half-way between grid lines.

Images of any size are analysed at (at most) 128 px; the mask is returned at that analysis size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import domain

ANALYSIS_MAX = 128
MIN_AREA = 0.004  # objects smaller than this fraction of the image count as "no object"
# size split: between the largest small radius (0.14) and the smallest large one (0.21), geometric mean
SIZE_SPLIT = math.sqrt(domain.SIZE_RANGES["small"][1] * domain.SIZE_RANGES["large"][0])
# position split: half-way between the grid lines 0.28 / 0.5 / 0.72
POS_SPLITS = ((domain.GRID[0] + domain.GRID[1]) / 2, (domain.GRID[1] + domain.GRID[2]) / 2)
_PALETTE = np.array([domain.PALETTE[c] for c in domain.COLORS], dtype=np.float32)  # (8, 3)
_COL_ROW = {v: k for k, v in domain.POSITIONS.items()}


@dataclass
class Analysis:
    """What the analyser measured. Attribute fields are None when no object was found."""

    found: bool
    background: str
    background_rgb: tuple[int, int, int]
    color: str | None = None
    color_rgb: tuple[int, int, int] | None = None
    shape: str | None = None
    size: str | None = None
    position: str | None = None
    mask: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), bool), repr=False)  # (S, S) bool
    center: tuple[float, float] | None = None  # (x, y) fractions of the side
    radius: float | None = None  # implied r, fraction of the side
    area: float = 0.0  # object area, fraction of the image
    shape_iou: float = 0.0  # best template IoU: the shape confidence
    shape_scores: dict[str, float] = field(default_factory=dict)

    def attributes(self) -> dict[str, str | None]:
        return {"color": self.color, "shape": self.shape, "size": self.size, "position": self.position,
                "background": self.background}


def to_array(image, max_side: int | None = ANALYSIS_MAX) -> np.ndarray:
    """PIL image, uint8 (H, W, 3) or float (H, W, 3) in [0, 1], or (3, H, W) → float32 (H, W, 3) in 0..255,
    box-downsampled so that its longest side is at most `max_side` (None: full resolution)."""
    if isinstance(image, Image.Image):
        arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    else:
        arr = np.asarray(image)
        if hasattr(image, "detach"):  # a torch tensor
            arr = image.detach().cpu().numpy()
        if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
            arr = arr.transpose(1, 2, 0)
        arr = arr.astype(np.float32)
        if arr.max() <= 1.0 + 1e-6 and np.asarray(image).dtype != np.uint8:
            arr = arr * 255.0
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {arr.shape}")
    h, w = arr.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        s = max_side / max(h, w)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        arr = np.asarray(img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BOX),
                         dtype=np.float32)
    return arr


def nearest_color(rgb) -> str:
    d = ((_PALETTE - np.asarray(rgb, dtype=np.float32)) ** 2).sum(-1)
    return domain.COLORS[int(d.argmin())]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of a bool mask (label propagation; no scipy needed)."""
    if not mask.any():
        return mask
    h, w = mask.shape
    big = np.iinfo(np.int64).max
    labels = np.where(mask, np.arange(h * w).reshape(h, w), big)
    while True:
        m = labels.copy()
        m[1:, :] = np.minimum(m[1:, :], labels[:-1, :])
        m[:-1, :] = np.minimum(m[:-1, :], labels[1:, :])
        m[:, 1:] = np.minimum(m[:, 1:], labels[:, :-1])
        m[:, :-1] = np.minimum(m[:, :-1], labels[:, 1:])
        m = np.where(mask, m, big)
        if np.array_equal(m, labels):
            break
        labels = m
    ids, counts = np.unique(labels[mask], return_counts=True)
    return labels == ids[counts.argmax()]


def _template_iou(mask: np.ndarray, shape: str, cx: float, cy: float, r: float) -> float:
    side = mask.shape[0]
    scene = domain.Scene(color="", shape=shape, size="", position="", background="", fg_rgb=(0, 0, 0),
                         bg_rgb=(0, 0, 0), cx=cx, cy=cy, r=r)
    tmpl = domain.coverage(scene, side, supersample=4) >= 0.5
    inter = np.logical_and(tmpl, mask).sum()
    union = np.logical_or(tmpl, mask).sum()
    return float(inter / union) if union else 0.0


def classify_shape(mask: np.ndarray, cx: float, cy: float, area: float) -> tuple[str, float, dict[str, float]]:
    """Shape with the best template IoU (same area and centroid; scale ±12 %)."""
    scores = {}
    for shape in domain.SHAPES:
        r0 = math.sqrt(area / domain.SHAPE_AREA_FACTOR[shape])
        scores[shape] = max(_template_iou(mask, shape, cx, cy, r0 * s) for s in (0.88, 1.0, 1.12))
    best = max(scores, key=scores.get)
    return best, scores[best], scores


def position_name(cx: float, cy: float) -> str:
    col = 0 if cx < POS_SPLITS[0] else (2 if cx > POS_SPLITS[1] else 1)
    row = 0 if cy < POS_SPLITS[0] else (2 if cy > POS_SPLITS[1] else 1)
    return _COL_ROW[(col, row)]


def analyse(image) -> Analysis:
    """Measure one image. See the module docstring for the method."""
    arr = to_array(image)
    h, w = arr.shape[:2]
    if h != w:  # the domain is square; centre-crop anything else
        s = min(h, w)
        arr = arr[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    side = arr.shape[0]
    flat = arr.reshape(-1, 3)

    # 1. background from the border (1/16 of the side, at least one pixel)
    b = max(1, side // 16)
    border = np.concatenate([arr[:b].reshape(-1, 3), arr[-b:].reshape(-1, 3), arr[:, :b].reshape(-1, 3),
                             arr[:, -b:].reshape(-1, 3)])
    near = ((border[:, None, :] - _PALETTE[None]) ** 2).sum(-1).argmin(1)
    bg_idx = int(np.bincount(near, minlength=len(_PALETTE)).argmax())
    bg_rgb = np.median(border[near == bg_idx], axis=0)
    background = domain.COLORS[bg_idx]
    result = Analysis(found=False, background=background, background_rgb=tuple(int(v) for v in bg_rgb),
                      mask=np.zeros((side, side), bool))

    # 2. rough object: far from the background colour
    dist = np.sqrt(((flat - bg_rgb) ** 2).sum(-1)).reshape(side, side)
    # threshold: below the distance to the palette colour nearest the background (orange/yellow is ~83)
    others = np.delete(_PALETTE, bg_idx, axis=0)
    thresh = min(60.0, 0.45 * float(np.sqrt(((others - _PALETTE[bg_idx]) ** 2).sum(-1)).min()))
    rough = largest_component(dist > thresh)
    if rough.sum() < MIN_AREA * side * side:
        return result
    # object colour from the core: the pixels farthest from the background within the rough mask
    d_obj = dist[rough]
    core = flat.reshape(side, side, 3)[rough][d_obj >= np.percentile(d_obj, 50)]
    fg_rgb = np.median(core, axis=0)
    # 3. final mask: projection on the background → object line ≥ 0.5
    axis = fg_rgb - bg_rgb
    denom = float((axis ** 2).sum())
    if denom < 1e-6:
        return result
    t = ((flat - bg_rgb) @ axis / denom).reshape(side, side)
    mask = largest_component(t >= 0.5)
    area_px = int(mask.sum())
    if area_px < MIN_AREA * side * side:
        return result
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.mean() + 0.5) / side, (ys.mean() + 0.5) / side
    area = area_px / (side * side)
    shape, iou, scores = classify_shape(mask, cx, cy, area)
    radius = math.sqrt(area / domain.SHAPE_AREA_FACTOR[shape])
    result.found = True
    result.color = nearest_color(fg_rgb)
    result.color_rgb = tuple(int(v) for v in fg_rgb)
    result.shape, result.shape_iou, result.shape_scores = shape, iou, scores
    result.size = "small" if radius < SIZE_SPLIT else "large"
    result.position = position_name(cx, cy)
    result.mask, result.center, result.radius, result.area = mask, (float(cx), float(cy)), radius, area
    return result


def edge_width(image) -> float:
    """Mean 10–90 % width of the object's outline, in pixels of the image's own resolution (nan: no object).

    Each pixel's position t on the line from the background colour to the object colour (the
    analyser's two colours) is taken in a band around the outline; the width is the number of band
    pixels with 0.1 < t < 0.9 divided by the band's total variation Σ|∇t|, which equals the outline's
    length in pixels however blurred the edge is. A box-filtered render (`domain.render`) measures
    about 0.9 px at any size; a bicubic 4× enlargement of one about 3.5 px.
    """
    from PIL import ImageFilter

    result = analyse(image)
    if not result.found:
        return float("nan")
    arr = to_array(image, max_side=None)
    side = min(arr.shape[:2])
    arr = arr[:side, :side]
    bg = np.asarray(result.background_rgb, dtype=np.float32)
    axis = np.asarray(result.color_rgb, dtype=np.float32) - bg
    t = np.clip((arr - bg) @ axis / float((axis ** 2).sum()), 0.0, 1.0)
    # the band: the (analysis-size) mask at full size, dilated minus eroded by ~3 % of the side
    mask = Image.fromarray(result.mask.astype(np.uint8) * 255).resize((side, side), Image.Resampling.NEAREST)
    k = 2 * max(2, round(side / 32)) + 1
    band = ((np.asarray(mask.filter(ImageFilter.MaxFilter(k))) > 127)
            & ~(np.asarray(mask.filter(ImageFilter.MinFilter(k))) > 127))
    gy, gx = np.gradient(t)
    length = float(np.sqrt(gx ** 2 + gy ** 2)[band].sum())
    return float(((t > 0.1) & (t < 0.9) & band).sum() / length) if length > 0 else float("nan")


def template_mask(shape: str, center: tuple[float, float], radius: float, side: int) -> np.ndarray:
    """The ideal (side, side) bool mask of `shape` at `center` (fractions) with radius r: where an object
    of that shape would be if it kept another object's place and size."""
    scene = domain.Scene(color="", shape=shape, size="", position="", background="", fg_rgb=(0, 0, 0),
                         bg_rgb=(0, 0, 0), cx=center[0], cy=center[1], r=radius)
    return domain.coverage(scene, side, supersample=4) >= 0.5


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks (resized to the smaller one's side with nearest neighbour if they differ)."""
    if a.shape != b.shape:
        side = min(a.shape[0], b.shape[0])
        a = np.asarray(Image.fromarray(a.astype(np.uint8) * 255).resize((side, side), Image.Resampling.NEAREST)) > 127
        b = np.asarray(Image.fromarray(b.astype(np.uint8) * 255).resize((side, side), Image.Resampling.NEAREST)) > 127
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
