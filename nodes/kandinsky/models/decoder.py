"""The Kandinsky 2.2 decoder: CLIP image embedding → MoVQ latents (a UNet) → image (the MoVQ decoder).

`denoise` is the loop shared by `KandinskyV22Pipeline`, `...Img2ImgPipeline`, `...InpaintPipeline`
and `...ControlnetPipeline`: the UNet gets no text, only `added_cond_kwargs={"image_embeds": …}`
(plus `"hint"` for ControlNet); guidance (only when the scale is > 1) runs the batch as
[negative image embeddings; image embeddings]; the learned variance the UNet predicts is split off
before guidance and re-attached for schedulers that use it. Latents live at the MoVQ scale
(`movq.encode(x).latents`, unscaled) and are decoded with `movq.decode(z, force_not_quantize=True)`.
Images are float (B, 3, H, W) in [0, 1] out; inputs in [-1, 1] where the pipelines take them so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel, VQModel
from diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2 import downscale_height_and_width
from diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_inpainting import prepare_mask
from diffusers.utils.torch_utils import randn_tensor

# the unclip pack's scheduler handling (choice, stepping), in one place
from ...unclip.api import schedulers as sch
from .layout import check_decoder_folder, decoder_variant
from .weights import from_pretrained

Callback = Callable[[int, int, "torch.Tensor | None"], None]


@dataclass
class KandinskyDecoder:
    unet: UNet2DConditionModel
    movq: VQModel
    scheduler: object  # the folder's scheduler; sampling works on a fresh copy
    path: str = ""

    @property
    def embedding_dim(self) -> int:
        return int(self.unet.config.encoder_hid_dim)

    @property
    def latent_channels(self) -> int:
        return int(self.movq.config.latent_channels)

    @property
    def scale_factor(self) -> int:
        """Pixels per latent along each side (8 for the published MoVQ)."""
        return 2 ** (len(self.movq.config.block_out_channels) - 1)

    @property
    def variant(self) -> str:
        """'text2image' (also img2img), 'inpaint' or 'controlnet'."""
        return decoder_variant(dict(self.unet.config), self.latent_channels)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The image size the pipelines produce for a requested size (rounded up to the latent grid)."""
        h, w = downscale_height_and_width(height, width, self.scale_factor)
        return h * self.scale_factor, w * self.scale_factor


