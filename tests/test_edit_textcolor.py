"""Factor Out Colour: the fitted text colour map, the node, and the factored path on the shipped models."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from conftest import ROOT
from edit_helpers import run

from nodegraph import ModelHandle, ModelStore, NodeExecutionError
from nodes.shapes import domain
from nodes.shapes.textcolor import (
    FIT_SEED,
    NAMED,
    FactorColor,
    TextColorMap,
    fit_captions,
    fit_text_color_map,
)
from nodes.unclip.encode import Conditioning
from nodes.unclip.models.clip import TextEncoding

MODEL = ROOT / "models" / "shapes-unclip"


@pytest.fixture
def store() -> ModelStore:
    """One model store for a test's node runs: maps fitted for a CLIP are kept there, as in an engine."""
    return ModelStore([])


class BagOfWordsClip:
    """A stand-in text encoder: each word has a fixed random vector; the pooled embedding is their sum
    and the token states are the words' vectors in order. Colour words are linear in it by design."""

    def __init__(self, dim: int = 96, width: int = 4, length: int = 20):
        self.dim, self.width, self.length = dim, width, length
        self.embed_dim = dim

    def _vec(self, word: str, n: int) -> torch.Tensor:
        return torch.randn(n, generator=torch.Generator().manual_seed(zlib.crc32(word.encode())))

    def encode_text(self, texts: list[str]) -> TextEncoding:
        embeds = torch.zeros(len(texts), self.dim)
        hidden = torch.zeros(len(texts), self.length, self.width)
        mask = torch.zeros(len(texts), self.length, dtype=torch.bool)
        for i, text in enumerate(texts):
            words = text.replace(",", " ").split()[:self.length]
            for t, w in enumerate(words):
                embeds[i] += self._vec(self._key(words, t), self.dim)
                hidden[i, t] = self._vec("tok:" + w, self.width)
            mask[i, :len(words)] = True
        return TextEncoding(embeds, hidden, mask)

    def _key(self, words: list[str], t: int) -> str:
        """What word `t` adds to the pooled embedding: a colour in the background phrase is another
        "word" than the object's colour."""
        bg = (t + 1 < len(words) and words[t + 1] in ("background", "backdrop")) or (t and words[t - 1] == "on")
        return ("bg:" if bg else "") + words[t]


class ModuleClip(torch.nn.Module, BagOfWordsClip):
    """The stand-in as a torch module: weights to hash, so its fitted maps are kept on disk."""

    def __init__(self, scale: float = 1.0):
        torch.nn.Module.__init__(self)
        BagOfWordsClip.__init__(self)
        self.scale = torch.nn.Parameter(torch.tensor(scale))


def test_fitting_captions_differ_only_in_the_colour_word_and_never_name_a_held_out_pair():
    own, other, plain, c_own, c_other = fit_captions(200)
    scenes = domain.sample_scenes(FIT_SEED, 200, "train")  # what fit_captions captions
    for s, a, b, p, i, j in zip(scenes, own, other, plain, c_own, c_other, strict=True):
        wa, wb = a.replace(",", " ").split(), b.replace(",", " ").split()
        diff = [(x, y) for x, y in zip(wa, wb, strict=True) if x != y and {x, y} != {"a", "an"}]  # "an orange"
        assert len(wa) == len(wb) and diff == [(s.color, domain.COLORS[j])], (a, b)
        assert domain.COLORS[i] == s.color and domain.COLORS[j] in wb and i != j
        assert (domain.COLORS[j], s.shape) not in domain.HELDOUT_PAIRS
        assert domain.split_of(domain.COLORS[j], s.background, s.shape, s.size, s.position) == "train"
        assert len(p.split()) < len(a.split())  # the third caption leaves the colour out


def test_fit_reads_the_named_colour_and_neutralising_removes_it():
    clip = BagOfWordsClip()
    tmap = fit_text_color_map(clip, n=400)
    assert tmap.accuracy > 0.97, tmap.accuracy
    prompts = ["a big red star in the center", "a small blue triangle", "a yellow disk at the top",
               "a star at the bottom", "a large square on a black background"]
    enc = clip.encode_text(prompts)
    assert tmap.named(enc)[:3] == ["red", "blue", "yellow"]  # held-out pairs, read all the same
    assert tmap.named(enc)[3] == ""
    out, named = tmap.factor(enc, 1.0)
    assert named[:3] == ["red", "blue", "yellow"]
    assert (tmap.read(out)[:3].max(1).values < NAMED).all()  # after factoring: no colour named
    assert named[3:] == ["", ""]  # "black" names the background, not the object
    for i in (3, 4):  # rows that name no colour are left alone
        assert torch.equal(out.embeds[i], enc.embeds[i]) and torch.equal(out.hidden[i], enc.hidden[i])
    assert not torch.equal(out.hidden[0], enc.hidden[0])
    assert torch.equal(out.hidden[~enc.mask], enc.hidden[~enc.mask])  # padding untouched
    still = tmap.factor(enc, 0.0)[0]
    assert torch.equal(still.embeds, enc.embeds) and torch.equal(still.hidden, enc.hidden)


