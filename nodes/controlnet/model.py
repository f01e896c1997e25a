"""ControlNet for the unCLIP decoder: the model, loading/saving, and a controlled UNet.

- `UnCLIPControlNetModel` is diffusers' `ControlNetModel` that also builds Karlo's
  `UNetMidBlock2DSimpleCrossAttn` mid block (stock `ControlNetModel` knows only the SD mid blocks),
  so `from_unet` copies our decoder's encoder half, class embedding included. For a pixel-space
  decoder the control image is at the UNet's own resolution: `conditioning_embedding_out_channels=
  (16,)` (the stock (16, 32, 96, 256) expects an image 8× the UNet input, made for latent UNets).
- `ControlledUNet` wraps a decoder UNet and any number of `Control`s (ControlNet + control image
  + strength + active range). It is called exactly like the UNet, adds the ControlNets' residuals,
  and so turns the standard decoder sampling loop into controlled sampling — the way ComfyUI's
  Apply ControlNet patches the model while the sampler stays the same. A control of strength 0 is
  skipped, so the UNet then runs exactly as without it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ControlNetModel
from diffusers.models.unets.unet_2d_blocks import get_mid_block

WEIGHTS = "diffusion_pytorch_model.safetensors"


class UnCLIPControlNetModel(ControlNetModel):
    """`ControlNetModel` that also supports `mid_block_type="UNetMidBlock2DSimpleCrossAttn"` (Karlo)."""

    @functools.wraps(ControlNetModel.__init__)  # the full signature, which diffusers' config loading reads
    def __init__(self, *args, **kwargs):
        mid = kwargs.get("mid_block_type", "UNetMidBlock2DCrossAttn")
        simple = mid == "UNetMidBlock2DSimpleCrossAttn"
        if simple:
            kwargs["mid_block_type"] = "UNetMidBlock2D"  # built, then replaced below
        super().__init__(*args, **kwargs)
        if simple:
            cfg = self.config
            ch = cfg.block_out_channels
            head = cfg.attention_head_dim if isinstance(cfg.attention_head_dim, int) else cfg.attention_head_dim[-1]
            cross = cfg.cross_attention_dim if isinstance(cfg.cross_attention_dim, int) else cfg.cross_attention_dim[-1]
            only_cross = cfg.only_cross_attention if isinstance(cfg.only_cross_attention, bool) else False
            self.mid_block = get_mid_block(
                mid, temb_channels=ch[0] * 4, in_channels=ch[-1], resnet_eps=cfg.norm_eps,
                resnet_act_fn=cfg.act_fn, resnet_groups=cfg.norm_num_groups,
                output_scale_factor=cfg.mid_block_scale_factor, cross_attention_dim=cross,
                mid_block_only_cross_attention=only_cross, resnet_time_scale_shift=cfg.resnet_time_scale_shift,
                attention_head_dim=head)
            self.register_to_config(mid_block_type=mid)


def controlnet_from_unet(unet, conditioning_channels: int = 3,
                         embedding_channels: tuple[int, ...] = (16,)) -> UnCLIPControlNetModel:
    """A ControlNet initialised from a decoder UNet (its encoder and mid block copied, zero convs)."""
    cfg = unet.config
    for key, default in (("cross_attention_norm", None), ("resnet_skip_time_act", False),
                         ("class_embeddings_concat", False), ("addition_embed_type", None)):
        if cfg.get(key, default) != default:
            raise ValueError(f"a ControlNet for this UNet is not supported: its {key} is {cfg.get(key)!r}")
    return UnCLIPControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(embedding_channels),
                                           conditioning_channels=conditioning_channels)


def save_controlnet(model: ControlNetModel, path: str | Path, fp16: bool = True) -> None:
    """diffusers `save_pretrained` layout: config.json + diffusion_pytorch_model.safetensors."""
    import copy

    m = copy.deepcopy(model).to(torch.float16) if fp16 else model
    m.save_pretrained(path, safe_serialization=True)


def load_controlnet(path: str | Path) -> UnCLIPControlNetModel:
    """Load a ControlNet folder (config.json + weights); weights are read weights-only, cast to fp32."""
    import nodegraph

    root = Path(path)
    if root.is_file():
        root = root.parent
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"no ControlNet in {root}: expected config.json and {WEIGHTS} (diffusers "
                                "save_pretrained layout)")
    files = [root / WEIGHTS] if (root / WEIGHTS).is_file() else sorted(
        p for p in root.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt"))
    if len(files) != 1:
        raise FileNotFoundError(f"{root}: expected one weights file ({WEIGHTS}), found "
                                f"{', '.join(p.name for p in files) or 'none'}")
    config = UnCLIPControlNetModel.load_config(root)
    model = UnCLIPControlNetModel.from_config(config)
    state = nodegraph.load_state_dict(files[0])  # safetensors, or torch.load(weights_only=True)
    result = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{files[0].name} does not match its config.json: missing {result.missing_keys[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]}; re-save it with save_pretrained")
    return model.eval()


def check_compatible(controlnet: ControlNetModel, unet) -> None:
    """A clear error when a ControlNet was made for another UNet (channels / context width differ)."""
    c, u = controlnet.config, unet.config
    for key in ("block_out_channels", "cross_attention_dim", "in_channels", "layers_per_block", "class_embed_type"):
        a, b = c.get(key), u.get(key)
        if (list(a) if isinstance(a, tuple | list) else a) != (list(b) if isinstance(b, tuple | list) else b):
            raise ValueError(f"this ControlNet was made for another decoder: its {key} is {a!r}, the decoder's "
                             f"{b!r}; use a ControlNet trained on this decoder (python -m train.controlnet)")


@dataclass(frozen=True, eq=False)
class Control:
    """One ControlNet applied with a control image (N, 3, H, W) in [0, 1] and a strength."""

    controlnet: ControlNetModel
    image: torch.Tensor
    strength: float = 1.0
    start: float = 0.0  # active from this fraction of the denoising (by timestep) …
    end: float = 1.0  # … to this one
    num_train_timesteps: int = 1000  # the decoder scheduler's, to turn a timestep into a fraction

    def active(self, t) -> bool:
        if self.strength == 0:
            return False
        progress = 1.0 - float(t) / self.num_train_timesteps
        return self.start <= progress <= self.end


def match_batch(image: torch.Tensor, batch: int, size: tuple[int, int], dtype) -> torch.Tensor:
    """The control image for a UNet batch: resized to the sample size; 1 image broadcasts, B images
    serve B samples, and are repeated for the [uncond; cond] halves of guidance (2B)."""
    n = image.shape[0]
    if tuple(image.shape[-2:]) != tuple(size):
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
    if n == batch:
        pass
    elif n == 1:
        image = image.expand(batch, -1, -1, -1)
    elif batch == 2 * n:
        image = torch.cat([image, image])
    else:
        raise ValueError(f"{n} control images for {batch // 2 if batch % 2 == 0 else batch} images being "
                         "generated; give one control image, or one per generated image")
    return image.to(dtype)


class ControlledUNet(torch.nn.Module):
    """A decoder UNet with ControlNets attached; called exactly like the UNet it wraps."""

    def __init__(self, base, controls: tuple[Control, ...] = ()):
        super().__init__()
        self.base = base
        self.controls = tuple(controls)
        # registered so that .to() / .eval() reach the ControlNets too
        self.controlnets = torch.nn.ModuleList(list({id(c.controlnet): c.controlnet for c in controls}.values()))

    @property
    def config(self):
        return self.base.config

    @property
    def dtype(self):
        return self.base.dtype

    @property
    def device(self):
        return self.base.device

    def replace_base(self, base) -> ControlledUNet:
        """The same controls on another UNet (e.g. the decoder with a LoRA merged)."""
        return ControlledUNet(base, self.controls)

    def with_control(self, control: Control) -> ControlledUNet:
        return ControlledUNet(self.base, (*self.controls, control))

    def residuals(self, sample, timestep, encoder_hidden_states, class_labels=None, attention_mask=None):
        """Summed (down residuals, mid residual) of the active controls, or (None, None)."""
        down, mid = None, None
        for c in self.controls:
            if not c.active(timestep):
                continue
            cond = match_batch(c.image.to(sample.device), sample.shape[0], tuple(sample.shape[-2:]), sample.dtype)
            d, m = c.controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states, controlnet_cond=cond,
                                conditioning_scale=float(c.strength), class_labels=class_labels,
                                attention_mask=attention_mask, return_dict=False)
            down = list(d) if down is None else [a + b for a, b in zip(down, d, strict=True)]
            mid = m if mid is None else mid + m
        return down, mid

    def forward(self, sample, timestep, encoder_hidden_states, class_labels=None, attention_mask=None,
                down_block_additional_residuals=None, mid_block_additional_residual=None, **kwargs):
        down, mid = self.residuals(sample, timestep, encoder_hidden_states, class_labels, attention_mask)
        if down_block_additional_residuals is not None:  # residuals the caller adds (another hook)
            down = list(down_block_additional_residuals) if down is None else \
                [a + b for a, b in zip(down, down_block_additional_residuals, strict=True)]
        if mid_block_additional_residual is not None:
            mid = mid_block_additional_residual if mid is None else mid + mid_block_additional_residual
        if down is not None:
            kwargs["down_block_additional_residuals"] = tuple(down)
            kwargs["mid_block_additional_residual"] = mid
        return self.base(sample, timestep, encoder_hidden_states=encoder_hidden_states, class_labels=class_labels,
                         attention_mask=attention_mask, **kwargs)
