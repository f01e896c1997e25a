"""Super-resolution: a `UNet2DModel` on [noisy high-res, upsampled low-res] (6 channels), Karlo style.

`upsample` is `UnCLIPPipeline`'s super-resolution loop: the low-resolution image is upsampled
bicubically with antialiasing to the model's `sample_size`, concatenated to the latents at every
step, `super_res_last` runs the final step (when the checkpoint has one; our shipped upsampler has
only `super_res_first`, used for every step). `noise_level` > 0 adds Gaussian noise of that
standard deviation (in [-1, 1] units) to the upsampled image first — the paper's conditioning
augmentation, which our upsampler was trained with; Karlo's pipeline uses none (0).

An upsampler may also see the CLIP image embedding the decoder was conditioned on, as Imagen's and
DeepFloyd IF's super-resolution stages see their text conditioning (the paper's see only the image): its
`super_res_first/` is then a `UNet2DModel` with `class_embed_type="identity"` and `super_res_embed/`
holds `UpsamplerEmbedding`, which maps the embedding (B, D) to the addition to the UNet's timestep
embedding (B, T), as Karlo's `text_proj/` does for the decoder. A folder without `super_res_embed/`
(Karlo's, or ours before it) loads and runs as before, and ignores an embedding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding
from diffusers.utils.torch_utils import randn_tensor

from . import schedulers as sch
from .tiles import clean_prediction, gaussian_blur, plan_tiles, tiled_forward

Callback = Callable[[int, int, "torch.Tensor | None"], None]


class UpsamplerEmbedding(ModelMixin, ConfigMixin):
    """CLIP image embedding (B, D) → addition to the upsampler UNet's timestep embedding (B, T).

    The embedding is L2-normalised and scaled by √D (the prior's samples and CLIP's image embeddings
    differ in norm, not in what they say), then diffusers' `TimestepEmbedding` (linear, SiLU, linear),
    the MLP of `UNet2DConditionModel`'s `class_embed_type="projection"`. Built by `with_embedding`,
    its last layer is zero, so the upsampler starts exactly as the one it was made from.
    """

    @register_to_config
    def __init__(self, embedding_dim: int = 512, time_embed_dim: int = 128):
        super().__init__()
        self.proj = TimestepEmbedding(embedding_dim, time_embed_dim)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        x = F.normalize(embeds.to(self.dtype), dim=-1) * self.config.embedding_dim ** 0.5
        return self.proj(x)


def time_embed_dim(unet: UNet2DModel) -> int:
    return int(unet.config.time_embedding_dim or 4 * unet.config.block_out_channels[0])


def with_embedding(unet: UNet2DModel, embedding_dim: int) -> tuple[UNet2DModel, UpsamplerEmbedding]:
    """A copy of a plain upsampler UNet that takes `class_labels` (B, T) (`class_embed_type="identity"`,
    no new weights) and a zero-initialised `UpsamplerEmbedding`: together exactly `unet` at first."""
    if unet.config.class_embed_type is not None or unet.config.num_class_embeds is not None:
        raise ValueError(f"the upsampler already has a class embedding ({unet.config.class_embed_type!r})")
    new = UNet2DModel.from_config({**unet.config, "class_embed_type": "identity"})
    new.load_state_dict(unet.state_dict())
    embed = UpsamplerEmbedding(embedding_dim, time_embed_dim(unet))
    torch.nn.init.zeros_(embed.proj.linear_2.weight)
    torch.nn.init.zeros_(embed.proj.linear_2.bias)
    return new, embed


@dataclass
class UpsamplerModel:
    first: UNet2DModel
    last: UNet2DModel | None  # None: `first` runs every step
    scheduler: object
    embed: UpsamplerEmbedding | None = None  # None: the upsampler sees only the image

    def class_labels(self, image_embeds: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """(batch, T) for the UNet's `class_labels`, or None for an upsampler without an embedding path.
        `image_embeds` (1, batch or batch / k rows, each repeated for its k images; None: zeros, the
        embedding dropped, as in training) is ignored by an upsampler without one."""
        if self.embed is None:
            return None
        dtype = self.first.dtype
        if image_embeds is None:
            return torch.zeros(batch, time_embed_dim(self.first), dtype=dtype)
        # before any step (the node's library_errors makes these its error): another CLIP's width, or a
        # count that does not divide the images among the rows
        width = self.embed.config.embedding_dim
        if image_embeds.ndim != 2 or image_embeds.shape[-1] != width:
            found = f"{image_embeds.shape[-1]} wide" if image_embeds.ndim == 2 else f"of shape {tuple(image_embeds.shape)}"
            raise ValueError(f"image_embedding: the upsampler takes CLIP image embeddings (B, {width}) "
                             f"(super_res_embed/ embedding_dim) but they are {found}, not from the CLIP of its "
                             "bundle; connect the embeddings the images were decoded from (the decoder's "
                             "`image_embedding`), or disconnect image_embedding")
        rows = image_embeds.shape[0]
        if rows == 0 or batch % rows:
            raise ValueError(f"image_embedding: {rows} embeddings for {batch} images; give 1, one per image, or "
                             "one per decoded embedding (the decoder's `image_embedding`, whose `batch` images "
                             "each follow it in order)")
        embeds = image_embeds.to(dtype).repeat_interleave(batch // rows, dim=0)
        dropped = (embeds == 0).all(-1, keepdim=True)  # a zero row is the embedding dropped, as in training
        return torch.where(dropped, torch.zeros((), dtype=dtype), self.embed(embeds))

    @property
    def sample_size(self) -> int:
        size = self.first.config.sample_size
        return int(size[0] if isinstance(size, list | tuple) else size)


def load_upsampler(path: str | Path) -> UpsamplerModel:
    """Load `super_res_first/` [`super_res_last/`] and `super_res_scheduler/` (bundle or Karlo root)."""
    root = Path(path)
    if not (root / "super_res_first").is_dir() or not (root / "super_res_scheduler").is_dir():
        raise FileNotFoundError(f"no upsampler in {root}: expected super_res_first/ and super_res_scheduler/ "
                                "(Karlo layout)")
    first = UNet2DModel.from_pretrained(root, subfolder="super_res_first", torch_dtype=torch.float32, low_cpu_mem_usage=False).eval()
    last = None
    if (root / "super_res_last").is_dir():
        last = UNet2DModel.from_pretrained(root, subfolder="super_res_last", torch_dtype=torch.float32, low_cpu_mem_usage=False).eval()
    embed = None
    if (root / "super_res_embed").is_dir():
        embed = UpsamplerEmbedding.from_pretrained(root, subfolder="super_res_embed", torch_dtype=torch.float32,
                                                   low_cpu_mem_usage=False).eval()
    if (embed is not None) != (first.config.class_embed_type == "identity"):
        raise ValueError(f"{root}: super_res_embed/ and super_res_first/'s class_embed_type 'identity' go "
                         "together (an upsampler that sees the image embedding); found one without the other")
    if last is not None and last.config.class_embed_type != first.config.class_embed_type:
        raise ValueError(f"{root}: super_res_last/ (class_embed_type {last.config.class_embed_type!r}) does not take "
                         f"the image embedding super_res_first/ ({first.config.class_embed_type!r}) takes; train "
                         "both with it, or remove super_res_last/ (super_res_first/ then runs every step)")
    return UpsamplerModel(first, last, sch.load_scheduler(root / "super_res_scheduler"), embed)


def upscale_condition(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(B, 3, h, w) in [-1, 1] → bicubic, antialiased (B, 3, size, size) (or (B, 3, H, W) for a pair),
    as the pipeline does."""
    hw = [size, size] if isinstance(size, int) else list(size)
    return F.interpolate(images, size=hw, mode="bicubic", align_corners=False, antialias=True)


