"""LoRA files → low-rank weight deltas, merged into a copy of the decoder / prior / CLIP text tower.

Reads peft / diffusers and kohya (sd-scripts) layouts from safetensors or weights-only state dicts
(the key patterns and scales: docs/lora.md). The input model is never touched: a patched component
is a copy with `W + strength · scale · up @ down` merged in (Linear and Conv2d), so sampling costs
nothing extra. Only the patched weights are new memory: the copy's other parameters are parameters
of its own on the input's storage (`share_copy`), so a LoRA on a few layers of a large UNet, or on the
text tower of a CLIP that also holds an image tower, does not double the model. Components without
keys are shared, and strength 0 returns the base model.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPONENTS = ("unet", "prior", "text_proj", "text_encoder")
# key prefix → component; "text_encoder" is the CLIP's text tower (module paths as `text_tower()` names them)
_PEFT_PREFIXES = {"unet.": "unet", "decoder.": "unet", "prior.": "prior", "text_proj.": "text_proj",
                  "text_encoder.": "text_encoder"}
_KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_prior_": "prior", "lora_text_proj_": "text_proj",
                   "lora_te_": "text_encoder"}
BUNDLE_PREFIX = "bundle_emb."  # bundled textual-inversion embeddings (a word's token rows)
# SDXL's two text encoders and other layouts: no counterpart here
_UNSUPPORTED_PREFIXES = ("lora_te1_", "lora_te2_", "text_encoder_2.", "te.")
_DOWN = (".lora_A.weight", ".lora.down.weight", ".lora_down.weight")
_UP = (".lora_B.weight", ".lora.up.weight", ".lora_up.weight")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


class LoraError(ValueError):
    """A LoRA file that cannot be applied; the message names the problem and the fix."""


@dataclass
class LoraDelta:
    """One module's low-rank update: W += scale · up @ down."""

    down: Any  # (r, in) or (r, in, kh, kw)
    up: Any  # (out, r) or (out, r, 1, 1)
    scale: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])


@dataclass
class LoraWeights:
    """A parsed LoRA: per component, module path → delta; plus what was ignored (with why)."""

    name: str
    deltas: dict[str, dict[str, LoraDelta]] = field(default_factory=dict)  # component → module → delta
    layout: str = "peft"  # "peft" or "kohya"
    ignored: list[str] = field(default_factory=list)
    # bundled textual-inversion embeddings: word → (vectors, width), one vector per token of the word
    embeddings: dict[str, Any] = field(default_factory=dict)

    def components(self) -> list[str]:
        return [c for c in COMPONENTS if self.deltas.get(c)]

    def nbytes(self) -> int:
        return sum(d.down.numel() * d.down.element_size() + d.up.numel() * d.up.element_size()
                   for comp in self.deltas.values() for d in comp.values())


# --- reading ---------------------------------------------------------------------------------------

def weight_file(path: Path) -> Path:
    """The weights file of a LoRA given as a file or a folder (peft / diffusers save a folder)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for name in ("pytorch_lora_weights.safetensors", "adapter_model.safetensors"):
            if (path / name).is_file():
                return path / name
        found = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
        safe = [p for p in found if p.suffix == ".safetensors"]
        if len(safe) == 1 or (not safe and len(found) == 1):
            return (safe or found)[0]
        if not found:
            raise LoraError(f"{path} holds no LoRA weights file; expected pytorch_lora_weights.safetensors, "
                            "adapter_model.safetensors or one *.safetensors file")
        raise LoraError(f"{path} holds several weight files ({', '.join(p.name for p in found)}); give the "
                        "path of the one to load")
    raise LoraError(f"LoRA {path} does not exist")


def _metadata(path: Path) -> dict[str, Any]:
    """LoRA config from safetensors metadata (diffusers) or adapter_config.json (peft), else {}."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        raw = meta.get("lora_adapter_metadata")
        if raw:
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise LoraError(f"{path.name}: its lora_adapter_metadata is not valid JSON ({exc}); re-save the "
                                "LoRA with diffusers' save_lora_adapter or peft") from None
    cfg = path.parent / "adapter_config.json"
    if cfg.is_file():
        try:
            return json.loads(cfg.read_text())
        except json.JSONDecodeError as exc:
            raise LoraError(f"{cfg} is not valid JSON ({exc})") from None
    return {}


