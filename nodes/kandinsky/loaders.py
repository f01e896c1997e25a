"""Loaders of Kandinsky 2.2 folders in diffusers' layout, by name in the model folders or by path.

Each component loads with one copy of its weights in memory (meta-device construction filled from
the files), fp16 on CUDA and fp32 on CPU unless `dtype` says otherwise, into the engine's model
store (bounded by `NODEGRAPH_MODEL_MEMORY`). A wrong folder, a missing subfolder, a config that does
not fit its weights or a pickle `.bin` is an error naming the folder and the fix.
"""

from __future__ import annotations

from typing import Any, Literal

import nodegraph
from nodegraph import Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CLIP, PRIOR
from .types import CONTROLNET_DECODER, DECODER, INPAINT_DECODER

Dtype = Literal["auto", "fp32", "fp16", "bf16"]
_DTYPE = "Weights' precision: auto is fp16 on CUDA and fp32 on CPU; bf16 suits GPUs that have it."


class _Loader(Node):
    category = "kandinsky/loaders"
    volatile = True  # the files can change on disk; the fingerprint notices

    def fingerprint(self, inputs: dict[str, Any], ctx: nodegraph.FingerprintContext) -> str | None:
        try:
            return nodegraph.file_signature(ctx.resolve_model(inputs["model"]))
        except nodegraph.NodegraphError:
            return None  # run() reports the problem

    def check(self, inputs: dict[str, Any], ctx: nodegraph.CheckContext) -> list[tuple[str | None, str]]:
        from .checks import loader_problems

        return loader_problems(f"kandinsky.{self.name}", inputs, ctx)

    def load(self, ctx: NodeContext, name: str, dtype: str, kind: str, loader) -> nodegraph.ModelHandle:
        from .models import LayoutError, resolve_dtype

        path, device = ctx.models.resolve(name), ctx.device
        torch_dtype = resolve_dtype(dtype, device)
        key = f"{kind}:{path.resolve()}:{torch_dtype}:{device}"
        try:
            with nodegraph.refuse_pickles(path):
                # the handle keeps this loader to reload after an eviction: it must not hold the context
                return ctx.models.handle(key, lambda: loader(path, torch_dtype, device), name, kind)
        except (LayoutError, ValueError, FileNotFoundError) as exc:
            raise NodeExecutionError(str(exc)) from None


class LoadPrior(_Loader):
    """Load a Kandinsky 2.2 prior folder: the diffusion prior and its CLIP (ViT-bigG text and image towers)."""

    name = "load_prior"
    title = "Load Kandinsky Prior"

    class Inputs(nodegraph.Inputs):
        model: str = Port("kandinsky-2-2-prior", description="A Kandinsky 2.2 prior folder (prior/, scheduler/, "
                          "text_encoder/, tokenizer/, image_encoder/, image_processor/): a name in the model folders "
                          "or a local path (command line only).")
        dtype: Dtype = Port("auto", description=_DTYPE)

    class Outputs(nodegraph.Outputs):
        prior: PRIOR = Port(description="The prior (for Kandinsky Prior or the unclip Prior).")
        clip: CLIP = Port(description="Its CLIP: for CLIP Text Encode, CLIP Image Encode, CLIP Score.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .models import load_clip, load_prior

        prior = self.load(ctx, inputs.model, inputs.dtype, "unclip.prior", load_prior)
        clip = self.load(ctx, inputs.model, inputs.dtype, "unclip.clip", load_clip)
        return self.Outputs(prior=prior, clip=clip)


def _model_port(default: str) -> Any:
    return Port(default, description=f"A {default} folder (unet/, scheduler/, movq/): a name in the model folders "
                "or a local path (command line only).")


class _DecoderInputs(nodegraph.Inputs):
    model: str = _model_port("kandinsky-2-2-decoder")
    dtype: Dtype = Port("auto", description=_DTYPE)


class _DecoderLoader(_Loader):
    variant = ""

    def run(self, inputs: Any, ctx: NodeContext) -> Any:
        from .models import load_decoder
        from .models.layout import VARIANTS

        handle = self.load(ctx, inputs.model, inputs.dtype, f"kandinsky.{self.variant}", load_decoder)
        found = handle.model.variant
        if found != self.variant:
            raise NodeExecutionError(
                f"{inputs.model} is a {VARIANTS[found]} folder ({found}), not a {VARIANTS[self.variant]} folder; "
                f"give this loader a {VARIANTS[self.variant]} folder, or load this one with the {found} loader")
        return self.Outputs(decoder=handle)


class LoadDecoder(_DecoderLoader):
    """Load a Kandinsky 2.2 decoder folder (UNet on MoVQ latents + MoVQ) for text to image and image to image."""

    name = "load_decoder"
    title = "Load Kandinsky Decoder"
    variant = "text2image"

    Inputs = _DecoderInputs

    class Outputs(nodegraph.Outputs):
        decoder: DECODER = Port(description="The decoder (for Kandinsky Decoder and Kandinsky Image to Image).")


class LoadInpaintDecoder(_DecoderLoader):
    """Load a Kandinsky 2.2 inpainting decoder folder (its UNet also takes the masked image and the mask)."""

    name = "load_inpaint_decoder"
    title = "Load Kandinsky Inpaint Decoder"
    variant = "inpaint"

    class Inputs(_DecoderInputs):
        model: str = _model_port("kandinsky-2-2-decoder-inpaint")

    class Outputs(nodegraph.Outputs):
        decoder: INPAINT_DECODER = Port(description="The inpainting decoder (for Kandinsky Inpaint).")


class LoadControlnetDecoder(_DecoderLoader):
    """Load a Kandinsky 2.2 ControlNet decoder folder (its UNet also takes a hint image, e.g. a depth map)."""

    name = "load_controlnet_decoder"
    title = "Load Kandinsky ControlNet Decoder"
    variant = "controlnet"

    class Inputs(_DecoderInputs):
        model: str = _model_port("kandinsky-2-2-controlnet-depth")

    class Outputs(nodegraph.Outputs):
        decoder: CONTROLNET_DECODER = Port(description="The ControlNet decoder (for Kandinsky ControlNet).")
