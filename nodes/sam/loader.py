"""Loading a SAM: the shipped small model by name, or Meta's ViT-B/L/H checkpoints from a local path."""

from __future__ import annotations

import os
from typing import Any, Literal

import nodegraph
from nodegraph import ModelHandle, Node, NodeContext, Port

from .types import KIND, SAM

DEFAULT = "sam-shapes"
MODELS = nodegraph.ModelKind("sam", folder="sam", markers=("model.safetensors",), extensions=(".pth", ".safetensors"))


class LoadSam(Node):
    """Load a segment-anything model: the shipped sam-shapes, or a SAM checkpoint (ViT-B/L/H .pth) by path.

    Weights are read as tensors only (safetensors, or torch.load with weights_only=True); a
    checkpoint that holds code is refused, never run. The architecture comes from the folder's
    config.json, else from the tensor shapes, or from model_type.
    """

    name = "load_sam"
    search_aliases = ("segment anything", "sam loader", "model loader")
    title = "Load SAM"
    category = "sam"
    volatile = True  # the files can change on disk; the fingerprint notices

    class Inputs(nodegraph.Inputs):
        model: nodegraph.ModelName(MODELS) = Port(DEFAULT, description="Model name in the model folders (models/sam/ or models/), e.g. "
                          "sam-shapes or sam_vit_b_01ec64.pth, or a local path to a folder or weights file "
                          "(where paths are allowed).")
        model_type: Literal["auto", "vit_b", "vit_l", "vit_h"] = Port(
            "auto", description="auto: read the architecture from config.json or the weights; vit_b/vit_l/vit_h: "
            "insist on Meta's architecture of that name.")

    class Outputs(nodegraph.Outputs):
        sam: SAM = Port(description="The loaded SAM.")

    def fingerprint(self, inputs: dict[str, Any], ctx: nodegraph.FingerprintContext) -> str | None:
        try:
            return nodegraph.file_signature(ctx.resolve_model(inputs.get("model", DEFAULT), "sam"))
        except (nodegraph.NodegraphError, OSError):
            return None  # run() reports the problem

    def check(self, inputs: dict[str, Any], ctx: nodegraph.CheckContext) -> list[tuple[str | None, str]]:
        return ctx.missing_model("model", inputs.get("model"), "sam")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        path = ctx.models.resolve(inputs.model, "sam")
        device = ctx.device

        def load():
            from .model import load_sam, stock_type

            sam, config = load_sam(path, inputs.model_type)
            return sam.to(device), config, stock_type(config)

        key = f"{KIND}:{os.fspath(path.resolve())}:{inputs.model_type}:{device}"
        sam, config, stock = ctx.models.load(key, load)
        info = {"type": stock or "custom", "image_size": config["img_size"],
                "parameters": sum(p.numel() for p in sam.parameters())}
        return self.Outputs(sam=ModelHandle(sam, inputs.model, KIND, info))