def _component_config(meta: dict[str, Any], component: str) -> dict[str, Any]:
    """The peft config of one component: diffusers prefixes pipeline metadata ("unet.lora_alpha")."""
    prefixed = {k.split(".", 1)[1]: v for k, v in meta.items() if k.startswith(component + ".")}
    return prefixed or {k: v for k, v in meta.items() if "." not in k}


def _pattern_value(patterns: dict[str, Any], module: str) -> Any:
    for pat, value in (patterns or {}).items():
        if module == pat or module.endswith("." + pat) or re.fullmatch(pat, module):
            return value
    return None


def _peft_scale(cfg: dict[str, Any], module: str, rank: int) -> float:
    alpha = _pattern_value(cfg.get("alpha_pattern") or {}, module)
    if alpha is None:
        alpha = cfg.get("lora_alpha", rank)
    if cfg.get("use_rslora"):
        return float(alpha) / rank ** 0.5
    return float(alpha) / rank


def read_lora(path: str | Path, name: str | None = None) -> LoraWeights:
    """Parse a LoRA file or folder (see the module docstring for the layouts) into deltas."""
    import nodegraph

    file = weight_file(Path(path))
    state = nodegraph.load_state_dict(file)  # safetensors, or torch.load(weights_only=True): never unpickles code
    if not isinstance(state, dict) or not state:
        raise LoraError(f"{file.name} holds no tensors; is it a LoRA file?")
    if any(not hasattr(v, "shape") for v in state.values()):
        raise LoraError(f"{file.name} is not a flat state dict of tensors (a training checkpoint?); export the "
                        "LoRA weights alone (peft get_peft_model_state_dict, or kohya's saved .safetensors)")
    if any(k.endswith("lora_magnitude_vector") or ".dora_scale" in k for k in state):
        raise LoraError(f"{file.name} is a DoRA (weight-decomposed LoRA), which this loader does not apply; "
                        "train a plain LoRA (peft LoraConfig(use_dora=False))")
    kohya = any(k.startswith(tuple(_KOHYA_PREFIXES)) or ".lora_down." in k for k in state)
    lora = LoraWeights(name=name or file.stem, layout="kohya" if kohya else "peft")
    meta = {} if kohya else _metadata(file)
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for key, tensor in state.items():
        if key.startswith(BUNDLE_PREFIX):
            _read_bundled(lora, key, tensor, file.name)
            continue
        if key.startswith(_UNSUPPORTED_PREFIXES):
            lora.ignored.append(key)
            continue
        part = "down" if key.endswith(_DOWN) else "up" if key.endswith(_UP) else "alpha" if key.endswith(".alpha") \
            else None
        if part is None and key.startswith("text_encoder."):
            # diffusers' older text-encoder layouts (…lora_linear_layer.down.weight, …to_q_lora.down.weight)
            lora.ignored.append(key)
            continue
        if part is None:
            raise LoraError(f"{file.name}: key {key!r} is neither a LoRA down/up weight nor an alpha; expected "
                            "peft (…lora_A.weight / …lora_B.weight) or kohya (…lora_down.weight / …lora_up.weight "
                            "/ .alpha) names")
        stem = key[: -len(".alpha")] if part == "alpha" else \
            next(key[: -len(s)] for s in (_DOWN if part == "down" else _UP) if key.endswith(s))
        component, module = _split_component(stem, kohya)
        pairs.setdefault((component, module), {})[part] = tensor
    for (component, module), parts in pairs.items():
        if "down" not in parts or "up" not in parts:
            missing = "up" if "down" in parts else "down"
            raise LoraError(f"{file.name}: module {module!r} has no LoRA {missing} weight; the file is incomplete "
                            "or not a LoRA")
        down, up = parts["down"].float(), parts["up"].float()
        rank = int(down.shape[0])
        if up.shape[1] != rank:
            raise LoraError(f"{file.name}: module {module!r} has down rank {rank} but up {tuple(up.shape)}; the file "
                            "is corrupt")
        if "alpha" in parts:
            scale = float(parts["alpha"]) / rank
        elif kohya:
            scale = 1.0
        else:
            scale = _peft_scale(_component_config(meta, component), module, rank)
        lora.deltas.setdefault(component, {})[module] = LoraDelta(down, up, scale)
    if not lora.deltas and not lora.ignored and not lora.embeddings:
        raise LoraError(f"{file.name} holds no LoRA weights")
    return lora


