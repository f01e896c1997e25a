"""The autoregressive prior: CLIP text encoding → CLIP image embedding as a sequence of discrete codes.

DALL·E 2's AR prior, scaled down. The image embedding (D) is reduced with PCA fitted on training
embeddings, each of the K kept components (most variance first) is quantised into equal-mass bins
(`CodeBook`), and a decoder-only transformer (`ARPrior`) predicts the K codes one after another
under a causal mask, with the text encoding as a prefix: [token states, pooled text embedding,
codes]. Sampling draws codes with temperature and top-k from a seeded generator, with
classifier-free guidance on the logits (the model is trained with some empty captions); codes →
bin centres → inverse PCA → image embedding. A folder holds `config.json` and `model.safetensors`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .clip import TextEncoding

Callback = Callable[[int, int, "torch.Tensor | None"], None]
CONFIG = "config.json"
WEIGHTS = "model.safetensors"


@dataclass
class ARPriorConfig:
    embedding_dim: int  # D, the CLIP image embedding
    text_width: int  # W, the CLIP text tower's token states
    context_length: int  # L, the tokenizer's length
    components: int = 32  # K, PCA components kept (one code each)
    bins: int = 128  # codes per component
    width: int = 128
    layers: int = 4
    heads: int = 4
    dropout: float = 0.0


class CodeBook(nn.Module):
    """PCA + per-component quantiser: (B, D) embeddings ↔ (B, K) integer codes."""

    def __init__(self, dim: int, components: int, bins: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("basis", torch.zeros(components, dim))  # rows: principal directions
        self.register_buffer("edges", torch.zeros(components, bins - 1))  # inner bin edges, ascending
        self.register_buffer("centres", torch.zeros(components, bins))  # mean value of each bin

    @torch.no_grad()
    def fit(self, emb: torch.Tensor) -> CodeBook:
        """Fit the PCA and equal-mass bins on training embeddings (N, D); N should be ≫ bins."""
        k, bins = self.centres.shape
        if emb.shape[0] < 2 * bins:
            raise ValueError(f"fitting {bins} bins needs at least {2 * bins} embeddings, got {emb.shape[0]}")
        emb = emb.float()
        self.mean.copy_(emb.mean(0))
        _, _, vh = torch.linalg.svd(emb - self.mean, full_matrices=False)
        self.basis.copy_(vh[:k])
        z = self.project(emb)  # (N, K)
        q = torch.linspace(0, 1, bins + 1, dtype=z.dtype)[1:-1]
        self.edges.copy_(torch.quantile(z, q, dim=0).T.contiguous())
        codes = self._quantise(z)
        ones = torch.ones_like(z)
        sums = torch.zeros(k, bins).scatter_add_(1, codes.T, z.T)
        counts = torch.zeros(k, bins).scatter_add_(1, codes.T, ones.T)
        # an empty bin (ties in the quantiles) keeps its lower edge as centre; it is never the argmax of data
        lower = torch.cat([self.edges[:, :1], self.edges], 1)
        self.centres.copy_(torch.where(counts > 0, sums / counts.clamp_min(1), lower))
        return self

    def project(self, emb: torch.Tensor) -> torch.Tensor:
        return (emb.float() - self.mean) @ self.basis.T

    def _quantise(self, z: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.bucketize(z[:, i].contiguous(), self.edges[i]) for i in range(z.shape[1])], 1)

    def encode(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, D) → (B, K) int64 codes."""
        return self._quantise(self.project(emb))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, K) codes → (B, D) embeddings: bin centres, then the inverse PCA."""
        z = self.centres.T.gather(0, codes)  # (B, K): centres[k, codes[b, k]]
        return z @ self.basis + self.mean


class ARPrior(nn.Module):
    """A decoder-only transformer over [text token states, pooled text embedding, K codes]."""

    def __init__(self, cfg: ARPriorConfig):
        super().__init__()
        self.config = cfg
        self.codebook = CodeBook(cfg.embedding_dim, cfg.components, cfg.bins)
        self.embed_in = nn.Linear(cfg.embedding_dim, cfg.width)
        self.text_in = nn.Linear(cfg.text_width, cfg.width)
        self.code_in = nn.Embedding(cfg.bins, cfg.width)
        # positions of [pooled, tokens] and of the codes apart, so the prefix can be cut to the batch's
        # longest prompt; the prefix's last position predicts code 0, so code K-1 never enters the sequence
        self.text_positions = nn.Parameter(torch.randn(1, 1 + cfg.context_length, cfg.width) * 0.02)
        self.code_positions = nn.Parameter(torch.randn(1, cfg.components - 1, cfg.width) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, 4 * cfg.width, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.bins)

    def check_text(self, text: TextEncoding) -> None:
        cfg = self.config
        if text.hidden.shape[1:] != (cfg.context_length, cfg.text_width) or text.embeds.shape[-1] != cfg.embedding_dim:
            raise ValueError(f"this AR prior expects text of {cfg.context_length} tokens × {cfg.text_width} and a "
                             f"{cfg.embedding_dim}-d embedding (the CLIP it was trained with) but got "
                             f"{tuple(text.hidden.shape[1:])} and {text.embeds.shape[-1]}; encode the prompt with the "
                             "CLIP of the same bundle, or retrain it (python -m train arprior)")

    def logits(self, text: TextEncoding, codes: torch.Tensor) -> torch.Tensor:
        """Next-code logits (B, n + 1, bins) for codes[:, 0..n] given the first n codes (B, n), n < K."""
        mask = text.mask.bool()
        # padding after the longest prompt is masked out anyway: cutting it changes no output, saves compute.
        # The pooled embedding comes last in the prefix, so that the position predicting code 0 is a real
        # token in every row; its position vector is the first one whatever the cut.
        length = max(1, int(mask.sum(1).max()))
        prefix = torch.cat([self.text_in(text.hidden[:, :length].float()) + self.text_positions[:, 1:1 + length],
                            (self.embed_in(text.embeds.float()) + self.text_positions[0, 0])[:, None]], 1)
        n = codes.shape[1]
        x = torch.cat([prefix, self.code_in(codes) + self.code_positions[:, :n]], 1)
        t = x.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)  # True: may not attend
        pad = torch.cat([~mask[:, :length], torch.zeros_like(mask[:, :1]),
                         torch.zeros(codes.shape[0], n, dtype=torch.bool, device=x.device)], 1)
        h = self.blocks(x, mask=causal, src_key_padding_mask=pad)
        return self.head(self.norm(h[:, length:]))

    def loss(self, text: TextEncoding, codes: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of all K codes (B, K) under teacher forcing."""
        lg = self.logits(text, codes[:, :-1])
        return nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), codes.reshape(-1))

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG).write_text(json.dumps({"_class_name": "ARPrior", **asdict(self.config)}, indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, folder / WEIGHTS)


@dataclass
class ARPriorModel:
    """A loaded AR prior, as it flows on a link."""

    prior: ARPrior

    @property
    def embedding_dim(self) -> int:
        return self.prior.config.embedding_dim


SUBFOLDER = "prior_ar"  # inside a shapes-unclip bundle


def load_ar_prior(path: str | Path) -> ARPriorModel:
    """Load an AR prior from a bundle (its `prior_ar/`) or from the folder itself."""
    from safetensors.torch import load_file

    root = Path(path)
    folder = root / SUBFOLDER if (root / SUBFOLDER / CONFIG).is_file() else root
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise FileNotFoundError(f"no AR prior in {root}: expected {SUBFOLDER}/{CONFIG} and {SUBFOLDER}/{WEIGHTS}; "
                                "train one with `python -m train arprior`")
    raw = json.loads((folder / CONFIG).read_text())
    raw.pop("_class_name", None)
    model = ARPrior(ARPriorConfig(**raw))
    model.load_state_dict(load_file(folder / WEIGHTS))
    return ARPriorModel(model.eval())


def _top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def sample_ar_prior(model: ARPriorModel, cond: TextEncoding, uncond: TextEncoding, guidance: float = 1.0,
                    temperature: float = 1.0, top_k: int = 0, generator: torch.Generator | None = None,
                    num_per_prompt: int = 1, callback: Callback | None = None) -> torch.Tensor:
    """Sample CLIP image embeddings, (B × num_per_prompt, D), code by code.

    cond: the prompts (B rows); uncond: the negative prompt (1 or B rows), used when guidance ≠ 1
    (logits = uncond + guidance · (cond − uncond)). temperature 0 takes the most likely code;
    top_k > 0 keeps the k most likely codes. One multinomial draw per code from `generator`.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be ≥ 0, got {temperature}")
    net = model.prior
    net.check_text(cond)
    cond = cond.repeat_interleave(num_per_prompt)
    batch = cond.embeds.shape[0]
    do_cfg = guidance != 1.0
    if do_cfg:
        unc = uncond.expand(batch) if uncond.embeds.shape[0] == 1 else uncond.repeat_interleave(num_per_prompt)
        enc = TextEncoding.cat([unc, cond])
    else:
        enc = cond
    k = net.config.components
    codes = torch.zeros(batch, 0, dtype=torch.long)
    for i in range(k):
        seq = torch.cat([codes, codes]) if do_cfg else codes
        lg = net.logits(enc, seq)[:, -1].float()  # (B or 2B, bins)
        if do_cfg:
            lu, lc = lg.chunk(2)
            lg = lu + guidance * (lc - lu)
        if temperature == 0:
            nxt = lg.argmax(-1, keepdim=True)
        else:
            probs = torch.softmax(_top_k(lg / temperature, top_k), -1)
            nxt = torch.multinomial(probs, 1, generator=generator)
        codes = torch.cat([codes, nxt], 1)
        if callback is not None:
            callback(i + 1, k, None)
    return net.codebook.decode(codes)
