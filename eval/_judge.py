"""Per-image verdicts from the pixel analyser: named attributes, a clean scene, distinct backgrounds.

A *clean* scene is what the domain renders: the background within `BG_TOLERANCE` RGB (Euclidean)
of a palette colour, one object whose best shape template fits with IoU ≥ `MIN_TEMPLATE_IOU`
(ground-truth 64 px renders fit at ≥ 0.88; two different shapes of one area and centre overlap at
most 0.83, a circle and a square), and almost nothing else: at most `MAX_STRAY` of the pixels
outside the object (grown by one pixel) stray more than `STRAY_RGB` from the background colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nodes.shapes import analyse, domain

BG_TOLERANCE = 40.0
MIN_TEMPLATE_IOU = 0.85
STRAY_RGB = 60.0
MAX_STRAY = 0.02
_PALETTE = np.array([domain.PALETTE[c] for c in domain.COLORS], dtype=np.float32)


@dataclass
class Verdict:
    """What one image shows, against the attributes its prompt named."""

    analysis: analyse.Analysis
    named: dict[str, str]
    background_distance: float  # RGB distance of the measured background to the nearest palette colour
    stray: float  # fraction of non-object pixels far from the background colour

    @property
    def clean(self) -> bool:
        return (self.analysis.found and self.background_distance <= BG_TOLERANCE
                and self.analysis.shape_iou >= MIN_TEMPLATE_IOU and self.stray <= MAX_STRAY)

    def right(self, attribute: str) -> bool:
        return self.analysis.attributes()[attribute] == self.named[attribute]

    @property
    def all_named_right(self) -> bool:
        return all(self.right(a) for a in self.named)


def _grow(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def judge(image, named: dict[str, str]) -> Verdict:
    """The verdict on one image (uint8 or float RGB, any size) for a prompt that named `named`."""
    a = analyse.analyse(image)
    arr = analyse.to_array(image)
    bg = np.asarray(a.background_rgb, dtype=np.float32)
    bg_dist = float(np.sqrt(((_PALETTE - bg) ** 2).sum(-1)).min())
    if arr.shape[:2] != a.mask.shape:  # the analyser centre-crops non-square images
        side = a.mask.shape[0]
        h, w = arr.shape[:2]
        arr = arr[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    outside = ~_grow(a.mask)
    far = np.sqrt(((arr - bg) ** 2).sum(-1)) > STRAY_RGB
    stray = float(far[outside].mean()) if outside.any() else 0.0
    return Verdict(a, dict(named), bg_dist, stray)


def summarise(verdicts: Sequence[Verdict], group: int = 1) -> dict[str, float]:
    """Accuracy per named attribute (over the images whose prompt named it), all named right, clean,
    and — with `group` images per prompt, consecutive — distinct backgrounds per prompt, averaged over
    the prompts that left the background open."""
    out: dict[str, float] = {"n": float(len(verdicts))}
    for attr in domain.ATTRIBUTES:
        hits = [v.right(attr) for v in verdicts if attr in v.named]
        if hits:
            out[attr] = float(np.mean(hits))
    out["all_named"] = float(np.mean([v.all_named_right for v in verdicts])) if verdicts else 0.0
    out["clean"] = float(np.mean([v.clean for v in verdicts])) if verdicts else 0.0
    if group > 1:
        distinct = [len({v.analysis.background for v in verdicts[i:i + group]})
                    for i in range(0, len(verdicts), group) if "background" not in verdicts[i].named]
        if distinct:
            out["distinct_backgrounds"] = float(np.mean(distinct))
    return out
