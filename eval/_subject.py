"""The example DreamBooth subject (a heart, which the Shapes domain never renders) and its judge.

`render_heart` draws the classic heart curve with the area of a circle of radius r, centred on its
centroid, like the domain draws its shapes. `judge_heart` says whether an image shows a heart: the
heart template of the measured object's area and centroid fits better than every domain shape and
with IoU ≥ `MIN_HEART_IOU`; it also reads the colour, size (equivalent radius) and position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nodes.shapes import analyse, domain

MIN_HEART_IOU = 0.7
EXAMPLES = ("heart_1", "heart_2", "heart_3", "heart_4")
# the shipped example: a red heart, at four sizes / positions / backgrounds
EXAMPLE_SCENES = (("red", "white", "large", "center"), ("red", "blue", "large", "top left"),
                  ("red", "yellow", "small", "right"), ("red", "black", "large", "bottom"))


def _curve(n: int = 200) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))  # y grows downwards
    pts = np.stack([x, y], 1)
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    c = pts.mean(0)  # dense uniform-in-t samples: close enough to the centroid at this scale
    return (pts - c) / math.sqrt(area / math.pi)  # unit equivalent radius


_UNIT = _curve()


def heart_coverage(cx: float, cy: float, r: float, size: int, supersample: int = 4) -> np.ndarray:
    big = size * supersample
    img = Image.new("L", (big, big), 0)
    pts = (_UNIT * r + (cx, cy)) * big - 0.5
    ImageDraw.Draw(img).polygon([tuple(p) for p in pts], fill=255)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0


def render_heart(color: str, background: str, size: str, position: str, rng: np.random.Generator,
                 side: int = 64) -> np.ndarray:
    s = domain.make_scene(rng, color, background, "circle", size, position)
    a = heart_coverage(s.cx, s.cy, s.r, side)[..., None]
    img = a * np.asarray(s.fg_rgb, np.float32) + (1 - a) * np.asarray(s.bg_rgb, np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_examples(folder: Path, seed: int = 24) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for name, attrs in zip(EXAMPLES, EXAMPLE_SCENES, strict=True):
        path = folder / f"{name}.png"
        Image.fromarray(render_heart(*attrs, rng)).save(path, optimize=True)
        paths.append(path)
    return paths


@dataclass
class HeartVerdict:
    heart: bool
    heart_iou: float
    best_other: float
    color: str | None
    size: str | None
    position: str | None


def judge_heart(image) -> HeartVerdict:
    a = analyse.analyse(image)
    if not a.found or a.center is None:
        return HeartVerdict(False, 0.0, 0.0, None, None, None)
    side = a.mask.shape[0]
    r = math.sqrt(a.area / math.pi)
    tmpl = heart_coverage(a.center[0], a.center[1], r, side) >= 0.5
    inter = (tmpl & a.mask).sum()
    iou = float(inter / max(1, (tmpl | a.mask).sum()))
    other = max(a.shape_scores.values()) if a.shape_scores else 0.0
    size = "large" if r >= analyse.SIZE_SPLIT * 1.0 else "small"
    return HeartVerdict(iou >= MIN_HEART_IOU and iou > other, iou, float(other), a.color, size, a.position)
