"""Kandinsky's prior stage: image embeddings with the negative image embeddings its decoder guides
against, the zero-image embedding, and the weighted mix of embeddings (the prior's `interpolate`)."""

from __future__ import annotations

import nodegraph
from nodegraph import Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CLIP, CONDITIONING, EMBEDDING, PRIOR, generator, library_errors, progress


class KandinskyPrior(Node):
    """Sample CLIP image embeddings from a prompt, and the negative image embeddings for the decoder.

    With an empty negative prompt the negative is the zero-image embedding (what diffusers uses when
    no negative prompt is given); with one, the prior's sample for it.
    """

    name = "prior"
    title = "Kandinsky Prior"
    category = "kandinsky"

    class Inputs(nodegraph.Inputs):
        prior: PRIOR = Port(description="A loaded prior (Load Kandinsky Prior).")
        clip: CLIP = Port(description="Its CLIP (for the zero-image embedding).")
        conditioning: CONDITIONING = Port(description="Encoded prompt and negative prompt (CLIP Text Encode).")
        guidance: float = Port(4.0, ge=0.0, le=20.0, step=0.5, description="Classifier-free guidance scale "
                               "(off at 1 or below, as in diffusers).")
        steps: int = Port(25, ge=2, le=1000, description="Denoising steps (at least 2: the prior's "
                         "UnCLIPScheduler spaces its timesteps by steps − 1).")
        seed: nodegraph.Seed = Port(0, description="Random seed.")
        count: int = Port(1, ge=1, le=64, description="Image embeddings per prompt.")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="CLIP image embeddings, (prompts × count, D).")
        negative: EMBEDDING = Port(description="Negative image embeddings for the decoder, one per embedding.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from .models import sample_with_negative

        c = inputs.conditioning
        with torch.inference_mode(), library_errors():
            emb, neg = sample_with_negative(inputs.prior.model, inputs.clip.model, c.cond, c.uncond, c.negative,
                                            guidance=inputs.guidance, steps=inputs.steps,
                                            generator=generator(inputs.seed), count=inputs.count,
                                            callback=progress(ctx), texts=tuple(c.texts))
        return self.Outputs(embedding=emb, negative=neg)


class ZeroEmbedding(Node):
    """The zero-image embedding: CLIP's image tower on an all-zero input, Kandinsky's default negative."""

    name = "zero_embedding"
    title = "Zero Image Embedding"
    category = "kandinsky"

    class Inputs(nodegraph.Inputs):
        clip: CLIP = Port(description="A loaded CLIP with an image encoder (Load Kandinsky Prior's).")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="The zero-image embedding, (1, D).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from .models import zero_embed

        with torch.inference_mode(), library_errors():
            return self.Outputs(embedding=zero_embed(inputs.clip.model))


class EmbeddingMix(Node):
    """Weighted sum of image embeddings (prompts' prior samples, images' CLIP embeddings): the Kandinsky
    prior's `interpolate` for mixing images and texts. Batches of 1 broadcast to the others' size."""

    name = "embedding_mix"
    title = "Mix Embeddings"
    category = "kandinsky"

    class Inputs(nodegraph.Inputs):
        a: EMBEDDING = Port(description="First embeddings, (B, D) or (1, D).")
        b: EMBEDDING = Port(description="Second embeddings.")
        weight_a: float = Port(0.5, ge=-10.0, le=10.0, step=0.05, description="Weight of a.")
        weight_b: float = Port(0.5, ge=-10.0, le=10.0, step=0.05, description="Weight of b.")
        c: EMBEDDING | None = Port(None, description="Optional third embeddings.")
        weight_c: float = Port(0.0, ge=-10.0, le=10.0, step=0.05, description="Weight of c.")
        d: EMBEDDING | None = Port(None, description="Optional fourth embeddings.")
        weight_d: float = Port(0.0, ge=-10.0, le=10.0, step=0.05, description="Weight of d.")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="Σ weight × embeddings, (B, D).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        parts = [(e, w) for e, w in ((inputs.a, inputs.weight_a), (inputs.b, inputs.weight_b),
                                     (inputs.c, inputs.weight_c), (inputs.d, inputs.weight_d)) if e is not None]
        widths = {int(e.shape[-1]) for e, _ in parts}
        if len(widths) > 1:
            raise NodeExecutionError(f"embeddings of widths {sorted(widths)} come from different CLIP models; mix "
                                     "embeddings of one model")
        rows = {int(e.shape[0]) for e, _ in parts} - {1}
        if len(rows) > 1:
            raise NodeExecutionError(f"batch sizes {sorted(rows)} differ; give batches of one size (or of 1)")
        n = rows.pop() if rows else 1
        # summed as the pipeline does: the weighted terms stacked, then one sum
        stacked = torch.stack([e.expand(n, -1) * w for e, w in parts])
        return self.Outputs(embedding=stacked.sum(dim=0))