def _conditioning(clip, prompts: list[str]) -> Conditioning:
    return Conditioning(clip.encode_text(prompts), clip.encode_text([""]), tuple(prompts), "")


def test_node_outputs_the_factored_conditioning_and_the_colour(tmp_path, store):
    clip = BagOfWordsClip()
    handle = ModelHandle(clip, "stand-in", "unclip.clip")
    cond = _conditioning(clip, ["there is a big star that is red, in the center"])
    out, ctx = run(FactorColor, tmp_path, models=store, clip=handle, conditioning=cond)  # method "words", the default
    assert out.color == "red"
    # the prior gets the prompt re-encoded without the word that carried the colour
    assert out.conditioning.texts == ("there is a big star that is in the center",)
    assert torch.equal(out.conditioning.cond.embeds, clip.encode_text(list(out.conditioning.texts)).embeds)
    assert out.conditioning.uncond is cond.uncond
    assert "colour named: red" in ctx.ui["text"][0]
    assert "for the prior: 'there is a big star that is in the center' (dropped 'red,')" in ctx.ui["text"][1]
    assert ctx.steps and ctx.steps[-1][0] == ctx.steps[-1][1]  # the fit reported its progress
    moved, _ = run(FactorColor, tmp_path, models=store, clip=handle, conditioning=cond, method="linear")
    assert moved.color == "red" and moved.conditioning.texts == cond.texts  # linear: moved, not re-encoded
    assert not torch.equal(moved.conditioning.cond.embeds, cond.cond.embeds)
    assert moved.conditioning.cond.embeds.shape == cond.cond.embeds.shape
    plain, ctx = run(FactorColor, tmp_path, models=store, clip=handle, conditioning=_conditioning(clip, ["a star at the top"]))
    assert plain.color == ""
    assert torch.equal(plain.conditioning.cond.embeds, clip.encode_text(["a star at the top"]).embeds)
    assert "nothing to factor out" in ctx.ui["text"][0]
    # prompts of different colours: one colour per prompt, empty where a prompt names none
    mixed, _ = run(FactorColor, tmp_path, models=store, clip=handle,
                   conditioning=_conditioning(clip, ["a red star", "a blue square", "a star at the top"]))
    assert mixed.color == "red,blue," and mixed.conditioning.texts == ("a star", "a square", "a star at the top")
    both, _ = run(FactorColor, tmp_path, models=store, clip=handle, conditioning=_conditioning(clip, ["a red star", "a red disk"]))
    assert both.color == "red"
    off, _ = run(FactorColor, tmp_path, models=store, clip=handle, conditioning=cond, method="off")
    assert off.color == "" and off.conditioning is cond  # nothing read, nothing moved


def test_recolour_and_factor_keep_separate_maps_of_one_model_and_empty_colour_passes_through(tmp_path, store):
    from nodes.shapes.recolor import EmbeddingRecolor

    class Both(BagOfWordsClip):
        """Text and image towers in one model, as a real CLIP has."""

        def encode_image(self, images):
            return images.mean((2, 3)) @ torch.ones(3, self.dim) + images.flatten(1)[:, :self.dim]

    clip = Both()
    handle = ModelHandle(clip, "stand-in", "unclip.clip")
    run(FactorColor, tmp_path, models=store, clip=handle, conditioning=_conditioning(clip, ["a red star"]))
    assert store.loads == 1  # the text map, kept in the model store
    emb = torch.randn(2, clip.dim)
    run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb, color="red")
    # the image maps (object and background colour), beside the text map
    assert store.loads == 3 and len(store.loaded()) == 3
    _, ctx = run(FactorColor, tmp_path, models=store, clip=handle, conditioning=_conditioning(clip, ["a blue star"]))
    assert store.loads == 3 and not ctx.steps  # cached: not fitted again
    same, ctx = run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb, color="")
    assert same.embedding is emb and "passed on as they are" in ctx.ui["text"][0]
    with pytest.raises(NodeExecutionError, match="width 7"):  # the checks still run
        run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=torch.zeros(2, 7), color="")
    # one colour per prompt: each prompt's run of samples gets its own, an empty entry keeps its run
    emb6 = torch.randn(6, clip.dim)
    per, _ = run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb6, color="red,,blue")
    red, _ = run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb6[:2], color="red")
    blue, _ = run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb6[4:], color="blue")
    # (batched and single runs differ in float32 rounding, more so when an earlier test set other thread counts)
    assert torch.allclose(per.embedding[:2], red.embedding, rtol=1e-4, atol=1e-3)
    assert torch.allclose(per.embedding[4:], blue.embedding, rtol=1e-4, atol=1e-3)
    assert torch.equal(per.embedding[2:4], emb6[2:4])
    with pytest.raises(NodeExecutionError, match="3 colours .* 4 embeddings"):
        run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb6[:4], color="red,,blue")


