"""Writing LoRA files: peft adapters → a safetensors file that Load LoRA (and diffusers) reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_lora(path: Path, unet: Any, config: dict, extra: dict | None = None, prior: Any = None,
              prior_config: dict | None = None, embeddings: dict[str, Any] | None = None,
              text_encoder: dict[str, Any] | None = None) -> None:
    """peft state dicts with the `unet.` (and `prior.`) prefix and each LoraConfig as diffusers'
    metadata (`lora_adapter_metadata`), written atomically; `extra` goes to `nodegraph_training`.

    `embeddings`: word → (tokens, width) token rows learnt for the text encoder, bundled as
    AUTOMATIC1111 and kohya do (`bundle_emb.<word>.string_to_param.*`).
    `text_encoder`: module path in the CLIP's `text_tower()` → an adapter with `down` (r, in) and `up`
    (out, r) at scale 1, written as diffusers writes a text-encoder LoRA
    (`text_encoder.<path>.lora_A.weight` / `.lora_B.weight`, alpha = rank in the metadata)."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    parts = [("unet", unet, config)] + ([("prior", prior, prior_config)] if prior is not None else [])
    state, meta_cfg = {}, {}
    for prefix, model, conf in parts:
        state.update({f"{prefix}.{k}": v.detach().float().contiguous()
                      for k, v in get_peft_model_state_dict(model).items()})
        meta_cfg.update({f"{prefix}.{k}": (sorted(v) if isinstance(v, set) else v) for k, v in conf.items()})
    for module, adapter in (text_encoder or {}).items():
        state[f"text_encoder.{module}.lora_A.weight"] = adapter.down.detach().float().contiguous()
        state[f"text_encoder.{module}.lora_B.weight"] = adapter.up.detach().float().contiguous()
    if text_encoder:
        rank = int(next(iter(text_encoder.values())).down.shape[0])
        meta_cfg.update({"text_encoder.r": rank, "text_encoder.lora_alpha": float(rank),
                         "text_encoder.target_modules": sorted(text_encoder)})
    for word, vectors in (embeddings or {}).items():
        state[f"bundle_emb.{word}.string_to_param.*"] = vectors.detach().float().reshape(-1, vectors.shape[-1]).contiguous()
    metadata = {"format": "pt", "lora_adapter_metadata": json.dumps(meta_cfg, sort_keys=True, default=str)}
    if extra:
        metadata["nodegraph_training"] = json.dumps(extra, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.safetensors")
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(path)
