"""Imagic for the unCLIP decoder: edit one image towards a target text in three stages.

0. `Imagic: Nearest Target` — the target embedding: of the prior's samples for the target text
   started from the input's CLIP image embedding (Prior `init`, `strength`, `count`), the one nearest
   to the input, so that it differs from the input in the named attribute and little else;
1. `Imagic: Optimise Embedding` — optimise an embedding with the frozen decoder's denoising loss
   until it reconstructs the input image (from the input's CLIP image embedding when `init` is
   connected, else from the target's, as the paper);
2. `Imagic: Fine-tune Decoder` — a brief LoRA on a copy of the decoder, trained on the input image
   with the optimised embedding (the cached decoder is never changed);
3. `Imagic: Interpolate` — η · target + (1 − η) · optimised; decode it with the fine-tuned decoder
   and the target text. `Imagic: Edit` does this for a sweep of η from the same noise and keeps, per
   image, the smallest η whose CLIP score towards the target text is near the sweep's best (the paper
   picks η per image by eye).

The paper optimises the text embedding of a text-conditioned model; in unCLIP the decoder's main
condition is the CLIP image embedding the prior makes from the text, so that is the embedding
optimised and interpolated here (the decoder also attends to the target text's tokens throughout).
unCLIP has an image encoder, which a text model has not: stage 1 starts at the input's embedding
(the denoising loss alone moves the target's embedding little and noisily), and the target is
sampled from it (the prior's free sample has its own place and size, which the edit would take).
"""

from __future__ import annotations

import nodegraph
from nodegraph import IMAGE, ModelHandle, Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CLIP, CONDITIONING, DECODER, EMBEDDING


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


def _same_shape(optimised, target):
    if optimised.shape != target.shape:
        raise NodeExecutionError(f"optimised {tuple(optimised.shape)} and target {tuple(target.shape)} differ; both "
                                 "come from one target text (prior count 1)")
    return optimised, target


