"""Loaders: shipped models by name (in the model folders), or any local directory of the same layout.

Every loader accepts our shipped bundle (`models/shapes-unclip`, a Karlo-style directory with an
open_clip `clip/` folder) and a real Karlo-style unCLIP directory (diffusers `UnCLIPPipeline`
layout with a transformers CLIP text encoder and tokenizer). Models load once into the engine's
model store; loaders re-run when the files on disk change.
"""

from __future__ import annotations

from typing import Any

import nodegraph
from nodegraph import ModelHandle, Node, NodeContext, Port

from .types import CLIP, DECODER, PRIOR, UPSAMPLER

DEFAULT = "shapes-unclip"


class _Loader(Node):
    category = "unclip/loaders"
    volatile = True  # the files can change on disk; the fingerprint notices
    kind = ""

    def fingerprint(self, inputs: dict[str, Any], ctx: nodegraph.FingerprintContext) -> str | None:
        try:
            return nodegraph.file_signature(ctx.resolve_model(inputs["model"]))
        except nodegraph.NodegraphError:
            return None  # run() reports the problem

    def load(self, ctx: NodeContext, name: str, loader) -> ModelHandle:
        path = ctx.models.resolve(name)
        from .convert import library_errors

        with library_errors():
            model = ctx.models.load(f"{self.kind}:{path.resolve()}", lambda: loader(path))
        return ModelHandle(model, name, self.kind)


class LoadCLIP(_Loader):
    """Load a CLIP model: text and image encoders with their tokenizer (open_clip or transformers)."""

    name = "load_clip"
    title = "Load CLIP"
    kind = "unclip.clip"

    class Inputs(nodegraph.Inputs):
        model: str = Port(DEFAULT, description="Model name in the model folders (an unCLIP bundle or an "
                          "open_clip folder), or a local path (command line only).")

    class Outputs(nodegraph.Outputs):
        clip: CLIP = Port(description="The CLIP model.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .models import load_clip

        return self.Outputs(clip=self.load(ctx, inputs.model, load_clip))


class LoadPrior(_Loader):
    """Load a diffusion prior (diffusers PriorTransformer and its scheduler)."""

    name = "load_prior"
    title = "Load Prior"
    kind = "unclip.prior"

    class Inputs(nodegraph.Inputs):
        model: str = Port(DEFAULT, description="Model name (an unCLIP bundle with prior/), or a local path.")

    class Outputs(nodegraph.Outputs):
        prior: PRIOR = Port(description="The prior.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .models import load_prior

        return self.Outputs(prior=self.load(ctx, inputs.model, load_prior))


class LoadDecoder(_Loader):
    """Load a diffusion decoder (text_proj + UNet2DConditionModel and its scheduler)."""

    name = "load_decoder"
    title = "Load Decoder"
    kind = "unclip.decoder"

    class Inputs(nodegraph.Inputs):
        model: str = Port(DEFAULT, description="Model name (an unCLIP bundle with decoder/ and text_proj/), "
                          "or a local path.")

    class Outputs(nodegraph.Outputs):
        decoder: DECODER = Port(description="The decoder.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .models import load_decoder

        return self.Outputs(decoder=self.load(ctx, inputs.model, load_decoder))


class LoadUpsampler(_Loader):
    """Load a super-resolution upsampler (super_res_first / super_res_last and their scheduler)."""

    name = "load_upsampler"
    title = "Load Upsampler"
    kind = "unclip.upsampler"

    class Inputs(nodegraph.Inputs):
        model: str = Port(DEFAULT, description="Model name (an unCLIP bundle with super_res_first/, or an "
                          "upsampler folder), or a local path.")

    class Outputs(nodegraph.Outputs):
        upsampler: UPSAMPLER = Port(description="The upsampler.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .models import load_upsampler

        return self.Outputs(upsampler=self.load(ctx, inputs.model, load_upsampler))
