"""The LoRA pack: apply LoRA files to the unCLIP decoder (and prior, and CLIP), stackable, with a strength.

`Load LoRA` reads peft/diffusers and kohya-style files (see `lora.py`), merges the low-rank deltas
into a copy of the decoder UNet (of the prior when the file has prior keys, of the CLIP's text tower
when it has text-encoder keys) and outputs new handles; the cached base models are never modified.
Chain several nodes to stack LoRAs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import nodegraph
from nodegraph import ModelHandle, Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CLIP, DECODER, PRIOR

KIND = "loras"  # model folder: <models>/loras/<name>.safetensors (or a peft / diffusers folder)
NONE = "none"  # no LoRA: the models pass through (a slot switched off)
SHIPPED = "shapes-pink"
MODELS = nodegraph.ModelKind("lora", folder=KIND, extensions=(".safetensors",),
                             markers=("adapter_config.json", "pytorch_lora_weights.safetensors"))


def resolve_lora(resolve: Callable[[str, str], Path], name: str) -> Path:
    """A LoRA by name in `<models>/loras/` (the extension may be left out), or a local path.

    `resolve(name, kind)` finds a model: `ctx.models.resolve` when the node runs, or the fingerprint
    context's `resolve_model` when it is planned.
    """
    try:
        return resolve(name, KIND)
    except nodegraph.UnsafePath:
        raise
    except nodegraph.NodegraphError:
        if name and not name.endswith(".safetensors") and not os.path.isabs(name):
            try:
                return resolve(name + ".safetensors", KIND)
            except nodegraph.NodegraphError:
                pass
        raise


def _base_unet(unet):
    """The UNet2DConditionModel inside a wrapper (a ControlNet-controlled UNet exposes `.base`)."""
    return unet.base if hasattr(unet, "replace_base") else unet


class LoadLora(Node):
    """Apply a LoRA to the decoder (and the prior, when the file has prior weights), with a strength.

    Reads peft / diffusers LoRA files and kohya-style ones; text-encoder weights (`text_encoder.*`,
    `lora_te_*`) and word embeddings bundled in the file (`bundle_emb.*`, as DreamBooth writes its
    identifier) go into a copy of the connected CLIP. The outputs are patched copies: the
    loaded models are not changed, so chain several of these nodes to stack LoRAs.
    """

    name = "load_lora"
    search_aliases = ("lora loader", "apply lora")
    title = "Load LoRA"
    category = "unclip/loaders"
    volatile = True  # the LoRA file can be replaced on disk; the fingerprint notices

    def fingerprint(self, inputs: dict, ctx: nodegraph.FingerprintContext) -> str | None:
        name = str(inputs.get("lora", NONE))
        if name.strip().lower() in (NONE, ""):
            return NONE
        try:
            return nodegraph.file_signature(resolve_lora(ctx.resolve_model, name))
        except Exception:  # noqa: BLE001 - a missing file fails in run() with its message
            return None

    def check(self, inputs: dict, ctx: nodegraph.CheckContext) -> list[tuple[str | None, str]]:
        name = inputs.get("lora")
        if not isinstance(name, str) or name.strip().lower() in (NONE, ""):
            return []
        try:
            resolve_lora(ctx.resolve_model, name)
        except nodegraph.NodegraphError as exc:
            return [("lora", str(exc))]
        return []

    class Inputs(nodegraph.Inputs):
        decoder: DECODER = Port(description="The decoder to patch (from Load Decoder or another LoRA).")
        prior: PRIOR = Port(None, description="Optional: the prior to patch, for LoRAs with prior weights.")
        clip: CLIP = Port(None, description="Optional: the CLIP that gets the LoRA's text-encoder weights (at "
                          "clip_strength) and its bundled word embeddings (a DreamBooth identifier learnt with "
                          "the LoRA; the words apply whole, whatever the strengths); connect it for such LoRAs.")
        lora: nodegraph.ModelName(MODELS) = Port(NONE, description="LoRA file name in the models' loras/ folder (the .safetensors "
                         "extension may be left out; shipped: 'shapes-pink'), or a local path (command line "
                         "only): peft / diffusers or kohya-style safetensors. 'none' passes the models through.")
        strength: float = Port(1.0, ge=-10.0, le=10.0, step=0.05, description="How strongly the LoRA applies to "
                               "the decoder; 0 leaves it unchanged, negative values invert it.")
        prior_strength: float = Port(1.0, ge=-10.0, le=10.0, step=0.05, description="How strongly the LoRA "
                                     "applies to the prior (when the file has prior weights).")
        clip_strength: float = Port(1.0, ge=-10.0, le=10.0, step=0.05, description="How strongly the LoRA "
                                    "applies to the CLIP's text tower (when the file has text-encoder weights).")

    class Outputs(nodegraph.Outputs):
        decoder: DECODER = Port(description="The patched decoder (the input one when nothing applies).")
        prior: PRIOR = Port(description="The patched prior (the input one when the LoRA has no prior weights; "
                            "empty when no prior was given).")
        clip: CLIP = Port(description="The CLIP with the LoRA's text-encoder weights and word embeddings (the "
                          "input one when it has neither; empty when no CLIP was given).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .lora import LoraError, assign, patch, patch_clip, read_lora, subset

        decoder: ModelHandle = inputs.decoder
        prior: ModelHandle | None = inputs.prior
        clip: ModelHandle | None = inputs.clip
        if inputs.lora.strip().lower() in (NONE, ""):
            return self.Outputs(decoder=decoder, prior=prior, clip=clip)
        path = resolve_lora(ctx.models.resolve, inputs.lora)
        sig = nodegraph.file_signature(path)
        try:
            lora = ctx.models.load(f"lora-file:{path.resolve()}:{sig}", lambda: read_lora(path, Path(inputs.lora).stem))
            dec_model = decoder.model
            unet = dec_model.unet
            comps = {"unet": _base_unet(unet), "text_proj": dec_model.text_proj,
                     "prior": prior.model.prior if prior is not None else None}
            lora = assign(lora, comps)
        except LoraError as exc:
            raise NodeExecutionError(str(exc)) from None
        notes = []
        if lora.ignored:
            notes.append(f"{lora.name}: {len(lora.ignored)} weights ignored (SDXL's two text encoders' layers "
                         "(lora_te1_/lora_te2_/text_encoder_2./te.), clip_g embeddings, and diffusers' older "
                         "text-encoder layouts have no counterpart here)")
        if "prior" in lora.components() and prior is None:
            notes.append(f"{lora.name}: prior weights not applied (connect a prior to apply them)")
        if lora.embeddings and clip is None:
            notes.append(f"{lora.name}: the embedding of {', '.join(map(repr, lora.embeddings))} not applied "
                         "(connect the CLIP to apply it, and encode prompts with the CLIP output)")
        if "text_encoder" in lora.components() and clip is None:
            notes.append(f"{lora.name}: text-encoder weights not applied (connect the CLIP to apply them, and "
                         "encode prompts with the CLIP output)")
        for note in notes:
            ctx.log.warning(note)
        if notes:
            ctx.show(text=notes)
        source = f"{path.resolve()}:{sig}"
        new_dec, new_prior, new_clip = decoder, prior, clip
        try:
            te = "text_encoder" in lora.components()
            if (lora.embeddings or te) and clip is not None:  # the word rows apply whole: a token is the word or not
                clip_strength = inputs.clip_strength if te else 1.0
                new_clip = _handle(ctx, clip, lora.name, source, clip_strength,
                                   lambda: patch_clip(clip.model, lora, clip_strength), keep_base=not lora.embeddings)
            dec_lora = subset(lora, ("unet", "text_proj"))
            if dec_lora.components():
                def build():
                    models = patch({"unet": comps["unet"], "text_proj": comps["text_proj"]}, dec_lora, inputs.strength)
                    new_unet = models["unet"]
                    if new_unet is comps["unet"]:
                        new_unet = unet
                    elif hasattr(unet, "replace_base"):  # keep the ControlNet(s) attached to a controlled UNet
                        new_unet = unet.replace_base(new_unet)
                    return dataclasses.replace(dec_model, unet=new_unet, text_proj=models["text_proj"])

                new_dec = _handle(ctx, decoder, lora.name, source, inputs.strength, build)
            if "prior" in lora.components() and prior is not None:
                prior_lora = subset(lora, ("prior",))

                def build_prior():
                    models = patch({"prior": comps["prior"]}, prior_lora, inputs.prior_strength)
                    return dataclasses.replace(prior.model, prior=models["prior"])

                new_prior = _handle(ctx, prior, lora.name, source, inputs.prior_strength, build_prior)
        except LoraError as exc:
            raise NodeExecutionError(str(exc)) from None
        return self.Outputs(decoder=new_dec, prior=new_prior, clip=new_clip)


def _handle(ctx: NodeContext, base: ModelHandle, lora_name: str, source: str, strength: float, build,
            keep_base: bool = True) -> ModelHandle:
    """A handle on the patched copy, kept in the model store under its own key (base + file + strength).
    `keep_base`: strength 0 gives the base model itself (False: something applies whatever the strength)."""
    if strength == 0 and keep_base:
        model = base.model  # exactly the base model: nothing to merge
    else:
        key = f"lora:{base.kind}:{id(base.model)}:{base.name}|{source}|{strength!r}"
        model = ctx.models.load(key, build)
    loras = [*base.info.get("loras", []), [lora_name, strength]]
    return ModelHandle(model, f"{base.name}+{lora_name}@{strength:g}", base.kind, {**base.info, "loras": loras})


PACK = nodegraph.Pack(
    name="lora",
    version="1.0.0",
    description="LoRA for the unCLIP decoder and prior: peft / diffusers and kohya-style files, stackable, "
    "with a strength; the base models stay untouched.",
    nodes=[LoadLora],
)
