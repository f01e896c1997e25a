"""CLIP encoders for unCLIP: open_clip folders (our shipped model) and Karlo's transformers encoders.

Both give the same thing to the prior and the decoder: a `TextEncoding` with the pooled, projected
text embedding `(B, D)`, the final-layer token states `(B, L, W)` and the token mask `(B, L)`, and
an image embedding `(B, D)` from images `(B, 3, H, W)` in [0, 1].

open_clip's own `encode_text` returns only the pooled embedding, so the token states are computed
here with the model's own modules (token_embedding → transformer(causal mask) → ln_final), exactly
as `encode_text` does before pooling. A Karlo root has a transformers `CLIPTextModelWithProjection`
plus `CLIPTokenizer` (prompts padded to the tokenizer's max length, as `UnCLIPPipeline` does) and,
only in the image-variation layout, a `CLIPVisionModelWithProjection` under `image_encoder/`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

SHAPES_CLIP = "ShapesCLIP"  # the registered open_clip config name of our shipped CLIP
CONFIG_FILE = Path(__file__).with_name("shapes_clip.json")
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"


@dataclass(frozen=True)
class TextEncoding:
    """An encoded batch of prompts."""

    embeds: torch.Tensor  # (B, D) pooled, projected text embedding (not normalised)
    hidden: torch.Tensor  # (B, L, W) final-layer token states
    mask: torch.Tensor  # (B, L) bool, True on real tokens

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def expand(self, batch: int) -> TextEncoding:
        """Broadcast a batch-1 encoding (a negative prompt) to `batch` rows."""
        if self.embeds.shape[0] == batch:
            return self
        if self.embeds.shape[0] != 1:
            raise ValueError(f"cannot broadcast a text encoding of batch {self.embeds.shape[0]} to {batch}")
        return TextEncoding(self.embeds.expand(batch, -1), self.hidden.expand(batch, -1, -1),
                            self.mask.expand(batch, -1))

    def repeat_interleave(self, n: int) -> TextEncoding:
        if n == 1:
            return self
        return TextEncoding(self.embeds.repeat_interleave(n, 0), self.hidden.repeat_interleave(n, 0),
                            self.mask.repeat_interleave(n, 0))

    @staticmethod
    def cat(encodings: list[TextEncoding]) -> TextEncoding:
        return TextEncoding(torch.cat([e.embeds for e in encodings]), torch.cat([e.hidden for e in encodings]),
                            torch.cat([e.mask for e in encodings]))


def register_shapes_config() -> None:
    """Register our custom open_clip model config under the name `ShapesCLIP` (idempotent)."""
    import open_clip
    from open_clip import factory

    if SHAPES_CLIP not in factory._MODEL_CONFIGS:
        # add_model_config registers a file under its stem; our file is named for Python, so copy it
        with open(CONFIG_FILE, encoding="utf-8") as f:
            factory._MODEL_CONFIGS[SHAPES_CLIP] = json.load(f)
    assert SHAPES_CLIP in open_clip.list_models()


def _square_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop (B, 3, H, W) to a square, then resize to `size` (bicubic, antialiased)."""
    _, _, h, w = images.shape
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        images = images[:, :, top:top + s, left:left + s]
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return images


