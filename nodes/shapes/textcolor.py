"""Factor Out Colour: take the object colour out of an encoded prompt before the prior sees it.

A prior conditioned on a colour and a shape it never saw together draws the colour but usually not
the shape. This node removes the colour from what the prior sees ("words": re-encode the prompt
without the words that carry it; "linear": move the encoding along a fitted colour direction) and
reads the colour out, so that Recolour Embedding can put it back. Both rest on linear maps of the
text tower fitted on Shapes captions (`fit_text_color_map`, docs/shapes.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import nodegraph
from nodegraph import Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CLIP, CONDITIONING, library_errors
from .recolor import as_map, fitted, least_squares

FIT_SEED = 77
FIT_SCENES = 3000
BATCH = 500
# the read-out's largest entry above this: the prompt names that colour (shipped CLIP: colour-free prompts
# score at most 0.26, prompts of held-out pairs at least 0.40)
NAMED = 0.33
DEFAULT_STRENGTH = 2.0  # the trade measured on the shipped models: docs/editing.md
MAX_WORDS = 3  # words "words" may drop from one prompt
# a word read on its own (punctuation stripped) names a colour above this (shipped CLIP, tuning sets: colour words
# and their lexicon synonyms at least 0.56, every other word at most 0.45: single words lean towards yellow)
WORD_NAMED = 0.5
# first-writer captions that say which colour is the object's and which the background's (`domain.caption`
# with the colour and the background named and no shape): the roles test compares a prompt against them
ROLE_TEMPLATES = ("a {a} shape on a {b} background", "a {a} object on a {b} background")
# a colour phrase that the whole prompt's read-out does not see is the object's when the read-out follows it:
# with the phrase exchanged for each other palette colour, the read-out's score of that colour averages above
# this (shipped CLIP, short prompts of both tuning sets: object colours at least 0.16, a background's colour
# named alone, "a star on black", at most -0.01: the read-out was fitted to score 0 for a background)
TRACKED = 0.08
Method = Literal["auto", "words", "linear", "off"]
DEFAULT_METHOD: Method = "words"


def is_shapes_clip(clip) -> bool:
    """Whether `clip` has the Shapes CLIP's architecture (`nodes/unclip/models/shapes_clip.json`). The
    maps here are fitted on Shapes captions and renders; on another CLIP (a real checkpoint's) method
    "auto" leaves the prompt alone, so the workflow draws what the checkpoint's own pipeline draws."""
    import json

    from ..unclip.api import SHAPES_CLIP_CONFIG

    cfg = json.loads(SHAPES_CLIP_CONFIG.read_text(encoding="utf-8"))
    return (getattr(clip, "kind", "") == "open_clip" and getattr(clip, "embed_dim", None) == cfg["embed_dim"]
            and getattr(clip, "context_length", None) == cfg["text_cfg"]["context_length"]
            and getattr(clip, "image_size", None) == cfg["vision_cfg"]["image_size"])


@dataclass(frozen=True)
class TextColorMap:
    """A fitted linear colour map of one CLIP model's text encodings."""

    colors: tuple[str, ...]  # the palette, in the order of the one-hot
    direction: Any  # (C, F) torch: Δfeatures per unit Δonehot
    readout: Any  # (D + 1, C) torch: onehot ≈ [pooled, 1] @ readout
    explained: float  # fraction of a colour swap's feature change that the map explains
    accuracy: float  # read-out's colour (or none) right on the fitting captions

    def read(self, enc):
        """(B, C) colour scores of TextEncoding rows."""
        import torch

        e = enc.embeds.detach().to(self.readout)
        return torch.cat([e, torch.ones(len(e), 1).to(e)], 1) @ self.readout

    def named(self, enc) -> list[str]:
        """The palette colour each row names ("" where the read-out sees none)."""
        scores = self.read(enc)
        best = scores.max(1)
        return [self.colors[int(i)] if float(v) > NAMED else "" for v, i in zip(best.values, best.indices,
                                                                                  strict=True)]

    def neutralise(self, enc, strength: float = 1.0):
        """The TextEncoding with the read colour's fitted direction taken off `strength` times (padding untouched).

        f → f + strength · (uniform − R(e)) · M, uniform = 1/C on every colour: every Δonehot sums to
        0, so M's rows sum to 0 and uniform · M = 0 (method "linear").
        """
        import torch

        x = _features(enc).to(self.direction)
        scores = self.read(enc)
        x = x + strength * (torch.full_like(scores, 1 / len(self.colors)) - scores) @ self.direction
        d = enc.embeds.shape[1]
        hidden = x[:, d:].reshape(enc.hidden.shape).to(enc.hidden.dtype)
        hidden = torch.where(enc.mask[..., None], hidden, enc.hidden)
        return replace(enc, embeds=x[:, :d].to(enc.embeds.dtype).contiguous(), hidden=hidden.contiguous())

    def factor(self, enc, strength: float = 1.0):
        """(the encoding with the colour factored out of the rows that name one, each row's colour or "")."""
        import torch

        named = self.named(enc)
        if not any(named):
            return enc, named
        moved = self.neutralise(enc, strength)
        keep = torch.tensor([not c for c in named])
        return replace(enc, embeds=torch.where(keep[:, None], enc.embeds, moved.embeds),
                       hidden=torch.where(keep[:, None, None], enc.hidden, moved.hidden)), named


@dataclass(frozen=True)
class Dropped:
    """One prompt with its colour words dropped."""

    text: str  # what is left, for the prior (the prompt itself where no words cleared the colour)
    color: str  # the palette colour the read-out saw ("" where it saw none; "a/b" where it saw two)
    words: tuple[str, ...]  # the words dropped, in order (none where they did not clear the colour)
    cleared: bool  # the read-out sees no colour in `text` (or the prompt is passed on: it names two)
    read: tuple[str, ...] = ()  # the colours the read-out saw, in the order their words were dropped


def _bare(word: str) -> str:
    """The word without its punctuation ("mauve;" → "mauve"), itself where nothing is left."""
    import re

    return re.sub(r"[^\w\s-]", "", word) or word


def _say(word: str, new: str) -> str:
    """The word said as `new`, its punctuation kept where it stands: ("(mauve);", "red") → "(red);",
    ("mauve,", "") → ","."""
    import re

    return re.sub(r"[\w-]+", new, word, count=1)


def _joined(words: list[str], colors: list[str], color: str) -> bool:
    """Whether a word of `color`'s phrase holds other words too, joined by punctuation ("pentangle,red",
    "star/red"): dropping or exchanging it would take them with it."""
    import re

    return any(c == color and len(re.findall(r"[\w-]+", w)) > 1 for w, c in zip(words, colors, strict=True))


def word_colors(tmap: TextColorMap, clip, texts: list[str]) -> list[list[str]]:
    """For each text, per whitespace word, the palette colour the word names read on its own (above
    WORD_NAMED), or "" (one text encoding per distinct word)."""
    import torch

    split = [t.split() for t in texts]
    vocab = sorted({_bare(w) for ws in split for w in ws})
    if not vocab:
        return [[] for _ in texts]
    with torch.no_grad():
        scores = torch.cat([tmap.read(clip.encode_text(vocab[i:i + BATCH])) for i in range(0, len(vocab), BATCH)])
    best = scores.max(1)
    reads = {w: tmap.colors[int(i)] if float(v) > WORD_NAMED else "" for w, v, i in
             zip(vocab, best.values, best.indices, strict=True)}
    return [[reads[_bare(w)] for w in ws] for ws in split]


def phrase_colors(words: list[str], colors: list[str]) -> list[str]:
    """Adjacent colour-reading words with no punctuation between them are one colour phrase, named by its
    last word: "dark green" is green (a shade word alone reads as black), "light blue" blue."""
    colors = list(colors)
    for i in range(len(words) - 1, 0, -1):
        if colors[i] and colors[i - 1] and _bare(words[i - 1]) == words[i - 1]:
            colors[i - 1] = colors[i]
    return colors


def exchange(words: list[str], colors: list[str], color: str, new: str) -> str:
    """The text with each phrase of `color` (adjacent words of that colour, `phrase_colors`) said as the
    palette word `new`, the phrase's punctuation kept: ("circlet, royal purple", purple → red) "circlet, royal red"."""
    out: list[str] = []
    for i, (w, c) in enumerate(zip(words, colors, strict=True)):
        if c != color:
            out.append(w)
        elif i + 1 < len(words) and colors[i + 1] == color and _bare(w) == w:
            continue  # the phrase goes on: its last word says it
        else:
            out.append(_say(w, new))
    return " ".join(out)


def tracking(tmap: TextColorMap, clip, words: list[str], colors: list[str], color: str) -> float:
    """How far the whole prompt's read-out follows the phrase of `color`: its score of each other palette
    colour, with the phrase exchanged for that colour, averaged.

    Where a colour and a shape were never seen together ("pentangle, red", "a circle of a yellow hue"),
    the read-out of the prompt itself can see no colour, though each word alone reads as one: the
    pooled embedding of a pair the tower never saw is bent. Exchanged for the colours it was seen with,
    the phrase reads as the object's colour again. A phrase naming the background's colour ("a star on
    black") does not: the read-out was fitted to score 0 for a background, whatever its colour.
    """
    import torch

    others = [c for c in tmap.colors if c != color]
    with torch.no_grad():
        scores = tmap.read(clip.encode_text([exchange(words, colors, color, c) for c in others]))
    return float(torch.stack([scores[k, tmap.colors.index(c)] for k, c in enumerate(others)]).mean())


def object_color(clip, text: str, words: list[str], colors: list[str], a: str, b: str) -> str:
    """Which of two colours a prompt names as the object's (the other is the background's): `a` or `b`.

    The prompt is compared with first-writer captions of the two roles, "a {a} shape on a {b}
    background" against "a {b} shape on a {a} background", and so is the prompt with the two colours'
    words exchanged (each replaced by the other's palette name): the exchange gives the prompt the
    other roles and keeps everything else, so what the rest of the prompt pulls towards (a colour the
    tower knows with the prompt's shape, a held-out pair's known partner) cancels out, and the
    difference says which roles the words' order gives (the text tower learned word order from
    `clip_bind`'s hard negatives, which are exactly these exchanges).
    """
    import torch
    import torch.nn.functional as F

    swapped = " ".join(b if c == a else a if c == b else w for w, c in zip(words, colors, strict=True))
    refs = [t.format(a=a, b=b) for t in ROLE_TEMPLATES] + [t.format(a=b, b=a) for t in ROLE_TEMPLATES]
    with torch.no_grad():
        e = F.normalize(clip.encode_text(refs + [text, swapped]).embeds.float(), dim=-1)
    k = len(ROLE_TEMPLATES)
    sim = e[:2 * k] @ e[2 * k:].T  # (refs, [prompt, swapped])
    lean = sim[:k].mean(0) - sim[k:].mean(0)  # towards "a is the object's"
    return a if float(lean[0] - lean[1]) >= 0 else b


def _without(words: list[str], colors: list[str], color: str) -> Dropped:
    """The prompt with the words of `color` dropped (their punctuation stays: "is carmine; purplish backdrop"
    → "is ; purplish backdrop", so the clauses stay apart), named `color`."""
    kept = [w if c != color else _say(w, "") for w, c in zip(words, colors, strict=True)]
    gone = tuple(w for w, c in zip(words, colors, strict=True) if c == color)
    return Dropped(" ".join(w for w in kept if w), color, gone, True, (color,))


def drop_by_roles(tmap: TextColorMap, clip, texts: list[str], reads: list[list[str]] | None = None
                  ) -> list[Dropped | None]:
    """Prompts whose words name exactly two palette colours, each read on its own (adjacent colour words
    are one phrase, `phrase_colors`): the object's colour (`object_color`) and its words taken out, the
    background's words kept for the prior; a prompt with one colour phrase of several words ("dark
    green") has that phrase taken out; None for every other prompt. `reads`: `word_colors` of the
    texts, when the caller has them."""
    out: list[Dropped | None] = []
    for text, raw in zip(texts, word_colors(tmap, clip, texts) if reads is None else reads, strict=True):
        words = text.split()
        colors = phrase_colors(words, raw)
        named = list(dict.fromkeys(c for c in colors if c))
        if len(named) == 1 and colors != raw:  # one colour phrase with a shade word ("a dark green square")
            obj = named[0]
        elif len(named) == 2:
            obj = object_color(clip, text, words, colors, *named)
        else:
            out.append(None)
            continue
        # a colour word joined to others by punctuation ("pentangle,red"): not dropped here (it would take them along)
        out.append(None if _joined(words, colors, obj) else _without(words, colors, obj))
    return out


def drop_unread(tmap: TextColorMap, clip, text: str, raw: list[str]) -> Dropped | None:
    """A prompt whose whole read-out sees no colour: where its words (`raw`: `word_colors`), each read on
    its own, name one colour phrase and the read-out follows that phrase (`tracking` above TRACKED), the
    phrase is the object's colour: its words are dropped and the colour named. None otherwise (no colour
    word, several, a background's colour: "a star on black", or a colour word joined to others by
    punctuation: "pentangle,red")."""
    words = text.split()
    colors = phrase_colors(words, raw)
    named = list(dict.fromkeys(c for c in colors if c))
    if len(named) != 1 or _joined(words, colors, named[0]) or tracking(tmap, clip, words, colors, named[0]) <= TRACKED:
        return None
    return _without(words, colors, named[0])


def drop_color_words(tmap: TextColorMap, clip, texts: list[str], max_words: int = MAX_WORDS,
                     encoded=None, roles: bool = True, words_alone: bool = True) -> list[Dropped]:
    """Drop from each text the words whose absence takes away the colour the read-out sees
    (`encoded`: the texts' encoding, when the caller has it).

    Method "words": encode the text once without each word, drop the word whose absence lowers the
    score of the colour the read-out sees the most, and repeat until the read-out sees no colour (at
    most `max_words`); where that many words do not clear it, nothing is dropped (the node moves
    that row linearly). Where the read-out sees another colour once a colour's words are gone, the
    prompt names two colours as the object's (a background named before the object reads as the
    object's to the read-out, docs/shapes.md), so which one is the object's is unknown: that prompt is
    passed on as it is, for the prior to place both colours, and its colour is both, first read first
    ("orange/purple"), for Recolour Embedding to give them the roles the prior's sample gives them.
    A prompt whose dropped words cleared its colour is given the colour those words read as on their
    own (the prompt's read-out where they read as none).

    With `roles`, a prompt whose words, each read on its own, name two colours is first given to
    `drop_by_roles`, which tells the object's colour from the background's and drops the object's
    words only; the steps above take every other prompt.

    With `words_alone`, a prompt whose whole read-out sees no colour though one of its words, read on its
    own, names one is given to `drop_unread` ("pentangle, red": a held-out pair can bend the whole
    prompt's reading to none), which drops that word where it is the object's colour.
    """
    import torch

    reads = word_colors(tmap, clip, list(texts)) if roles or words_alone else [[] for _ in texts]
    by_roles = drop_by_roles(tmap, clip, list(texts), reads) if roles else [None] * len(texts)
    out = []
    with torch.no_grad():
        named = tmap.named(clip.encode_text(list(texts)) if encoded is None else encoded)
        for text, color, known, raw in zip(texts, named, by_roles, reads, strict=True):
            if known is None and not color and words_alone:
                known = drop_unread(tmap, clip, text, raw)
            if known is not None:
                out.append(known)
                continue
            words, dropped, read, cleared = text.split(), [], [color], not color
            while color and not cleared and len(dropped) < max_words and words:
                candidates = [words[:i] + words[i + 1:] for i in range(len(words))]
                enc = clip.encode_text([" ".join(c) for c in candidates])
                scores = tmap.read(enc)
                best = int(scores[:, tmap.colors.index(read[-1])].argmin())
                dropped.append(words[best])
                words = candidates[best]
                top = scores[best].max(0)
                cleared = float(top.values) <= NAMED
                if not cleared and tmap.colors[int(top.indices)] != read[-1]:
                    read.append(tmap.colors[int(top.indices)])
                    break
            if len(read) > 1:  # two colours read as the object's: which one is, the read-out cannot say
                out.append(Dropped(text, "/".join(read), (), True, tuple(read)))
            elif not color or not cleared:  # no colour, or spread over more words: keep the prompt as it is
                out.append(Dropped(text, color, (), cleared, tuple(read) if color else ()))
            else:
                out.append(Dropped(" ".join(words), color, tuple(dropped), cleared, (color,)))
        # The colour is the dropped words' own. Read in the whole prompt it can be bent by the rest: a
        # colour with a shape never seen together ("the purple square ...") can read as another colour
        # though "purple" is exactly the word whose absence clears it.
        alone = [i for i, d in enumerate(out) if d.words]
        if alone:
            own = tmap.named(clip.encode_text([" ".join(out[i].words) for i in alone]))
            for i, color in zip(alone, own, strict=True):
                if color:
                    out[i] = replace(out[i], color=color, read=(color,))
    return out


def factor_encoding(tmap: TextColorMap, clip, enc, texts: list[str], method: Method = DEFAULT_METHOD,
                    strength: float = DEFAULT_STRENGTH, roles: bool = True, words_alone: bool = True):
    """(the encoding for the prior, each row's colour or "", the Dropped of each row or None for "linear").

    "words" moves the rows whose colour no MAX_WORDS words clear with the linear move instead."""
    if method == "linear":
        moved, named = tmap.factor(enc, strength)
        return moved, named, None
    if method != "words":
        raise ValueError(f"unknown method {method!r}; use 'words' or 'linear'")
    import torch

    if len(texts) != enc.embeds.shape[0]:
        raise ValueError(f"{len(texts)} prompt texts for {enc.embeds.shape[0]} encoded rows")
    with torch.no_grad():
        fresh = clip.encode_text(list(texts))
    if fresh.hidden.shape != enc.hidden.shape or not torch.allclose(fresh.embeds.float().cpu(), enc.embeds.float().cpu(),
                                                                     rtol=1e-3, atol=1e-4):
        raise ValueError("the encoding does not match its prompts' text (it was edited after CLIP Text Encode); "
                         "method 'words' re-encodes the text, so connect CLIP Text Encode directly, or use "
                         "method 'linear'")
    dropped = drop_color_words(tmap, clip, texts, encoded=fresh, roles=roles, words_alone=words_alone)
    named = [d.color for d in dropped]
    if not any(named):
        return enc, named, dropped
    with torch.no_grad():
        kept = clip.encode_text([d.text for d in dropped])
    dev = enc.embeds.device
    # rows that name no colour keep their encoding; rows no MAX_WORDS words clear get the linear move
    original = torch.tensor([not d.words and d.cleared for d in dropped], device=dev)
    stuck = torch.tensor([bool(d.color) and not d.cleared for d in dropped], device=dev)
    moved = tmap.neutralise(enc, strength) if bool(stuck.any()) else enc
    embeds = torch.where(original[:, None], enc.embeds, torch.where(stuck[:, None], moved.embeds, kept.embeds))
    hidden = torch.where(original[:, None, None], enc.hidden,
                         torch.where(stuck[:, None, None], moved.hidden, kept.hidden))
    mask = torch.where(original[:, None] | stuck[:, None], enc.mask, kept.mask)
    return replace(kept, embeds=embeds, hidden=hidden, mask=mask), named, dropped


def _features(enc):
    import torch

    return torch.cat([enc.embeds.detach().float(), (enc.hidden.detach().float() * enc.mask[..., None]).flatten(1)], 1)


def fit_captions(n: int = FIT_SCENES, seed: int = FIT_SEED):
    """(captions in the scene's colour, the same captions in another colour, the same without a colour,
    colour index of the first, colour index of the second); every pair stays in the training split."""
    import numpy as np

    from . import domain  # renders with PIL: imported on use, not when the pack loads

    colors = list(domain.COLORS)
    scenes = domain.sample_scenes(seed, n, "train")
    rng = np.random.default_rng([seed, 1])
    own, other, plain, c_own, c_other = [], [], [], [], []
    for i, s in enumerate(scenes):
        options = [c for c in colors if c not in (s.color, s.background)
                   and domain.split_of(c, s.background, s.shape, s.size, s.position) == "train"]
        new = options[rng.integers(len(options))]
        named = tuple(a for a in domain.random_subset(np.random.default_rng([seed, 2, i])) if a != "color")
        attrs = s.attributes()
        # the same generator state for each: the same paraphrase, only the colour word differs
        own.append(domain.caption(attrs, np.random.default_rng([seed, 3, i]), include=named + ("color",)))
        other.append(domain.caption(dict(attrs, color=new), np.random.default_rng([seed, 3, i]),
                                    include=named + ("color",)))
        plain.append(domain.caption(attrs, np.random.default_rng([seed, 3, i]), include=named))
        c_own.append(colors.index(s.color))
        c_other.append(colors.index(new))
    return own, other, plain, c_own, c_other


def fit_text_color_map(clip, n: int = FIT_SCENES, seed: int = FIT_SEED, progress=None) -> TextColorMap:
    """Fit the text colour map of `clip` (anything with encode_text(list[str]) → TextEncoding).

    Training-split scenes are captioned twice with the same paraphrase, once in their own colour and
    once in another palette colour (each pair stays in the training split), and a third time without
    a colour. Least squares over the features f = [pooled embedding, token states] gives
    Δf ≈ Δonehot · M (one C × F map for the palette's colours), and a read-out from the pooled
    embedding, onehot ≈ [e, 1] · R, that gives ≈ 1 at the named colour and ≈ 0 everywhere for a
    colour-free caption (above NAMED: a colour is named).
    """
    import numpy as np
    import torch

    from . import domain

    own, other, plain, c_own, c_other = fit_captions(n, seed)
    jobs = [texts[i:i + BATCH] for texts in (own, other, plain) for i in range(0, n, BATCH)]
    encoded = []
    for k, batch in enumerate(jobs):
        with torch.no_grad():
            encoded.append(clip.encode_text(batch))
        if progress is not None:
            progress(k + 1, len(jobs))
    per = len(jobs) // 3
    groups = [encoded[j * per:(j + 1) * per] for j in range(3)]
    x_own, x_other = (torch.cat([_features(e) for e in g]) for g in groups[:2])
    pooled = torch.cat([e.embeds.float() for g in groups for e in g])
    eye = torch.eye(len(domain.COLORS))
    o_own, o_other = eye[c_own], eye[c_other]
    # the solves in float64 on the CPU (see least_squares), rounded to float32 maps
    d_x, d_o = (x_other - x_own).cpu().double(), (o_other - o_own).double()
    # rank C − 1 (every Δonehot sums to 0): an SVD-based driver gives the minimum-norm solution
    direction = least_squares(d_o, d_x, driver="gelsd")
    explained = 1 - float(((d_x - d_o @ direction) ** 2).sum() / (d_x ** 2).sum().clamp_min(1e-12))
    del d_x
    targets = torch.cat([o_own, o_other, torch.zeros(n, len(domain.COLORS))]).double()
    design = torch.cat([pooled.cpu().double(), torch.ones(len(pooled), 1, dtype=torch.float64)], 1)
    readout = as_map(least_squares(design, targets), pooled)
    scores = design @ readout.cpu().double()  # the read-out as kept
    truth = [domain.COLORS[i] for i in c_own + c_other] + [""] * n
    got = [domain.COLORS[int(i)] if float(v) > NAMED else "" for v, i in zip(*scores.max(1), strict=True)]
    accuracy = float(np.mean([a == b for a, b in zip(got, truth, strict=True)]))
    return TextColorMap(colors=tuple(domain.COLORS), direction=as_map(direction, pooled), readout=readout,
                        explained=explained, accuracy=accuracy)


class FactorColor(Node):
    """Take the object colour out of an encoded prompt, for the prior, and say which colour it was.

    Connect the prior to `conditioning` and Recolour Embedding's `color` to `color`; give the decoder
    the original encoding. Then a colour and a shape that never appeared together in training
    are drawn together. Method "words" re-encodes the prompt without the words that carry its
    colour; "linear" moves the encoding along the fitted colour direction; "off" passes it on (for a
    CLIP that is not the Shapes one). The fit runs once per loaded CLIP and is then read from disk by later
    processes (about 9 s for the shipped one; it holds 3 × 3,000 encodings of L × W token states, so
    gigabytes for a 77 × 768 CLIP).
    """

    name = "factor_color"
    title = "Factor Out Colour"
    category = "shapes"
    version = 5  # 5: `words_alone`; 4: `roles`; 3: `color` may be "a/b", and is the dropped words' own colour; 2: `method`; 1: linear only

    class Inputs(nodegraph.Inputs):
        clip: CLIP = Port(description="The CLIP model that encoded the prompt (its text tower is what the map is "
                                      "fitted on).")
        conditioning: CONDITIONING = Port(description="Encoded prompt (CLIP Text Encode).")
        method: Method = Port(DEFAULT_METHOD, description="auto: words on a Shapes CLIP, off on any other (what the "
                                                          "default workflows use); "
                                                          "words: re-encode the prompt without the words that carry "
                                                          "its colour (found by the fitted read-out, not by a word "
                                                          "list); linear: move the encoding along the fitted colour "
                                                          "direction (no re-encoding; composes less well); off: "
                                                          "pass the encoding on and name no colour (a CLIP that is "
                                                          "not the Shapes one, e.g. a real checkpoint's).")
        strength: float = Port(DEFAULT_STRENGTH, ge=0.0, le=5.0, step=0.1, display="slider",
                               description="linear (and words, for a prompt whose colour no 3 words clear): 0 "
                                           "keeps the encoding; k takes the named colour's fitted direction off it "
                                           "k times (2 measured best on the shipped models; more draws held-out "
                                           "pairs better and known pairs worse).")
        roles: bool = Port(True, description="words: where a prompt's words name two colours (each read on its own), "
                                             "tell the object's from the background's with the text tower and drop "
                                             "only the object's words (off: such a prompt is passed on whole, with "
                                             "both colours, as version 3 did).")
        words_alone: bool = Port(True, description="words: where the whole prompt reads no colour (a colour "
                                                   "with a shape never seen together can bend its reading: "
                                                   "\"pentangle, red\"), read its words each on its own and "
                                                   "drop the one colour they name if it is the object's (a "
                                                   "background's colour stays). Off: such a prompt is passed "
                                                   "on whole, naming no colour, as version 4 did.")

    class Outputs(nodegraph.Outputs):
        conditioning: CONDITIONING = Port(description="The encoding with its colour factored out (for the prior).")
        color: str = Port(description="The palette colour the prompts name, or empty if they name none; for "
                                      "prompts naming different colours, one per prompt, comma-separated, empty "
                                      "where a prompt names none; \"purple/orange\" for a prompt (passed on as "
                                      "it is) that names two colours the read-out cannot tell apart, the first "
                                      "read first (for Recolour Embedding's color).")

    @classmethod
    def migrate(cls, from_version: int, inputs: dict[str, Any]) -> dict[str, Any] | None:
        # saved before `roles` / `words_alone` existed: keep what it did (inputs given with the run, --set, still win)
        if from_version == 1:  # and before `method`
            return {"method": "linear", "roles": False, "words_alone": False, **inputs}
        if from_version in (2, 3):  # 3: `color` may name two colours ("a/b"), as it still may
            return {"roles": False, "words_alone": False, **inputs}
        if from_version == 4:
            return {"words_alone": False, **inputs}
        return None

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        cond = inputs.conditioning
        enc = getattr(cond, "cond", None)
        if enc is None or not hasattr(enc, "hidden"):
            raise NodeExecutionError("conditioning: expected a CLIP Text Encode output; connect one")
        method = inputs.method
        if method == "auto":
            method = "words" if is_shapes_clip(inputs.clip.model) else "off"
            if method == "off":
                ctx.show(text=["method auto: not a Shapes CLIP, so the encoding is passed on as it is"])
                return self.Outputs(conditioning=cond, color="")
        if method == "off":  # nothing fitted, nothing moved: Recolour Embedding then passes on too
            ctx.show(text=["method off: the encoding is passed on as it is"])
            return self.Outputs(conditioning=cond, color="")
        clip = inputs.clip.model
        width = getattr(clip, "embed_dim", None)
        if width is not None and width != enc.embeds.shape[1]:
            raise NodeExecutionError(f"conditioning: width {enc.embeds.shape[1]}, but this CLIP's text embeddings have "
                                     f"width {width}; connect the CLIP model of the Text Encode node")
        with library_errors():
            tmap = fitted(ctx, inputs.clip, "text_color", fit_text_color_map, TextColorMap)
        if (tmap.readout.shape[0] != enc.embeds.shape[1] + 1
                or tmap.direction.shape[1] != enc.embeds.shape[1] + enc.hidden.shape[1] * enc.hidden.shape[2]):
            raise NodeExecutionError("conditioning: it was encoded by another CLIP than the one connected; connect "
                                     "the CLIP model of the Text Encode node")
        texts = list(getattr(cond, "texts", ()))
        if method == "words" and len(texts) != enc.embeds.shape[0]:
            raise NodeExecutionError("conditioning: it does not carry its prompts' text, which method 'words' "
                                     "re-encodes; connect CLIP Text Encode directly, or use method 'linear'")
        with library_errors():
            out, named, dropped = factor_encoding(tmap, clip, enc, texts, method, inputs.strength, inputs.roles,
                                                    inputs.words_alone)
        lines = [f"colour named: {', '.join(c or '(none)' for c in named[:8])}"
                 f"{'' if any(named) else '; nothing to factor out, the encoding is passed on as it is'}"]
        if dropped is not None and (any(named) or any(len(d.read) > 1 for d in dropped)):
            for d in dropped[:8]:
                gone = ", ".join(repr(w) for w in d.words) or "nothing"
                lines.append(f"passed on as it is: {d.text!r} names two colours ({', '.join(d.read)}) and the "
                             "read-out cannot tell which is the object's: both go to Recolour Embedding, which "
                             "gives them the roles the prior's sample gives them" if len(d.read) > 1 else
                             f"for the prior: {d.text!r} (dropped {gone})" if d.cleared or not d.color else
                             f"for the prior: {d.text!r}, moved linearly at strength {inputs.strength:g} (no "
                             f"{MAX_WORDS} words clear its {d.color})")
        lines.append(f"the map explains {tmap.explained:.2f} of a colour swap and reads colours right in "
                     f"{tmap.accuracy:.2f} of its fitting captions")
        ctx.show(text=lines)
        new_texts = tuple(d.text for d in dropped) if dropped is not None and any(named) else cond.texts
        # one colour for all, or (prompts naming different colours) one per prompt, comma-separated
        color = named[0] if len(set(named)) == 1 else ",".join(named)
        return self.Outputs(conditioning=replace(cond, cond=out, texts=new_texts), color=color)
