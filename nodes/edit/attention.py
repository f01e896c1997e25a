"""Prompt-to-Prompt on the unCLIP decoder: attention processors that record and replace attention maps.

The decoder's SimpleCrossAttn blocks attend in one softmax to `[4 image tokens | L prompt tokens |
H·W spatial tokens]`. `EditAttnProcessor` computes that attention with explicit probabilities so an
`AttentionEdit` controller can record them (source run) or replace them (edited run), after Hertz
et al. 2022 (docs/editing.md). `installed(unet, controller)` always restores the original
processors, so the shared, cached decoder is never left modified.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

Mode = Literal["swap", "refine", "reweight"]


# --- tokens and alignment ---------------------------------------------------------------------

def prompt_tokens(clip: Any, text: str) -> list[int]:
    """Token ids of `text` with the loaded CLIP's own tokenizer, without start/end tokens or padding."""
    if hasattr(clip, "tokenize"):  # open_clip: (1, L) with SOT ... EOT then zeros
        row = [int(x) for x in clip.tokenize([text])[0].tolist()]
        n = sum(1 for x in row if x != 0)
        return row[1:n - 1]
    tok = clip.tokenizer  # transformers CLIPTokenizer
    ids = tok(text, truncation=True, max_length=int(clip.context_length)).input_ids
    return [int(x) for x in ids[1:-1]]


def token_strings(clip: Any, ids: list[int]) -> list[str]:
    """Readable token strings (for error messages)."""
    tok = getattr(clip, "tokenizer", None)
    if hasattr(tok, "convert_ids_to_tokens"):
        return [str(t) for t in tok.convert_ids_to_tokens(ids)]
    decoder = getattr(tok, "decoder", None)
    if isinstance(decoder, dict):
        return [decoder.get(i, str(i)) for i in ids]
    return [str(i) for i in ids]


@dataclass
class Alignment:
    """How the target prompt's context positions take the source's maps.

    mapper: (L, L) weights, row = target position, column = source position; alpha: (L,) 1 where
    the target position takes the (mapped) source maps, 0 where it keeps its own.
    """

    mapper: torch.Tensor
    alpha: torch.Tensor
    source_tokens: list[int] = field(default_factory=list)
    target_tokens: list[int] = field(default_factory=list)


def align(source: list[int], target: list[int], context: int, mode: Mode) -> Alignment:
    """Token alignment of two prompts over the full context (SOT at 0, prompt tokens from 1, then EOT).

    Matching token runs map one to one. A replaced run (word swap) maps every target token to the
    mean of the source run's maps in 'swap' mode; in 'refine' and 'reweight' modes it keeps its own
    maps, as do inserted tokens. Padding keeps its own maps (it is masked out anyway).
    """
    ls, lt = len(source), len(target)
    if max(ls, lt) + 2 > context:
        raise ValueError(f"prompts of {max(ls, lt)} tokens do not fit the context of {context}; shorten them")
    mapper = torch.zeros(context, context)
    alpha = torch.zeros(context)
    mapper[0, 0] = alpha[0] = 1.0  # start token
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, source, target, autojunk=False).get_opcodes():
        if op == "equal":
            for k in range(i2 - i1):
                mapper[1 + j1 + k, 1 + i1 + k] = 1.0
                alpha[1 + j1 + k] = 1.0
        elif op == "replace" and mode == "swap":
            for j in range(j1, j2):
                mapper[1 + j, 1 + i1:1 + i2] = 1.0 / (i2 - i1)
                alpha[1 + j] = 1.0
        # 'insert', 'delete', and 'replace' outside swap mode: the target keeps its own maps
    mapper[1 + lt, 1 + ls] = alpha[1 + lt] = 1.0  # end token
    return Alignment(mapper, alpha, list(source), list(target))


def word_positions(clip: Any, target: list[int], word: str) -> list[int]:
    """Context positions of every occurrence of `word`'s tokens in the target prompt."""
    ids = prompt_tokens(clip, word.strip())
    if not ids:
        raise ValueError("the word to re-weight is empty; give a word of the target prompt")
    n = len(ids)
    found = [1 + i + k for i in range(len(target) - n + 1) if target[i:i + n] == ids for k in range(n)]
    if not found:
        raise ValueError(f"the word {word!r} is not in the target prompt (its tokens: "
                         f"{' '.join(token_strings(clip, target))}); give a word of the target prompt")
    return found


# --- the controller ---------------------------------------------------------------------------

