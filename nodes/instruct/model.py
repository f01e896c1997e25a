"""The InstructPix2Pix model for the unCLIP decoder: build from a decoder, save, load, sample.

The model is the Shapes decoder (Karlo's `UnCLIPTextProjModel` + `UNet2DConditionModel`) with three
more input channels: the input image (B, 3, S, S) in [-1, 1], concatenated to the noisy image as
diffusers' InstructPix2Pix concatenates its image latents. `from_decoder` copies every decoder
weight and zero-initialises the new `conv_in` channels (so the fresh model is the decoder). The
instruction is the CLIP text encoding. The image-embedding slot of `text_proj` holds the input image's
CLIP embedding when the model carries its base bundle's CLIP (`model_index.json` "image_embedding":
"clip"; the decoder's own variation conditioning, so the fresh model already redraws its input), else
the learned null embedding; a dropped image (guidance's unconditional row) gets the null embedding.

`sample_instruct` is `StableDiffusionInstructPix2PixPipeline`'s loop in pixel space: a 3-way batch
[instruction + image, empty prompt + image, empty prompt + zero image (and null embedding)] and
ε = ε_uncond + s_text (ε_text − ε_image) + s_image (ε_image − ε_uncond), guidance on when
s_text > 1 and s_image ≥ 1 (as the pipeline decides).

Layout on disk (diffusers style): `model_index.json`, `unet/` and `text_proj/` (config.json +
diffusion_pytorch_model.safetensors), `scheduler/scheduler_config.json`, and optionally `edit_prior/`
(`nodes/instruct/edit_prior.py`, loaded as `InstructModel.edit_prior`). Layers listed in
`FROZEN` keep the base decoder's weights: `unet/` then holds only the other tensors, and
`model_index.json` names the base bundle (`"base"`, relative to the folder) that the rest comes from and
the hash of those layers' values (`"frozen_sha256"`): a folder whose base decoder has changed since is
refused, not loaded with layers it was never trained with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
from diffusers.utils.torch_utils import randn_tensor

from ..unclip.api import TextEncoding, schedulers
from .edit_prior import SUBFOLDER, load_edit_prior

Callback = Callable[[int, int, "torch.Tensor | None"], None]
IMAGE_CHANNELS = 3
# UNet layers left at the decoder's weights (parameter-name prefixes), to keep the model file small
FROZEN = ("time_embedding.", "mid_block.resnets.", "up_blocks.0.upsamplers.")


@dataclass
class InstructModel:
    text_proj: UnCLIPTextProjModel
    unet: UNet2DConditionModel
    scheduler: object
    clip: object | None = None  # the base bundle's CLIP when the image-embedding slot holds the input's embedding
    edit_prior: object | None = None  # an `EditPrior` when the folder has edit_prior/ (Instruct: Edit Embedding)

    @property
    def sample_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def out_channels(self) -> int:
        return int(self.unet.config.in_channels) - IMAGE_CHANNELS

    def null_embedding(self, batch: int) -> torch.Tensor:
        """The learned null image embedding (B, D): the slot's value when the input image is dropped."""
        return self.text_proj.learned_classifier_free_guidance_embeddings[None].expand(batch, -1)

    def image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """The image-embedding slot (B, D) for input images (B, 3, H, W) in [0, 1]: their CLIP embedding,
        or the null embedding for a model without CLIP."""
        if self.clip is None:
            return self.null_embedding(images.shape[0])
        return self.clip.encode_image(images.float())

    def conditioning(self, text: TextEncoding, image_embeds: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(context (B, 4+L, C), additive time embedding (B, T), context mask (B, 4+L)) for instructions and
        image embeddings (B, D) (default: the null embedding)."""
        null = self.null_embedding(len(text.embeds)) if image_embeds is None else image_embeds
        hidden, additive = self.text_proj(image_embeddings=null, prompt_embeds=text.embeds,
                                          text_encoder_hidden_states=text.hidden, do_classifier_free_guidance=False)
        mask = F.pad(text.mask, (self.text_proj.clip_extra_context_tokens, 0), value=True)
        return hidden, additive, mask

    def predict(self, x: torch.Tensor, image: torch.Tensor, t, text: TextEncoding,
                image_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """The UNet's prediction for noisy images x (B, 3, S, S), input images (B, 3, S, S) in [-1, 1]."""
        hidden, additive, mask = self.conditioning(text, image_embeds)
        return self.unet(torch.cat([x, image], dim=1), t, encoder_hidden_states=hidden, class_labels=additive,
                         attention_mask=mask).sample


def expand_conv_in(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A decoder UNet state dict with `IMAGE_CHANNELS` zero input channels appended to `conv_in`."""
    w = state["conv_in.weight"]
    zeros = torch.zeros(w.shape[0], IMAGE_CHANNELS, *w.shape[2:], dtype=w.dtype)
    return {**state, "conv_in.weight": torch.cat([w, zeros], dim=1)}


def from_decoder(text_proj: UnCLIPTextProjModel, unet: UNet2DConditionModel, scheduler,
                 clip: object | None = None) -> InstructModel:
    """A copy of the decoder with `IMAGE_CHANNELS` more, zero-initialised input channels; with `clip` (the
    decoder's CLIP) the image-embedding slot holds the input image's embedding, so the fresh model already
    draws a variation of its input."""
    cfg = dict(unet.config)
    new = UNet2DConditionModel.from_config({**cfg, "in_channels": cfg["in_channels"] + IMAGE_CHANNELS})
    new.load_state_dict(expand_conv_in(unet.state_dict()))
    tp = UnCLIPTextProjModel.from_config(text_proj.config)
    tp.load_state_dict(text_proj.state_dict())
    return InstructModel(tp, new, scheduler, clip)


def trainable(name: str) -> bool:
    """Whether a UNet parameter is trained (and saved) rather than kept at the base decoder's value."""
    return not name.startswith(FROZEN)


def frozen_sha256(state: dict[str, torch.Tensor], prefixes: tuple[str, ...] = FROZEN) -> str:
    """A hash of the values (as float32) of the layers named by `prefixes` (`FROZEN`, or the list a folder's
    `model_index.json` records) in a UNet state dict: what the model takes from its base decoder, recorded
    when it is saved so that loading it on another decoder is refused."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(k for k in state if k.startswith(prefixes)):
        digest.update(name.encode())
        digest.update(state[name].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_instruct(model: InstructModel, path: str | Path, base: str | Path, fp16: bool = True) -> None:
    """Write the diffusers-style folder (safetensors weights, fp16 by default; the edit prior too, when the
    model has one); `base` is the bundle whose decoder holds the frozen layers, stored relative to `path`
    when it can be."""
    import copy
    import os

    import diffusers
    from safetensors.torch import save_file

    root = Path(path)
    dtype = torch.float16 if fp16 else torch.float32
    tp = copy.deepcopy(model.text_proj).to(dtype)
    tp.save_pretrained(root / "text_proj", safe_serialization=True)
    (root / "unet").mkdir(parents=True, exist_ok=True)
    model.unet.save_config(root / "unet")
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.unet.state_dict().items() if trainable(k)}
    tmp = root / "unet" / "diffusion_pytorch_model.tmp"
    save_file(state, str(tmp), metadata={"format": "pt", "frozen_from_base": ",".join(FROZEN)})
    tmp.replace(root / "unet" / "diffusion_pytorch_model.safetensors")
    model.scheduler.save_pretrained(root / "scheduler")
    index = {"_class_name": "StableDiffusionInstructPix2PixPipeline", "_diffusers_version": diffusers.__version__,
             "unet": ["diffusers", "UNet2DConditionModel"], "text_proj": ["unclip", "UnCLIPTextProjModel"],
             "scheduler": ["diffusers", type(model.scheduler).__name__],
             "base": os.path.relpath(Path(base).resolve(), root.resolve()), "frozen": list(FROZEN),
             "frozen_sha256": frozen_sha256(model.unet.state_dict()),
             "image_embedding": "clip" if model.clip is not None else "null"}
    (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    if model.edit_prior is not None:
        from .edit_prior import save_edit_prior

        save_edit_prior(model.edit_prior, root, fp16=fp16)


def base_matches(index: dict, base_state: dict[str, torch.Tensor]) -> bool:
    """Whether a base decoder's state holds the frozen layers a folder's `model_index.json` (`index`) was
    trained with; a folder without the record (written before it) is taken on trust."""
    if index.get("frozen_sha256") is None:
        return True
    return frozen_sha256(base_state, tuple(index.get("frozen", FROZEN))) == index["frozen_sha256"]


def load_instruct(path: str | Path, check_base: bool = True) -> InstructModel:
    """Load a folder written by `save_instruct`. `check_base`: refuse a base decoder whose frozen layers are
    not those the model was trained with (False: load it anyway, as training that continues it on a new
    decoder does)."""
    from safetensors.torch import load_file

    root = Path(path)
    for sub in ("unet", "text_proj", "scheduler", "model_index.json"):
        if not (root / sub).exists():
            raise FileNotFoundError(f"no InstructPix2Pix model in {root}: expected model_index.json, unet/, "
                                    f"text_proj/ and scheduler/; {sub} is missing (train one with `python -m train ip2p`)")
    index = json.loads((root / "model_index.json").read_text())
    base = (root / index.get("base", "../shapes-unclip")).resolve()
    if not (base / "decoder").is_dir():
        raise FileNotFoundError(f"{root} keeps some layers at the weights of the decoder in {base}, which has no "
                                f"decoder/; put the base bundle there (model_index.json 'base')")
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(root / "unet"))
    base_state = load_file(str(base / "decoder" / "diffusion_pytorch_model.safetensors"))
    if check_base and not base_matches(index, base_state):
        raise ValueError(f"{root} was trained on another decoder than the one in {base / 'decoder'}: it keeps "
                         f"the layers {', '.join(index.get('frozen', FROZEN))} at its training decoder's weights, "
                         "which have changed since. Retrain it on this decoder (`python -m train ip2p`, which may continue "
                         "it with --init), or point "
                         "model_index.json 'base' at a bundle with the decoder it was trained on")
    state = {**expand_conv_in(base_state), **load_file(str(root / "unet" / "diffusion_pytorch_model.safetensors"))}
    unet.load_state_dict({k: v.float() for k, v in state.items()})
    unet.eval()
    noisy = unet.config.in_channels - IMAGE_CHANNELS
    if noisy not in (unet.config.out_channels, unet.config.out_channels / 2):  # / 2: a learned variance
        raise ValueError(f"{root / 'unet'} takes {unet.config.in_channels} input channels; an InstructPix2Pix "
                         f"UNet takes the noisy image's channels + {IMAGE_CHANNELS} image channels")
    text_proj = UnCLIPTextProjModel.from_pretrained(root, subfolder="text_proj", torch_dtype=torch.float32,
                                                    low_cpu_mem_usage=False).eval()
    clip = None
    if index.get("image_embedding", "null") == "clip":  # the input image's embedding, by the base bundle's CLIP
        from ..unclip.api import load_clip

        clip = load_clip(base)
    edit_prior = None
    if (root / SUBFOLDER).is_dir():  # optional: the edit prior for the image-embedding slot
        edit_prior = load_edit_prior(root)
    return InstructModel(text_proj, unet, schedulers.load_scheduler(root / "scheduler"), clip, edit_prior)


def sample_instruct(model: InstructModel, images: torch.Tensor, cond: TextEncoding, uncond: TextEncoding,
                    guidance: float = 7.5, image_guidance: float = 1.5, steps: int = 20,
                    generator: torch.Generator | None = None, scheduler: str | None = None,
                    callback: Callback | None = None, image_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Edit images (B, 3, H, W) in [0, 1] by the instructions `cond` (1 or B rows); `uncond` is the empty
    prompt's encoding. `image_embeds` (B, D), if given, replaces the image-embedding slot of the rows that
    see the image (default: `model.image_embedding` of the input). Returns (B, 3, S, S) in [0, 1] at the
    model's size S (inputs are resized to it)."""
    if images.ndim != 4 or images.shape[1] != IMAGE_CHANNELS:
        raise ValueError(f"expected RGB images (B, 3, H, W), got shape {tuple(images.shape)}")
    size, channels = model.sample_size, model.out_channels
    original = images  # CLIP sees the input at its own resolution
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images.float(), size=(size, size), mode="area")
    batch = images.shape[0]
    if image_embeds is not None and tuple(image_embeds.shape) != (batch, model.null_embedding(1).shape[-1]):
        raise ValueError(f"image_embeds must be (B, D) = ({batch}, {model.null_embedding(1).shape[-1]}), "
                         f"got {tuple(image_embeds.shape)}")
    emb = model.image_embedding(original) if image_embeds is None else image_embeds.float()
    image = images.float() * 2 - 1
    cond, uncond = cond.expand(batch), uncond.expand(batch)
    do_cfg = guidance > 1.0 and image_guidance >= 1.0
    if do_cfg:  # the pipeline's order: [prompt, negative, negative] × [image, image, zeros]
        text = TextEncoding.cat([cond, uncond, uncond])
        image = torch.cat([image, image, torch.zeros_like(image)])
        emb = torch.cat([emb, emb, model.null_embedding(batch)])
    else:
        text = cond
    sched = schedulers.make_scheduler(model.scheduler, scheduler)
    ts = schedulers.timesteps(sched, steps)
    latents = randn_tensor((batch, channels, size, size), generator=generator) * sched.init_noise_sigma
    hidden, additive, mask = model.conditioning(text, emb)
    for i, t in enumerate(ts):
        x = torch.cat([latents] * 3) if do_cfg else latents
        x = sched.scale_model_input(x, t)
        pred = model.unet(torch.cat([x, image], dim=1), t, encoder_hidden_states=hidden, class_labels=additive,
                          attention_mask=mask).sample
        if do_cfg:
            p_text, p_image, p_uncond = pred.chunk(3)
            var = p_text[:, channels:]  # a learned variance (Karlo-style decoders) stays the conditional one
            p_text, p_image, p_uncond = p_text[:, :channels], p_image[:, :channels], p_uncond[:, :channels]
            pred = p_uncond + guidance * (p_text - p_image) + image_guidance * (p_image - p_uncond)
            pred = torch.cat([pred, var], dim=1)
        out = schedulers.step(sched, pred, t, latents, schedulers.prev_timestep(ts, i), generator)
        latents = out.prev_sample
        if callback is not None:
            callback(i + 1, len(ts), schedulers.preview(out, latents))
    return latents.clamp(-1, 1) * 0.5 + 0.5
