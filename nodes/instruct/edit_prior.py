"""The edit prior: a CLIP image embedding and an instruction → the edited scene's CLIP image embedding.

unCLIP's way of editing in CLIP space: a small transformer reads one token for the input image's
CLIP embedding (B, D), one for the instruction's pooled CLIP text embedding (B, D) and the
instruction's CLIP token states (B, L, W), and predicts the change of the image embedding; its
output is the input embedding plus that change. The output head starts at zero, so an untrained
prior returns its input embedding unchanged. `blend` slerps from the input towards the prediction
by `amount` (0: the input, 1: the prediction), for InstructPix2Pix's image-embedding slot.

On disk: a diffusers-style subfolder (`config.json` + `diffusion_pytorch_model.safetensors`), the
shipped one is `models/shapes-ip2p/edit_prior/` (trained by `python -m train ip2p_edit`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

SUBFOLDER = "edit_prior"


class EditPrior(ModelMixin, ConfigMixin):
    """(image embedding (B, D), instruction pooled embedding (B, D), token states (B, L, W), mask (B, L))
    → edited image embedding (B, D)."""

    @register_to_config
    def __init__(self, embed_dim: int = 128, text_width: int = 128, max_tokens: int = 32, width: int = 128,
                 layers: int = 2, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.image_in = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, width))
        self.pooled_in = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, width))
        self.tokens_in = nn.Sequential(nn.LayerNorm(text_width), nn.Linear(text_width, width))
        self.type_embedding = nn.Parameter(torch.zeros(2, width))
        self.position = nn.Parameter(torch.zeros(max_tokens, width))
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, embed_dim))
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.type_embedding, std=0.02)
        nn.init.zeros_(self.out[1].weight)  # untrained: the edited embedding is the input embedding
        nn.init.zeros_(self.out[1].bias)

    def forward(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, text_hidden: torch.Tensor,
                text_mask: torch.Tensor) -> torch.Tensor:
        scale = image_embeds.norm(dim=-1, keepdim=True)
        unit = image_embeds / scale.clamp_min(1e-8)
        length = min(text_hidden.shape[1], self.config.max_tokens)
        heads = torch.stack([self.image_in(unit), self.pooled_in(text_embeds)], dim=1) + self.type_embedding
        tokens = self.tokens_in(text_hidden[:, :length]) + self.position[:length]
        x = torch.cat([heads, tokens], dim=1)
        pad = torch.cat([torch.zeros(len(x), 2, dtype=torch.bool, device=x.device), ~text_mask[:, :length].bool()], 1)
        h = self.encoder(x, src_key_padding_mask=pad)
        return (unit + self.out(h[:, 0])) * scale  # the change is predicted on the unit sphere, at the input's norm

    def edit(self, image_embeds: torch.Tensor, text) -> torch.Tensor:
        """The edited embeddings (B, D) for image embeddings (B, D) and a `TextEncoding` of 1 or B rows."""
        text = text.expand(len(image_embeds))
        return self(image_embeds, text.embeds, text.hidden, text.mask)


def blend(image_embeds: torch.Tensor, edited: torch.Tensor, amount: float) -> torch.Tensor:
    """Slerp from the input embeddings (B, D) towards the edited ones by `amount` (0: input, 1: edited)."""
    if amount == 1.0:
        return edited
    from ..unclip.api import slerp

    return slerp(image_embeds, edited, amount)


def load_edit_prior(root: str | Path) -> EditPrior:
    """The edit prior in `root/edit_prior/` (float32, eval mode); a clear error when the folder has none."""
    path = Path(root) / SUBFOLDER
    if not (path / "config.json").is_file() or not (path / "diffusion_pytorch_model.safetensors").is_file():
        raise FileNotFoundError(f"no edit prior in {path}: expected config.json and diffusion_pytorch_model."
                                "safetensors there; train one with `python -m train ip2p_edit`")
    model = EditPrior.from_pretrained(path, torch_dtype=torch.float32, low_cpu_mem_usage=False)
    return model.eval().requires_grad_(False)


def save_edit_prior(model: EditPrior, root: str | Path, fp16: bool = True) -> Path:
    """Write `root/edit_prior/` (safetensors, fp16 by default)."""
    import copy

    path = Path(root) / SUBFOLDER
    copy.deepcopy(model).to(torch.float16 if fp16 else torch.float32).save_pretrained(path, safe_serialization=True)
    return path
