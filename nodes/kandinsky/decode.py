"""Kandinsky 2.2 decoding: image embeddings → images, from noise (text to image), from an image
(image to image), around a mask (inpainting) or along a hint image (ControlNet)."""

from __future__ import annotations

from typing import Any

import nodegraph
from nodegraph import IMAGE, MASK, Node, NodeContext, Port

from ..unclip.api import EMBEDDING, Scheduler, generator, library_errors, progress
from .types import CONTROLNET_DECODER, DECODER, INPAINT_DECODER


class SamplingInputs(nodegraph.Inputs):
    """The ports every Kandinsky decoding node has."""

    image_embedding: EMBEDDING = Port(description="CLIP image embeddings, (B, D): Kandinsky Prior, CLIP Image "
                                      "Encode, Mix Embeddings or another embedding operation.")
    negative_embedding: EMBEDDING = Port(description="Negative image embeddings, (1 or B, D): Kandinsky Prior's "
                                         "`negative`, or Zero Image Embedding.")
    guidance: float = Port(4.0, ge=0.0, le=30.0, step=0.5, description="Classifier-free guidance scale (off at 1 "
                           "or below, as in diffusers).")
    steps: int = Port(50, ge=1, le=1000, description="Denoising steps.")
    scheduler: Scheduler = Port("default", description="Sampler: the folder's own ('default'), or another "
                                "diffusers scheduler built from its config.")
    seed: nodegraph.Seed = Port(0, description="Random seed.")
    batch: int = Port(1, ge=1, le=64, description="Images per embedding.")
    width: int = Port(0, ge=0, le=4096, step=64, description="Output width in pixels; 0: the input's. The "
                      "pipelines round it to the latent grid (64 px).")
    height: int = Port(0, ge=0, le=4096, step=64, description="Output height in pixels; 0: the input's.")


class ImagesOut(nodegraph.Outputs):
    images: IMAGE = Port(description="Images, (B × batch, H, W, 3).")


def _sampling(inputs: Any, ctx: NodeContext) -> dict[str, Any]:
    return {"guidance": inputs.guidance, "steps": inputs.steps, "generator": generator(inputs.seed),
            "per": inputs.batch, "scheduler": None if inputs.scheduler == "default" else inputs.scheduler,
            "callback": progress(ctx)}


def _pil_size(images: Any, width: int, height: int) -> tuple[list[Any], int, int]:
    pil = nodegraph.to_pil(images)
    return pil, width or pil[0].width, height or pil[0].height


class _Decoding(Node):
    category = "kandinsky"

    def check(self, inputs: dict[str, Any], ctx: nodegraph.CheckContext) -> list[tuple[str | None, str]]:
        from .checks import pairing_problems

        return pairing_problems(ctx)


class KandinskyDecoder(_Decoding):
    """Decode CLIP image embeddings into images with the Kandinsky 2.2 decoder (MoVQ latents)."""

    name = "decoder"
    title = "Kandinsky Decoder"

    class Inputs(SamplingInputs):
        decoder: DECODER = Port(description="A loaded Kandinsky decoder (Load Kandinsky Decoder).")
        width: int = Port(512, ge=8, le=4096, step=64, description="Image width; rounded up to the latent grid "
                          "(64 px), as the pipeline does.")
        height: int = Port(512, ge=8, le=4096, step=64, description="Image height; rounded up to 64 px.")

    Outputs = ImagesOut

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from .models import text2image

        with torch.inference_mode(), library_errors():
            out = text2image(inputs.decoder.model, inputs.image_embedding, inputs.negative_embedding,
                             height=inputs.height, width=inputs.width, **_sampling(inputs, ctx))
        return self.Outputs(images=nodegraph.from_tensor(out))


