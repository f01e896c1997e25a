"""Ranking phrases with CLIP: fill a caption template's slots with the words an image matches best.

A vocabulary is an ordered mapping slot → candidate phrases; the template names the slots
(`"a {size} {color} {shape}"`). Coordinate ascent: each slot starts with its best phrase when the
other slots are left out of the caption, then, pass after pass, each slot takes the phrase whose
whole caption (the other slots at their current choice) is nearest the image embedding (cosine),
until no slot changes. Each pass encodes Σ|phrases| captions per image, not their product.

Calibration against reference images of the domain (optional): CLIP's image and text embeddings sit in
two separate cones (the modality gap), and a domain's images share much of their embedding. Given
reference image embeddings, the images are centred on the references' mean and every caption on the
mean of captions drawn at random from the vocabulary (each renormalised) before the cosine, so that
what is ranked is how an image differs from the domain's typical image against how a caption differs
from the typical caption. `calibrated` names the slots ranked so (the others by plain cosine): on
the Shapes CLIP it corrects colours and costs shapes of soft, generated images.

A cache of labelled reference images (Tip-Adapter, Zhang et al. 2022; training-free): given each
reference's phrase per slot, a slot's phrase also scores by how close the image is to the
references labelled with it, exp(-sharpness · (1 - cos)) summed over them and divided by their
count (so an unevenly drawn cache favours no phrase), weighted by `cache_weight` and added to the
zero-shot logits (100 · cosine); the cosine is taken in what is left of the embeddings once the
directions of the other slots' labels are projected out. Slots no reference is labelled for rank zero-shot only; a phrase
no reference carries (a user's extra word) gets the mean cache score of the slot's other phrases; a reference labelled
with a phrase the slot's list lacks (a trimmed vocabulary) counts as unlabelled for that slot.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\|([^{}]*))?\}")  # {slot} or {slot|word when left out}


@dataclass(frozen=True)
class Caption:
    """The chosen phrase of every slot, the caption they fill, and its cosine similarity with the image."""

    text: str
    choices: dict[str, str]
    score: float


def parse_vocabulary(text: str) -> dict[str, list[str]]:
    """'slot: phrase, phrase, ...' per line → {slot: [phrases]} (a repeated slot extends its list)."""
    vocab: dict[str, list[str]] = {}
    for n, line in enumerate((ln for ln in text.splitlines() if ln.strip()), start=1):
        name, sep, rest = line.partition(":")
        name = name.strip()
        phrases = [p.strip() for p in rest.split(",") if p.strip()]
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not phrases:
            raise ValueError(f"vocabulary line {n} is {line.strip()!r}; expected 'slot: phrase, phrase, ...' with "
                             "a slot name of letters, digits and _ (e.g. 'color: red, green, blue')")
        vocab.setdefault(name, [])
        vocab[name] += [p for p in phrases if p not in vocab[name]]
    return vocab


def fill(template: str, choices: dict[str, str]) -> str:
    """The template with each slot's phrase (a slot without one takes its default word, or is left out),
    spaces collapsed."""
    text = SLOT.sub(lambda m: choices.get(m.group(1)) or m.group(2) or "", template)
    return re.sub(r"\s+", " ", text).strip(" ,")


def full_template(template: str, vocab: dict[str, list[str]]) -> str:
    """The template, with every vocabulary slot it does not name appended at the end (user word lists)."""
    named = {m.group(1) for m in SLOT.finditer(template)}
    missing = [s for s in vocab if s not in named]
    unknown = named - set(vocab)
    if unknown:
        raise ValueError(f"the template names {sorted(unknown)} but the vocabulary has no such list; add "
                         f"'{sorted(unknown)[0]}: ...' to the vocabulary or remove the slot")
    return " ".join([template, *("{" + s + "}" for s in missing)])


def random_captions(template: str, vocab: dict[str, list[str]], n: int, seed: int = 0) -> list[str]:
    """n captions of the (full) template with every slot filled by a phrase drawn at random."""
    rng = random.Random(seed)
    return [fill(template, {slot: rng.choice(phrases) for slot, phrases in vocab.items()}) for _ in range(n)]


def _onehot(labels: Sequence[dict[str, str]], slot: str, phrases: list[str]):
    """(M, |phrases|) one-hot of the references' phrase for `slot`. Rows of references unlabelled for
    the slot are 0, and so are those labelled with a phrase the list lacks (a trimmed vocabulary
    beside a full domain's labels): a vote for no candidate."""
    import torch

    onehot = torch.zeros(len(labels), len(phrases))
    index = {p: i for i, p in enumerate(phrases)}
    for k, label in enumerate(labels):
        i = index.get(label.get(slot))
        if i is not None:
            onehot[k, i] = 1
    return onehot


def cache_logits(images, reference, labels: Sequence[dict[str, str]], vocab: dict[str, list[str]],
                 sharpness: float) -> dict:
    """Tip-Adapter's cache term per labelled slot: {slot: (B, |phrases|)} for normalised image embeddings
    (B, D) and reference embeddings (M, D) whose phrases per slot are `labels` (M dicts).

    A whole-scene embedding is near another mostly for what the slot is not about (the background
    and the position weigh more than the colour of a small object), so each slot's affinities are
    taken after centring on the references' mean and projecting out the directions along which the
    references' other labelled slots vary (their per-phrase mean embeddings).
    """
    import torch

    normalize = torch.nn.functional.normalize
    if len(labels) != reference.shape[0]:
        raise ValueError(f"{len(labels)} reference labels for {reference.shape[0]} reference images; give one "
                         "{slot: phrase} object per reference image")
    reference = normalize(reference.float(), dim=-1)
    mean = reference.mean(0)
    onehots = {slot: _onehot(labels, slot, phrases) for slot, phrases in vocab.items()}
    out = {}
    for slot, onehot in onehots.items():
        counts = onehot.sum(0)
        if not counts.any():
            continue
        others = [(oh.T @ reference)[oh.sum(0) > 0] / oh.sum(0)[oh.sum(0) > 0, None] - mean
                  for other, oh in onehots.items() if other != slot and oh.any()]
        basis = torch.linalg.qr(torch.cat(others).T)[0] if others else reference.new_zeros(reference.shape[1], 0)

        def residual(x, basis=basis):
            x = x - mean
            return normalize(x - (x @ basis) @ basis.T, dim=-1)

        affinity = torch.exp(-sharpness * (1 - residual(images) @ residual(reference).T))
        logits = (affinity @ onehot) / counts.clamp(min=1)
        seen = counts > 0
        logits[:, ~seen] = logits[:, seen].mean(1, keepdim=True)
        out[slot] = logits
    return out


def interrogate(encode_text, image_embeds, template: str, vocab: dict[str, list[str]], passes: int = 4,
                reference=None, text_samples: int = 256, calibrated: Collection[str] | None = None,
                reference_labels: Sequence[dict[str, str]] | None = None, cache_weight: float = 0.0,
                cache_sharpness: float = 5.0) -> list[Caption]:
    """Captions for image embeddings (B, D); `encode_text(list[str]) -> (N, D)` is CLIP's text tower.

    reference: image embeddings (M, D) of the domain's images to calibrate against (None: plain
    cosine); `text_samples` random captions give the text side's mean; `calibrated`: the slots ranked
    with it (None: all). `reference_labels` (one {slot: phrase} per reference) with `cache_weight` > 0
    adds the Tip-Adapter cache term to the labelled slots. The captions' `score` is the plain cosine
    either way.
    """
    import torch

    normalize = torch.nn.functional.normalize
    template = full_template(template, vocab)
    images = normalize(image_embeds.float(), dim=-1)
    cache: dict[str, torch.Tensor] = {}

    def embed(texts: list[str]) -> torch.Tensor:
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            emb = normalize(encode_text(new).float(), dim=-1)
            cache.update(zip(new, emb, strict=True))
        return torch.stack([cache[t] for t in texts])

    ranked_images, text_mean = images, None
    unknown = set(calibrated or ()) - set(vocab)
    if unknown:
        raise ValueError(f"calibrated slots {sorted(unknown)} are not in the vocabulary {list(vocab)}")
    if reference is not None:
        if reference.shape[0] < 1 or reference.shape[-1] != images.shape[-1]:
            raise ValueError(f"reference embeddings must be (M ≥ 1, {images.shape[-1]}), got {tuple(reference.shape)}")
        ranked_images = normalize(images - normalize(reference.float(), dim=-1).mean(0), dim=-1)
        text_mean = normalize(encode_text(random_captions(template, vocab, text_samples)).float(), dim=-1).mean(0)

    cache = {}
    if reference is not None and reference_labels is not None and cache_weight > 0:
        cache = cache_logits(images, reference, reference_labels, vocab, cache_sharpness)

    def scores(texts: list[str], row: int, slot: str) -> torch.Tensor:
        emb = embed(texts)
        if text_mean is None or (calibrated is not None and slot not in calibrated):
            zero_shot = emb @ images[row]
        else:
            zero_shot = normalize(emb - text_mean, dim=-1) @ ranked_images[row]
        if slot not in cache:
            return zero_shot
        return 100 * zero_shot + cache_weight * cache[slot][row]

    out = []
    for row in range(images.shape[0]):
        choices: dict[str, str] = {}
        for slot, phrases in vocab.items():  # start: each slot alone
            s = scores([fill(template, {slot: p}) for p in phrases], row, slot)
            choices[slot] = phrases[int(s.argmax())]
        for _ in range(passes):
            changed = False
            for slot, phrases in vocab.items():
                s = scores([fill(template, {**choices, slot: p}) for p in phrases], row, slot)
                best = phrases[int(s.argmax())]
                changed |= best != choices[slot]
                choices[slot] = best
            if not changed:
                break
        text = fill(template, choices)
        out.append(Caption(text, dict(choices), float(embed([text])[0] @ images[row])))
    return out
