"""Image embeddings: run SAM's image encoder once per image, for any number of prompts after it."""

from __future__ import annotations

from typing import Any

import nodegraph
from nodegraph import IMAGE, Node, NodeContext, Port

from .types import EMBEDDING, SAM, SamEmbedding


def encode(handle: Any, images: Any, ctx: NodeContext | None = None) -> SamEmbedding:
    """Features of an IMAGE batch (B, H, W, 3), exactly as ``SamPredictor.set_image`` computes them."""
    import numpy as np
    import torch
    from segment_anything.utils.transforms import ResizeLongestSide

    sam = handle.model
    images = nodegraph.as_image_batch(images)
    height, width = images.shape[1:3]
    resize = ResizeLongestSide(sam.image_encoder.img_size)
    device = next(sam.parameters()).device
    features, input_size = [], (0, 0)
    with torch.inference_mode():
        for i, image in enumerate(images):
            u8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)  # SAM takes uint8 RGB
            x = torch.as_tensor(resize.apply_image(u8), device=device).permute(2, 0, 1)[None].float()
            input_size = (int(x.shape[-2]), int(x.shape[-1]))
            features.append(sam.image_encoder(sam.preprocess(x)))  # preprocess: normalise, pad square
            if ctx is not None:
                ctx.progress(i + 1, len(images))
    return SamEmbedding(handle, torch.cat(features), (int(height), int(width)), input_size,
                        np.clip(images, 0.0, 1.0).astype(np.float32))


class SamEncodeImage(Node):
    """Run SAM's image encoder on images (the expensive part); prompts then reuse the embedding."""

    name = "encode_image"
    search_aliases = ("segment anything", "image embedding")
    title = "SAM Encode Image"
    category = "sam"

    class Inputs(nodegraph.Inputs):
        sam: SAM = Port(description="A loaded SAM.")
        image: IMAGE = Port(description="Images to segment, (B, H, W, 3); resized so the longest side is "
                            "the model's input size (128 px for sam-shapes, 1024 for ViT-B/L/H).")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="Image embeddings (B, C, h, w) with the image size.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        return self.Outputs(embedding=encode(inputs.sam, inputs.image, ctx))
