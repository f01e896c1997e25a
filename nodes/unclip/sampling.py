"""The sampling stages: prior (text → image embedding), decoder (embedding → image), upsampler."""

from __future__ import annotations

from typing import Any, Literal

import nodegraph
from nodegraph import IMAGE, Node, NodeContext, NodeExecutionError, Port

from .convert import generator, library_errors, progress
from .types import CLIP, CONDITIONING, DECODER, EMBEDDING, PRIOR, UPSAMPLER

# context around each tile (a tile of 32 px makes 48 px crops); more barely changes the output: the
# crop's own GroupNorm statistics differ from the frame's whatever the halo
TILE_HALO = 8
Scheduler = Literal["default", "unclip", "ddim", "ddpm", "dpm++", "euler", "euler_a", "lcm"]


class Prior(Node):
    """Map a CLIP text embedding to CLIP image embeddings with the diffusion prior."""

    name = "prior"
    search_aliases = ("ksampler", "sampler", "text to image embedding")
    category = "unclip"

    class Inputs(nodegraph.Inputs):
        prior: PRIOR = Port(description="A loaded prior.")
        conditioning: CONDITIONING = Port(description="Encoded prompt (CLIP Text Encode).")
        guidance: float = Port(4.0, ge=0.0, le=20.0, step=0.5, description="Classifier-free guidance scale.")
        steps: int = Port(25, ge=2, le=1000, description="Denoising steps.")
        scheduler: Scheduler = Port("default", description="Sampler: the checkpoint's own ('default', the "
                                    "stochastic unCLIP schedule), or another diffusers scheduler built from its "
                                    "config ('dpm++', 'ddim': deterministic, for few steps).")
        seed: nodegraph.Seed = Port(0, description="Random seed.")
        count: int = Port(1, ge=1, le=64, description="Image embeddings per prompt.")
        init: EMBEDDING | None = Port(None, description="Optional image embeddings to start from, 1 or "
                                      "prompts × count rows (e.g. the AR Prior's samples): noised to `strength` "
                                      "of the schedule, then refined by this prior.")
        strength: float = Port(1.0, ge=0.0, le=1.0, step=0.05, description="With `init`: the share of the "
                               "steps run from the noised init (small: keep the init's choices, refine the "
                               "details). Without `init`: unused.")
        candidates: int = Port(1, ge=1, le=16, description="Samples drawn per output embedding; the one "
                               "nearest the prompt's text embedding (cosine) is kept, as DALL·E 2 ranks its "
                               "prior's samples. 1: no ranking (the cost grows with the candidates).")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="CLIP image embeddings, (prompts × count, D).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from .models import sample_prior

        cond = inputs.conditioning
        n = cond.cond.embeds.shape[0] * inputs.count
        if inputs.init is not None and inputs.init.shape[0] not in (1, n):
            raise NodeExecutionError(f"init has {inputs.init.shape[0]} embeddings but the prior makes {n} "
                                     "(prompts × count); give one or one per sample")
        k = inputs.candidates
        init = inputs.init
        if init is not None and k > 1 and init.shape[0] == n:
            init = init.repeat_interleave(k, dim=0)  # every candidate of a sample starts from its init
        with torch.inference_mode(), library_errors():
            emb = sample_prior(inputs.prior.model, cond.cond, cond.uncond, guidance=inputs.guidance,
                               steps=inputs.steps, generator=generator(inputs.seed),
                               num_per_prompt=inputs.count * k, callback=progress(ctx),
                               scheduler=None if inputs.scheduler == "default" else inputs.scheduler,
                               init=init, strength=inputs.strength)
            if k > 1:
                emb = rank_candidates(emb, cond.cond.embeds, k)
        return self.Outputs(embedding=emb)


def rank_candidates(emb, text, k: int):
    """Of each run of `k` consecutive samples (`emb`, (prompts × count × k, D), prompt-major), the one
    with the highest cosine to its prompt's text embedding (`text`, (prompts, D)): (prompts × count, D)."""
    import torch.nn.functional as F

    prompts = text.shape[0]
    cand = emb.reshape(prompts, -1, k, emb.shape[-1])  # (prompts, count, k, D)
    score = (F.normalize(cand.float(), dim=-1) * F.normalize(text.float(), dim=-1)[:, None, None]).sum(-1)
    best = score.argmax(-1)  # (prompts, count)
    picked = cand.gather(2, best[..., None, None].expand(-1, -1, 1, cand.shape[-1]))
    return picked.reshape(-1, emb.shape[-1])


