"""A mask from prompts: a point (positive or negative), optional extra points, an optional box.

Coordinates are in one of two units, the same for every point and box of the node:

- ``fraction``: 0..1 of the image width (x) and height (y), (0, 0) the top-left corner, (1, 1) the
  bottom-right one; a fraction f is the pixel position f·W − 0.5 (pixel centres at (i + 0.5)/W);
- ``pixels``: column / row indices, 0..W−1 and 0..H−1 (fractions of a pixel allowed).

Anything outside the image is an error, not clipped.
"""

from __future__ import annotations

from typing import Any, Literal

import nodegraph
from nodegraph import MASK, Node, NodeContext, NodeExecutionError, Port

from .refine import predict
from .types import EMBEDDING

Choice = Literal["best", "single", "mask_1", "mask_2", "mask_3"]


def _numbers(text: str, what: str, count: int | tuple[int, int]) -> list[float]:
    parts = [p for p in text.replace(",", " ").split() if p]
    lo, hi = (count, count) if isinstance(count, int) else count
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not lo <= len(values) <= hi:
        raise NodeExecutionError(f"{what} {text!r}: expected {lo if lo == hi else f'{lo} or {hi}'} numbers "
                                 "separated by commas, e.g. '0.25, 0.5' (or '0.25, 0.5, 0' for a negative point)")
    return values


def to_pixels(x: float, y: float, units: str, size: tuple[int, int], what: str) -> tuple[float, float]:
    """(x, y) in ``units`` → SAM pixel coordinates, refusing points outside the image."""
    height, width = size
    if units == "fraction":
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise NodeExecutionError(f"{what} ({x:g}, {y:g}) is outside the image: with units 'fraction' x and y "
                                     "must lie in 0..1; set units to 'pixels' for pixel coordinates")
        return min(max(x * width - 0.5, 0.0), width - 1.0), min(max(y * height - 0.5, 0.0), height - 1.0)
    if not (0.0 <= x <= width - 1 and 0.0 <= y <= height - 1):
        raise NodeExecutionError(f"{what} ({x:g}, {y:g}) is outside the {width}×{height} image: x must lie in "
                                 f"0..{width - 1} and y in 0..{height - 1} pixels (or use units 'fraction', 0..1)")
    return x, y


def parse_prompts(inputs: Any, size: tuple[int, int]):
    """(coords (N, 2) | None, labels (N,) | None, box (4,) | None) in pixels, checked."""
    import numpy as np

    coords, labels = [], []
    if inputs.use_point:
        coords.append(to_pixels(inputs.x, inputs.y, inputs.units, size, "point"))
        labels.append(1 if inputs.label == "positive" else 0)
    for i, item in enumerate(p for p in inputs.extra_points.split(";") if p.strip()):
        values = _numbers(item, f"extra point {i + 1}", (2, 3))
        label = int(values[2]) if len(values) == 3 else 1
        if len(values) == 3 and values[2] not in (0.0, 1.0):
            raise NodeExecutionError(f"extra point {i + 1} {item.strip()!r}: the label must be 1 (positive) or "
                                     "0 (negative)")
        coords.append(to_pixels(values[0], values[1], inputs.units, size, f"extra point {i + 1}"))
        labels.append(label)
    box = None
    if inputs.box.strip():
        x0, y0, x1, y1 = _numbers(inputs.box, "box", 4)
        if not (x0 < x1 and y0 < y1):
            raise NodeExecutionError(f"box {inputs.box!r}: expected x0, y0, x1, y1 with x0 < x1 and y0 < y1 "
                                     "(top-left corner, then bottom-right corner)")
        box = np.array([*to_pixels(x0, y0, inputs.units, size, "box corner"),
                        *to_pixels(x1, y1, inputs.units, size, "box corner")], dtype=np.float32)
    if not coords and box is None:
        raise NodeExecutionError("no prompt: turn use_point on, give extra_points, or give a box")
    if coords:
        return np.array(coords, dtype=np.float32), np.array(labels, dtype=np.int64), box
    return None, None, box