def _read_bundled(lora: LoraWeights, key: str, tensor: Any, file: str) -> None:
    """A bundled embedding, as AUTOMATIC1111 and kohya write them into a LoRA file:
    `bundle_emb.<word>.string_to_param.*` (one text encoder) or `bundle_emb.<word>.clip_l` / `.clip_g`
    (SDXL's two; only `clip_l` has a counterpart here)."""
    rest = key[len(BUNDLE_PREFIX):]
    part = next((p for p in ("string_to_param.*", "clip_l", "clip_g") if rest.endswith("." + p)), None)
    word = rest[: -len(part) - 1] if part else ""
    if not word:
        raise LoraError(f"{file}: key {key!r} is not a bundled embedding (expected "
                        f"{BUNDLE_PREFIX}<word>.string_to_param.* or {BUNDLE_PREFIX}<word>.clip_l)")
    if part == "clip_g":  # SDXL's second text encoder: no counterpart here
        lora.ignored.append(key)
        return
    vectors = tensor.float()
    if vectors.dim() == 1:
        vectors = vectors[None]
    if vectors.dim() != 2:
        raise LoraError(f"{file}: bundled embedding {word!r} has shape {tuple(tensor.shape)}; expected "
                        "(tokens, width)")
    lora.embeddings[word] = vectors


def _split_component(stem: str, kohya: bool) -> tuple[str, str]:
    """(component, module path) of a key stem; kohya module paths stay in their underscored form."""
    for prefix, comp in _KOHYA_PREFIXES.items():
        if stem.startswith(prefix):
            return comp, stem[len(prefix):]
    if stem.startswith("base_model.model."):
        stem = stem[len("base_model.model."):]
    stem = stem.replace(".base_layer.", ".")  # peft's wrapper around a MultiheadAttention: `attn.base_layer.out_proj`
    for prefix, comp in _PEFT_PREFIXES.items():
        if stem.startswith(prefix):
            return comp, stem[len(prefix):]
    return "", stem  # unprefixed peft keys: the component is found by module path when applying


# --- kohya names -----------------------------------------------------------------------------------

def kohya_name(module_path: str) -> str:
    """sd-scripts' name of a module: dots become underscores."""
    return module_path.replace(".", "_")


def kohya_to_peft(state: dict[str, Any], modules: dict[str, Any]) -> dict[str, Any]:
    """Rename a kohya state dict to peft/diffusers keys (`unet.<path>.lora_A.weight`, …).

    `modules`: component → model (an nn.Module), whose module names resolve the underscored paths.
    Alphas are folded into the up weights (peft has no per-module alpha key), so the result has
    scale 1 everywhere and gives the same deltas.
    """
    lookup = {comp: {kohya_name(n): n for n, _ in model.named_modules() if n} for comp, model in modules.items()}
    out: dict[str, Any] = {}
    alphas = {k[: -len(".alpha")]: v for k, v in state.items() if k.endswith(".alpha")}
    for key, tensor in state.items():
        if key.endswith(".alpha"):
            continue
        part = ".lora_A.weight" if key.endswith(".lora_down.weight") else ".lora_B.weight" \
            if key.endswith(".lora_up.weight") else None
        if part is None:
            raise LoraError(f"kohya key {key!r} is neither lora_down nor lora_up")
        stem = key.rsplit(".lora_", 1)[0]
        comp, flat = _split_component(stem, True)
        if comp not in lookup or flat not in lookup[comp]:
            raise LoraError(f"kohya key {key!r} names no module of the {comp or 'given'} model")
        if part == ".lora_B.weight" and stem in alphas:
            rank = tensor.shape[1]
            tensor = tensor * (float(alphas[stem]) / rank)
        out[f"{comp}.{lookup[comp][flat]}{part}"] = tensor
    return out


# --- applying --------------------------------------------------------------------------------------

