"""What validation can tell about unCLIP folders before anything loads (only JSON configs are read).

An upsampler that sees the CLIP image embedding (`super_res_embed/`) takes embeddings of one width;
when the embeddings it is given come, through nodes whose width is known, from a CLIP or a prior
folder of another width, the workflow is refused before the decoder spends its steps. Anything this
cannot tell (a node it does not know, a folder without the config) passes: the run checks again.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

import nodegraph

# node type → the input its output embedding takes its width from (a loader's folder, or another embedding)
WIDTH_FROM = {
    "unclip.image_encode": "clip",
    "unclip.text_encode": "clip",
    "unclip.prior": "prior",
    "unclip.embedding_interpolate": "a",
    "unclip.embedding_batch": "a",
    "unclip.text_diff": "image_embedding",
    "unclip.embedding_pca": "embedding",
}
ENCODER = {"unclip.image_encode": "image", "unclip.text_encode": "text"}  # which of a CLIP's towers made it
MAX_DEPTH = 50


def _config(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def clip_width(folder: Path, encoder: Literal["text", "image"]) -> tuple[int, Path] | None:
    """The width of the embeddings the CLIP in `folder` (as `load_clip` finds it) makes of texts or of
    images (`encoder`), and the config saying so."""
    for config in (folder / "open_clip_config.json", folder / "clip" / "open_clip_config.json"):
        if config.is_file():  # one width for both towers
            width = ((_config(config) or {}).get("model_cfg") or {}).get("embed_dim")
            return (width, config) if isinstance(width, int) else None
    # a diffusers root: CLIPTextModelWithProjection under text_encoder/, CLIPVisionModelWithProjection under
    # image_encoder/, whose widths may differ (SD 2.1 unCLIP: 1024 for images, the text encoder's 512)
    config = folder / f"{encoder}_encoder" / "config.json"
    width = (_config(config) or {}).get("projection_dim")
    return (width, config) if isinstance(width, int) else None


def prior_width(folder: Path) -> tuple[int, Path] | None:
    config = folder / "prior" / "config.json"
    cfg = _config(config) or {}
    width = cfg.get("clip_embed_dim") or cfg.get("embedding_dim")
    return (width, config) if isinstance(width, int) else None


def upsampler_width(folder: Path) -> tuple[int, Path] | None:
    """The embedding width an upsampler with `super_res_embed/` takes; None for one that sees only the image."""
    config = folder / "super_res_embed" / "config.json"
    width = (_config(config) or {}).get("embedding_dim")
    return (width, config) if isinstance(width, int) else None


def _loader_width(source: nodegraph.Upstream, ctx: nodegraph.CheckContext,
                  read) -> tuple[int, Path] | None:
    try:
        return read(ctx.resolve_model(source.inputs.get("model")))
    except nodegraph.NodegraphError:
        return None  # a model that is not there is the loader's error


def embedding_width(source: nodegraph.Upstream | None, ctx: nodegraph.CheckContext) -> tuple[int, Path] | None:
    """The width of the embeddings `source` gives, read from the CLIP or prior folder they come from,
    following only nodes whose output is as wide as a known input; None when that cannot be told."""
    encoder = "text"
    for _ in range(MAX_DEPTH):
        if source is None:
            return None
        if source.type == "unclip.load_clip":
            return _loader_width(source, ctx, functools.partial(clip_width, encoder=encoder))
        if source.type == "unclip.load_prior":
            return _loader_width(source, ctx, prior_width)
        port = WIDTH_FROM.get(source.type)
        if port is None:
            return None
        encoder = ENCODER.get(source.type, encoder)
        source = source.source(port)
    return None


def upsample_problems(ctx: nodegraph.CheckContext) -> list[tuple[str | None, str]]:
    """An upsampler that sees the image embedding, given embeddings of another width."""
    loader = ctx.source("upsampler")
    if loader is None or loader.type != "unclip.load_upsampler":
        return []
    taken = _loader_width(loader, ctx, upsampler_width)
    if taken is None:
        return []  # an upsampler that sees only the image ignores the embedding
    given = embedding_width(ctx.source("image_embedding"), ctx)
    if given is None or given[0] == taken[0]:
        return []
    return [("image_embedding", f"the upsampler {loader.inputs.get('model')!r} takes CLIP image embeddings of width "
             f"{taken[0]} ({taken[1]} embedding_dim) but image_embedding is {given[0]} wide ({given[1]}), another "
             "CLIP's; connect the embeddings the images were decoded from, made with the CLIP or prior of the "
             "upsampler's bundle, or disconnect image_embedding")]
