"""Recolour Embedding: the fitted colour map, the node's checks, and its effect on the shipped models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT
from edit_helpers import run

from nodegraph import ModelHandle, ModelStore, NodeExecutionError
from nodes.shapes import analyse, domain
from nodes.shapes.recolor import EmbeddingRecolor, fit_color_map, fit_scenes, parse_color

MODEL = ROOT / "models" / "shapes-unclip"


@pytest.fixture
def store() -> ModelStore:
    """One model store for a test's node runs: the map fitted for a CLIP is kept there, as in an engine."""
    return ModelStore([])


class LinearColorClip(torch.nn.Module):
    """A stand-in image encoder whose embedding is linear in the object's colour, plus a shape and
    position part (orthogonal to it) that a repaint leaves alone: the fit must recover the colour part."""

    def __init__(self, dim: int = 12):
        super().__init__()
        self.embed_dim = dim
        g = torch.Generator().manual_seed(0)
        self.color = torch.randn(3, dim, generator=g)
        q, _ = torch.linalg.qr(self.color.T)  # (dim, 3): the colour part's span
        layout = torch.randn(64 * 64, dim, generator=g) / 64
        self.layout = layout - layout @ q @ q.T

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        bg = images[:, :, 0, 0]  # every Shapes render has background at its corner
        dist = (images - bg[:, :, None, None]).abs().sum(1)  # (B, H, W)
        obj = dist > 0.2
        # the object's colour: its fully covered pixels (not the anti-aliased rim)
        inner = (dist >= 0.97 * dist.flatten(1).max(1).values[:, None, None]).float()
        fg = (images * inner[:, None]).sum((2, 3)) / inner.sum((1, 2))[:, None]
        return fg @ self.color + obj.flatten(1).float() @ self.layout


def test_a_fit_gives_the_same_bits_with_one_thread_and_with_two():
    """A Ray worker (1 thread) and a local run (2 threads) fit the same map, so they make the same images;
    the map is row-major, as one read from disk is (a product with a column-major copy rounds otherwise)."""
    class Once(LinearColorClip):
        """Encodes each batch once: its own float32 sums follow the thread count (the shipped CLIP's do not)."""

        def __init__(self):
            super().__init__()
            self.seen = {}

        def encode_image(self, images):
            key = images.numpy().tobytes()
            if key not in self.seen:
                self.seen[key] = super().encode_image(images)
            return self.seen[key]

    clip, threads = Once(), torch.get_num_threads()
    maps = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            maps.append(fit_color_map(clip, n=120))
    finally:
        torch.set_num_threads(threads)
    for name in ("direction", "readout", "step"):
        assert getattr(maps[0], name).is_contiguous(), name
    assert torch.equal(maps[0].direction, maps[1].direction) and torch.equal(maps[0].step, maps[1].step)
    # the read-out's intercept is ~1e-9 here (the stand-in has none), below float64's noise at the scale of
    # the other entries: it may differ in its last bits, but no read-out or move does
    emb = torch.randn(6, clip.embed_dim, generator=torch.Generator().manual_seed(1))
    blue = torch.tensor(domain.PALETTE["blue"]) / 255
    assert torch.equal(maps[0].read(emb), maps[1].read(emb))
    assert torch.equal(maps[0].apply(emb, blue), maps[1].apply(emb, blue))


def _render(*scenes) -> torch.Tensor:
    return torch.from_numpy(np.stack([domain.render(s, 64) for s in scenes])).permute(0, 3, 1, 2).float() / 255