def _resolve_modules(lora: LoraWeights, models: dict[str, Any]) -> dict[str, dict[str, LoraDelta]]:
    """component → {real module path → delta}; checks that every module exists and shapes fit."""
    import torch

    resolved: dict[str, dict[str, LoraDelta]] = {}
    for comp, deltas in lora.deltas.items():
        for module, delta in deltas.items():
            target = _find(comp, module, models, lora.layout == "kohya")
            if target is None:
                where = comp or "decoder UNet / prior / text_proj"
                raise LoraError(f"LoRA {lora.name!r} patches {module!r}, which the {where} has not; the LoRA was "
                                "made for a different model (train it on this bundle's models)")
            real_comp, path, mod = target
            weight = _weight(mod)
            if isinstance(mod, torch.nn.Linear | torch.nn.MultiheadAttention) and weight is not None:
                ok = delta.down.dim() == 2 and delta.down.shape[1] == weight.shape[1] and \
                    delta.up.reshape(delta.up.shape[0], -1).shape[0] == weight.shape[0]
            elif isinstance(mod, torch.nn.Conv2d):
                ok = delta.down.dim() == 4 and tuple(delta.down.shape[1:]) == tuple(weight.shape[1:]) and \
                    delta.up.shape[0] == weight.shape[0]
            else:
                raise LoraError(f"LoRA {lora.name!r} patches {path!r}, a {type(mod).__name__}; only Linear, "
                                "Conv2d and MultiheadAttention (its fused q/k/v projection) layers take LoRA "
                                "weights here")
            if not ok:
                raise LoraError(f"LoRA {lora.name!r}: {path!r} has weight {tuple(weight.shape)} but the LoRA "
                                f"down/up are {tuple(delta.down.shape)} / {tuple(delta.up.shape)}; the LoRA was "
                                "made for a model of another size")
            resolved.setdefault(real_comp, {})[path] = delta
    return resolved


def _find(comp: str, module: str, models: dict[str, Any], kohya: bool):
    # unprefixed (peft) paths are looked up in the decoder's and prior's models, never the text tower
    comps = [comp] if comp else [c for c in COMPONENTS if c in models and c != "text_encoder"]
    for c in comps:
        model = models.get(c)
        if model is None:
            continue
        named = dict(model.named_modules())
        if kohya:
            path = {kohya_name(n): n for n in named if n}.get(module)
        else:
            path = module if module in named else None
        if path is not None:
            return c, path, named[path]
    return None


def _weight(mod: Any) -> Any:
    """The weight a LoRA on `mod` updates: a Linear's or Conv2d's `weight`; for a torch MultiheadAttention
    (open_clip's text tower) its fused q/k/v projection `in_proj_weight`, as peft's LoRA on that layer
    (its `out_proj` is a Linear of its own); None for a MultiheadAttention with separate q/k/v weights."""
    import torch

    if isinstance(mod, torch.nn.MultiheadAttention):
        return mod.in_proj_weight if mod._qkv_same_embed_dim else None
    return getattr(mod, "weight", None)


def delta_weight(delta: LoraDelta, shape) -> Any:
    """The dense update scale · up @ down, shaped like the weight."""
    down, up = delta.down, delta.up
    if down.dim() == 2:
        return delta.scale * (up.reshape(up.shape[0], -1) @ down)
    return delta.scale * (up.reshape(up.shape[0], -1) @ down.reshape(down.shape[0], -1)).reshape(shape)


def assign(lora: LoraWeights, models: dict[str, Any]) -> LoraWeights:
    """The LoRA with unprefixed (peft) module paths assigned to the component that has them.

    `models`: component name → nn.Module or None. Paths are looked up in the UNet, then the prior,
    then text_proj; a path found in none of the given models is an error naming it.
    """
    out = LoraWeights(lora.name, {c: dict(d) for c, d in lora.deltas.items() if c}, lora.layout, lora.ignored,
                      lora.embeddings)
    present = {c: m for c, m in models.items() if m is not None}
    for module, delta in lora.deltas.get("", {}).items():
        found = _find("", module, present, lora.layout == "kohya")
        if found is None:
            raise LoraError(f"LoRA {lora.name!r} patches {module!r}, which none of the given models has "
                            f"({', '.join(present) or 'none'}); connect the model it was made for, or use a LoRA "
                            "trained on this bundle")
        out.deltas.setdefault(found[0], {})[module] = delta
    return out


