"""CLIP-space operations: slerp, text diffs, PCA reconstruction (pure tensor maths, no model)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from nodegraph import NodeExecutionError
from nodes.unclip.embeddings import EmbeddingInterpolate, EmbeddingPCA, TextDiff, slerp


def unit(*xs):
    v = torch.tensor([xs], dtype=torch.float32)
    return v / v.norm()


def run(node_cls, **values):
    return node_cls().run(node_cls.Inputs.model_construct(**values), None)


def test_slerp_endpoints_and_midpoint_on_the_great_circle():
    a, b = unit(1, 0), unit(0, 1)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid, unit(1, 1), atol=1e-6)  # not the chord midpoint (0.5, 0.5)
    assert math.isclose(float(mid.norm()), 1.0, rel_tol=1e-6)


def test_slerp_interpolates_norms_linearly_and_handles_parallel_vectors():
    a, b = 2 * unit(1, 0), 4 * unit(1, 0)
    out = slerp(a, b, 0.25)
    assert torch.allclose(out, 2.5 * unit(1, 0), atol=1e-6)
    assert torch.isfinite(out).all()


def test_interpolate_steps_gives_a_path_from_a_to_b_grouped_by_t():
    a, b = torch.randn(2, 8), torch.randn(2, 8)
    out = run(EmbeddingInterpolate, a=a, b=b, t=0.5, steps=5).embedding
    assert out.shape == (10, 8)
    assert torch.allclose(out[:2], a, atol=1e-5) and torch.allclose(out[-2:], b, atol=1e-5)


def test_interpolate_broadcasts_a_single_embedding_and_refuses_mismatched_widths():
    out = run(EmbeddingInterpolate, a=torch.randn(1, 8), b=torch.randn(3, 8), t=0.3, steps=0).embedding
    assert out.shape == (3, 8)
    with pytest.raises(NodeExecutionError, match="different CLIP models"):
        run(EmbeddingInterpolate, a=torch.randn(1, 8), b=torch.randn(1, 4), t=0.3, steps=0)


def cond(vec):
    return SimpleNamespace(embeds=vec)


def test_text_diff_moves_towards_the_edit_direction_and_keeps_the_norm():
    z_i = 3 * unit(1, 0, 0)
    src, dst = cond(unit(0, 1, 0)), cond(unit(0, 0, 1))
    out = run(TextDiff, image_embedding=z_i, source=src, target=dst, amount=0.5, steps=3).embedding
    assert out.shape == (3, 3)
    assert torch.allclose(out[0], z_i[0], atol=1e-5)  # θ = 0 is the input
    direction = (dst.embeds - src.embeds)[0]
    sims = [float(torch.cosine_similarity(o, direction, dim=0)) for o in out]
    assert sims[0] < sims[1] < sims[2]
    assert torch.allclose(out.norm(dim=-1), torch.full((3,), 3.0), atol=1e-4)


def test_text_diff_of_identical_texts_keeps_the_embedding_and_says_why():
    shown = {}
    ctx = SimpleNamespace(show=lambda **items: shown.update(items))
    inputs = TextDiff.Inputs.model_construct(image_embedding=unit(1, 0), source=cond(unit(0, 1)),
                                             target=cond(unit(0, 1)), amount=0.3, steps=3)
    out = TextDiff().run(inputs, ctx).embedding
    assert torch.equal(out, unit(1, 0).repeat(3, 1))
    assert "same embedding" in shown["text"][0]


def test_pca_with_all_components_reconstructs_exactly_and_fewer_approximate():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(20, 6, generator=g) @ torch.diag(torch.tensor([5.0, 3, 1, 0.5, 0.1, 0.01]))
    x = basis[:2]
    out = run(EmbeddingPCA, basis=basis, embedding=x, components="1,3,6")
    recon = out.embedding.view(3, 2, 6)
    errors = [float((r - x).norm()) for r in recon]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4
    assert "k=6: 1.000" in out.explained


def test_pca_refuses_more_components_than_the_set_allows():
    with pytest.raises(NodeExecutionError, match="between 1 and 4"):
        run(EmbeddingPCA, basis=torch.randn(4, 8), embedding=torch.randn(1, 8), components="5")