class KandinskyImg2Img(_Decoding):
    """Redraw images along CLIP image embeddings: the image is encoded to MoVQ latents, noised by
    `strength`, and denoised by the Kandinsky decoder."""

    name = "img2img"
    title = "Kandinsky Image to Image"

    class Inputs(SamplingInputs):
        decoder: DECODER = Port(description="A loaded Kandinsky decoder (Load Kandinsky Decoder).")
        images: IMAGE = Port(description="Images to start from (1 or one per embedding).")
        strength: float = Port(0.3, gt=0.0, le=1.0, step=0.05, description="How much to change: the share of the "
                               "steps that run (1: from pure noise).")

    Outputs = ImagesOut

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch
        from diffusers.image_processor import VaeImageProcessor

        from .models import img2img

        model = inputs.decoder.model
        pil, width, height = _pil_size(inputs.images, inputs.width, inputs.height)
        # the pipeline's own preprocessing: bicubic resize (reducing_gap 1), to [-1, 1]
        proc = VaeImageProcessor(vae_scale_factor=model.scale_factor, vae_latent_channels=model.latent_channels,
                                 resample="bicubic", reducing_gap=1)
        with torch.inference_mode(), library_errors():
            images = proc.preprocess(pil, height, width)
            out = img2img(model, images, inputs.image_embedding, inputs.negative_embedding, strength=inputs.strength,
                          **_sampling(inputs, ctx))
        return self.Outputs(images=nodegraph.from_tensor(out))


class KandinskyInpaint(_Decoding):
    """Repaint the masked part of images along CLIP image embeddings (Kandinsky 2.2 inpainting decoder)."""

    name = "inpaint"
    title = "Kandinsky Inpaint"

    class Inputs(SamplingInputs):
        decoder: INPAINT_DECODER = Port(description="A loaded inpainting decoder (Load Kandinsky Inpaint Decoder).")
        images: IMAGE = Port(description="Images to repaint (1 or one per embedding).")
        mask: MASK = Port(description="1 where to repaint (binarised at 0.5); 1 or one per image.")

    Outputs = ImagesOut

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np
        import torch
        from diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_inpainting import (
            prepare_mask_and_masked_image,
        )
        from PIL import Image

        from .models import inpaint

        pil, width, height = _pil_size(inputs.images, inputs.width, inputs.height)
        masks = np.asarray(inputs.mask, dtype=np.float32)
        masks = masks[None] if masks.ndim == 2 else masks
        pil_masks = [Image.fromarray((np.clip(m, 0, 1) * 255 + 0.5).astype(np.uint8), "L") for m in masks]
        # the pipeline's own preprocessing: bicubic image, Lanczos mask, both resized to width × height
        keep, images = prepare_mask_and_masked_image(pil, pil_masks, height, width)
        with torch.inference_mode(), library_errors():
            out = inpaint(inputs.decoder.model, images, 1 - keep, inputs.image_embedding, inputs.negative_embedding,
                          **_sampling(inputs, ctx))
        return self.Outputs(images=nodegraph.from_tensor(out))


class KandinskyControlNet(_Decoding):
    """Decode CLIP image embeddings into images that follow a hint image (a depth map for
    kandinsky-2-2-controlnet-depth)."""

    name = "controlnet"
    title = "Kandinsky ControlNet"

    class Inputs(SamplingInputs):
        decoder: CONTROLNET_DECODER = Port(description="A loaded ControlNet decoder (Load Kandinsky ControlNet "
                                           "Decoder).")
        hint: IMAGE = Port(description="The hint, e.g. a depth map (near = bright); 1 or one per embedding. "
                           "Resized (bicubic) to the output size when it differs.")

    Outputs = ImagesOut

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch
        from PIL import Image

        from .models import text2image

        model = inputs.decoder.model
        images = nodegraph.as_image_batch(inputs.hint, "hint")
        height, width = model.output_size(inputs.height or images.shape[1], inputs.width or images.shape[2])
        if images.shape[1:3] != (height, width):
            # the hint is read at the output size (the pipeline takes it at that size)
            images = nodegraph.from_pil([im.resize((width, height), Image.BICUBIC) for im in nodegraph.to_pil(images)])
        hint = nodegraph.to_tensor(images)
        with torch.inference_mode(), library_errors():
            out = text2image(model, inputs.image_embedding, inputs.negative_embedding, height=height, width=width,
                             hint=hint, **_sampling(inputs, ctx))
        return self.Outputs(images=nodegraph.from_tensor(out))
