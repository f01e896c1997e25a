"""Building segment-anything ``Sam`` models from a config, and loading weights into them safely.

One config dict describes every SAM this pack can run: the shipped small one (``models/sam-shapes``,
a 128-px ``ImageEncoderViT``) and Meta's ViT-B/L/H checkpoints (1024-px). :func:`build_sam` assembles
the model from segment-anything's own modules (its stock builder hard-wires 1024-px input and
unpickles the checkpoint with plain ``torch.load``); weights are read only through
:func:`nodegraph.load_state_dict` (safetensors, or ``torch.load(weights_only=True)``).

:func:`config_from_state_dict` recovers the architecture from the tensor shapes, so a bare
``sam_vit_b_01ec64.pth`` loads without naming its type.
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Any

import torch

import nodegraph

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# Meta's published checkpoints (build_sam.py of segment-anything 1.0).
_STOCK_COMMON: dict[str, Any] = {
    "img_size": 1024, "patch_size": 16, "window_size": 14, "use_rel_pos": True, "prompt_embed_dim": 256,
    "decoder_depth": 2, "decoder_mlp_dim": 2048, "decoder_heads": 8, "iou_head_hidden_dim": 256,
    "iou_head_depth": 3, "mask_in_chans": 16, "num_multimask_outputs": 3,
}
STOCK: dict[str, dict[str, Any]] = {
    "vit_b": {**_STOCK_COMMON, "encoder_embed_dim": 768, "encoder_depth": 12, "encoder_num_heads": 12,
              "encoder_global_attn_indexes": [2, 5, 8, 11]},
    "vit_l": {**_STOCK_COMMON, "encoder_embed_dim": 1024, "encoder_depth": 24, "encoder_num_heads": 16,
              "encoder_global_attn_indexes": [5, 11, 17, 23]},
    "vit_h": {**_STOCK_COMMON, "encoder_embed_dim": 1280, "encoder_depth": 32, "encoder_num_heads": 16,
              "encoder_global_attn_indexes": [7, 15, 23, 31]},
}

# The tiny seeded model of the contract tests and unit tests: 32-px input, widths 16-32, 1 layer.
TINY: dict[str, Any] = {
    "img_size": 32, "patch_size": 8, "window_size": 0, "use_rel_pos": True, "prompt_embed_dim": 16,
    "encoder_embed_dim": 16, "encoder_depth": 1, "encoder_num_heads": 2, "encoder_global_attn_indexes": [0],
    "decoder_depth": 1, "decoder_mlp_dim": 32, "decoder_heads": 2, "iou_head_hidden_dim": 16,
    "iou_head_depth": 3, "mask_in_chans": 4, "num_multimask_outputs": 3,
}

REQUIRED = tuple(TINY)


def build_sam(config: dict[str, Any]):
    """An untrained ``segment_anything.modeling.Sam`` (eval mode) for ``config`` (keys as in :data:`TINY`)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise nodegraph.NodeExecutionError(f"SAM config lacks {', '.join(missing)}; expected the keys of "
                                           "nodes/sam/model.py TINY")
    c = config
    grid = c["img_size"] // c["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=c["img_size"], patch_size=c["patch_size"], embed_dim=c["encoder_embed_dim"],
            depth=c["encoder_depth"], num_heads=c["encoder_num_heads"], mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=c["use_rel_pos"],
            global_attn_indexes=tuple(c["encoder_global_attn_indexes"]), window_size=c["window_size"],
            out_chans=c["prompt_embed_dim"]),
        prompt_encoder=PromptEncoder(
            embed_dim=c["prompt_embed_dim"], image_embedding_size=(grid, grid),
            input_image_size=(c["img_size"], c["img_size"]), mask_in_chans=c["mask_in_chans"]),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=c["num_multimask_outputs"],
            transformer=TwoWayTransformer(depth=c["decoder_depth"], embedding_dim=c["prompt_embed_dim"],
                                          mlp_dim=c["decoder_mlp_dim"], num_heads=c["decoder_heads"]),
            transformer_dim=c["prompt_embed_dim"], iou_head_depth=c["iou_head_depth"],
            iou_head_hidden_dim=c["iou_head_hidden_dim"]),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def tiny_sam(seed: int = 0):
    """A tiny randomly initialised Sam, identical for the same seed (for tests)."""
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        sam = build_sam(TINY)
        # rel-pos tables are zero-initialised; give them values so they are exercised too
        for name, p in sam.named_parameters():
            if "rel_pos" in name:
                torch.nn.init.normal_(p, std=0.02)
    finally:
        torch.random.set_rng_state(gen_state)
    return sam


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Some re-saved checkpoints nest the weights (``{"model": {...}}``) or prefix keys with ``model.``."""
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict) and len(state) <= 3:
            state = state[key]
    if state and all(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}
    return state


def config_from_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """The architecture of a SAM state dict (segment-anything key layout), read from tensor shapes.

    The encoder's heads come from the relative-position tables (their width is the head dimension);
    the decoder's heads are not visible in the shapes: 8 for Meta's layout (width 256), otherwise a
    ``config.json`` must say.
    """
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise nodegraph.NodeExecutionError(
                f"not a segment-anything SAM checkpoint: key {key!r} is missing (keys start with "
                f"{', '.join(sorted({k.split('.')[0] for k in state})[:5]) or 'nothing'})")
        return tuple(state[key].shape)

    embed, _, patch, _ = shape("image_encoder.patch_embed.proj.weight")
    grid = shape("image_encoder.pos_embed")[1]
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))})
    depth = len(blocks)
    use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in state
    heads, window, global_idx = None, 0, list(range(depth))
    if use_rel_pos:
        sizes = [(shape(f"image_encoder.blocks.{i}.attn.rel_pos_h")[0] + 1) // 2 for i in range(depth)]
        heads = embed // shape("image_encoder.blocks.0.attn.rel_pos_h")[1]
        global_idx = [i for i, s in enumerate(sizes) if s == grid]
        windowed = {s for s in sizes if s != grid}
        window = windowed.pop() if len(windowed) == 1 else 0
    prompt_dim = shape("image_encoder.neck.0.weight")[0]
    dec_layers = {int(m.group(1)) for k in state
                  if (m := re.match(r"mask_decoder\.transformer\.layers\.(\d+)\.", k))}
    mlp_dim = shape("mask_decoder.transformer.layers.0.mlp.lin1.weight")[0]
    iou_layers = {int(m.group(1)) for k in state
                  if (m := re.match(r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.", k))}
    config = {
        "img_size": grid * patch, "patch_size": patch, "window_size": window, "use_rel_pos": use_rel_pos,
        "prompt_embed_dim": prompt_dim, "encoder_embed_dim": embed, "encoder_depth": depth,
        "encoder_num_heads": heads, "encoder_global_attn_indexes": global_idx,
        "decoder_depth": len(dec_layers), "decoder_mlp_dim": mlp_dim,
        "decoder_heads": 8 if prompt_dim == 256 else None,
        "iou_head_hidden_dim": shape("mask_decoder.iou_prediction_head.layers.0.weight")[0],
        "iou_head_depth": len(iou_layers), "mask_in_chans": shape("prompt_encoder.mask_downscaling.3.weight")[0],
        "num_multimask_outputs": shape("mask_decoder.mask_tokens.weight")[0] - 1,
    }
    unknown = [k for k in ("encoder_num_heads", "decoder_heads") if config[k] is None]
    if unknown:
        raise nodegraph.NodeExecutionError(
            f"cannot tell {' and '.join(unknown)} of this SAM from its weights; put a config.json with the "
            "architecture next to it (see models/sam-shapes/config.json)")
    return config


def stock_type(config: dict[str, Any]) -> str | None:
    """'vit_b' / 'vit_l' / 'vit_h' when ``config`` is one of Meta's published architectures."""
    for name, stock in STOCK.items():
        if all(config.get(k) == v for k, v in stock.items()):
            return name
    return None


