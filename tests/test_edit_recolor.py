"""Recolour Embedding: the fitted colour map, the node's checks, and its effect on the shipped models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT
from edit_helpers import run

from nodegraph import ModelHandle, NodeExecutionError
from nodes.edit.recolor import EmbeddingRecolor, fit_color_map, parse_color
from nodes.shapes import analyse, domain

MODEL = ROOT / "models" / "shapes-unclip"


class LinearColorClip(torch.nn.Module):
    """A stand-in image encoder whose embedding is linear in the object's colour, plus a shape and
    position part (orthogonal to it) that a repaint leaves alone: the fit must recover the colour part."""

    def __init__(self, dim: int = 12):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.color = torch.randn(3, dim, generator=g)
        q, _ = torch.linalg.qr(self.color.T)  # (dim, 3): the colour part's span
        layout = torch.randn(64 * 64, dim, generator=g) / 64
        self.layout = layout - layout @ q @ q.T

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        bg = images[:, :, 0, 0]  # every Shapes render has background at its corner
        obj = (images - bg[:, :, None, None]).abs().sum(1) > 0.2  # (B, H, W)
        fg = (images * obj[:, None]).sum((2, 3)) / obj.sum((1, 2)).clamp_min(1)[:, None]
        return fg @ self.color + obj.flatten(1).float() @ self.layout


def test_fit_recovers_a_linear_colour_part_and_moves_the_read_out_to_the_target():
    clip = LinearColorClip()
    cmap = fit_color_map(clip, n=120)
    assert cmap.explained > 0.98
    # the map is the encoder's colour part, up to the anti-aliased edge pixels' share of the mean
    cos = torch.nn.functional.cosine_similarity(cmap.direction, clip.color, dim=1)
    assert (cos > 0.98).all(), cos
    scene = domain.make_scene(np.random.default_rng(3), "red", "white", "circle", "large", "center")
    x = torch.from_numpy(domain.render(scene, 64)).permute(2, 0, 1)[None].float() / 255
    emb = clip.encode_image(x)
    blue = torch.tensor(domain.PALETTE["blue"]) / 255
    moved = cmap.apply(emb, blue)
    assert (cmap.read(moved) - blue).abs().max() < 0.05
    assert torch.equal(cmap.apply(emb, blue, strength=0.0), emb)


def test_colour_names_and_hex_codes():
    assert parse_color("Blue") == domain.PALETTE["blue"]  # the palette, not CSS's (0, 0, 255)
    assert parse_color("teal") == (0, 128, 128)
    assert parse_color("#2346e1") == (0x23, 0x46, 0xE1)
    with pytest.raises(NodeExecutionError, match="unknown colour 'bleu'.*palette name"):
        parse_color("bleu")


def test_node_checks_the_embedding(tmp_path):
    clip = ModelHandle(LinearColorClip(dim=12), "stand-in", "unclip.clip")
    with pytest.raises(NodeExecutionError, match="width 7, but this CLIP's image embeddings have width 12"):
        run(EmbeddingRecolor, tmp_path, clip=clip, embedding=torch.zeros(2, 7))
    with pytest.raises(NodeExecutionError, match=r"shape \(B, D\)"):
        run(EmbeddingRecolor, tmp_path, clip=clip, embedding=torch.zeros(12))


@pytest.mark.skipif(not (MODEL / "clip").is_dir(), reason="shipped weights absent (run `python -m train all`)")
def test_recoloured_variations_take_the_new_colour_and_keep_the_shape(tmp_path):
    """Red circles, squares and triangles → image embedding → recoloured to blue/green/yellow →
    decoder: the analyser sees the new colour and the old shape. (The held-out-pair figure is
    `nodegraph eval shapes`, row heldout_pairs_recolor.)"""
    from nodes.unclip.models import load_clip, load_decoder, sample_decoder

    torch.set_num_threads(1)
    clip, decoder = load_clip(MODEL), load_decoder(MODEL)
    rng = np.random.default_rng(5)
    cases = [("red", "white", "circle", "blue"), ("red", "white", "square", "green"),
             ("orange", "black", "triangle", "yellow"), ("green", "white", "star", "purple")]
    scenes = [domain.make_scene(rng, c, bg, s, "large", "center") for c, bg, s, _ in cases]
    x = torch.from_numpy(np.stack([domain.render(s, 64) for s in scenes])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        emb = clip.encode_image(x)
    handle = ModelHandle(clip, "shapes-unclip", "unclip.clip")
    moved = torch.cat([run(EmbeddingRecolor, tmp_path, clip=handle, embedding=emb[i:i + 1], color=new)[0].embedding
                       for i, (*_, new) in enumerate(cases)])
    empty = clip.encode_text([""])
    with torch.no_grad():
        images = sample_decoder(decoder, moved, empty, empty, guidance=1.5, steps=15,
                                generator=torch.Generator().manual_seed(0))
    found = [analyse.analyse(im).attributes()
             for im in (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)]
    assert [f["color"] for f in found] == [new for *_, new in cases], found
    assert [f["shape"] for f in found] == [s for _, _, s, _ in cases], found