def patch(models: dict[str, Any], lora: LoraWeights, strength: float) -> dict[str, Any]:
    """Copies of the given components the LoRA patches, with the LoRA merged at `strength`.

    `models`: component name → nn.Module. The LoRA's components must all be among them (use
    `assign` first for unprefixed files). Returns component → model, where untouched components
    are the very same objects. Raises LoraError for a LoRA that does not fit.
    """
    import torch

    missing = [c for c in lora.components() if models.get(c) is None]
    if missing:
        raise LoraError(f"LoRA {lora.name!r} has weights for {', '.join(missing)} but no such model was given")
    resolved = _resolve_modules(lora, models)
    out = dict(models)
    if strength == 0:
        return out
    for comp, deltas in resolved.items():
        base = dict(models[comp].named_modules())
        model = share_copy(models[comp], {id(_weight(base[path])) for path in deltas})
        named = dict(model.named_modules())
        with torch.no_grad():
            for path, delta in deltas.items():
                weight = _weight(named[path])
                weight.add_((strength * delta_weight(delta, weight.shape)).to(weight.dtype))
        out[comp] = model.eval()
    return out


def share_copy(model: Any, fresh: set[int]) -> Any:
    """A copy of `model` whose parameters with ids in `fresh` are real copies and whose other parameters
    are new `Parameter` objects on the same storage as `model`'s (buffers are copied). Moving or converting
    the copy (`.to()`, `.half()`) rebinds its own parameters and leaves `model` as it was; writing into a
    shared parameter in place would change both, so only the `fresh` ones may be patched."""
    import torch

    memo: dict[int, Any] = {id(p): torch.nn.Parameter(p.detach(), requires_grad=p.requires_grad)
                            for p in model.parameters() if id(p) not in fresh}
    return copy.deepcopy(model, memo)


def subset(lora: LoraWeights, components: tuple[str, ...]) -> LoraWeights:
    """The part of a LoRA for some components."""
    return LoraWeights(lora.name, {c: d for c, d in lora.deltas.items() if c in components}, lora.layout,
                       lora.ignored, lora.embeddings)


def token_rows(clip: Any, lora: LoraWeights) -> dict[int, Any]:
    """token id → vector for the LoRA's bundled embeddings on this CLIP encoder (`with_token_rows`)."""
    rows: dict[int, Any] = {}
    width = int(clip.input_embeddings().weight.shape[1])
    for word, vectors in lora.embeddings.items():
        ids = clip.token_ids(word)
        if vectors.shape[1] != width:
            raise LoraError(f"LoRA {lora.name!r}: the embedding of {word!r} is {vectors.shape[1]} wide but this CLIP's "
                            f"token embeddings are {width}; the LoRA was made for another CLIP")
        if len(ids) != vectors.shape[0]:
            raise LoraError(f"LoRA {lora.name!r}: the embedding of {word!r} has {vectors.shape[0]} vector(s) but this "
                            f"CLIP's tokenizer splits {word!r} into {len(ids)} token(s); the LoRA was made for another "
                            "tokenizer")
        rows.update(zip(ids, vectors, strict=True))
    return rows


def patch_clip(clip: Any, lora: LoraWeights, strength: float = 1.0) -> Any:
    """A copy of a CLIP encoder with the LoRA's text-tower weights merged at `strength` (a copy of the
    tower; `text_encoder.*` / `lora_te_*` keys) and its bundled embeddings in its token table (whole,
    whatever the strength: a token is the word or not); `clip` itself when the LoRA has neither. The
    input encoder is not changed."""
    out = clip
    if lora.deltas.get("text_encoder") and strength != 0:
        tower = patch({"text_encoder": clip.text_tower()}, subset(lora, ("text_encoder",)), strength)
        out = clip.with_text_tower(tower["text_encoder"])
    if not lora.embeddings:
        return out
    from ..unclip.api import with_token_rows

    return with_token_rows(out, token_rows(out, lora))