def test_dropping_words_stops_when_the_colour_is_gone_and_keeps_colour_free_prompts(tmp_path, store):
    from edit_helpers import Ctx

    from nodes.shapes.recolor import fitted
    from nodes.shapes.textcolor import MAX_WORDS, drop_color_words

    clip = BagOfWordsClip()
    handle = ModelHandle(clip, "stand-in", "unclip.clip")
    # a smaller fit, kept in the store where the node looks for its map
    tmap = fitted(Ctx(tmp_path, models=store), handle, "text_color",
                  lambda clip, progress: fit_text_color_map(clip, n=1500), TextColorMap)
    texts = ["a small green square on a white background", "a star on a red background", "a blue blue blue blue disk"]
    green, background, repeated = drop_color_words(tmap, clip, texts, roles=False)
    assert (green.text, green.color, green.words, green.cleared) == ("a small square on a white background", "green",
                                                                     ("green",), True)
    assert background.text == texts[1] and background.color == "" and background.words == ()  # not the object's
    # named MAX_WORDS + 1 times: no MAX_WORDS words clear it, so none are dropped
    assert MAX_WORDS == 3 and repeated.color == "blue" and not repeated.cleared
    assert repeated.text == texts[2] and repeated.words == ()
    # ... and the node moves that row linearly instead, at its strength; the batch's other row loses its word
    cond = _conditioning(clip, [texts[2], "a blue disk"])
    out, ctx = run(FactorColor, tmp_path, models=store, clip=handle, conditioning=cond, strength=1.5, roles=False)
    assert out.color == "blue" and out.conditioning.texts == (texts[2], "a disk")
    got, moved, short = out.conditioning.cond, tmap.neutralise(cond.cond, 1.5), clip.encode_text(["a disk"])
    assert torch.allclose(got.embeds[0], moved.embeds[0]) and torch.equal(got.mask[0], cond.cond.mask[0])
    assert torch.equal(got.embeds[1], short.embeds[0]) and torch.equal(got.mask[1], short.mask[0])
    assert "moved linearly at strength 1.5 (no 3 words clear its blue)" in ctx.ui["text"][1]
    # an encoding edited after CLIP Text Encode no longer matches its text: "words" says so
    with pytest.raises(NodeExecutionError, match="does not match its prompts' text.*method 'linear'"):
        run(FactorColor, tmp_path, models=store, clip=handle, conditioning=Conditioning(moved, cond.uncond, cond.texts, ""),
            roles=False)


def test_a_prompt_whose_read_out_sees_two_colours_is_passed_on(tmp_path, store):
    """Once one colour's words are gone the read-out sees another: the prompt names two colours as the
    object's (for the shipped CLIP, a background named before the object), so which one is the object's
    is unknown, and the prompt goes to the prior as it is, naming both colours for Recolour Embedding."""
    from edit_helpers import Ctx

    from nodes.shapes.recolor import fitted
    from nodes.shapes.textcolor import drop_color_words

    clip = BagOfWordsClip()
    handle = ModelHandle(clip, "stand-in", "unclip.clip")
    tmap = fitted(Ctx(tmp_path, models=store), handle, "text_color",
                  lambda clip, progress: fit_text_color_map(clip, n=1500), TextColorMap)
    texts = ["a red disk and a blue star", "a red disk on a blue background"]
    two, one = drop_color_words(tmap, clip, texts, roles=False)  # as version 3 did (roles: below)
    assert (two.text, two.words, two.cleared) == (texts[0], (), True)
    assert set(two.read) == {"red", "blue"} and two.color == "/".join(two.read), two.read
    assert (one.text, one.color, one.read) == ("a disk on a blue background", "red", ("red",))
    cond = _conditioning(clip, texts)
    out, ctx = run(FactorColor, tmp_path, models=store, clip=handle, conditioning=cond, roles=False)
    # both colours go to Recolour Embedding, which takes the one the prior's sample has not on its background
    assert out.color == f"{'/'.join(two.read)},red" and out.conditioning.texts == (texts[0], one.text)
    assert torch.equal(out.conditioning.cond.embeds[0], cond.cond.embeds[0])  # passed on as it is
    assert f"passed on as it is: {texts[0]!r} names two colours" in ctx.ui["text"][1]


