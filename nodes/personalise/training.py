"""Fine-tuning inside a node: peft LoRA adapters on private copies of the decoder UNet and the prior,
an AdamW loop that reports progress and honours cancellation between steps, and merging the result.

The cached models are never touched: every adapter goes on a deep copy.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

DECODER_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj")  # self- and text cross-attention
# The decoder's attention lives only at 16 and 8 px; the 32 px level (outlines) is resnets alone, and the
# CLIP image embedding reaches every resnet through its time-embedding projection (scale and shift).
DECODER_RESNET_TARGETS = (*DECODER_TARGETS, "conv1", "conv2", "time_emb_proj")
PRIOR_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "encoder_hidden_states_proj", "embedding_proj")


def full_resolution_convs(unet: Any) -> list[str]:
    """The 3×3 convolutions of a diffusers UNet2DConditionModel that run at its full resolution, where
    outlines are drawn: conv_in, conv_out, the first down block's resnets, the last up block's resnets
    and the upsampler (a resnet that upsamples before its conv1) feeding the last up block."""
    last = len(unet.up_blocks) - 1
    heads = ("down_blocks.0.resnets.", f"up_blocks.{last}.resnets.", f"up_blocks.{last - 1}.upsamplers.")
    return [name for name, _ in unet.named_modules()
            if name in ("conv_in", "conv_out") or (name.startswith(heads) and name.endswith((".conv1", ".conv2")))]


def with_lora(module: Any, rank: int, targets: Sequence[str], seed: int | None = None,
              ranks: dict[str, int] | None = None) -> tuple[Any, dict]:
    """A frozen deep copy of `module` (a diffusers model) with a trainable peft LoRA of `rank` on the
    `targets` projections, and the LoraConfig as a dict (for the file's metadata). `ranks`: full module
    names → their own rank (added to the targets; alpha = rank, so every delta has scale 1).

    peft draws the adapters' initial weights from torch's global generator; with `seed` they are drawn
    from that seed instead (the global state is left as it was), so a training depends on its inputs
    only, not on what ran before it in the process."""
    import torch
    from peft import LoraConfig

    model = copy.deepcopy(module)
    model.requires_grad_(False)
    ranks = dict(ranks or {})
    config = LoraConfig(r=rank, lora_alpha=float(rank), target_modules=sorted({*targets, *ranks}) if ranks
                        else list(targets), init_lora_weights="gaussian",
                        rank_pattern=ranks, alpha_pattern={k: float(v) for k, v in ranks.items()})
    if seed is None:
        model.add_adapter(config)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed % 2**63)
            model.add_adapter(config)
    model.train()
    return model, config.to_dict()


def frozen(module: Any) -> Any:
    """A deep copy of `module` with no trainable weights, for losses that train something else through it
    (the cached model's parameters never collect gradients)."""
    model = copy.deepcopy(module)
    model.requires_grad_(False)
    return model


def substitute_rows(embedding: Any, ids: Sequence[int], rows: Any) -> Any:
    """Make an embedding module output `rows[k]` wherever its input is token `ids[k]` (a forward hook),
    so a training learns those rows (textual inversion) through an otherwise frozen text encoder.
    Returns the hook's handle."""
    import torch

    def hook(_module, args, output):
        tokens = args[0]
        for k, i in enumerate(ids):
            output = torch.where((tokens == i)[..., None], rows[k].to(output), output)
        return output

    return embedding.register_forward_hook(hook)


# the text tower's blocks: open_clip (`transformer.resblocks.N.…`) and transformers (`text_model.encoder.layers.N.…`)
_TEXT_BLOCKS = ("transformer.resblocks.", "text_model.encoder.layers.")


def _low_rank(out_features: int, in_features: int, rank: int) -> Any:
    """A parametrization W → W + up @ down (up starts at zero, so the weight starts as it was; down
    as peft's "gaussian" lora_A)."""
    import torch

    class LowRank(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.down = torch.nn.Parameter(torch.randn(rank, in_features) / rank)
            self.up = torch.nn.Parameter(torch.zeros(out_features, rank))

        def forward(self, weight):
            return weight + (self.up @ self.down).to(weight)

    return LowRank()


def with_text_lora(clip: Any, rank: int, seed: int | None = None) -> tuple[Any, dict[str, Any]]:
    """A frozen deep copy of a CLIP encoder whose text tower has a trainable LoRA of `rank` on every block's
    attention (a torch MultiheadAttention's fused q/k/v `in_proj_weight`, or separate q/k/v projections)
    and output projection and its MLP's two Linear layers, and those modules: path in `clip.text_tower()`
    → its parametrization (`down`, `up`; scale 1, alpha = rank), as `save_lora(text_encoder=…)` takes them.

    The updates are weight parametrizations, not module wrappers, so they act wherever the weight is
    read (MultiheadAttention reads `in_proj_weight` and `out_proj.weight` directly, past any wrapper's
    forward). Initialised from `seed` (the global generator is left as it was)."""
    import torch
    from torch.nn.utils import parametrize

    model = frozen(clip)
    tower = model.text_tower()
    adapters: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed % 2**63)
        for name, mod in list(tower.named_modules()):
            if not name.startswith(_TEXT_BLOCKS):
                continue
            if isinstance(mod, torch.nn.MultiheadAttention) and mod._qkv_same_embed_dim:
                param = "in_proj_weight"
            elif isinstance(mod, torch.nn.Linear):
                param = "weight"
            else:
                continue
            out_f, in_f = getattr(mod, param).shape
            adapter = _low_rank(out_f, in_f, rank)
            parametrize.register_parametrization(mod, param, adapter)
            adapters[name] = adapter
    return model, adapters


def trainable(*models: Any) -> list[Any]:
    return [p for m in models for p in m.parameters() if p.requires_grad]


def fit(groups: list[dict], loss_fn: Callable[[int], Any], steps: int, on_step: Callable[[int, float], None],
        warmup: int = 10) -> list[float]:
    """AdamW over parameter `groups` (torch param-group dicts with their `lr`) for `steps` steps of
    `loss_fn(step)`, warm-up then cosine decay, gradients clipped at 1. `on_step(done, loss)` runs
    after every step (progress; it may raise Cancelled, which stops between steps). Returns the losses."""
    import torch

    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    losses = []
    for step in range(steps):
        loss = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        on_step(step + 1, losses[-1])
    return losses


def merged(model: Any) -> Any:
    """The LoRA-adapted copy with its adapters merged into the weights, in eval mode, no gradients."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.merge()
    return model.requires_grad_(False).eval()
