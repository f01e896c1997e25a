"""Imagic for the unCLIP decoder: edit one image towards a target text in three stages.

1. `Imagic: Optimise Embedding` — starting from the target text's CLIP image embedding (the
   prior's sample), optimise it with the frozen decoder's denoising loss until it reconstructs the
   input image;
2. `Imagic: Fine-tune Decoder` — a brief LoRA on a copy of the decoder, trained on the input image
   with the optimised embedding (the cached decoder is never changed);
3. `Imagic: Interpolate` — η · target + (1 − η) · optimised; decode it with the fine-tuned decoder
   and the target text.

The paper optimises the text embedding of a text-conditioned model; in unCLIP the decoder's main
condition is the CLIP image embedding the prior makes from the text, so that is the embedding
optimised and interpolated here (the decoder also attends to the target text's tokens throughout).
"""

from __future__ import annotations

import nodegraph
from nodegraph import IMAGE, ModelHandle, Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CONDITIONING, DECODER, EMBEDDING


def _one_image(images, what: str):
    images = nodegraph.as_image_batch(images)
    if len(images) != 1:
        raise NodeExecutionError(f"{what} takes one image, got {len(images)}; pick one with Image Select")
    return images


def _one_row(emb, what: str):
    if emb.dim() != 2 or emb.shape[0] != 1:
        raise NodeExecutionError(f"{what} takes one embedding (1, D), got {tuple(emb.shape)}; set the prior's "
                                 "count to 1")
    return emb


class ImagicEmbed(Node):
    """Imagic stage 1: optimise the target's CLIP image embedding until the frozen decoder reconstructs
    the input image from it."""

    name = "imagic_embed"
    title = "Imagic: Optimise Embedding"
    search_aliases = ("imagic", "edit", "text inversion")
    category = "personalise"

    class Inputs(nodegraph.Inputs):
        decoder: DECODER = Port(description="The decoder (frozen here).")
        image: IMAGE = Port(description="The image to edit, (1, H, W, 3).")
        conditioning: CONDITIONING = Port(description="The target text, encoded (the decoder attends to it).")
        embedding: EMBEDDING = Port(description="The target text's CLIP image embedding (the prior's sample, count 1).")
        steps: int = Port(30, ge=1, le=2000, description="Optimisation steps.")
        lr: float = Port(0.05, gt=0.0, le=10.0, description="Adam learning rate, relative to the embedding's norm.")
        batch: int = Port(4, ge=1, le=64, description="Noise draws of the image per step.")
        seed: nodegraph.Seed = Port(0, description="Random seed (noise draws).")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="The optimised embedding, (1, D).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from ..unclip.api import alphas_cumprod, decoder_loss, generator
        from .common import decoder_pixels, trainable_copy

        dec = inputs.decoder.model
        x0 = decoder_pixels(_one_image(inputs.image, "Imagic"), dec.sample_size).expand(inputs.batch, -1, -1, -1)
        target = trainable_copy(_one_row(inputs.embedding, "Imagic")).float()
        text = trainable_copy(inputs.conditioning.cond.expand(inputs.batch))
        if text.embeds.shape[0] != inputs.batch:
            raise NodeExecutionError("Imagic takes one target text; give one prompt")
        scale = float(target.norm())
        emb = torch.nn.Parameter(target.clone())
        opt = torch.optim.Adam([emb], lr=inputs.lr * scale / target.shape[1] ** 0.5)
        abar, gen = alphas_cumprod(dec), generator(inputs.seed)
        for step in range(inputs.steps):
            loss = decoder_loss(dec, x0, emb.expand(inputs.batch, -1), text, abar, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ctx.progress(step + 1, inputs.steps)
        return self.Outputs(embedding=emb.detach().clone())


class ImagicFinetune(Node):
    """Imagic stage 2: fine-tune a LoRA copy of the decoder on the input image with the optimised
    embedding, so that it reproduces the image's details (the loaded decoder is not changed)."""

    name = "imagic_finetune"
    title = "Imagic: Fine-tune Decoder"
    search_aliases = ("imagic", "edit")
    category = "personalise"

    class Inputs(nodegraph.Inputs):
        decoder: DECODER = Port(description="The decoder to copy and fine-tune.")
        image: IMAGE = Port(description="The image to edit, (1, H, W, 3).")
        conditioning: CONDITIONING = Port(description="The target text, encoded.")
        embedding: EMBEDDING = Port(description="The optimised embedding (Imagic: Optimise Embedding).")
        steps: int = Port(20, ge=1, le=2000, description="Fine-tuning steps.")
        rank: int = Port(4, ge=1, le=64, description="LoRA rank.")
        lr: float = Port(1e-3, gt=0.0, le=1.0, description="Learning rate.")
        batch: int = Port(4, ge=1, le=64, description="Noise draws of the image per step.")
        seed: nodegraph.Seed = Port(0, description="Random seed (noise draws).")

    class Outputs(nodegraph.Outputs):
        decoder: DECODER = Port(description="The fine-tuned copy of the decoder (LoRA merged).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import dataclasses

        from ..unclip.api import alphas_cumprod, decoder_loss, generator
        from . import training
        from .common import decoder_pixels, trainable_copy

        base: ModelHandle = inputs.decoder
        dec = base.model
        x0 = decoder_pixels(_one_image(inputs.image, "Imagic"), dec.sample_size).expand(inputs.batch, -1, -1, -1)
        emb = trainable_copy(_one_row(inputs.embedding, "Imagic")).float().expand(inputs.batch, -1)
        text = trainable_copy(inputs.conditioning.cond.expand(inputs.batch))
        unet, _ = training.with_lora(dec.unet, inputs.rank, training.DECODER_TARGETS)
        abar, gen = alphas_cumprod(dec), generator(inputs.seed)
        training.fit([{"params": training.trainable(unet), "lr": inputs.lr}],
                     lambda _step: decoder_loss(dec, x0, emb, text, abar, gen, unet=unet), inputs.steps,
                     lambda done, _loss: ctx.progress(done, inputs.steps), warmup=1)
        tuned = dataclasses.replace(dec, unet=training.merged(unet))
        return self.Outputs(decoder=ModelHandle(tuned, f"{base.name}+imagic", base.kind,
                                                {**base.info, "imagic": inputs.steps}))


class ImagicInterpolate(Node):
    """Imagic stage 3: η · target + (1 − η) · optimised embedding (linear, as the paper)."""

    name = "imagic_interpolate"
    title = "Imagic: Interpolate"
    category = "personalise"

    class Inputs(nodegraph.Inputs):
        optimised: EMBEDDING = Port(description="The optimised embedding (stage 1).")
        target: EMBEDDING = Port(description="The target text's CLIP image embedding.")
        eta: float = Port(0.8, ge=0.0, le=2.0, step=0.05, display="slider",
                          description="η: 0 reconstructs the input image, 1 is the target text's embedding.")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="The embedding to decode, (1, D).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        a, b = inputs.optimised, inputs.target
        if a.shape != b.shape:
            raise NodeExecutionError(f"optimised {tuple(a.shape)} and target {tuple(b.shape)} differ; both come "
                                     "from one target text (prior count 1)")
        return self.Outputs(embedding=inputs.eta * b + (1 - inputs.eta) * a)