@pytest.mark.skipif(not (MODEL / "clip").is_dir(), reason="shipped weights absent (run `python -m train all`)")
def test_shipped_clip_no_longer_factors_a_background_named_first_as_the_objects_colour():
    """Captions of the second training writer that name the background before the object: the read-out
    of the shipped CLIP takes the background's colour for the object's in most of them (the text tower
    itself does: bench/factor_readout.py), and "words" used to factor that colour out and hand it to
    Recolour. Now most are passed on, and few name the background's colour. Object-first captions of
    the first writer keep their colour. (Measured here: of 40 captions, 29 named the background's colour
    before the pass-on and 2 after; object first 39 of 40 right, before and after.)"""
    from nodes.shapes import captions
    from nodes.shapes.textcolor import drop_color_words
    from nodes.unclip.models import load_clip

    clip = load_clip(MODEL)
    tmap = fit_text_color_map(clip, n=1500)
    rng = np.random.default_rng(31)
    bg_first, obj_first = [], []
    for s in domain.sample_scenes(3131, 400, "train"):
        attrs = s.attributes()
        text = captions.caption(attrs, rng, include=domain.ATTRIBUTES)
        i, j = (min((m for w in captions.COLORS[c] if (m := text.find(w)) >= 0), default=-1)
                for c in (s.color, s.background))
        if 0 <= j < i and len(bg_first) < 40:
            bg_first.append((text, attrs))
    for s in domain.sample_scenes(3132, 40, "heldout_pairs"):
        obj_first.append((domain.full_caption(s, rng), s.attributes()))
    with torch.no_grad():
        got = drop_color_words(tmap, clip, [t for t, _ in bg_first + obj_first])
    first, rest = got[:len(bg_first)], got[len(bg_first):]
    named_bg = sum(d.color == a["background"] for d, (_, a) in zip(first, bg_first, strict=True))
    right = sum(d.color == a["color"] for d, (_, a) in zip(rest, obj_first, strict=True))
    assert len(bg_first) == 40 and named_bg <= 8, [(t, d.color) for d, (t, _) in zip(first, bg_first, strict=True)]
    assert right >= 38, right


def test_version_1_workflows_keep_the_linear_move():
    saved = {"clip": {"from": "c", "output": "clip"}, "conditioning": {"from": "e", "output": "conditioning"},
             "strength": 3.0}
    assert FactorColor.version == 5
    assert FactorColor.migrate(1, saved) == {**saved, "method": "linear", "roles": False, "words_alone": False}
    assert FactorColor.migrate(1, {**saved, "method": "words"})["method"] == "words"  # set with the run: kept
    assert FactorColor.migrate(0, saved) is None


def test_version_2_and_3_workflows_keep_passing_two_colour_prompts_on():
    saved = {"clip": {"from": "c", "output": "clip"}, "conditioning": {"from": "e", "output": "conditioning"},
             "method": "words", "strength": 2.0}
    for version in (2, 3):
        assert FactorColor.migrate(version, saved) == {**saved, "roles": False, "words_alone": False}
        assert FactorColor.migrate(version, {**saved, "roles": True})["roles"] is True  # set with the run: kept


def test_version_4_workflows_keep_passing_a_prompt_whose_whole_read_out_sees_no_colour_on():
    saved = {"clip": {"from": "c", "output": "clip"}, "conditioning": {"from": "e", "output": "conditioning"},
             "method": "auto", "strength": 2.0, "roles": True}
    assert FactorColor.migrate(4, saved) == {**saved, "words_alone": False}
    assert FactorColor.migrate(4, {**saved, "words_alone": True})["words_alone"] is True  # set with the run: kept
    assert FactorColor.migrate(5, saved) is None


def test_a_saved_version_1_workflow_loads_with_the_linear_move(registry):
    import json

    from nodegraph.validation import check

    wf = json.loads((ROOT / "workflows" / "text2image_factored.json").read_text())
    factor = wf["nodes"]["factor"]
    factor["version"] = 1
    del factor["inputs"]["method"], factor["inputs"]["roles"], factor["inputs"]["words_alone"]
    upgraded, issues = check(wf, registry)
    assert not issues, issues
    assert upgraded.nodes["factor"].version == 5 and upgraded.nodes["factor"].inputs["method"] == "linear"
    assert upgraded.nodes["factor"].inputs["roles"] is False and upgraded.nodes["factor"].inputs["words_alone"] is False


def test_a_saved_version_1_recolour_keeps_its_background(registry):
    import json

    from nodegraph.validation import check

    wf = json.loads((ROOT / "workflows" / "text2image.json").read_text())
    wf["nodes"]["recolor"]["version"] = 1
    wf["nodes"]["recolor"]["inputs"].pop("keep_apart", None)
    upgraded, issues = check(wf, registry)
    assert not issues, issues
    assert upgraded.nodes["recolor"].version == 2 and upgraded.nodes["recolor"].inputs["keep_apart"] is False
    current, issues = check(json.loads((ROOT / "workflows" / "text2image.json").read_text()), registry)
    assert not issues and current.nodes["recolor"].inputs.get("keep_apart", True) is True  # shipped: on


def test_node_checks_its_inputs(tmp_path, store):
    handle = ModelHandle(BagOfWordsClip(), "stand-in", "unclip.clip")
    bare = _conditioning(BagOfWordsClip(), ["a red star"])
    with pytest.raises(NodeExecutionError, match="does not carry its prompts' text.*method 'linear'"):
        run(FactorColor, tmp_path, models=store, clip=handle, conditioning=Conditioning(bare.cond, bare.uncond, (), ""))
    with pytest.raises(NodeExecutionError, match="expected a CLIP Text Encode output"):
        run(FactorColor, tmp_path, models=store, clip=handle, conditioning=torch.zeros(1, 96))
    other = BagOfWordsClip(dim=24)
    with pytest.raises(NodeExecutionError, match="width 24, but this CLIP's text embeddings have width 96"):
        run(FactorColor, tmp_path, models=store, clip=handle, conditioning=_conditioning(other, ["a red star"]))
    longer = BagOfWordsClip(length=30)  # same width, another context: caught after the fit
    with pytest.raises(NodeExecutionError, match="encoded by another CLIP"):
        run(FactorColor, tmp_path, models=store, clip=handle, conditioning=_conditioning(longer, ["a red star"]))


