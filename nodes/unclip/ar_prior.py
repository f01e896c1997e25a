"""The autoregressive prior's nodes: its loader and its sampler, Prior-shaped.

`unclip.ar_prior` takes the same conditioning and gives the same `EMBEDDING` as `unclip.prior`, so a
workflow swaps the diffusion prior for this one by swapping the loader and the sampler
(`workflows/text2image_ar.json` is `text2image.json` so swapped).
"""

from __future__ import annotations

import nodegraph
from nodegraph import Node, NodeContext, Port

from .convert import generator, library_errors, progress
from .loaders import DEFAULT, _Loader
from .types import AR_PRIOR, CONDITIONING, EMBEDDING

AR_PRIOR_MODELS = nodegraph.ModelKind("unclip.ar_prior", markers=("prior_ar/config.json",))


class LoadARPrior(_Loader):
    """Load an autoregressive prior (PCA codebook + causal transformer, `prior_ar/` of a bundle)."""

    name = "load_ar_prior"
    search_aliases = ("checkpoint", "autoregressive prior loader", "model loader")
    title = "Load AR Prior"
    kind = "unclip.ar_prior"

    class Inputs(nodegraph.Inputs):
        model: nodegraph.ModelName(AR_PRIOR_MODELS) = Port(
            DEFAULT, description="Model name (an unCLIP bundle with prior_ar/), or a local path.")

    class Outputs(nodegraph.Outputs):
        prior: AR_PRIOR = Port(description="The autoregressive prior.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .models import load_ar_prior

        return self.Outputs(prior=self.load(ctx, inputs.model, load_ar_prior))


class ARPrior(Node):
    """Map a CLIP text embedding to CLIP image embeddings with the autoregressive prior, code by code."""

    name = "ar_prior"
    title = "AR Prior"
    search_aliases = ("autoregressive prior", "sampler", "text to image embedding")
    category = "unclip"

    class Inputs(nodegraph.Inputs):
        prior: AR_PRIOR = Port(description="A loaded autoregressive prior.")
        conditioning: CONDITIONING = Port(description="Encoded prompt (CLIP Text Encode).")
        guidance: float = Port(2.0, ge=0.0, le=20.0, step=0.5, description="Classifier-free guidance on the "
                               "codes' logits (1: off, half the compute).")
        temperature: float = Port(0.7, ge=0.0, le=2.0, step=0.05, description="Sampling temperature (0: the most "
                                  "likely code each time, the same embedding for every seed).")
        top_k: int = Port(0, ge=0, le=4096, description="Draw each code from the k most likely (0: all).")
        seed: nodegraph.Seed = Port(0, description="Random seed.")
        count: int = Port(1, ge=1, le=64, description="Image embeddings per prompt.")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="CLIP image embeddings, (prompts × count, D).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from .models import sample_ar_prior

        cond = inputs.conditioning
        with torch.inference_mode(), library_errors():
            emb = sample_ar_prior(inputs.prior.model, cond.cond, cond.uncond, guidance=inputs.guidance,
                                  temperature=inputs.temperature, top_k=inputs.top_k,
                                  generator=generator(inputs.seed), num_per_prompt=inputs.count,
                                  callback=progress(ctx))
        return self.Outputs(embedding=emb)