def test_fit_recovers_a_linear_colour_part_and_moves_the_read_out_to_the_target():
    clip = LinearColorClip()
    cmap = fit_color_map(clip, n=120)
    assert cmap.explained > 0.98
    # the map is the encoder's colour part, up to the anti-aliased edge pixels' share of the mean
    cos = torch.nn.functional.cosine_similarity(cmap.direction, clip.color, dim=1)
    assert (cos > 0.98).all(), cos
    rng = np.random.default_rng(3)
    scenes = [domain.make_scene(rng, "red", "white", "circle", "large", "center"),
              domain.make_scene(rng, "green", "black", "star", "small", "top left")]
    emb = clip.encode_image(_render(*scenes))
    truth = torch.tensor([s.fg_rgb for s in scenes]).float() / 255
    assert (cmap.read(emb) - truth).abs().max() < 6 / 255  # the read-out sees the object's colour
    blue = torch.tensor(domain.PALETTE["blue"]) / 255
    moved = cmap.apply(emb, blue)
    assert (cmap.read(moved) - blue).abs().max() < 1e-4  # strength 1 lands on the target
    assert (cmap.read(cmap.apply(emb, blue, 0.5)) - (truth + blue) / 2).abs().max() < 6 / 255
    assert torch.equal(cmap.apply(emb, blue, strength=0.0), emb)


def test_the_fit_never_shows_a_held_out_pair_or_combination():
    palette = {c: np.array(rgb) for c, rgb in domain.PALETTE.items()}
    scenes, repainted = fit_scenes()
    for s, r in zip(scenes, repainted, strict=True):
        nearest = min(palette, key=lambda c: ((palette[c] - np.array(r.fg_rgb)) ** 2).sum())
        assert nearest not in (s.color, s.background)
        assert domain.split_of(nearest, r.background, r.shape, r.size, r.position) == "train", (nearest, r)
        assert domain.split_of(s.color, s.background, s.shape, s.size, s.position) == "train"


def test_colour_names_and_hex_codes():
    assert parse_color("Blue") == domain.PALETTE["blue"]  # the palette, not CSS's (0, 0, 255)
    assert parse_color("teal") == (0, 128, 128)
    assert parse_color("#2346e1") == (0x23, 0x46, 0xE1)
    with pytest.raises(NodeExecutionError, match="unknown colour 'bleu'.*palette name"):
        parse_color("bleu")


def test_node_checks_the_embedding(tmp_path, store):
    clip = ModelHandle(LinearColorClip(dim=12), "stand-in", "unclip.clip")
    with pytest.raises(NodeExecutionError, match="width 7, but this CLIP's image embeddings have width 12"):
        run(EmbeddingRecolor, tmp_path, models=store, clip=clip, embedding=torch.zeros(2, 7))
    with pytest.raises(NodeExecutionError, match=r"shape \(B, D\)"):
        run(EmbeddingRecolor, tmp_path, models=store, clip=clip, embedding=torch.zeros(12))


def test_node_recolours_a_batch_keeps_its_dtype_and_reports(tmp_path, store):
    clip = LinearColorClip(dim=12)
    rng = np.random.default_rng(4)
    scenes = [domain.make_scene(rng, c, "white", "square", "large", "center") for c in ("red", "green", "black")]
    emb = clip.encode_image(_render(*scenes)).to(torch.float64)
    out, ctx = run(EmbeddingRecolor, tmp_path, models=store, clip=ModelHandle(clip, "stand-in", "unclip.clip"), embedding=emb,
                   color="#ffa500")
    moved = out.embedding
    assert moved.dtype == torch.float64 and moved.shape == emb.shape
    # on the linear stand-in the colour part of every row becomes orange, the rest stays
    fg = torch.linalg.lstsq(clip.color.T.double(), (moved - emb).T).solution.T  # Δrgb per row
    truth = torch.tensor([s.fg_rgb for s in scenes]).double() / 255
    target = torch.tensor([255, 165, 0]).double() / 255
    assert (truth + fg - target).abs().max() < 8 / 255
    assert ctx.steps and ctx.steps[-1][0] == ctx.steps[-1][1]  # the fit reported its progress
    assert "#ffa500" in ctx.ui["text"][0] and ctx.ui["text"][0].count("→") == 3