def test_a_fitted_map_is_kept_on_disk_under_the_weights_hash(tmp_path, monkeypatch):
    """A second process (here: a second model store) with the same weights reads the map instead of
    fitting it; other weights fit their own; a torn file is fitted again."""
    from nodes.shapes.recolor import fit_cache_dir

    monkeypatch.setenv("NODEGRAPH_FIT_CACHE", str(tmp_path / "fits"))
    clip = ModuleClip()
    cond = _conditioning(clip, ["a red star"])
    first, ctx1 = run(FactorColor, tmp_path, models=ModelStore([]), clip=ModelHandle(clip, "a", "unclip.clip"),
                      conditioning=cond)
    files = sorted(fit_cache_dir().glob("text_color-*.safetensors"))
    assert ctx1.steps and len(files) == 1
    again, ctx2 = run(FactorColor, tmp_path, models=ModelStore([]), clip=ModelHandle(ModuleClip(), "b", "unclip.clip"),
                      conditioning=cond)
    assert not ctx2.steps  # read from disk, not fitted
    assert again.color == first.color == "red"
    assert torch.equal(again.conditioning.cond.embeds, first.conditioning.cond.embeds)
    _, ctx3 = run(FactorColor, tmp_path, models=ModelStore([]), clip=ModelHandle(ModuleClip(2.0), "c", "unclip.clip"),
                  conditioning=cond)
    assert ctx3.steps and len(list(fit_cache_dir().glob("text_color-*.safetensors"))) == 2  # other weights
    files[0].write_bytes(b"torn")
    _, ctx4 = run(FactorColor, tmp_path, models=ModelStore([]), clip=ModelHandle(ModuleClip(), "d", "unclip.clip"),
                  conditioning=cond)
    assert ctx4.steps and files[0].stat().st_size > 4  # fitted again and rewritten


def test_a_map_read_from_disk_factors_bit_for_bit_as_the_fitted_one(tmp_path, monkeypatch):
    """A process that fitted the map and one that read it (a local run and a Ray worker) make the same
    images: the map read back has the fitted one's bits and layout, so every product rounds alike."""
    from edit_helpers import Ctx

    from nodes.shapes.recolor import fit_cache_dir, fitted

    monkeypatch.setenv("NODEGRAPH_FIT_CACHE", str(tmp_path / "fits"))
    clip = ModuleClip()

    def load():  # a new model store each time, as in another process
        return fitted(Ctx(tmp_path, models=ModelStore([])), ModelHandle(clip, "a", "unclip.clip"), "text_color",
                      lambda clip, progress: fit_text_color_map(clip, n=400), TextColorMap)

    fresh = load()
    assert len(list(fit_cache_dir().glob("text_color-*.safetensors"))) == 1
    read = load()
    for name in ("direction", "readout"):
        a, b = getattr(fresh, name), getattr(read, name)
        assert torch.equal(a, b) and a.stride() == b.stride(), name
    enc = clip.encode_text(["a big red star in the center", "a small blue square on a white background", "a disk"])
    assert torch.equal(fresh.read(enc), read.read(enc))
    moved, again = fresh.neutralise(enc), read.neutralise(enc)
    assert torch.equal(moved.embeds, again.embeds) and torch.equal(moved.hidden, again.hidden)


def test_a_fit_gives_the_same_bits_with_one_thread_and_with_two():
    """A Ray worker (1 thread) and a local run (2 threads) fit the same map, so they make the same images."""
    threads = torch.get_num_threads()
    maps = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            maps.append(fit_text_color_map(BagOfWordsClip(), n=400))
    finally:
        torch.set_num_threads(threads)
    for name in ("direction", "readout"):
        assert torch.equal(getattr(maps[0], name), getattr(maps[1], name)), name
    assert (maps[0].explained, maps[0].accuracy) == (maps[1].explained, maps[1].accuracy)


def test_auto_factors_on_a_shapes_clip_and_passes_any_other_clip_on(tmp_path, store):
    """The default workflows' method: a real checkpoint's CLIP (here a stand-in) is left alone, so the
    workflow draws what the checkpoint's own pipeline draws; the shipped Shapes CLIP is factored."""
    from nodes.shapes.textcolor import is_shapes_clip
    from nodes.unclip.models import load_clip

    clip = BagOfWordsClip()
    cond = _conditioning(clip, ["there is a big star that is red, in the center"])
    out, ctx = run(FactorColor, tmp_path, models=store, clip=ModelHandle(clip, "stand-in", "unclip.clip"),
                   conditioning=cond, method="auto")
    assert out.color == "" and out.conditioning is cond
    assert "not a Shapes CLIP" in ctx.ui["text"][0]
    assert not is_shapes_clip(clip)
    if (MODEL / "clip").is_dir():
        shapes = load_clip(MODEL)
        assert is_shapes_clip(shapes)
        with torch.no_grad():
            cond = _conditioning(shapes, ["a big red star in the center"])
        out, ctx = run(FactorColor, tmp_path, models=store, clip=ModelHandle(shapes, "shapes", "unclip.clip"),
                       conditioning=cond, method="auto")
        assert out.color == "red" and "red" not in out.conditioning.texts[0]  # auto → words