class ImagicTarget(Node):
    """Imagic's target embedding: of the prior's samples for the target text started from the input
    image's CLIP embedding (Prior with `init`, `strength`, `count`), keep the one nearest to the input, so
    that the edit moves the named attribute and as little else as it can."""

    name = "imagic_target"
    title = "Imagic: Nearest Target"
    search_aliases = ("imagic", "edit", "nearest embedding")
    category = "personalise"

    class Inputs(nodegraph.Inputs):
        candidates: EMBEDDING = Port(description="Target embeddings, (K, D): the Prior for the target text with "
                                     "`init` the input's CLIP Image Encode and `count` K.")
        reference: EMBEDDING = Port(description="The input image's CLIP embedding, (1, D).")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="The candidate nearest to the reference (cosine), (1, D).")
        similarity: float = Port(description="Its cosine similarity to the reference.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        ref = _one_row(inputs.reference, "Imagic: Nearest Target's reference")
        cands = inputs.candidates
        if cands.dim() != 2 or cands.shape[1] != ref.shape[1]:
            raise NodeExecutionError(f"candidates {tuple(cands.shape)} and reference {tuple(ref.shape)} do not match; "
                                     "give (K, D) embeddings of the same CLIP as the reference")
        sims = torch.cosine_similarity(cands.float(), ref.float())
        k = int(sims.argmax())
        ctx.show(text=[f"candidate {k + 1} of {len(sims)} (cosine {float(sims[k]):.3f} to the input)"])
        return self.Outputs(embedding=cands[k:k + 1].clone(), similarity=float(sims[k]))


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
        embedding: EMBEDDING = Port(description="The target text's CLIP image embedding, (1, D): Imagic: Nearest "
                                     "Target, or the prior's sample (count 1).")
        init: EMBEDDING | None = Port(None, description="Where the optimisation starts, (1, D): the input image's "
                                      "CLIP Image Encode makes the decoder reconstruct it from the first step. "
                                      "Unconnected: the target's embedding, as the paper.")
        steps: int = Port(30, ge=1, le=2000, description="Optimisation steps.")
        lr: float = Port(0.005, gt=0.0, le=10.0, description="Adam learning rate, relative to the embedding's norm "
                         "(each step moves every coordinate by about lr · |e| / √D).")
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
        start = target if inputs.init is None else trainable_copy(_one_row(inputs.init, "Imagic's init")).float()
        if start.shape != target.shape:
            raise NodeExecutionError(f"init {tuple(start.shape)} and the target embedding {tuple(target.shape)} "
                                     "differ; encode the input image with the CLIP of the same bundle")
        text = trainable_copy(inputs.conditioning.cond.expand(inputs.batch))
        if text.embeds.shape[0] != inputs.batch:
            raise NodeExecutionError("Imagic takes one target text; give one prompt")
        scale = float(target.norm())
        emb = torch.nn.Parameter(start.clone())
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
        seed: nodegraph.Seed = Port(0, description="Random seed (noise draws, the LoRA's initial weights).")

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
        unet, _ = training.with_lora(dec.unet, inputs.rank, training.DECODER_RESNET_TARGETS, seed=inputs.seed)
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
        a, b = _same_shape(inputs.optimised, inputs.target)
        return self.Outputs(embedding=inputs.eta * b + (1 - inputs.eta) * a)


def parse_etas(text: str) -> list[float]:
    """"0.3, 0.5, 1" → [0.3, 0.5, 1.0], sorted; an error names the bad item."""
    out = []
    for item in text.replace(";", ",").split(","):
        if not item.strip():
            continue
        try:
            value = float(item)
        except ValueError:
            raise NodeExecutionError(f"etas: {item.strip()!r} is not a number; give comma-separated values such "
                                     "as '0.3, 0.5, 0.7, 1'") from None
        if not 0.0 < value <= 2.0:
            raise NodeExecutionError(f"etas: {value} is outside (0, 2]; η 0 is the reconstruction itself")
        out.append(value)
    if not out:
        raise NodeExecutionError("etas is empty; give comma-separated values such as '0.3, 0.5, 0.7, 1'")
    return sorted(set(out))


def choose_eta(scores: list[float], reference: float, threshold: float) -> int:
    """Index of the first (smallest-η) score that reaches `threshold` of the way from the reconstruction's
    score `reference` to the best score of the sweep; the best score's when no η beats the reconstruction."""
    best = max(scores)
    bar = min(best, reference + threshold * (best - reference))
    return next(i for i, s in enumerate(scores) if s >= bar)


class ImagicEdit(Node):
    """Imagic stage 3 with η chosen per image: decode η · target + (1 − η) · optimised for a sweep of η
    from the same noise, score each image's CLIP similarity to the target text, and keep the smallest η
    that comes `threshold` of the way from the reconstruction's score to the sweep's best."""

    name = "imagic_edit"
    title = "Imagic: Edit (η by CLIP score)"
    search_aliases = ("imagic", "edit", "interpolate")
    category = "personalise"

    class Inputs(nodegraph.Inputs):
        clip: CLIP = Port(description="The CLIP of the bundle (scores the sweep against the target text).")
        decoder: DECODER = Port(description="The fine-tuned decoder (Imagic: Fine-tune Decoder).")
        optimised: EMBEDDING = Port(description="The optimised embedding (stage 1), (1, D).")
        target: EMBEDDING = Port(description="The target text's CLIP image embedding, (1, D).")
        conditioning: CONDITIONING = Port(description="The target text, encoded (decoder and score).")
        etas: str = Port("0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0", description="η values to try, comma-separated "
                         "(0 < η ≤ 2).")
        threshold: float = Port(0.7, ge=0.0, le=1.0, step=0.05, description="How far from the reconstruction's "
                                "CLIP score to the sweep's best the chosen η must come: lower keeps more of the "
                                "input, higher follows the text more (1: the best-scoring η).")
        guidance: float = Port(1.5, ge=0.0, le=30.0, step=0.5, description="Decoder classifier-free guidance.")
        steps: int = Port(25, ge=2, le=1000, description="Decoder denoising steps.")
        seed: nodegraph.Seed = Port(0, description="Random seed: one noise for the whole sweep.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="The edit at the chosen η, (1, H, W, 3).")
        eta: float = Port(description="The chosen η.")
        sweep: IMAGE = Port(description="The reconstruction (η 0) and every η of the sweep, in order.")
        scores: str = Port(description="CLIP score (cosine × 100) of each sweep image, η 0 first.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        from ..unclip.api import generator, sample_decoder

        etas = parse_etas(inputs.etas)
        a, b = _same_shape(_one_row(inputs.optimised, "Imagic: Edit"), _one_row(inputs.target, "Imagic: Edit"))
        cond = inputs.conditioning
        if cond.cond.embeds.shape[0] != 1:
            raise NodeExecutionError("Imagic takes one target text; give one prompt")
        dec, clip = inputs.decoder.model, inputs.clip.model
        mix = torch.cat([e * b + (1 - e) * a for e in [0.0, *etas]])  # (1 + E, D)
        gen = generator(inputs.seed)
        shape = (1, dec.unet.config.in_channels, dec.sample_size, dec.sample_size)
        # one noise for every η: the decoder's DDIM is deterministic, so the images differ only by η
        latents = randn_tensor(shape, generator=gen).expand(len(mix), -1, -1, -1)
        with torch.inference_mode():
            images = sample_decoder(dec, mix, cond.cond, cond.uncond, guidance=inputs.guidance, steps=inputs.steps,
                                    generator=gen, latents=latents,
                                    callback=lambda i, n, _p: ctx.progress(i, n))
            scores = torch.cosine_similarity(clip.encode_image(images), cond.cond.embeds.to(images.dtype)) * 100
        s = scores.tolist()
        k = choose_eta(s[1:], s[0], inputs.threshold)
        ctx.show(text=[f"η {etas[k]:g} (CLIP score {s[k + 1]:.1f}; reconstruction {s[0]:.1f}, best {max(s[1:]):.1f})"])
        return self.Outputs(images=nodegraph.from_tensor(images[k + 1:k + 2]), eta=etas[k],
                            sweep=nodegraph.from_tensor(images), scores=", ".join(f"{v:.2f}" for v in s))
