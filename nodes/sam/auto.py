"""Automatic masks: SAM prompted with a grid of points, filtered by quality and de-duplicated."""

from __future__ import annotations

from typing import Literal

import nodegraph
from nodegraph import IMAGE, MASK, Node, NodeContext, Port

from .types import SAM

SORT_KEYS = {"best_score": "predicted_iou", "most_stable": "stability_score", "largest": "area",
             "smallest": "area"}


class SamAutoMasks(Node):
    """Find every object SAM sees (segment-anything's SamAutomaticMaskGenerator): all masks and a chosen one.

    A grid of points_per_side² points prompts SAM; masks below the quality thresholds and
    duplicates (box NMS) are dropped. 'select' orders the masks of each image and picks its first.
    """

    name = "auto_masks"
    search_aliases = ("segment anything", "segment", "auto mask")
    title = "SAM Automatic Masks"
    category = "sam"

    class Inputs(nodegraph.Inputs):
        sam: SAM = Port(description="A loaded SAM.")
        image: IMAGE = Port(description="Images to segment, (B, H, W, 3).")
        points_per_side: int = Port(16, ge=1, le=64, description="Grid of prompt points per side (cost grows "
                                    "with its square).")
        pred_iou_thresh: float = Port(0.8, ge=0.0, le=1.0, step=0.01, description="Drop masks whose predicted "
                                      "IoU is below this.")
        stability_score_thresh: float = Port(0.8, ge=0.0, le=1.0, step=0.01, description="Drop masks that "
                                             "change more than this when the logit cut-off moves by ±1 (IoU).")
        min_area: float = Port(0.0, ge=0.0, le=1.0, step=0.001, description="Drop masks smaller than this "
                               "fraction of the image.")
        max_area: float = Port(1.0, ge=0.0, le=1.0, step=0.01, description="Drop masks larger than this "
                               "fraction of the image (e.g. 0.5 drops the background).")
        select: Literal["best_score", "most_stable", "largest", "smallest"] = Port(
            "best_score", description="Order of the masks of each image; the first is the 'mask' output.")
        max_masks: int = Port(32, ge=1, le=1000, description="Keep at most this many masks per image.")

    class Outputs(nodegraph.Outputs):
        masks: MASK = Port(description="All kept masks, (N, H, W): image 0's masks first, each image's in "
                           "'select' order; one empty mask when nothing was found.")
        mask: MASK = Port(description="The first mask of each image, (B, H, W); empty where none was found.")
        count: int = Port(description="Number of masks found (N, or 0).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np
        import torch
        from segment_anything import SamAutomaticMaskGenerator

        images = nodegraph.as_image_batch(inputs.image)
        height, width = images.shape[1:3]
        generator = SamAutomaticMaskGenerator(
            inputs.sam.model, points_per_side=inputs.points_per_side, points_per_batch=64,
            pred_iou_thresh=inputs.pred_iou_thresh, stability_score_thresh=inputs.stability_score_thresh)
        key = SORT_KEYS[inputs.select]
        all_masks, firsts = [], []
        for i, image in enumerate(images):
            u8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            with torch.inference_mode():
                found = generator.generate(u8)
            area = height * width
            found = [m for m in found if inputs.min_area * area <= m["area"] <= inputs.max_area * area]
            found.sort(key=lambda m: m[key], reverse=inputs.select != "smallest")
            found = found[:inputs.max_masks]
            masks = [m["segmentation"].astype(np.float32) for m in found]
            all_masks.extend(masks)
            firsts.append(masks[0] if masks else np.zeros((height, width), np.float32))
            ctx.progress(i + 1, len(images))
        count = len(all_masks)
        if not all_masks:
            ctx.log.warning("no mask passed the thresholds; lower pred_iou_thresh / stability_score_thresh")
            all_masks = [np.zeros((height, width), np.float32)]
        ctx.show(text=[f"{count} masks"])
        return self.Outputs(masks=np.stack(all_masks), mask=np.stack(firsts), count=count)
