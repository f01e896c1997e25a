"""What validation can tell about Kandinsky folders before anything loads (only JSON is read).

A loader's folder must be the layout it loads (a prior folder, or the decoder variant it asks for),
with every subfolder and config; a decoding node's decoder must take embeddings as wide as the
prior or CLIP upstream of its image embeddings gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nodegraph

from .models.layout import VARIANTS, LayoutError, check_decoder_folder, check_prior_folder

PRIOR_LOADER = "kandinsky.load_prior"
DECODER_LOADERS = {"kandinsky.load_decoder": "text2image", "kandinsky.load_inpaint_decoder": "inpaint",
                   "kandinsky.load_controlnet_decoder": "controlnet"}


def loader_problems(type_id: str, inputs: dict[str, Any], ctx: nodegraph.CheckContext) -> list[tuple[str | None, str]]:
    missing = ctx.missing_model("model", inputs.get("model"))  # before the prior and its CLIP load (gigabytes)
    if missing:
        return [(port, f"{why}. It is a Kandinsky 2.2 folder as published (diffusers' layout); "
                       "docs/checkpoints.md#kandinsky-22 says where to put it") for port, why in missing]
    try:
        folder = ctx.resolve_model(inputs.get("model"))
    except nodegraph.NodegraphError:
        return []  # linked: known when it runs
    try:
        if type_id == PRIOR_LOADER:
            check_prior_folder(folder)
            return []
        found = check_decoder_folder(folder)["variant"]
    except LayoutError as exc:
        return [("model", str(exc))]
    wanted = DECODER_LOADERS[type_id]
    if found != wanted:
        return [("model", f"{folder} is a {VARIANTS[found]} folder ({found}), not a {VARIANTS[wanted]} folder; give "
                          f"this loader a {VARIANTS[wanted]} folder, or load this one with the {found} loader")]
    return []


def _prior_width(source: nodegraph.Upstream | None, ctx: nodegraph.CheckContext, depth: int = 0) -> tuple[int, Path] | None:
    """The embedding width of the first Kandinsky prior folder upstream of `source` (breadth of links)."""
    if source is None or depth > 20:
        return None
    if source.type == PRIOR_LOADER:
        try:
            folder = ctx.resolve_model(source.inputs.get("model"))
            return check_prior_folder(folder)["embedding_dim"], folder
        except (LayoutError, nodegraph.NodegraphError):
            return None  # the loader reports it
    for port in ("image_embedding", "embedding", "a", "prior", "clip", "images"):
        found = _prior_width(source.source(port), ctx, depth + 1)
        if found is not None:
            return found
    return None


def pairing_problems(ctx: nodegraph.CheckContext) -> list[tuple[str | None, str]]:
    loader = ctx.source("decoder")
    if loader is None or loader.type not in DECODER_LOADERS:
        return []
    try:
        decoder = ctx.resolve_model(loader.inputs.get("model"))
        width = check_decoder_folder(decoder)["embedding_dim"]
    except (LayoutError, nodegraph.NodegraphError):
        return []  # the loader reports it
    prior = _prior_width(ctx.source("image_embedding"), ctx)
    if prior is None or prior[0] == width:
        return []
    return [("image_embedding", f"the decoder {decoder} takes image embeddings of width {width} (unet/config.json "
             f"encoder_hid_dim) but they come from the prior {prior[1]}, whose embeddings are {prior[0]} wide; pair "
             "the decoder with the prior it was trained with (the 2.2 decoders with kandinsky-2-2-prior)")]