def load_decoder(root: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> KandinskyDecoder:
    """Load `unet/`, `movq/` and `scheduler/` of a Kandinsky 2.2 decoder folder."""
    root = Path(root)
    check_decoder_folder(root)
    unet = from_pretrained(UNet2DConditionModel, root, "unet", dtype, device)
    movq = from_pretrained(VQModel, root, "movq", dtype, device)
    return KandinskyDecoder(unet, movq, sch.load_scheduler(root / "scheduler"), str(root))


def check_embeddings(model: KandinskyDecoder, image_embeds: torch.Tensor, negative: torch.Tensor) -> None:
    for what, emb in (("image", image_embeds), ("negative image", negative)):
        if emb.shape[-1] != model.embedding_dim:
            raise ValueError(f"the decoder {model.path} takes image embeddings of width {model.embedding_dim} (its "
                             f"unet/config.json encoder_hid_dim) but the {what} embeddings are {emb.shape[-1]} wide; "
                             "use the prior and CLIP it was trained with (kandinsky-2-2-prior for the 2.2 decoders)")
    if negative.shape[0] not in (1, image_embeds.shape[0]):
        raise ValueError(f"{image_embeds.shape[0]} image embeddings but {negative.shape[0]} negative ones; give one "
                         "negative embedding or one per image embedding")


def _embeds(model: KandinskyDecoder, image_embeds: torch.Tensor, negative: torch.Tensor, per: int,
            do_cfg: bool) -> torch.Tensor:
    check_embeddings(model, image_embeds, negative)
    dtype = model.unet.dtype
    negative = negative.expand(image_embeds.shape[0], -1)
    emb = image_embeds.repeat_interleave(per, dim=0)
    if do_cfg:
        emb = torch.cat([negative.repeat_interleave(per, dim=0), emb])
    return emb.to(model.unet.device, dtype)


def denoise(model: KandinskyDecoder, latents: torch.Tensor, emb: torch.Tensor, ts: torch.Tensor, sched,
            guidance: float, generator: torch.Generator | None, hint: torch.Tensor | None = None,
            extra_channels: torch.Tensor | None = None,
            latent_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
            callback: Callback | None = None) -> torch.Tensor:
    """The pipelines' loop over `ts` from `latents` (B, C, h, w); `emb` is [negative; image] under guidance.

    `extra_channels` (2B or B rows) are concatenated to the UNet input (inpainting's masked image and
    mask); `hint` goes to the UNet's image-hint embedding (ControlNet); `latent_hook(i, latents)`
    replaces the latents after each step (inpainting keeps the known region).
    """
    do_cfg = guidance > 1
    channels = latents.shape[1]
    added = {"image_embeds": emb} if hint is None else {"image_embeds": emb, "hint": hint}
    for i, t in enumerate(ts):
        x = torch.cat([latents] * 2) if do_cfg else latents
        x = sched.scale_model_input(x, t)  # identity for DDPM/DDIM (the pipelines' schedulers)
        if extra_channels is not None:
            x = torch.cat([x, extra_channels], dim=1)
        pred = model.unet(sample=x, timestep=t, encoder_hidden_states=None, added_cond_kwargs=added,
                          return_dict=False)[0]
        if do_cfg:
            mean, var = pred.split(channels, dim=1)
            p_uncond, p_cond = mean.chunk(2)
            pred = torch.cat([p_uncond + guidance * (p_cond - p_uncond), var.chunk(2)[1]], dim=1)
        out = sch.step(sched, pred, t, latents, sch.prev_timestep(ts, i), generator)
        latents = out.prev_sample
        if latent_hook is not None:
            latents = latent_hook(i, latents)
        if callback is not None:
            callback(i + 1, len(ts), None)
    return latents


def decode(model: KandinskyDecoder, latents: torch.Tensor) -> torch.Tensor:
    """MoVQ latents (B, 4, h, w) → images (B, 3, h·f, w·f) in [0, 1]."""
    images = model.movq.decode(latents.to(model.movq.dtype), force_not_quantize=True)["sample"]
    return (images * 0.5 + 0.5).clamp(0, 1)


def encode(model: KandinskyDecoder, images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] → MoVQ latents (B, 4, H/f, W/f), unquantised and unscaled."""
    return model.movq.encode(images.to(model.movq.device, model.movq.dtype))["latents"]


def _initial(model, shape, generator, dtype, sched) -> torch.Tensor:
    return randn_tensor(shape, generator=generator, dtype=dtype).to(model.unet.device) * sched.init_noise_sigma


def _require(model: KandinskyDecoder, variant: str, what: str) -> None:
    if model.variant != variant:
        from .layout import VARIANTS

        raise ValueError(f"{what} needs a {VARIANTS[variant]} folder, but {model.path} is a {VARIANTS[model.variant]} "
                         f"folder ({model.variant}); load the {VARIANTS[variant]} folder for this node")


def text2image(model: KandinskyDecoder, image_embeds: torch.Tensor, negative: torch.Tensor, height: int = 512,
               width: int = 512, steps: int = 100, guidance: float = 4.0, generator: torch.Generator | None = None,
               per: int = 1, scheduler: str | None = None, hint: torch.Tensor | None = None,
               latents: torch.Tensor | None = None, callback: Callback | None = None) -> torch.Tensor:
    """`KandinskyV22Pipeline` (or, with `hint` (B, 3, H, W) in [0, 1], `KandinskyV22ControlnetPipeline`)."""
    _require(model, "controlnet" if hint is not None else "text2image",
             "ControlNet decoding" if hint is not None else "text-to-image decoding")
    do_cfg = guidance > 1
    emb = _embeds(model, image_embeds, negative, per, do_cfg)
    batch = image_embeds.shape[0] * per
    sched = sch.make_scheduler(model.scheduler, scheduler)
    ts = sch.timesteps(sched, steps)
    h, w = downscale_height_and_width(height, width, model.scale_factor)
    if latents is None:
        latents = _initial(model, (batch, model.latent_channels, h, w), generator, emb.dtype, sched)
    if hint is not None:
        size = (h * model.scale_factor, w * model.scale_factor)
        if tuple(hint.shape[-2:]) != size:
            raise ValueError(f"the hint is {hint.shape[-1]}×{hint.shape[-2]} but the image will be {size[1]}×{size[0]}; "
                             "resize the hint to the output size (or set width and height to the hint's size)")
        hint = hint.expand(image_embeds.shape[0], -1, -1, -1) if hint.shape[0] == 1 else hint
        if hint.shape[0] != image_embeds.shape[0]:
            raise ValueError(f"{hint.shape[0]} hints for {image_embeds.shape[0]} image embeddings; give one hint or "
                             "one per embedding")
        hint = hint.repeat_interleave(per, dim=0).to(emb.device, emb.dtype)
        hint = torch.cat([hint, hint]) if do_cfg else hint
    latents = denoise(model, latents, emb, ts, sched, guidance, generator, hint=hint, callback=callback)
    return decode(model, latents)


def _broadcast(images: torch.Tensor, n: int, what: str) -> torch.Tensor:
    if images.shape[0] == n:
        return images
    if images.shape[0] == 1:
        return images.expand(n, *images.shape[1:])
    raise ValueError(f"{images.shape[0]} {what} for {n} image embeddings; give one or one per embedding")


def img2img(model: KandinskyDecoder, images: torch.Tensor, image_embeds: torch.Tensor, negative: torch.Tensor,
            strength: float = 0.3, steps: int = 100, guidance: float = 4.0,
            generator: torch.Generator | None = None, per: int = 1, scheduler: str | None = None,
            callback: Callback | None = None) -> torch.Tensor:
    """`KandinskyV22Img2ImgPipeline`: images (B or 1, 3, H, W) in [-1, 1], already at the output size."""
    _require(model, "text2image", "image-to-image decoding")
    do_cfg = guidance > 1
    emb = _embeds(model, image_embeds, negative, per, do_cfg)
    sched = sch.make_scheduler(model.scheduler, scheduler)
    sched.set_timesteps(steps, device="cpu")
    start = min(int(steps * strength), steps)
    if start < 1:
        raise ValueError(f"strength {strength} × {steps} steps leaves no denoising step; raise the strength or the "
                         "number of steps")
    ts = sched.timesteps[steps - start:]
    init = encode(model, _broadcast(images, image_embeds.shape[0], "images")).repeat_interleave(per, dim=0)
    noise = randn_tensor(init.shape, generator=generator, dtype=init.dtype).to(init.device)
    latents = sched.add_noise(init, noise, ts[:1].repeat(init.shape[0]))
    latents = denoise(model, latents, emb, ts, sched, guidance, generator, callback=callback)
    return decode(model, latents)


def inpaint(model: KandinskyDecoder, images: torch.Tensor, mask: torch.Tensor, image_embeds: torch.Tensor,
            negative: torch.Tensor, steps: int = 100, guidance: float = 4.0,
            generator: torch.Generator | None = None, per: int = 1, scheduler: str | None = None,
            callback: Callback | None = None) -> torch.Tensor:
    """`KandinskyV22InpaintPipeline`: images (B or 1, 3, H, W) in [-1, 1]; mask (B or 1, 1, H, W), 1 where
    the image is to be repainted (binarised at 0.5). H and W must be multiples of the latent grid (64 px).

    The pipeline keeps the known region of the first image of a batch for every row; here each row
    keeps its own image's (the same thing for one input image, the pipeline's use).
    """
    _require(model, "inpaint", "inpainting")
    do_cfg = guidance > 1
    n = image_embeds.shape[0]
    emb = _embeds(model, image_embeds, negative, per, do_cfg)
    height, width = images.shape[-2:]
    h, w = downscale_height_and_width(height, width, model.scale_factor)
    if (h * model.scale_factor, w * model.scale_factor) != (height, width):
        grid = model.scale_factor ** 2
        raise ValueError(f"inpainting needs an image whose sides are multiples of {grid} px, got {width}×{height}; "
                         f"resize the image and the mask (e.g. to {w * model.scale_factor}×{h * model.scale_factor})")
    keep = 1 - (mask >= 0.5).to(torch.float32)  # the pipeline's mask: 1 = keep
    image_latents = encode(model, _broadcast(images, n, "images"))
    keep = F.interpolate(_broadcast(keep, n, "masks"), tuple(image_latents.shape[-2:]), mode="nearest")
    keep = prepare_mask(keep.to(image_latents.dtype).clone())  # grows the repainted region by one latent
    masked = image_latents * keep
    keep_rows, known = keep.repeat_interleave(per, dim=0), image_latents.repeat_interleave(per, dim=0)
    extra = torch.cat([masked.repeat_interleave(per, dim=0), keep_rows], dim=1)
    extra = extra.repeat(2, 1, 1, 1) if do_cfg else extra
    if n == 1:
        # one input image: exactly the pipeline's tensors (its `[:1]` rows broadcast over the batch; the
        # memory layout they give decides which conv kernels the MoVQ decoder runs, hence its rounding)
        known, keep_rows = image_latents[:1], (keep_rows.repeat(2, 1, 1, 1) if do_cfg else keep_rows)[:1]
    sched = sch.make_scheduler(model.scheduler, scheduler)
    ts = sch.timesteps(sched, steps)
    latents = _initial(model, (n * per, model.latent_channels, h, w), generator, emb.dtype, sched)
    noise = latents.clone()

    def keep_known(i: int, lat: torch.Tensor) -> torch.Tensor:
        proper = known
        if i < len(ts) - 1:
            proper = sched.add_noise(known, noise, torch.tensor([ts[i + 1]]))
        return keep_rows * proper + (1 - keep_rows) * lat

    latents = denoise(model, latents, emb, ts, sched, guidance, generator, extra_channels=extra,
                      latent_hook=keep_known, callback=callback)
    return decode(model, keep_rows * known + (1 - keep_rows) * latents)