class Decoder(Node):
    """Turn CLIP image embeddings into images with the diffusion decoder (classifier-free guidance)."""

    name = "decoder"
    search_aliases = ("ksampler", "sampler", "vae decode", "decode", "generate image")
    category = "unclip"

    class Inputs(nodegraph.Inputs):
        decoder: DECODER = Port(description="A loaded decoder.")
        image_embedding: EMBEDDING = Port(description="CLIP image embeddings, (B, D): from the prior, "
                                          "CLIP Image Encode, or an embedding operation.")
        conditioning: CONDITIONING = Port(description="Encoded prompt the decoder also attends to; an empty "
                                          "prompt for pure variations.")
        guidance: float = Port(1.5, ge=0.0, le=30.0, step=0.5, description="Classifier-free guidance scale "
                               "(1: off, half the compute; the shipped decoder is best at 1.5: stronger guidance pulls objects "
                               "towards the centre).")
        steps: int = Port(25, ge=2, le=1000, description="Denoising steps.")
        scheduler: Scheduler = Port("default", description="Sampler: the checkpoint's own ('default'), or "
                                    "another diffusers scheduler built from its config; 'lcm' (2–4 steps, guidance 1) for a decoder "
                                    "with a consistency LoRA such as 'shapes-lcm'.")
        seed: nodegraph.Seed = Port(0, description="Random seed.")
        batch: int = Port(1, ge=1, le=64, description="Images per embedding.")
        shared_noise: bool = Port(False, description="Start every image from the same noise, so that "
                                  "images differ only by their embedding (interpolations, text diffs, PCA); with a deterministic "
                                  "sampler (DDIM, the shipped default) nothing else differs. With candidates, each candidate slot has its "
                                  "own noise, and the kept image of two embeddings may come from different slots.")
        candidates: int = Port(1, ge=1, le=16, description="Images decoded per output image, in one batch; "
                               "the one whose CLIP image embedding is nearest (cosine) the embedding it was "
                               "decoded from is kept, as DALL·E ranks its samples with CLIP. Needs `clip`. "
                               "1: no ranking (the decoder's cost grows with the candidates).")
        clip: CLIP | None = Port(None, description="The CLIP model (with an image encoder) that ranks the "
                                 "candidates; unused with 1 candidate.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="Images at the decoder's resolution, (B × batch, H, W, 3).",
                             shape=("batch", None, None, 3))

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from .models import sample_decoder

        emb = inputs.image_embedding
        if inputs.batch > 1:
            emb = emb.repeat_interleave(inputs.batch, dim=0)
        cond = inputs.conditioning
        n_text = cond.cond.embeds.shape[0]
        if n_text not in (1, emb.shape[0]):
            raise NodeExecutionError(f"{emb.shape[0]} image embeddings but {n_text} prompts; give one prompt "
                                     "or one per embedding")
        k = inputs.candidates
        if k > 1 and inputs.clip is None:
            raise NodeExecutionError("candidates > 1 needs a CLIP model (connect `clip`) to rank them")
        text = cond.cond
        target = emb
        if k > 1:
            emb = emb.repeat_interleave(k, dim=0)
            if n_text > 1:
                text = text.repeat_interleave(k)
        model = inputs.decoder.model
        gen = generator(inputs.seed)
        latents = None
        if inputs.shared_noise:
            from diffusers.utils.torch_utils import randn_tensor

            # one noise per candidate slot, the same for every embedding (with one candidate: one noise)
            shape = (k, model.unet.config.in_channels, model.sample_size, model.sample_size)
            latents = randn_tensor(shape, generator=gen).repeat(emb.shape[0] // k, 1, 1, 1)
        with torch.inference_mode(), library_errors():
            images = sample_decoder(model, emb, text, cond.uncond, guidance=inputs.guidance,
                                    steps=inputs.steps, generator=gen,
                                    scheduler=None if inputs.scheduler == "default" else inputs.scheduler,
                                    callback=progress(ctx), latents=latents)
            if k > 1:
                image_emb = inputs.clip.model.encode_image(images)
                if image_emb.shape[-1] != target.shape[-1]:
                    raise NodeExecutionError(f"clip: its image embeddings have {image_emb.shape[-1]} dimensions, the "
                                             f"decoder's {target.shape[-1]}; connect the CLIP of the decoder's bundle")
                images = rank_images(images, image_emb, target, k)
        return self.Outputs(images=nodegraph.from_tensor(images))


def rank_images(images, image_emb, target, k: int):
    """Of each run of `k` consecutive images ((B × k, 3, H, W), with their CLIP image embeddings
    `image_emb`), the one whose embedding has the highest cosine to its row of `target` (B, D)."""
    import torch
    import torch.nn.functional as F

    cand = F.normalize(image_emb.float(), dim=-1).reshape(target.shape[0], k, -1)
    score = (cand * F.normalize(target.float(), dim=-1)[:, None]).sum(-1)  # (B, k)
    best = score.argmax(-1) + k * torch.arange(target.shape[0], device=images.device)
    return images[best]


class Upsample(Node):
    """Enlarge images with a diffusion super-resolution model conditioned on the low-resolution image."""

    name = "upsample"
    search_aliases = ("upscale", "upscale image", "super resolution", "hires fix")
    category = "unclip"

    class Inputs(nodegraph.Inputs):
        upsampler: UPSAMPLER = Port(description="A loaded upsampler.")
        images: IMAGE = Port(description="Low-resolution images (the decoder's output).")
        steps: int = Port(10, ge=1, le=1000, description="Denoising steps (few steps want a scheduler whose "
                          "first step is at the last timestep: 'ddim' spaces them from 0, so 1 step returns "
                          "the noise).")
        scheduler: Scheduler = Port("default", description="Sampler: the checkpoint's own ('default'), or "
                                    "another diffusers scheduler built from its config ('ddim': 3 steps keep the "
                                    "shipped upsampler's quality).")
        seed: nodegraph.Seed = Port(0, description="Random seed.")
        noise_level: float = Port(0.0, ge=0.0, le=1.0, step=0.05, description="Noise added to the "
                                  "low-resolution image first (models trained with noise augmentation).")
        fix_colors: bool = Port(True, description="Take colour and shading (the low frequencies) from the "
                                "input image and only the detail from the upsampler, which can drift in global "
                                "colour. Off: exactly the checkpoint's super-resolution output.")
        color_sigma: float = Port(0.0, ge=0.0, le=64.0, step=0.5, description="With fix_colors: the scale in "
                                  "output pixels (Gaussian σ) below which colour comes from the input. 0: half the "
                                  "enlargement factor; the 64 → 256 stage wants 8, which keeps the input's soft "
                                  "edges out of its sharp ones.")
        flat_threshold: float = Port(0.0, ge=0.0, le=1.0, step=0.01, description="Keep the input's (bicubic) "
                                     "enlargement where the input is flat: where no channel varies by this much "
                                     "(0..1) within ±2 output px, what the upsampler drew there (sampling noise) is "
                                     "dropped. 0: off.")
        tile: int = Port(0, ge=0, le=1024, step=8, description="With flat_threshold: run the UNet only on the "
                         "squares of this many output px that hold a kept pixel, batched, each with 8 px of "
                         "context (an upsampler without attention, trained on crops, such as the 256 px stage); "
                         "the whole image when that costs as much. 0: always the whole image.")
        image_embedding: EMBEDDING | None = Port(None, description="Optional CLIP image embeddings the images "
                                                 "were decoded from (the decoder's `image_embedding`; 1, one per "
                                                 "image, or one per embedding with the decoder's `batch`), for an "
                                                 "upsampler that sees them (its folder has super_res_embed/); "
                                                 "others ignore them.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="Upsampled images.")

    def check(self, inputs: dict[str, Any], ctx: nodegraph.CheckContext) -> list[tuple[str | None, str]]:
        from .checks import upsample_problems

        return upsample_problems(ctx)

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from .models import upsample

        with torch.inference_mode(), library_errors():
            out = upsample(inputs.upsampler.model, nodegraph.to_tensor(inputs.images), steps=inputs.steps,
                           generator=generator(inputs.seed), noise_level=inputs.noise_level,
                           callback=progress(ctx), fix_colors=inputs.fix_colors, color_sigma=inputs.color_sigma,
                           flat_threshold=inputs.flat_threshold, tile=inputs.tile, halo=TILE_HALO,
                           scheduler=None if inputs.scheduler == "default" else inputs.scheduler,
                           image_embeds=inputs.image_embedding)
        return self.Outputs(images=nodegraph.from_tensor(out))
