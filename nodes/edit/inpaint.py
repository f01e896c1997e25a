"""Mask-guided inpainting with the unCLIP decoder: regenerate the masked region, keep every other pixel.

At each denoising step the known pixels (outside the mask, at the decoder's resolution) are
re-noised to the next timestep and put back into the latents (Lugmayr et al., RePaint, without the
resampling jumps), so the generated region grows to fit them; at the end the known pixels are pasted
back at the input's full resolution, so outside the mask the output *is* the input.
"""

from __future__ import annotations

from typing import Any

import nodegraph
from nodegraph import IMAGE, MASK, Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CONDITIONING, DECODER, EMBEDDING
from .common import batch_size, check_embedding, expand_rows

# offset of the re-noising generator's seed: the sampler's own generator stream stays untouched, so a
# full mask gives exactly the plain decoder's images for the same seed
RENOISE_SEED_OFFSET = 0x5EED


def check_mask(mask: Any, height: int, width: int):
    """A MASK as float32 (B, H, W) in [0, 1] of the image's size, or a NodeExecutionError."""
    import numpy as np

    arr = np.asarray(mask, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or 0 in arr.shape:
        raise NodeExecutionError(f"mask: expected a MASK of shape (B, H, W), got {arr.shape}")
    if arr.shape[1:] != (height, width):
        raise NodeExecutionError(f"mask is {arr.shape[2]}×{arr.shape[1]} but the image is {width}×{height}; "
                                 "make the mask from this image (or resize both to the same size)")
    if not np.isfinite(arr).all():
        raise NodeExecutionError("mask contains NaN or infinite values")
    return np.clip(arr, 0.0, 1.0)


def shape_mask(mask, grow: int, feather: int):
    """(B, 1, H, W) torch mask → grown by `grow` px (dilation), its edge softened `feather` px inwards.

    Feathering only lowers values inside the mask (min with the blurred mask), so every pixel the
    grown mask leaves at 0 stays exactly the input.
    """
    import torch.nn.functional as F

    if grow > 0:
        mask = F.max_pool2d(mask, 2 * grow + 1, stride=1, padding=grow)
    if feather > 0:
        k = 2 * feather + 1
        blurred = F.avg_pool2d(F.pad(mask, (feather,) * 4, mode="replicate"), k, stride=1)
        mask = mask * blurred.clamp(0, 1)
    return mask


def inpaint(model, images, mask, image_embeds, cond, uncond, guidance: float, steps: int, seed: int,
            callback=None, strength: float = 1.0):
    """images (B, 3, H, W) in [0, 1], mask (B, 1, H, W) in [0, 1] (1 = regenerate) → (B, 3, H, W).

    Outside the mask the result equals `images` exactly; inside, it is decoded from `image_embeds`.
    strength < 1 starts the masked region from the input re-noised to that level (SDEdit) instead of
    pure noise: the first (1 − strength) of the steps put the re-noised input back everywhere, so
    the new object grows where the old one was.
    """
    import torch
    import torch.nn.functional as F

    from ..unclip.api import generator, sample_decoder

    base = model.scheduler
    abar = getattr(base, "alphas_cumprod", None)
    if abar is None or float(getattr(base, "init_noise_sigma", 1.0)) != 1.0:
        raise ValueError(f"inpainting re-noises the known pixels for a variance-preserving sampler, but this "
                         f"decoder's scheduler is {type(base).__name__}; use a DDPM/DDIM/unCLIP-scheduled decoder")
    size = model.sample_size
    _, _, h, w = images.shape
    low = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False) \
        if (h, w) != (size, size) else images
    known0 = low.clamp(0, 1) * 2 - 1  # (B, 3, S, S) in [-1, 1]
    # regenerate every decoder pixel the mask touches, so the generated region covers the mask
    region = F.interpolate(mask, size=(size, size), mode="area") if (h, w) != (size, size) else mask
    keep = (region <= 1e-3).to(known0.dtype)  # 1 where the pixel is known
    noise_gen = generator(seed + RENOISE_SEED_OFFSET)
    frozen = steps - max(1, round(strength * steps))  # steps whose result is the re-noised input everywhere

    def hook(i, t, prev_t, latents):
        if prev_t is None:
            known = known0
        else:
            a = abar[int(prev_t)].to(known0.dtype)
            eps = torch.randn(known0.shape, generator=noise_gen, dtype=known0.dtype)
            known = a.sqrt() * known0 + (1 - a).sqrt() * eps
        if i < frozen:
            return known
        return latents * (1 - keep) + known * keep

    out = sample_decoder(model, image_embeds, cond, uncond, guidance=guidance, steps=steps,
                         generator=generator(seed), callback=callback, latent_hook=hook)
    if (h, w) != (size, size):
        out = F.interpolate(out, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    # exact where the mask is 0 (the input) and where it is 1 (the decoded pixels); blended between
    return torch.where(mask >= 1, out, torch.where(mask > 0, images + mask * (out - images), images))


class Inpaint(Node):
    """Regenerate only the masked region of images with the decoder; every pixel outside stays the same.

    The known pixels are re-noised to the current step and put back at every denoising step, so the
    new content fits around them; at the end they are pasted back at full resolution. The image
    embedding says what to paint (e.g. the prior on "a green star"), the conditioning is the prompt.
    An all-zero mask returns the images unchanged.
    """

    name = "inpaint"
    title = "Inpaint (masked decode)"
    category = "edit"

    class Inputs(nodegraph.Inputs):
        decoder: DECODER = Port(description="A loaded decoder.")
        image: IMAGE = Port(description="Images to edit, (B, H, W, 3), any size (resized to the decoder's "
                            "resolution for sampling).")
        mask: MASK = Port(description="Region to regenerate, (B, H, W) or (1, H, W), the image's size; 1 = "
                          "regenerate, 0 = keep.")
        image_embedding: EMBEDDING = Port(description="CLIP image embeddings of what to paint, (1 or B, D) "
                                          "(e.g. the prior on the new prompt).")
        conditioning: CONDITIONING = Port(description="Encoded prompt the decoder attends to (1 or B prompts).")
        guidance: float = Port(1.5, ge=0.0, le=30.0, step=0.5, description="Classifier-free guidance scale.")
        steps: int = Port(25, ge=2, le=1000, description="Denoising steps.")
        seed: nodegraph.Seed = Port(0, description="Random seed.")
        grow: int = Port(0, ge=0, le=64, description="Grow the mask by this many pixels first (room for a "
                         "larger new object).")
        feather: int = Port(0, ge=0, le=64, description="Soften the mask's edge by this many pixels, inwards "
                            "only: pixels outside the (grown) mask stay exactly the input.")
        strength: float = Port(1.0, gt=0.0, le=1.0, step=0.05, display="slider",
                               description="1: the masked region starts from pure noise; lower: from the input "
                               "re-noised to that level, so the new object grows where the old one was.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="The inpainted images, the input's size, (B, H, W, 3).")
        mask: MASK = Port(description="The mask actually used (after grow and feather), (B, H, W).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np
        import torch

        from ..unclip.api import library_errors, progress

        model = inputs.decoder.model
        image = nodegraph.as_image_batch(inputs.image)
        _, h, w, _ = image.shape
        mask = check_mask(inputs.mask, h, w)
        emb = check_embedding(inputs.image_embedding, model, "image_embedding")
        cond = inputs.conditioning
        batch = batch_size({"image": image.shape[0], "mask": mask.shape[0], "image_embedding": emb.shape[0],
                            "conditioning": len(cond.cond)})
        images = expand_rows(nodegraph.to_tensor(image), batch)
        m = shape_mask(expand_rows(torch.from_numpy(np.ascontiguousarray(mask)), batch)[:, None].float(),
                       inputs.grow, inputs.feather)
        used = m[:, 0].numpy().astype(np.float32)
        if not bool((m > 0).any()):
            ctx.log.info("empty mask: nothing to regenerate, the images are returned unchanged")
            return self.Outputs(images=np.ascontiguousarray(np.broadcast_to(image, (batch, h, w, 3))), mask=used)
        with torch.inference_mode(), library_errors():
            out = inpaint(model, images, m, expand_rows(emb, batch), cond.cond.expand(batch), cond.uncond,
                          inputs.guidance, inputs.steps, inputs.seed, callback=progress(ctx),
                          strength=inputs.strength)
        return self.Outputs(images=nodegraph.from_tensor(out), mask=used)