@pytest.mark.skipif(not (MODEL / "clip").is_dir(), reason="shipped weights absent (run `python -m train all`)")
@pytest.mark.skipif(not (MODEL / "clip").is_dir(), reason="shipped weights absent (run `python -m train all`)")
def test_a_dropped_colour_is_the_colour_its_words_read_as_on_their_own():
    """Read in the whole prompt, a colour named with a shape it was never seen with can read as another
    colour ("the purple square ..." as red) though "purple" is exactly the word whose absence clears it;
    "words" names the colour of the dropped words alone. The tuning set's held-out pairs (96 prompts)
    had four such read-outs, three of them fixed by this (bench/miss_probe.py)."""
    from eval import _tuning_prompts as tuning
    from nodes.shapes.textcolor import drop_color_words
    from nodes.unclip.models import load_clip

    clip = load_clip(MODEL)
    tmap = fit_text_color_map(clip)  # the node's fit
    bent = ["the purple square is small and bottom right, orange behind it",
            "a picture of a purple box, tiny, top left, against a yellow background"]
    with torch.no_grad():
        assert [c != "purple" for c in tmap.named(clip.encode_text(bent))] == [True, True]  # the whole prompt's read-out
        got = drop_color_words(tmap, clip, bent)
    assert [(d.color, d.words, d.read) for d in got] == [("purple", ("purple",), ("purple",))] * 2
    prompts = tuning.full_prompts("heldout_pairs", 48) + tuning.full_prompts("heldout_combos", 48)
    with torch.no_grad():
        dropped = drop_color_words(tmap, clip, [p.text for p in prompts])
    factored = [(d, p) for d, p in zip(dropped, prompts, strict=True) if d.words]
    assert len(factored) >= 40 and all(d.color == p.named["color"] for d, p in factored), [
        (p.text, d.color) for d, p in factored if d.color != p.named["color"]]


def test_shipped_clip_reads_colours_of_held_out_pairs_and_none_where_none_is_named():
    from eval.shapes import prompt_set, prompt_set_without_color
    from nodes.shapes.textcolor import fit_text_color_map as fit
    from nodes.unclip.models import load_clip

    clip = load_clip(MODEL)
    tmap = fit(clip, n=1500)
    held = prompt_set("heldout_pairs", 40, 11)
    with torch.no_grad():
        named = tmap.named(clip.encode_text([p for p, _ in held]))
        plain = tmap.named(clip.encode_text([p for p, _ in prompt_set_without_color("heldout_pairs", 40, 11)]))
    assert np.mean([n == a["color"] for n, (_, a) in zip(named, held, strict=True)]) >= 0.95, named
    assert plain == [""] * 40, plain


@pytest.mark.skipif(not (MODEL / "clip").is_dir(), reason="shipped weights absent (run `python -m train all`)")
def test_factored_path_draws_held_out_pairs_that_the_plain_path_does_not():
    """12 full captions of held-out (colour, shape) pairs, text → prior → decoder (32 px, 15 steps):
    through Factor Out Colour (both methods) + Recolour the analyser sees the right shape far more
    often than from the plain path, and the colour still right. (The figures: `nodegraph eval shapes`,
    rows *_factored.)"""
    from eval.shapes import FACTOR_STRENGTH, Settings, Stack, _to_numpy, prompt_set
    from nodes.shapes import analyse

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stack = Stack(MODEL, Settings(prior_steps=15, decoder_steps=15, upsample=False))
        pairs = prompt_set("heldout_pairs", 12, 5)
        prompts = [p for p, _ in pairs]
        right = {}
        for name, factor, method in (("plain", None, ""), ("words", FACTOR_STRENGTH, "words"),
                                     ("linear", FACTOR_STRENGTH, "linear")):
            images = stack.text_to_image(prompts, 3, factor=factor, factor_method=method)
            found = [analyse.analyse(im).attributes() for im in _to_numpy(images)]
            right[name] = {a: sum(f[a] == t[a] for f, (_, t) in zip(found, pairs, strict=True))
                           for a in ("color", "shape")}
    finally:
        torch.set_num_threads(threads)
    # measured here: plain colour 9 / shape 0 of 12; words 12 / 12; linear 11 / 8 at the default strength (2)
    assert right["words"]["shape"] >= 10 and right["words"]["shape"] >= right["plain"]["shape"] + 6, right
    assert right["linear"]["shape"] >= 7 and right["linear"]["shape"] >= right["plain"]["shape"] + 4, right
    assert right["words"]["color"] >= 10 and right["linear"]["color"] >= 9, right


