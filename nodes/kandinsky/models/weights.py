"""Loading one component of a diffusers-layout folder with one copy of the weights in memory.

diffusers' and transformers' `from_pretrained` build the module on the meta device and fill it from
the weights file (`low_cpu_mem_usage`; safetensors are memory-mapped), in the dtype asked for, then
the module moves to the device. A weights file that does not fit its `config.json` (other shapes,
missing tensors) is an error naming the subfolder, never a silently random-initialised model.
"""

from __future__ import annotations

from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_dtype(choice: str, device: str) -> torch.dtype:
    """'auto' is fp16 on CUDA and fp32 elsewhere (CPU kernels are fastest and exact in fp32)."""
    if choice == "auto":
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    if choice not in DTYPES:
        raise ValueError(f"unknown dtype {choice!r}; use auto, {', '.join(DTYPES)}")
    return DTYPES[choice]


def _mismatch(root: Path, sub: str, detail: str) -> ValueError:
    first = detail.strip().splitlines()[0][:300] if detail.strip() else "shapes differ"
    return ValueError(f"{root}: the weights in {sub}/ do not match {sub}/config.json ({first}); the config and the "
                      f"weights come from different checkpoints: restore {sub}/ as published")


def from_pretrained(cls, root: Path, sub: str, dtype: torch.dtype, device: str):
    """`cls.from_pretrained(root/sub)` in `dtype` on `device`, eval mode, strict about the weights."""
    folder = Path(root) / sub
    if cls.__module__.startswith("transformers"):
        try:
            model, info = cls.from_pretrained(folder, dtype=dtype, output_loading_info=True)
        except RuntimeError as exc:
            if "size mismatch" in str(exc) or "shape" in str(exc):
                raise _mismatch(root, sub, str(exc)) from None
            raise
        missing = [k for k in info.get("missing_keys", ()) if k]
        bad = info.get("mismatched_keys", ())
        if missing or bad:
            what = f"missing {', '.join(sorted(missing)[:3])}" if missing else f"other shapes for {list(bad)[:2]}"
            raise _mismatch(root, sub, what)
    else:
        try:
            model = cls.from_pretrained(root, subfolder=sub, torch_dtype=dtype, low_cpu_mem_usage=True)
        except (ValueError, RuntimeError) as exc:
            text = str(exc)
            if "shape" in text or "size mismatch" in text or "missing" in text:
                raise _mismatch(root, sub, text) from None
            raise
    return model.to(device).eval()
