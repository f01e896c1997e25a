"""Seeing a mask: tint it over its image, and turn a MASK into an IMAGE that can be saved."""

from __future__ import annotations

import re

import nodegraph
from nodegraph import IMAGE, MASK, Node, NodeContext, NodeExecutionError, Port


class MaskOverlay(Node):
    """Tint the masked region of images with a colour, and give the mask itself as a black/white image."""

    name = "mask_overlay"
    search_aliases = ("show mask", "composite mask")
    title = "Mask Overlay"
    category = "sam"

    class Inputs(nodegraph.Inputs):
        image: IMAGE = Port(description="Images, (B, H, W, 3).")
        mask: MASK = Port(description="Masks of the same size, (B, H, W) or one mask (1, H, W) for every image.")
        color: str = Port("#ff2020", pattern=r"^#[0-9a-fA-F]{6}$", description="Tint colour, '#rrggbb'.")
        opacity: float = Port(0.5, ge=0.0, le=1.0, step=0.05, description="How strongly the mask is tinted.")

    class Outputs(nodegraph.Outputs):
        image: IMAGE = Port(description="The images with the masked region tinted, (B, H, W, 3).")
        mask_image: IMAGE = Port(description="The masks as images: white = selected, (B, H, W, 3).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np

        images = nodegraph.as_image_batch(inputs.image)
        mask = np.asarray(inputs.mask, dtype=np.float32)
        if mask.ndim == 2:
            mask = mask[None]
        if mask.ndim != 3 or mask.shape[1:] != images.shape[1:3]:
            raise NodeExecutionError(f"mask of shape {mask.shape} does not fit images of shape {images.shape}: "
                                     "expected (B, H, W) at the image size; make the mask from the same image")
        if len(mask) not in (1, len(images)) and len(images) != 1:
            raise NodeExecutionError(f"{len(mask)} masks for {len(images)} images: give one mask, or one per image")
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", inputs.color):
            raise NodeExecutionError(f"colour {inputs.color!r}: expected '#rrggbb'")
        rgb = np.array([int(inputs.color[i:i + 2], 16) for i in (1, 3, 5)], np.float32) / 255.0
        m = np.clip(mask, 0.0, 1.0)[..., None] * inputs.opacity
        tinted = images * (1 - m) + rgb * m
        mask_image = np.repeat(np.clip(mask, 0.0, 1.0)[..., None], 3, axis=-1)
        return self.Outputs(image=tinted.astype(np.float32), mask_image=mask_image.astype(np.float32))