def test_adjacent_colour_words_are_one_phrase_named_by_its_last_word():
    from nodes.shapes.textcolor import phrase_colors

    words = "a dark green square on a black, white background".split()
    raw = ["", "black", "green", "", "", "", "black", "white", ""]  # "black," ends its phrase at the comma
    assert phrase_colors(words, raw) == ["", "green", "green", "", "", "", "black", "white", ""]


def test_a_prompt_whose_words_name_two_colours_drops_the_objects_words_only(tmp_path, store):
    """With `roles` (version 4), the words are read one by one; where they name two colours the text
    tower's roles test says which is the object's, and only its words go (their punctuation stays)."""
    from edit_helpers import Ctx

    from nodes.shapes.recolor import fitted
    from nodes.shapes.textcolor import drop_color_words, word_colors

    clip = BagOfWordsClip()
    handle = ModelHandle(clip, "stand-in", "unclip.clip")
    tmap = fitted(Ctx(tmp_path, models=store), handle, "text_color",
                  lambda clip, progress: fit_text_color_map(clip, n=1500), TextColorMap)
    texts = ["a blue background, a red disk", "a red disk on a blue background", "a small green square"]
    assert word_colors(tmap, clip, texts)[0] == ["", "blue", "", "", "red", ""]
    bg_first, obj_first, one = drop_color_words(tmap, clip, texts)
    assert (bg_first.text, bg_first.color, bg_first.words) == ("a blue background, a disk", "red", ("red",))
    assert (obj_first.text, obj_first.color, obj_first.words) == ("a disk on a blue background", "red", ("red",))
    assert (one.text, one.color, one.words) == ("a small square", "green", ("green",))  # one colour: as before
    cond = _conditioning(clip, texts[:2])
    out, _ = run(FactorColor, tmp_path, models=store, clip=handle, conditioning=cond)
    assert out.color == "red" and out.conditioning.texts == (bg_first.text, obj_first.text)


@pytest.mark.skipif(not (MODEL / "clip").is_dir(), reason="shipped weights absent (run `python -m train all`)")
def test_shipped_clip_tells_the_objects_colour_from_the_backgrounds_in_the_tuning_sets():
    """The tuning set's and the hard tuning set's full prompts (96 of each row): the colour handed to
    Recolour Embedding is the object's in all of the tuning set's and at least 0.89 of the hard set's
    (before `roles`: 0.86 and 0.56 of the hard set's rows, bench/miss_probe.py), and none is passed on."""
    from eval import _tuning_hard_prompts as hard
    from eval import _tuning_prompts as tuning
    from nodes.shapes.textcolor import drop_color_words
    from nodes.unclip.models import load_clip

    clip = load_clip(MODEL)
    tmap = fit_text_color_map(clip)  # the node's fit
    shaded = ["a big dark green square", "a dark red star on a white background"]  # "dark" alone reads black
    with torch.no_grad():
        assert [(d.text, d.color) for d in drop_color_words(tmap, clip, shaded)] == [
            ("a big square", "green"), ("a star on a white background", "red")]
    for gen, least in ((tuning, 96), (hard, 86)):
        for split in ("heldout_combos", "heldout_pairs"):
            prompts = gen.full_prompts(split, 96)
            with torch.no_grad():
                got = drop_color_words(tmap, clip, [p.text for p in prompts])
            right = sum(d.color == p.named["color"] for d, p in zip(got, prompts, strict=True))
            assert right >= least and not any("/" in d.color for d in got), (gen.__name__, split, right)


def test_a_colour_phrase_is_exchanged_for_one_palette_word_keeping_its_punctuation():
    from nodes.shapes.textcolor import exchange

    words = "quadrate, royal purple; dark green backdrop".split()
    colors = ["", "", "purple", "green", "green", ""]
    assert exchange(words, colors, "purple", "red") == "quadrate, royal red; dark green backdrop"
    assert exchange(words, colors, "green", "blue") == "quadrate, royal purple; blue backdrop"


class BentClip(BagOfWordsClip):
    """The stand-in, with the binding failure of a pair it never saw: in a prompt that names a star, an
    object's "red" adds to the pooled embedding what a background's "red" does, so the whole prompt's
    read-out sees no colour, though "red" alone, or another colour with the star, reads as the object's.
    (No fitting caption names a red star: it is a held-out pair.)"""

    def _key(self, words: list[str], t: int) -> str:
        key = super()._key(words, t)
        return "bg:red" if key == "red" and "star" in words else key