class OpenClipEncoder(torch.nn.Module):
    """An open_clip model (any text-tower CLIP with a causal transformer) with token-state access."""

    kind = "open_clip"

    def __init__(self, model, tokenizer, image_size: int, mean, std):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[-1])

    @property
    def context_length(self) -> int:
        return int(self.model.positional_embedding.shape[0])

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))

    def token_ids(self, word: str) -> list[int]:
        """The token ids of one word (no start / end tokens)."""
        tokens = [t for t in self.tokenize([word])[0].tolist() if t != 0]
        return tokens[1:-1]  # between the start and end-of-text tokens

    def encode_tokens(self, tokens: torch.Tensor) -> TextEncoding:
        """tokens (B, L) int64 → TextEncoding; differentiable (used by training)."""
        from open_clip.transformer import text_global_pool

        m = self.model
        x = m.token_embedding(tokens) + m.positional_embedding  # (B, L, W)
        x = m.transformer(x, attn_mask=m.attn_mask)
        hidden = m.ln_final(x)  # (B, L, W)
        pooled = text_global_pool(hidden, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        embeds = m.text_projection(pooled) if isinstance(m.text_projection, torch.nn.Linear) \
            else pooled @ m.text_projection
        return TextEncoding(embeds, hidden, tokens != 0)

    def encode_text(self, texts: list[str]) -> TextEncoding:
        dev = self.mean.device
        return self.encode_tokens(self.tokenize(texts).to(dev))

    def input_embeddings(self) -> torch.nn.Embedding:
        return self.model.token_embedding

    def with_input_embeddings(self, embedding: torch.nn.Embedding) -> OpenClipEncoder:
        """A copy sharing every weight but the token embedding table, which is `embedding`."""
        model = _shallow_module_copy(self.model)
        model.token_embedding = embedding
        out = _shallow_module_copy(self)
        out.model = model
        return out

    def text_tower(self) -> torch.nn.Module:
        """The module whose paths name the text tower's layers in a LoRA file (`text_encoder.<path>`):
        the open_clip model (`transformer.resblocks.0.attn`, `….mlp.c_fc`, …)."""
        return self.model

    def with_text_tower(self, tower: torch.nn.Module) -> OpenClipEncoder:
        """A copy whose `text_tower()` is `tower` (e.g. a LoRA-patched copy of it)."""
        out = _shallow_module_copy(self)
        out.model = tower
        return out

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] → normalised (B, 3, S, S) at the tower's input size."""
        images = _square_resize(images.float().to(self.mean.device), self.image_size)
        return (images - self.mean) / self.std

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] → (B, D) image embedding (not normalised)."""
        return self.model.encode_image(self.preprocess(images))


class TransformersClipEncoder(torch.nn.Module):
    """Karlo's CLIP: a transformers text encoder + tokenizer, optionally a vision encoder."""

    kind = "transformers"

    def __init__(self, text_encoder, tokenizer, image_encoder=None, image_size: int = 224,
                 mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711)):
        super().__init__()
        self.text_encoder = text_encoder.eval()
        self.tokenizer = tokenizer
        self.image_encoder = image_encoder.eval() if image_encoder is not None else None
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def embed_dim(self) -> int:
        return int(self.text_encoder.config.projection_dim)

    @property
    def context_length(self) -> int:
        return int(self.tokenizer.model_max_length)

    def encode_text(self, texts: list[str]) -> TextEncoding:
        # exactly UnCLIPPipeline._encode_prompt: pad to max length, truncate
        tok = self.tokenizer(list(texts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        dev = self.mean.device
        out = self.text_encoder(tok.input_ids.to(dev))
        return TextEncoding(out.text_embeds, out.last_hidden_state, tok.attention_mask.bool().to(dev))

    def token_ids(self, word: str) -> list[int]:
        """The token ids of one word (no start / end tokens)."""
        return list(self.tokenizer(word, add_special_tokens=False).input_ids)

    def input_embeddings(self) -> torch.nn.Embedding:
        return self.text_encoder.get_input_embeddings()

    def with_input_embeddings(self, embedding: torch.nn.Embedding) -> TransformersClipEncoder:
        """A copy sharing every weight but the token embedding table, which is `embedding`."""
        emb_parent = _shallow_module_copy(self.text_encoder.text_model.embeddings)
        emb_parent.token_embedding = embedding
        text_model = _shallow_module_copy(self.text_encoder.text_model)
        text_model.embeddings = emb_parent
        text_encoder = _shallow_module_copy(self.text_encoder)
        text_encoder.text_model = text_model
        out = _shallow_module_copy(self)
        out.text_encoder = text_encoder
        return out

    def text_tower(self) -> torch.nn.Module:
        """The module whose paths name the text tower's layers in a LoRA file, as diffusers and kohya
        name them (`text_encoder.text_model.encoder.layers.0.self_attn.q_proj`, `lora_te_text_model_…`)."""
        return self.text_encoder

    def with_text_tower(self, tower: torch.nn.Module) -> TransformersClipEncoder:
        """A copy whose `text_tower()` is `tower` (e.g. a LoRA-patched copy of it)."""
        out = _shallow_module_copy(self)
        out.text_encoder = tower
        return out

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        if self.image_encoder is None:
            raise ValueError("this CLIP is text-only (a Karlo text-to-image checkpoint has no image encoder); "
                             "CLIP Image Encode needs an image-variation checkpoint with image_encoder/ and "
                             "feature_extractor/, or the shipped shapes-unclip CLIP")
        images = _square_resize(images.float().to(self.mean.device), self.image_size)
        return self.image_encoder((images - self.mean) / self.std).image_embeds


def _shallow_module_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of a module object with tables of its own (submodules, parameters, buffers, hooks), so
    replacing or registering something on the copy leaves the original as it was. The tensors are the
    original's: never move or convert such a copy in place (`.to()`, `.double()`), which would change
    the original's weights too."""
    import copy

    out = copy.copy(module)
    for name, value in vars(module).items():  # the tables: dicts and sets in the instance's __dict__
        if isinstance(value, dict | set):
            out.__dict__[name] = copy.copy(value)
    return out


def with_token_rows(clip, rows: dict[int, torch.Tensor]):
    """A copy of a CLIP encoder whose token embedding rows `rows` (token id → vector) are replaced;
    every other weight is shared with `clip`, which is not changed."""
    import copy

    table = copy.deepcopy(clip.input_embeddings())
    with torch.no_grad():
        for i, vec in rows.items():
            table.weight[i] = vec.to(table.weight)
    return clip.with_input_embeddings(table)


def is_open_clip_dir(path: Path) -> bool:
    return (path / OPEN_CLIP_CONFIG).is_file()


def load_open_clip(path: Path) -> OpenClipEncoder:
    import open_clip

    with open(path / OPEN_CLIP_CONFIG, encoding="utf-8") as f:
        cfg = json.load(f)
    # local-dir: reads the config and the weights file of the folder (safetensors preferred)
    model = open_clip.create_model(f"local-dir:{path}", device="cpu")
    model = model.float().eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{path}")
    pre = cfg.get("preprocess_cfg", {})
    size = pre.get("size", cfg["model_cfg"]["vision_cfg"].get("image_size", 224))
    size = size[0] if isinstance(size, list | tuple) else size
    mean = pre.get("mean", open_clip.OPENAI_DATASET_MEAN)
    std = pre.get("std", open_clip.OPENAI_DATASET_STD)
    return OpenClipEncoder(model, tokenizer, size, mean, std)


def load_transformers_clip(root: Path) -> TransformersClipEncoder:
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    text_encoder = CLIPTextModelWithProjection.from_pretrained(root / "text_encoder", torch_dtype=torch.float32, low_cpu_mem_usage=False)
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
    image_encoder, size, mean, std = None, 224, None, None
    if (root / "image_encoder").is_dir():
        from transformers import CLIPVisionModelWithProjection

        image_encoder = CLIPVisionModelWithProjection.from_pretrained(root / "image_encoder",
                                                                      torch_dtype=torch.float32, low_cpu_mem_usage=False)
        size = image_encoder.config.image_size
        pre = root / "feature_extractor" / "preprocessor_config.json"
        if pre.is_file():
            cfg = json.loads(pre.read_text())
            mean, std = cfg.get("image_mean"), cfg.get("image_std")
    kw = {"mean": mean, "std": std} if mean is not None and std is not None else {}
    return TransformersClipEncoder(text_encoder, tokenizer, image_encoder, size, **kw)


def load_clip(path: str | Path) -> OpenClipEncoder | TransformersClipEncoder:
    """Load CLIP from an open_clip folder, a bundle with `clip/`, or a Karlo root (`text_encoder/`)."""
    path = Path(path)
    if is_open_clip_dir(path):
        return load_open_clip(path)
    if is_open_clip_dir(path / "clip"):
        return load_open_clip(path / "clip")
    if (path / "text_encoder").is_dir() and (path / "tokenizer").is_dir():
        return load_transformers_clip(path)
    raise FileNotFoundError(f"no CLIP model in {path}: expected {OPEN_CLIP_CONFIG} (open_clip), clip/ "
                            "(a shapes-unclip bundle) or text_encoder/ + tokenizer/ (a Karlo checkpoint)")


def save_open_clip(model, path: Path, preprocess_cfg: dict, model_cfg: dict, fp16: bool = True) -> None:
    """Write an open_clip folder loadable with `local-dir:`: config + a single safetensors file."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    for stale in list(path.glob("*.safetensors")) + list(path.glob("*.bin")) + list(path.glob("*.pth")):
        stale.unlink()  # local-dir picks up any weights file left in the folder
    sd = {k: (v.half() if fp16 and v.is_floating_point() else v).contiguous()
          for k, v in model.state_dict().items()}
    save_file(sd, str(path / OPEN_CLIP_WEIGHTS))
    cfg = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}
    (path / OPEN_CLIP_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