class AttentionEdit:
    """Records (source run) or replaces (edited run) attention probabilities, step by step.

    `n_extra`: the image tokens in front of the prompt tokens (text_proj.clip_extra_context_tokens);
    `cfg`: the UNet batch is [uncond; cond] and only the conditional half is recorded and edited.
    """

    def __init__(self, n_extra: int, cfg: bool, cross_steps: int, self_steps: int,
                 alignment: Alignment | None = None, equalizer: torch.Tensor | None = None,
                 image_tokens: bool = False):
        self.n_extra = n_extra
        self.image_tokens = image_tokens  # also inject the maps over the image tokens (cross steps)
        self.cfg = cfg
        self.cross_steps = cross_steps
        self.self_steps = self_steps
        self.alignment = alignment
        self.equalizer = equalizer  # (L,) scale per target context position, or None
        self.mode: Literal["off", "record", "inject"] = "off"
        self.step = 0
        self.store: dict[tuple[int, str], tuple[torch.Tensor | None, torch.Tensor | None]] = {}

    def set_step(self, i: int) -> dict:
        """The sampler's `extra_unet_kwargs` hook: remember the step, add no UNet arguments."""
        self.step = i
        return {}

    def __call__(self, name: str, probs: torch.Tensor, enc_len: int) -> torch.Tensor:
        """probs: (B·heads, N, enc_len + N) attention probabilities of one layer; returns them edited."""
        if self.mode == "off":
            return probs
        rows = probs.shape[0]
        cond = slice(rows // 2, rows) if self.cfg else slice(0, rows)
        text = slice(self.n_extra, enc_len)
        spatial = slice(enc_len, probs.shape[-1])
        i = self.step
        if self.mode == "record":
            if i < max(self.cross_steps, self.self_steps):
                context = slice(0 if self.image_tokens else self.n_extra, enc_len)
                self.store[(i, name)] = (probs[cond, :, context].clone() if i < self.cross_steps else None,
                                         probs[cond, :, spatial].clone() if i < self.self_steps else None)
            return probs
        src_text, src_self = self.store.get((i, name), (None, None))
        if src_text is None and src_self is None:
            return probs
        probs = probs.clone()
        if src_text is not None:
            if self.image_tokens:
                probs[cond, :, :self.n_extra] = src_text[..., :self.n_extra]
                src_text = src_text[..., self.n_extra:]
            own = probs[cond, :, text]  # (b, N, L)
            if self.alignment is not None:
                mapped = src_text @ self.alignment.mapper.to(src_text.dtype).T
                a = self.alignment.alpha.to(src_text.dtype)
                new = a * mapped + (1 - a) * own
            else:
                new = src_text
            if self.equalizer is not None:
                new = new * self.equalizer.to(new.dtype)
            probs[cond, :, text] = new
        if src_self is not None:
            probs[cond, :, spatial] = src_self
        return probs


class EditAttnProcessor:
    """diffusers' `AttnAddedKVProcessor` (SimpleCrossAttn blocks) with explicit, editable probabilities."""

    def __init__(self, name: str, controller: AttentionEdit):
        self.name = name
        self.controller = controller

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        residual = hidden_states
        hidden_states = hidden_states.view(hidden_states.shape[0], hidden_states.shape[1], -1).transpose(1, 2)
        batch_size, sequence_length, _ = hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        enc_len = encoder_hidden_states.shape[1]
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.add_k_proj(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.add_v_proj(encoder_hidden_states))
        if not attn.only_cross_attention:
            key = torch.cat([key, attn.head_to_batch_dim(attn.to_k(hidden_states))], dim=1)
            value = torch.cat([value, attn.head_to_batch_dim(attn.to_v(hidden_states))], dim=1)
        probs = attn.get_attention_scores(query, key, attention_mask)  # (B·heads, N, enc_len [+ N])
        probs = self.controller(self.name, probs, enc_len)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return hidden_states.transpose(-1, -2).reshape(residual.shape) + residual


def editable_layers(unet) -> list[str]:
    """Names of the attention processors this module can replace (SimpleCrossAttn-style, added K/V)."""
    from diffusers.models.attention_processor import AttnAddedKVProcessor, AttnAddedKVProcessor2_0

    return [name for name, proc in unet.attn_processors.items()
            if isinstance(proc, AttnAddedKVProcessor | AttnAddedKVProcessor2_0 | EditAttnProcessor)]


@contextmanager
def installed(unet, controller: AttentionEdit) -> Iterator[list[str]]:
    """Install `EditAttnProcessor`s on the decoder's cross-attention layers; restore the originals on exit.

    The UNet is the shared, cached model: the originals come back however the block ends (an error,
    a cancelled run), so no other node ever sees the edit processors.
    """
    original = unet.attn_processors  # name → processor object
    names = editable_layers(unet)
    if not names:
        raise ValueError("this decoder has no cross-attention layers with added key/value projections "
                         "(SimpleCrossAttn blocks, as in Karlo); Prompt-to-Prompt needs them")
    procs = {name: (EditAttnProcessor(name, controller) if name in names else proc)
             for name, proc in original.items()}
    unet.set_attn_processor(procs)
    try:
        yield names
    finally:
        unet.set_attn_processor(dict(original))  # (diffusers pops from the dict it is given)