def test_a_colour_the_whole_prompt_does_not_read_is_taken_from_the_word_that_names_it(tmp_path, store):
    """With `words_alone` (version 5): where a held-out pair bends the whole prompt's read-out to no
    colour ("star, red"), the word read alone names it and the read-out follows it when it is exchanged
    for another colour, so it is the object's: dropped and named. A colour named for the background
    alone ("a star on a red background") is not followed, and stays."""
    from edit_helpers import Ctx

    from nodes.shapes.recolor import fitted
    from nodes.shapes.textcolor import TRACKED, drop_color_words, phrase_colors, tracking, word_colors

    clip = BentClip()
    handle = ModelHandle(clip, "stand-in", "unclip.clip")
    tmap = fitted(Ctx(tmp_path, models=store), handle, "text_color",
                  lambda clip, progress: fit_text_color_map(clip, n=1500), TextColorMap)
    texts = ["star, red", "a star on a red background", "a red disk", "a star at the top"]
    assert tmap.named(clip.encode_text(texts)) == ["", "", "red", ""]  # the bent reading: none for the red star
    words = texts[1].split()
    colors = phrase_colors(words, word_colors(tmap, clip, [texts[1]])[0])
    assert tracking(tmap, clip, words, colors, "red") <= TRACKED < tracking(tmap, clip, ["star,", "red"],
                                                                             ["", "red"], "red")
    before = drop_color_words(tmap, clip, texts, words_alone=False)  # as version 4 did
    assert [(d.text, d.color) for d in before] == [(texts[0], ""), (texts[1], ""), ("a disk", "red"), (texts[3], "")]
    got = drop_color_words(tmap, clip, texts)
    assert [(d.text, d.color, d.words) for d in got] == [
        ("star,", "red", ("red",)), (texts[1], "", ()), ("a disk", "red", ("red",)), (texts[3], "", ())]
    out, ctx = run(FactorColor, tmp_path, models=store, clip=handle, conditioning=_conditioning(clip, texts[:2]))
    assert out.color == "red," and out.conditioning.texts == ("star,", texts[1])
    assert "for the prior: 'star,' (dropped 'red')" in ctx.ui["text"][1]
    old, _ = run(FactorColor, tmp_path, models=store, clip=handle, conditioning=_conditioning(clip, texts[:2]),
                 words_alone=False)
    assert old.color == "" and old.conditioning.texts == tuple(texts[:2])


@pytest.mark.skipif(not (MODEL / "clip").is_dir(), reason="shipped weights absent (run `python -m train all`)")
def test_shipped_clip_names_the_colour_of_short_held_out_pair_prompts_its_whole_read_out_misses():
    """Short prompts of held-out pairs in the hard tuning set's phrasings ("pentangle, red", "a circle of
    a yellow hue"): the whole prompt's read-out sees no colour in 18 of 32, so before `words_alone` the
    prior got the held-out pair and nothing was recoloured (colour 0.38 on the evaluation's row). Now the
    colour handed on is the named one in all 32; a colour named for the background alone stays unread,
    and the tuning sets' other rows hand on the colours they did."""
    from eval import _tuning_hard_prompts as hard
    from eval import _tuning_prompts as tuning
    from nodes.shapes.textcolor import drop_color_words
    from nodes.unclip.models import load_clip

    clip = load_clip(MODEL)
    tmap = fit_text_color_map(clip)  # the node's fit
    prompts = hard.short_prompts(32, heldout_pairs=True)
    with torch.no_grad():
        before = drop_color_words(tmap, clip, [p.text for p in prompts], words_alone=False)
        got = drop_color_words(tmap, clip, [p.text for p in prompts])
    assert sum(d.color == p.named["color"] for d, p in zip(before, prompts, strict=True)) <= 16
    assert [d.color for d in got] == [p.named["color"] for p in prompts], [(p.text, d.color) for d, p in
                                                                          zip(got, prompts, strict=True)]
    assert all(d.words and d.color not in d.text.replace(",", " ").split() for d in got)  # the prior: no colour
    background = ["a star on black", "a triangle, yellow backdrop", "something on blue",
                  "a square over a purple backdrop", "star, black background"]
    with torch.no_grad():
        assert [(d.text, d.color) for d in drop_color_words(tmap, clip, background)] == [(t, "") for t in background]
    for gen in (tuning, hard):
        for prompts in (gen.short_prompts(48), gen.full_prompts("heldout_pairs", 48)):
            texts = [p.text for p in prompts]
            with torch.no_grad():
                old = drop_color_words(tmap, clip, texts, words_alone=False)
                new = drop_color_words(tmap, clip, texts)
            right = [sum(d.color == p.named.get("color", "") for d, p in zip(x, prompts, strict=True))
                     for x in (old, new)]
            assert right[1] >= right[0], (gen.__name__, right)


def test_a_colour_word_joined_to_others_by_punctuation_is_neither_dropped_nor_exchanged_with_them():
    """Review fix: words are split at whitespace, so "pentangle,red" is one word that reads red; dropping it
    took the shape along (the prior got ","). Such a phrase is left to the other steps; a colour word's own
    punctuation stays where it stands when it is exchanged or dropped."""
    from nodes.shapes.textcolor import _joined, _say, _without, drop_unread, exchange

    assert drop_unread(None, None, "pentangle,red", ["red"]) is None  # no read-out needed: never tracked
    assert drop_unread(None, None, "big star/red", ["", "red"]) is None
    assert _joined(["a", "star,red"], ["", "red"], "red") and not _joined(["star,", "red"], ["", "red"], "red")
    assert _say("(mauve);", "red") == "(red);" and _say("mauve,", "") == ","
    assert exchange(["star", "(red)"], ["", "red"], "red", "blue") == "star (blue)"
    assert _without(["star", "(red)"], ["", "red"], "red").text == "star ()"