def test_node_takes_the_target_colour_from_other_embeddings(tmp_path, store):
    clip = LinearColorClip(dim=12)
    handle = ModelHandle(clip, "stand-in", "unclip.clip")
    rng = np.random.default_rng(6)
    src = [domain.make_scene(rng, c, "white", s, "large", "center") for c, s in (("red", "square"), ("green", "star"))]
    refs = [domain.make_scene(rng, c, "black", "circle", "small", "top") for c in ("blue", "yellow")]
    emb, ref = clip.encode_image(_render(*src)), clip.encode_image(_render(*refs))
    ref_rgb = torch.tensor([s.fg_rgb for s in refs]).float() / 255
    # `color` is ignored (even an unknown name) when color_from is connected
    one, ctx = run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb, color_from=ref[:1], color="bleu")
    cmap = fit_color_map(clip)  # the same fit the node made
    assert (cmap.read(one.embedding) - ref_rgb[0]).abs().max() < 6 / 255  # both rows take the blue circle's colour
    assert "targets read from color_from" in ctx.ui["text"][0]
    each, _ = run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb, color_from=ref)
    assert (cmap.read(each.embedding) - ref_rgb).abs().max() < 6 / 255  # row by row
    # the rest of the embedding (shape, place) is the source's, not the reference's
    move = each.embedding - emb
    off_colour = move - torch.linalg.lstsq(clip.color.T, move.T).solution.T @ clip.color
    assert off_colour.norm() < 0.05 * move.norm(), off_colour.norm() / move.norm()
    with pytest.raises(NodeExecutionError, match=r"color_from: expected embeddings of shape \(1, 12\) or \(2, 12\)"):
        run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb, color_from=torch.zeros(3, 12))


@pytest.mark.skipif(not (MODEL / "clip").is_dir(), reason="shipped weights absent (run `python -m train all`)")
def test_recoloured_variations_take_the_new_colour_and_keep_the_shape(tmp_path, store):
    """Red circles, squares and triangles → image embedding → recoloured to blue/green/yellow →
    decoder: the analyser sees the new colour and the old shape. (The held-out-pair figure is
    `python -m eval shapes`, row heldout_pairs_recolor.)"""
    from nodes.unclip.models import load_clip, load_decoder, sample_decoder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    clip, decoder = load_clip(MODEL), load_decoder(MODEL)
    rng = np.random.default_rng(5)
    # the first two targets are held-out pairs (blue triangle, red star): no model saw them
    cases = [("red", "white", "triangle", "blue"), ("green", "white", "star", "red"),
             ("red", "white", "circle", "blue"), ("red", "white", "square", "green"),
             ("orange", "black", "triangle", "yellow"), ("green", "white", "star", "purple")]
    scenes = [domain.make_scene(rng, c, bg, s, "large", "center") for c, bg, s, _ in cases]
    x = torch.from_numpy(np.stack([domain.render(s, 64) for s in scenes])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        emb = clip.encode_image(x)
    handle = ModelHandle(clip, "shapes-unclip", "unclip.clip")
    moved = torch.cat([run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb[i:i + 1], color=new)[0].embedding
                       for i, (*_, new) in enumerate(cases)])
    empty = clip.encode_text([""])
    with torch.no_grad():
        images = sample_decoder(decoder, moved, empty, empty, guidance=1.5, steps=15,
                                generator=torch.Generator().manual_seed(0))
    torch.set_num_threads(threads)
    found = [analyse.analyse(im).attributes()
             for im in (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)]
    assert [f["color"] for f in found] == [new for *_, new in cases], found
    assert [f["shape"] for f in found] == [s for _, _, s, _ in cases], found


class TwoColourClip(LinearColorClip):
    """The linear stand-in with a background part too: the background's colour along its own directions."""

    def __init__(self, dim: int = 16):
        super().__init__(dim)
        self.back = torch.randn(3, dim, generator=torch.Generator().manual_seed(2))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return super().encode_image(images) + images[:, :, 0, 0] @ self.back


def test_the_background_fit_repaints_only_backgrounds_and_stays_in_the_training_split():
    palette = {c: np.array(rgb) for c, rgb in domain.PALETTE.items()}
    scenes, repainted = fit_scenes(200, part="background")
    for s, r in zip(scenes, repainted, strict=True):
        nearest = min(palette, key=lambda c: ((palette[c] - np.array(r.bg_rgb)) ** 2).sum())
        assert nearest not in (s.color, s.background) and r.fg_rgb == s.fg_rgb
        assert domain.split_of(s.color, nearest, r.shape, r.size, r.position) == "train", (nearest, r)
    # the object fit's pairs are the ones it always had (maps kept on disk stay valid)
    old, new = fit_scenes(50), fit_scenes(50, part="object")
    assert old == new and all(a.bg_rgb == b.bg_rgb for a, b in zip(*old, strict=True))