def output_size(model: UpsamplerModel, height: int, width: int) -> tuple[int, int]:
    """(H, W) of the upsampled image: the model's size for a square input; a wider (or taller) input,
    such as a MultiDiffusion panorama, keeps its aspect ratio at the same enlargement factor (the UNet
    is convolutional, so it runs on the whole canvas)."""
    size = model.sample_size
    if height == width:
        return size, size
    scale = size / min(height, width)
    out = (round(height * scale), round(width * scale))
    multiple = 2 ** (len(model.first.config.down_block_types) - 1)
    if out[0] % multiple or out[1] % multiple:
        raise ValueError(f"a {width}×{height} image upsamples to {out[1]}×{out[0]}, which this upsampler's UNet "
                         f"cannot take (sides must be multiples of {multiple}); crop or pad the image first")
    return out


def color_fix(images: torch.Tensor, reference: torch.Tensor, sigma: float) -> torch.Tensor:
    """Keep the detail of `images` and take the low frequencies (colour, shading) from `reference`.

    Both (B, 3, S, S) in [0, 1]; `reference` is the bicubic-upscaled low-resolution input, whose
    frequencies below its own Nyquist limit are exact. A Gaussian of `sigma` px splits the bands
    (StableSR's colour fix does the same with wavelets).
    """
    return (images - gaussian_blur(images, sigma) + gaussian_blur(reference, sigma)).clamp(0, 1)


def nonflat(reference: torch.Tensor, threshold: float, radius: int = 2) -> torch.Tensor:
    """(B, 1, S, S) bool: where some channel of `reference` varies by at least `threshold` within
    ±`radius` px (the pixels `keep_flat` takes from the upsampler, before its soft border)."""
    k = 2 * radius + 1
    spread = (F.max_pool2d(reference, k, 1, radius) + F.max_pool2d(-reference, k, 1, radius)).amax(1, keepdim=True)
    return spread >= threshold


