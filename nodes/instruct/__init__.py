"""The InstructPix2Pix pack: edit an image by an English instruction ("make it blue", "move it up").

`Load InstructPix2Pix` loads a model made from the unCLIP decoder (`nodes/instruct/model.py`; the
shipped `shapes-ip2p` is trained by `python -m train ip2p`); `Instruct Edit` samples it on input
images with the instruction's CLIP encoding (CLIP Text Encode of the same bundle's CLIP) and two
classifier-free guidance scales, text and image, as diffusers' InstructPix2Pix pipeline has them.
`Instruct: Edit Embedding` moves the input's CLIP image embedding towards the edited scene's with the
model's edit prior (unCLIP's way: edit in CLIP space), for Instruct Edit's `image_embedding` slot.
"""

from __future__ import annotations

import json
from typing import Any

import nodegraph
from nodegraph import IMAGE, Node, NodeContext, Port

from ..unclip.api import CONDITIONING, EMBEDDING, Scheduler, generator, library_errors, progress

DEFAULT = "shapes-ip2p"
KIND = "instruct.model"
MODELS = nodegraph.ModelKind(KIND, markers=("unet/config.json",))


def _example_model():
    from .tiny import tiny_instruct  # a seeded model made from the tiny test decoder

    return tiny_instruct()


INSTRUCT_MODEL = nodegraph.link_type("instruct.MODEL", "A loaded InstructPix2Pix model (image + instruction → "
                                     "edited image).", _example_model)


class LoadInstruct(Node):
    """Load an InstructPix2Pix model made from the unCLIP decoder (diffusers-style folder, safetensors)."""

    name = "load"
    search_aliases = ("instructpix2pix loader", "ip2p", "model loader")
    title = "Load InstructPix2Pix"
    category = "instruct"
    volatile = True  # reads files; the fingerprint notices changes

    class Inputs(nodegraph.Inputs):
        model: nodegraph.ModelName(MODELS) = Port(DEFAULT, description="Model name in the model folders (a folder "
                                                  "with unet/, text_proj/, scheduler/ and model_index.json), or a "
                                                  "local path.")

    class Outputs(nodegraph.Outputs):
        model: INSTRUCT_MODEL = Port(description="The InstructPix2Pix model.")

    def fingerprint(self, inputs: dict[str, Any], ctx: nodegraph.FingerprintContext) -> str | None:
        try:
            path = ctx.resolve_model(inputs.get("model", DEFAULT))
            signature = nodegraph.file_signature(path)
            # the frozen layers come from the base bundle's decoder: a retrained one must load the model again
            index = json.loads((path / "model_index.json").read_text())
            decoder = path / index.get("base", "../shapes-unclip") / "decoder"
            return signature + (f"|{nodegraph.file_signature(decoder)}" if decoder.is_dir() else "")
        except (nodegraph.NodegraphError, OSError, ValueError, AttributeError, TypeError):
            return None  # run() reports the problem

    def check(self, inputs: dict[str, Any], ctx: nodegraph.CheckContext) -> list[tuple[str | None, str]]:
        return ctx.missing_model("model", inputs.get("model"))

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .model import load_instruct

        path = ctx.models.resolve(inputs.model)
        with library_errors(), nodegraph.refuse_pickles(path):
            handle = ctx.models.handle(f"{KIND}:{path.resolve()}", lambda: load_instruct(path), inputs.model, KIND)
        return self.Outputs(model=handle)