def test_an_object_recoloured_to_its_backgrounds_colour_takes_the_background_elsewhere(tmp_path, store):
    """A prior sample for "a purple triangle" without its colour may have a purple background: recoloured
    to purple, the object would vanish into it. The background goes to the colour the object had instead
    (the two swap); a sample on another background is recoloured as before, and keep_apart off leaves
    every background alone."""
    from nodes.shapes.recolor import fit_background_map, nearest_palette

    clip = TwoColourClip()
    handle = ModelHandle(clip, "stand-in", "unclip.clip")
    rng = np.random.default_rng(8)
    scenes = [domain.make_scene(rng, "green", "purple", "triangle", "large", "center"),
              domain.make_scene(rng, "green", "white", "triangle", "large", "center")]
    emb = clip.encode_image(_render(*scenes))
    out, ctx = run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb, color="purple")
    cmap, bmap = fit_color_map(clip), fit_background_map(clip)  # the node's fits
    purple = torch.tensor(domain.PALETTE["purple"]).float() / 255
    assert (cmap.read(out.embedding) - purple).abs().max() < 6 / 255  # both objects are purple now
    # the first background took the green (read after the object's move, which it leans with a little)
    assert nearest_palette(bmap.read(out.embedding)) == ["green", "white"]
    assert "row 0: green" in ctx.ui["text"][1] and "row 1" not in ctx.ui["text"][1]
    off, ctx = run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb, color="purple",
                   keep_apart=False)
    assert torch.allclose(out.embedding[1], off.embedding[1])  # on white, only the object moved
    assert nearest_palette(bmap.read(off.embedding)) == ["purple", "white"]
    assert len(ctx.ui["text"]) == 1


def test_two_candidate_colours_take_the_roles_the_sample_gives_them(tmp_path, store):
    """Factor Out Colour writes "a/b" for a prompt naming two colours it cannot tell apart and passes the
    prompt on whole: per sample, one goes on the object and the other on the background, in the roles the
    sample has them in (whichever was written first); a sample with neither takes the first for its object."""
    from nodes.shapes.recolor import fit_background_map, nearest_palette

    clip = TwoColourClip()
    handle = ModelHandle(clip, "stand-in", "unclip.clip")
    rng = np.random.default_rng(9)
    scenes = [domain.make_scene(rng, "orange", "purple", "square", "small", "left"),  # purple on the background
              domain.make_scene(rng, "purple", "green", "square", "small", "left"),  # purple on the object
              domain.make_scene(rng, "green", "white", "square", "small", "left")]  # neither
    emb = clip.encode_image(_render(*scenes))
    cmap, bmap = fit_color_map(clip), fit_background_map(clip)
    orange, purple = (torch.tensor(domain.PALETTE[c]).float() / 255 for c in ("orange", "purple"))
    for color, third in (("purple/orange", purple), ("orange/purple", orange)):
        out, ctx = run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb, color=color)
        objects, backgrounds = cmap.read(out.embedding), bmap.read(out.embedding)
        want = torch.stack([orange, purple, third])
        assert (objects - want).abs().max() < 6 / 255, (color, objects)
        assert nearest_palette(backgrounds) == ["purple", "orange", "orange" if third is purple else "purple"]
        assert f"targets, per prompt: {color} (chosen" in ctx.ui["text"][0]
    # one entry per prompt, each of its runs decided row by row; an empty entry keeps its run
    per, _ = run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=torch.cat([emb[:2], emb[:2]]),
                 color="purple/orange,")
    assert (cmap.read(per.embedding[:2]) - torch.stack([orange, purple])).abs().max() < 6 / 255
    assert torch.equal(per.embedding[2:], emb[:2])
    with pytest.raises(NodeExecutionError, match="unknown colour 'bleu'"):
        run(EmbeddingRecolor, tmp_path, models=store, clip=handle, embedding=emb, color="red/bleu")