def keep_flat(images: torch.Tensor, reference: torch.Tensor, threshold: float, radius: int = 2) -> torch.Tensor:
    """`images` where `reference` has detail, `reference` where it is flat.

    Both (B, 3, S, S) in [0, 1]; `reference` is the bicubic enlargement of the low-resolution input.
    Where every channel of `reference` varies by less than `threshold` within ±`radius` px, the input
    says the area is flat, and its enlargement is exact there: whatever the upsampler drew there
    (sampling noise, texture) is dropped. Sharpened edges lie inside the input's soft ones, which the
    gate covers; its border is softened (Gaussian, σ = radius / 2) so that no seam shows.
    """
    gate = gaussian_blur(nonflat(reference, threshold, radius).to(images.dtype), max(radius / 2, 0.5), 2 * radius + 1)
    return reference + gate * (images - reference)


def upsample(model: UpsamplerModel, images: torch.Tensor, steps: int = 7, generator: torch.Generator | None = None,
             noise_level: float = 0.0, callback: Callback | None = None, scheduler: str | None = None,
             latents: torch.Tensor | None = None, fix_colors: bool = False,
             color_sigma: float | None = None, flat_threshold: float = 0.0, tile: int = 0,
             halo: int = 16, image_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Upsample images (B, 3, h, w) in [0, 1] to (B, 3, S, S) in [0, 1], S = the model's sample_size
    (non-square images: their shorter side to S, see `output_size`).

    `fix_colors` replaces the result's low frequencies by the input's (`color_fix`): diffusion
    upsamplers drift in global colour at few steps; the input's colours are right by construction.
    `color_sigma` is the split in output pixels (None or 0: half the enlargement factor, the input's
    Nyquist limit; a larger one keeps the input's soft edges out of a sharp result). Off, this is
    exactly `UnCLIPPipeline`'s super-resolution stage. `flat_threshold` > 0 keeps the input's
    enlargement where the input is flat (`keep_flat`); with it, `tile` > 0 runs the UNet only on the
    `tile` px squares (plus `halo` px of context) holding a pixel the gate keeps (`tiles.plan_tiles`),
    and the whole frame when that would cost as much. `image_embeds` (rows, D): the CLIP image
    embeddings the images were decoded from, for an upsampler with an embedding path
    (`UpsamplerModel.class_labels`); others ignore them.
    """
    unet = model.first
    dtype = unet.dtype
    channels = unet.config.in_channels // 2
    batch = images.shape[0]
    out_hw = output_size(model, *images.shape[-2:])
    sched = sch.make_scheduler(model.scheduler, scheduler)
    ts = sch.timesteps(sched, steps)
    if latents is None:
        latents = randn_tensor((batch, channels, *out_hw), generator=generator, dtype=dtype)
    latents = latents.to(dtype) * sched.init_noise_sigma
    cond = upscale_condition(images.to(dtype) * 2 - 1, out_hw)
    if noise_level > 0:
        # drawn after the initial noise, so noise_level=0 keeps the pipeline's random stream
        cond = cond + noise_level * randn_tensor(cond.shape, generator=generator, dtype=dtype)
    reference = ((cond.clamp(-1, 1) + 1) / 2).to(dtype)
    labels = model.class_labels(image_embeds, batch)
    extra = {} if labels is None else {"class_labels": labels}  # an image-only UNet is called as before
    tiles = None
    if tile > 0 and flat_threshold > 0 and unet.config.out_channels == channels:
        # the gate keeps the upsampler's pixels within `radius` (2) px of a non-flat one
        active = F.max_pool2d(nonflat(reference, flat_threshold).to(dtype), 5, 1, 2) > 0
        tiles = plan_tiles(active, tile, halo, 2 ** (len(unet.config.down_block_types) - 1))
    for i, t in enumerate(ts):
        net = model.last if (i == len(ts) - 1 and model.last is not None) else unet
        # only the latents are on the scheduler's scale (identity for the UnCLIPScheduler)
        x = torch.cat([sched.scale_model_input(latents, t), cond], dim=1)
        fill = clean_prediction(sched, cond, latents, t) if tiles is not None else None
        if fill is not None:
            pred = tiled_forward(net, x, t, tiles, fill, class_labels=labels)
        else:
            tiles = None
            pred = net(sample=x, timestep=t, **extra).sample
        out = sch.step(sched, pred, t, latents, sch.prev_timestep(ts, i), generator)
        latents = out.prev_sample
        if callback is not None:
            callback(i + 1, len(ts), sch.preview(out, latents))
    result = latents.clamp(-1, 1) * 0.5 + 0.5
    if tiles is not None:
        # no tile ran there: the gate drops those pixels anyway, and the colour fix's blur sees the input
        result = torch.where(tiles.covered, result, reference)
    if fix_colors:
        # by default the Gaussian keeps what the low-resolution image knows: frequencies below its Nyquist limit
        sigma = color_sigma or 0.5 * out_hw[0] / images.shape[-2]
        result = color_fix(result, reference, sigma)
    if flat_threshold > 0:
        result = keep_flat(result, reference, flat_threshold)
    return result
