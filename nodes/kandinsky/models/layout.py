"""The Kandinsky 2.2 folder layouts (diffusers' `KandinskyV22PriorPipeline` and decoder pipelines),
and the checks that turn a wrong folder into a message naming the folder and the fix.

Prior folder (`kandinsky-community/kandinsky-2-2-prior`): `model_index.json`, `prior/`,
`scheduler/`, `text_encoder/`, `tokenizer/`, `image_encoder/`, `image_processor/`.
Decoder folders (`-decoder`, `-decoder-inpaint`, `-controlnet-depth`): `model_index.json`, `unet/`,
`scheduler/`, `movq/`; the variant is read from `unet/config.json` (9 input channels: inpainting;
`addition_embed_type` "image_hint": ControlNet). Only JSON is read here: cheap enough for validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PRIOR_DIRS = ("prior", "scheduler", "text_encoder", "tokenizer", "image_encoder", "image_processor")
DECODER_DIRS = ("unet", "scheduler", "movq")
KARLO_DIRS = ("prior_scheduler", "decoder", "text_proj")
CONFIG_FILES = {"prior": "config.json", "unet": "config.json", "movq": "config.json",
                "text_encoder": "config.json", "image_encoder": "config.json",
                "scheduler": "scheduler_config.json", "image_processor": "preprocessor_config.json",
                "tokenizer": "vocab.json"}
WEIGHT_SUFFIXES = (".safetensors", ".bin")
VARIANTS = {"text2image": "kandinsky-2-2-decoder", "inpaint": "kandinsky-2-2-decoder-inpaint",
            "controlnet": "kandinsky-2-2-controlnet-depth"}


class LayoutError(ValueError):
    """A folder that is not the Kandinsky layout asked for; the message names the folder and the fix."""


def _config(folder: Path, sub: str) -> dict[str, Any]:
    path = folder / sub / CONFIG_FILES[sub]
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LayoutError(f"{folder}: {sub}/{CONFIG_FILES[sub]} is missing; copy the whole {sub}/ folder of the "
                          "published checkpoint") from None
    except (OSError, ValueError) as exc:
        raise LayoutError(f"{path} is not readable JSON ({exc}); restore it from the published checkpoint") from None


def _what_it_is(folder: Path) -> str:
    if all((folder / d).is_dir() for d in ("unet", "movq")):
        return "a Kandinsky 2.2 decoder folder (unet/, movq/): load it with Load Kandinsky Decoder"
    if (folder / "prior").is_dir() and (folder / "text_encoder").is_dir():
        return "a Kandinsky 2.2 prior folder (prior/, text_encoder/): load it with Load Kandinsky Prior"
    if any((folder / d).is_dir() for d in KARLO_DIRS):
        return "an unCLIP (Karlo) folder: load it with the unclip loaders"
    return "neither Kandinsky 2.2 layout"


def _check_dirs(folder: Path, needed: tuple[str, ...], kind: str, example: str) -> None:
    if not folder.is_dir():
        raise LayoutError(f"{folder} is not a folder; give the {kind} folder ({example}) by name or path")
    missing = [d for d in needed if not (folder / d).is_dir()]
    if needed[0] in missing:
        raise LayoutError(f"{folder} is not a Kandinsky 2.2 {kind} folder ({_what_it_is(folder)}); a {kind} "
                          f"folder ({example}) has {', '.join(d + '/' for d in needed)}")
    if missing:
        raise LayoutError(f"{folder}: {', '.join(d + '/' for d in missing)} missing; a Kandinsky 2.2 {kind} folder "
                          f"({example}) has {', '.join(d + '/' for d in needed)}: copy the missing subfolder(s) "
                          "from the published checkpoint")
    for d in needed:
        _config(folder, d)
        if d not in ("scheduler", "tokenizer", "image_processor") and not any(
                p.suffix in WEIGHT_SUFFIXES for p in (folder / d).iterdir()):
            raise LayoutError(f"{folder}: {d}/ has no weights file (.safetensors or .bin); copy it from the "
                              "published checkpoint")


def check_prior_folder(folder: Path) -> dict[str, Any]:
    """Raise LayoutError unless `folder` is a Kandinsky 2.2 prior folder; return facts from its configs."""
    folder = Path(folder)
    _check_dirs(folder, PRIOR_DIRS, "prior", "kandinsky-2-2-prior")
    prior, text, image = _config(folder, "prior"), _config(folder, "text_encoder"), _config(folder, "image_encoder")
    dim = int(prior.get("embedding_dim", 768))
    text_dim = int(text.get("projection_dim", 0))
    image_dim = int(image.get("projection_dim", 0))
    if not dim == text_dim == image_dim:
        raise LayoutError(f"{folder}: prior/ works on embeddings of width {dim} but text_encoder/ projects to "
                          f"{text_dim} and image_encoder/ to {image_dim}; the subfolders come from different "
                          "checkpoints: use one published prior folder")
    return {"embedding_dim": dim}


def decoder_variant(unet_config: dict[str, Any], latent_channels: int) -> str:
    if unet_config.get("addition_embed_type") == "image_hint":
        return "controlnet"
    if int(unet_config.get("in_channels", latent_channels)) == 2 * latent_channels + 1:
        return "inpaint"
    return "text2image"


def check_decoder_folder(folder: Path) -> dict[str, Any]:
    """Raise LayoutError unless `folder` is a Kandinsky 2.2 decoder folder; return facts from its configs."""
    folder = Path(folder)
    _check_dirs(folder, DECODER_DIRS, "decoder", "kandinsky-2-2-decoder")
    unet, movq = _config(folder, "unet"), _config(folder, "movq")
    if unet.get("encoder_hid_dim_type") != "image_proj" or unet.get("addition_embed_type") not in ("image",
                                                                                                 "image_hint"):
        raise LayoutError(f"{folder}: unet/config.json is not a Kandinsky 2.2 decoder UNet (it needs "
                          "encoder_hid_dim_type 'image_proj' and addition_embed_type 'image' or 'image_hint'); a "
                          "Kandinsky 2.1 or Stable Diffusion UNet is not supported: use a 2.2 decoder folder")
    latent = int(movq.get("latent_channels", 4))
    return {"embedding_dim": int(unet.get("encoder_hid_dim") or 0), "variant": decoder_variant(unet, latent),
            "latent_channels": latent}


def pairing_problem(decoder_folder: Path, decoder_dim: int, embedding_dim: int, source: str) -> str | None:
    """A message when a decoder gets embeddings of the wrong width, else None."""
    if decoder_dim == embedding_dim:
        return None
    return (f"the decoder {decoder_folder} takes image embeddings of width {decoder_dim} (unet/config.json "
            f"encoder_hid_dim) but {source} gives width {embedding_dim}; pair it with the prior it was trained "
            "with (kandinsky-2-2-decoder with kandinsky-2-2-prior, whose embeddings are 1280 wide)")