class InstructEdit(Node):
    """Edit images by an instruction (InstructPix2Pix): "make it blue", "turn it into a star", "move it up".

    Two guidance scales, as in diffusers' InstructPix2Pix pipeline: `guidance` pulls towards the
    instruction, `image_guidance` towards the input image (higher keeps more of it). Guidance is on
    when guidance > 1 and image_guidance ≥ 1 (three model evaluations a step), else the model is
    sampled once a step with instruction and image.
    """

    name = "edit"
    search_aliases = ("instructpix2pix", "ip2p", "instruct", "edit image", "img2img")
    title = "Instruct Edit"
    category = "instruct"

    class Inputs(nodegraph.Inputs):
        model: INSTRUCT_MODEL = Port(description="A loaded InstructPix2Pix model.")
        images: IMAGE = Port(description="Images to edit (resized to the model's resolution, 32 px for the "
                             "shipped one).")
        instruction: CONDITIONING = Port(description="The instruction encoded by CLIP Text Encode (with the CLIP "
                                         "of the model's base bundle); one instruction for all images or one per "
                                         "image. Its negative prompt is the unconditional text (keep it empty).")
        guidance: float = Port(3.0, ge=0.0, le=30.0, step=0.5, description="Text guidance scale: how strongly "
                               "the instruction is followed.")
        image_guidance: float = Port(1.5, ge=0.0, le=30.0, step=0.1, description="Image guidance scale: how "
                                     "closely the input image is kept.")
        steps: int = Port(20, ge=2, le=1000, description="Denoising steps.")
        scheduler: Scheduler = Port("default", description="Sampler: the model's own ('default', DDIM), or "
                                    "another diffusers scheduler built from its config.")
        seed: nodegraph.Seed = Port(0, description="Random seed.")
        image_embedding: EMBEDDING | None = Port(None, description="Optional: the model's image-embedding slot, "
                                                 "(1 or B, D), instead of the input's CLIP embedding; e.g. that "
                                                 "embedding moved by Text Diff towards the edit ('a red object' → "
                                                 "'a blue object'), which frees edits the input's own embedding "
                                                 "holds back (colour, position, background).")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="Edited images at the model's resolution, (B, S, S, 3).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from .model import sample_instruct

        images = nodegraph.to_tensor(inputs.images)
        cond = inputs.instruction
        n = max(len(cond), images.shape[0])
        if len(cond) not in (1, n) or images.shape[0] not in (1, n):
            raise nodegraph.NodeExecutionError(
                f"{len(cond)} instructions for {images.shape[0]} images; give one instruction, or one per image "
                "(one per line in CLIP Text Encode), or one image")
        images = images.expand(n, -1, -1, -1)
        emb = inputs.image_embedding
        if emb is not None:
            if emb.ndim != 2 or emb.shape[0] not in (1, n):
                raise nodegraph.NodeExecutionError(
                    f"image_embedding has shape {tuple(emb.shape)} for {n} images; give (1, D) or ({n}, D), "
                    "e.g. CLIP Image Encode of the input (through Text Diff)")
            emb = emb.expand(n, -1)
        with torch.inference_mode(), library_errors():
            out = sample_instruct(inputs.model.model, images, cond.cond, cond.uncond, guidance=inputs.guidance,
                                  image_guidance=inputs.image_guidance, steps=inputs.steps,
                                  generator=generator(inputs.seed), callback=progress(ctx),
                                  scheduler=None if inputs.scheduler == "default" else inputs.scheduler,
                                  image_embeds=emb)
        return self.Outputs(images=nodegraph.from_tensor(out))


class EditEmbedding(Node):
    """Predict the edited scene's CLIP image embedding from the input's and the instruction (edit prior).

    The model's edit prior (its `edit_prior/` folder) maps (input image embedding, instruction) to the
    CLIP image embedding of the edited scene; the output is the input slerped towards that prediction
    by `amount` (0: the input unchanged, 1: the prediction). Connect it to Instruct Edit's
    `image_embedding`, so that the slot names the new colour, place or background instead of the old.
    """

    name = "edit_embedding"
    search_aliases = ("edit prior", "instruct embedding", "ip2p embedding")
    title = "Instruct: Edit Embedding"
    category = "instruct"

    class Inputs(nodegraph.Inputs):
        model: INSTRUCT_MODEL = Port(description="A loaded InstructPix2Pix model with an edit prior (edit_prior/).")
        image_embedding: EMBEDDING = Port(description="CLIP image embeddings of the input images, (B, D) (CLIP "
                                          "Image Encode with the model's base bundle's CLIP).")
        instruction: CONDITIONING = Port(description="The instruction encoded by CLIP Text Encode; one for all "
                                         "images or one per image.")
        amount: float = Port(1.0, ge=0.0, le=1.5, step=0.05, description="Slerp from the input embedding (0) "
                             "towards the predicted edited embedding (1); above 1 extrapolates.")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="Edited CLIP image embeddings, (B, D), for Instruct Edit's "
                                    "image_embedding.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from .edit_prior import blend

        prior = inputs.model.model.edit_prior
        if prior is None:
            raise nodegraph.NodeExecutionError(
                f"the InstructPix2Pix model '{inputs.model.name}' has no edit prior (no edit_prior/ folder in it); "
                "load one that has (the shipped shapes-ip2p does) or train one with `python -m train ip2p_edit`")
        emb, cond = inputs.image_embedding, inputs.instruction.cond
        n = max(len(cond), emb.shape[0])
        if emb.ndim != 2 or emb.shape[-1] != prior.config.embed_dim or len(cond) not in (1, n) \
                or emb.shape[0] not in (1, n):
            raise nodegraph.NodeExecutionError(
                f"image_embedding has shape {tuple(emb.shape)} and there are {len(cond)} instructions; the edit "
                f"prior takes (B, {prior.config.embed_dim}) embeddings (CLIP Image Encode with the model's base "
                "bundle's CLIP) and one instruction, or one per embedding")
        with torch.inference_mode(), library_errors():
            emb = emb.float().expand(n, -1)
            edited = prior.edit(emb, cond.expand(n) if len(cond) == 1 else cond)
            return self.Outputs(embedding=blend(emb, edited, inputs.amount))


PACK = nodegraph.Pack(
    name="instruct",
    version="1.0.0",
    description="InstructPix2Pix for the unCLIP decoder: edit an image by an instruction, with text and image "
    "guidance scales.",
    nodes=[LoadInstruct, InstructEdit, EditEmbedding],
)

__all__ = ["INSTRUCT_MODEL", "PACK", "EditEmbedding", "InstructEdit", "LoadInstruct"]