def predictor_for(embedding: Any, index: int):
    """A ``SamPredictor`` whose image is already set to image ``index`` of ``embedding``."""
    from segment_anything import SamPredictor

    predictor = SamPredictor(embedding.sam.model)
    predictor.features = embedding.features[index:index + 1]
    predictor.original_size = embedding.original_size
    predictor.input_size = embedding.input_size
    predictor.is_image_set = True
    return predictor


class SamPromptMask(Node):
    """Segment the object at a point (and/or inside a box) with SAM: a MASK and SAM's quality score.

    Units: 'fraction' (0..1 of width/height, top-left origin) or 'pixels' (column, row). With one
    point, 'best' picks the highest-scoring of SAM's three candidate masks; 'single' asks for one
    mask (what SAM recommends for several points or a box). 'refine' moves the mask's outline onto
    the image's edges (a guided filter of SAM's quarter-resolution mask, the image as guide).
    """

    name = "prompt_mask"
    search_aliases = ("segment anything", "point mask", "click to mask")
    title = "SAM Mask from Point/Box"
    category = "sam"

    class Inputs(nodegraph.Inputs):
        embedding: EMBEDDING = Port(description="Image embeddings from SAM Encode Image.")
        x: float = Port(0.5, description="Point x: a fraction of the width (units 'fraction') or a column "
                        "index (units 'pixels').")
        y: float = Port(0.5, description="Point y: a fraction of the height from the top, or a row index.")
        units: Literal["fraction", "pixels"] = Port("fraction", description="Units of the point, extra points "
                                                    "and box: 0..1 fractions of the image, or pixel indices.")
        label: Literal["positive", "negative"] = Port("positive", description="Positive: the point is on the "
                                                      "object; negative: it is not.")
        use_point: bool = Port(True, description="Use the x, y point (off: prompt with the box / extra points only).")
        extra_points: str = Port("", max_length=2000, description="More points, 'x, y[, label]; ...' with "
                                 "label 1 (positive, default) or 0 (negative), in the same units.")
        box: str = Port("", max_length=200, description="Optional box 'x0, y0, x1, y1' (top-left, bottom-right) "
                        "in the same units; empty for none.")
        mask_choice: Choice = Port("best", description="best: the highest-scoring of SAM's 3 masks; single: "
                                   "SAM's single-mask output; mask_1..3: one of the 3 (small to large parts).")
        refine: bool = Port(False, description="Snap the mask's outline to the image's edges (a guided filter "
                            "of SAM's mask, the image as guide; SAM's masks are predicted at a quarter of its input "
                            "size, so their corners come out rounded). Off (default): SAM's mask as it is.")

    class Outputs(nodegraph.Outputs):
        mask: MASK = Port(description="The mask, (B, H, W) float 0/1 at the image size.")
        score: float = Port(description="SAM's predicted IoU of the chosen mask (mean over the batch).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np
        import torch

        emb = inputs.embedding
        coords, labels, box = parse_prompts(inputs, emb.original_size)
        multimask = inputs.mask_choice != "single"
        masks, scores = [], []
        with torch.inference_mode():
            for i in range(len(emb.features)):
                image = None if emb.images is None else emb.images[i]
                out, quality = predict(predictor_for(emb, i), image, inputs.refine, point_coords=coords,
                                       point_labels=labels, box=box, multimask_output=multimask)
                pick = {"best": int(np.argmax(quality)), "single": 0, "mask_1": 0, "mask_2": 1,
                        "mask_3": 2}[inputs.mask_choice]
                masks.append(out[pick].astype(np.float32))
                scores.append(float(quality[pick]))
                ctx.progress(i + 1, len(emb.features))
        return self.Outputs(mask=np.stack(masks), score=float(np.mean(scores)))
