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

# What each loader lists: bundles (Karlo's layout, or ours) holding the part it loads.
CLIP_MODELS = nodegraph.ModelKind("unclip.clip", markers=("clip/open_clip_config.json", "open_clip_config.json",
                                                          "text_encoder/config.json"))
PRIOR_MODELS = nodegraph.ModelKind("unclip.prior", markers=("prior/config.json",))
DECODER_MODELS = nodegraph.ModelKind("unclip.decoder", markers=("decoder/config.json",))
UPSAMPLER_MODELS = nodegraph.ModelKind("unclip.upsampler", markers=("super_res_first/config.json",))


class _Loader(Node):
    category = "unclip/loaders"
    volatile = True  # the files can change on disk; the fingerprint notices
    kind = ""

    def fingerprint(self, inputs: dict[str, Any], ctx: nodegraph.FingerprintContext) -> str | None:
        try:
            return nodegraph.file_signature(ctx.resolve_model(inputs["model"]))
        except nodegraph.NodegraphError:
            return None  # run() reports the problem

    def check(self, inputs: dict[str, Any], ctx: nodegraph.CheckContext) -> list[tuple[str | None, str]]:
        return ctx.missing_model("model", inputs.get("model"))

    def load(self, ctx: NodeContext, name: str, loader) -> ModelHandle:
        path = ctx.models.resolve(name)
        from .convert import library_errors

        with library_errors(), nodegraph.refuse_pickles(path):
            return ctx.models.handle(f"{self.kind}:{path.resolve()}", lambda: loader(path), name, self.kind)


class LoadCLIP(_Loader):
    """Load a CLIP model: text and image encoders with their tokenizer (open_clip or transformers)."""

    name = "load_clip"
    search_aliases = ("checkpoint", "load checkpoint", "clip loader", "model loader")
    title = "Load CLIP"
    kind = "unclip.clip"

    class Inputs(nodegraph.Inputs):
        model: nodegraph.ModelName(CLIP_MODELS) = Port(
            DEFAULT, description="Model name in the model folders (an unCLIP bundle or an open_clip folder), or a "
            "local path (command line only).")

    class Outputs(nodegraph.Outputs):
        clip: CLIP = Port(description="The CLIP model.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .models import load_clip

        return self.Outputs(clip=self.load(ctx, inputs.model, load_clip))


class LoadPrior(_Loader):
    """Load a diffusion prior (diffusers PriorTransformer and its scheduler)."""

    name = "load_prior"
    search_aliases = ("checkpoint", "load checkpoint", "prior loader", "model loader")
    title = "Load Prior"
    kind = "unclip.prior"

    class Inputs(nodegraph.Inputs):
        model: nodegraph.ModelName(PRIOR_MODELS) = Port(
            DEFAULT, description="Model name (an unCLIP bundle with prior/), or a local path.")

    class Outputs(nodegraph.Outputs):
        prior: PRIOR = Port(description="The prior.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .models import load_prior

        return self.Outputs(prior=self.load(ctx, inputs.model, load_prior))


class LoadDecoder(_Loader):
    """Load a diffusion decoder (text_proj + UNet2DConditionModel and its scheduler)."""

    name = "load_decoder"
    search_aliases = ("checkpoint", "load checkpoint", "unet loader", "vae loader", "model loader")
    title = "Load Decoder"
    kind = "unclip.decoder"

    class Inputs(nodegraph.Inputs):
        model: nodegraph.ModelName(DECODER_MODELS) = Port(
            DEFAULT, description="Model name (an unCLIP bundle with decoder/ and text_proj/), or a local path.")

    class Outputs(nodegraph.Outputs):
        decoder: DECODER = Port(description="The decoder.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .models import load_decoder

        return self.Outputs(decoder=self.load(ctx, inputs.model, load_decoder))


class LoadUpsampler(_Loader):
    """Load a super-resolution upsampler (super_res_first / super_res_last and their scheduler)."""

    name = "load_upsampler"
    search_aliases = ("checkpoint", "upscale model loader", "model loader")
    title = "Load Upsampler"
    kind = "unclip.upsampler"

    class Inputs(nodegraph.Inputs):
        model: nodegraph.ModelName(UPSAMPLER_MODELS) = Port(
            DEFAULT, description="Model name (an unCLIP bundle with super_res_first/, or an upsampler folder), "
            "or a local path.")

    class Outputs(nodegraph.Outputs):
        upsampler: UPSAMPLER = Port(description="The upsampler.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .models import load_upsampler

        return self.Outputs(upsampler=self.load(ctx, inputs.model, load_upsampler))