def load_sam(path: str | Path, model_type: str = "auto") -> tuple[Any, dict[str, Any]]:
    """(Sam in eval mode, config) from a model folder (config.json + weights) or a weights file.

    ``model_type`` "auto" reads the architecture from config.json or the tensor shapes; "vit_b",
    "vit_l", "vit_h" insist on Meta's architecture (a mismatch is an error, never a partial load).
    """
    path = Path(path)
    config: dict[str, Any] | None = None
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".safetensors", ".pth", ".pt", ".bin"))
        preferred = [p for p in files if p.name == WEIGHTS_NAME] or files
        if not preferred:
            raise nodegraph.NodeExecutionError(f"{path} holds no SAM weights (.safetensors or .pth)")
        if (path / CONFIG_NAME).is_file():
            config = json.loads((path / CONFIG_NAME).read_text())
        weights = preferred[0]
    else:
        weights = path
        side = path.with_suffix(".json")
        if side.is_file():
            config = json.loads(side.read_text())
    state = nodegraph.load_state_dict(weights)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in _strip_prefix(state).values()):
        raise nodegraph.NodeExecutionError(f"{weights.name} is not a state dict of tensors")
    state = _strip_prefix(state)
    if model_type != "auto":
        if model_type not in STOCK:
            raise nodegraph.NodeExecutionError(f"unknown SAM type {model_type!r}; use auto, {', '.join(STOCK)}")
        config = dict(STOCK[model_type])
    elif config is None:
        config = config_from_state_dict(state)
    config = {k: config[k] for k in REQUIRED if k in config} | {k: v for k, v in config.items() if k not in REQUIRED}
    sam = build_sam(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        result = sam.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()
        raise nodegraph.NodeExecutionError(
            f"{weights.name} does not fit the SAM architecture {stock_type(config) or 'from its config'} "
            f"({first}); pick model_type 'auto' or the checkpoint's type (vit_b/vit_l/vit_h)") from None
    problems = list(result.missing_keys) + list(result.unexpected_keys)
    if problems:
        raise nodegraph.NodeExecutionError(
            f"{weights.name} does not fit the SAM architecture {stock_type(config) or 'from its config'}: "
            f"{len(result.missing_keys)} missing and {len(result.unexpected_keys)} unexpected keys (first: "
            f"{problems[0]}); pick model_type 'auto' or the checkpoint's type (vit_b/vit_l/vit_h)")
    return sam.eval(), config
