"""Inpainting node on the tiny seeded models: outside pixels kept exactly, identities, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edit_helpers import run

from nodegraph import Cancelled, NodeExecutionError
from nodes.edit.inpaint import Inpaint
from nodes.unclip.models import tiny
from nodes.unclip.sampling import Decoder

torch.set_num_threads(1)
S = tiny.DECODER_SIZE


@pytest.fixture(scope="module")
def models():
    return {"decoder": tiny.decoder(), "conditioning": tiny.conditioning(("a green star",)),
            "image_embedding": torch.randn(1, tiny.TEXT_DIM, generator=torch.Generator().manual_seed(4))}


def image(size: int, batch: int = 1) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((batch, size, size, 3), dtype=np.float32)


def box(size: int, lo: int, hi: int) -> np.ndarray:
    m = np.zeros((1, size, size), np.float32)
    m[:, lo:hi, lo:hi] = 1.0
    return m


def inpaint(tmp_path, models, **kw):
    kw.setdefault("steps", 5)
    out, ctx = run(Inpaint, tmp_path, **{**models, **kw})
    return out, ctx


def test_pixels_outside_the_mask_are_the_input_exactly_at_any_size(tmp_path, models):
    img, mask = image(24), box(24, 6, 15)
    out, ctx = inpaint(tmp_path, models, image=img, mask=mask)
    assert out.images.shape == img.shape and out.mask.shape == mask.shape
    outside = mask[0] == 0
    assert np.array_equal(out.images[0][outside], img[0][outside])
    assert np.abs(out.images[0][~outside] - img[0][~outside]).mean() > 0.05
    assert ctx.steps[-1] == (5, 5)
    again, _ = inpaint(tmp_path, models, image=img, mask=mask)
    assert np.array_equal(out.images, again.images)  # deterministic


def test_all_zero_mask_returns_the_input_exactly(tmp_path, models):
    img = image(20)
    out, ctx = inpaint(tmp_path, models, image=img, mask=np.zeros((1, 20, 20), np.float32))
    assert np.array_equal(out.images, img)
    assert ctx.steps == []  # nothing sampled


def test_full_mask_equals_plain_decoding_with_the_same_seed(tmp_path, models):
    out, _ = inpaint(tmp_path, models, image=image(S), mask=np.ones((1, S, S), np.float32), seed=7)
    plain, _ = run(Decoder, tmp_path, decoder=models["decoder"], image_embedding=models["image_embedding"],
                   conditioning=models["conditioning"], guidance=1.5, steps=5, seed=7)
    assert np.array_equal(out.images, plain.images)


def test_grow_and_feather_never_touch_pixels_outside_the_grown_mask(tmp_path, models):
    img, mask = image(32), box(32, 12, 20)
    out, _ = inpaint(tmp_path, models, image=img, mask=mask, grow=2, feather=2)
    used = out.mask[0]
    assert used[10:22, 10:22].min() > 0 and used[9, 9] == 0 and used[:10].max() == 0  # grown by 2
    assert 0 < used[10, 15] < 1 and used[16, 16] == 1  # feathered inwards only
    assert np.array_equal(out.images[0][used == 0], img[0][used == 0])


def test_lower_strength_starts_from_the_renoised_input_and_still_keeps_the_outside(tmp_path, models):
    img, mask = image(24), box(24, 4, 20)
    full, _ = inpaint(tmp_path, models, image=img, mask=mask, strength=1.0)
    low, _ = inpaint(tmp_path, models, image=img, mask=mask, strength=0.4)
    inside = mask[0] == 1
    assert np.array_equal(low.images[0][~inside], img[0][~inside])
    # closer to the input inside the mask than a start from pure noise
    assert np.abs(low.images[0][inside] - img[0][inside]).mean() < np.abs(full.images[0][inside] - img[0][inside]).mean()


def test_batches_broadcast_and_mismatches_are_clear_errors(tmp_path, models):
    emb = torch.randn(2, tiny.TEXT_DIM, generator=torch.Generator().manual_seed(0))
    out, _ = inpaint(tmp_path, models, image=image(16), mask=box(16, 4, 10), image_embedding=emb)
    assert out.images.shape == (2, 16, 16, 3)
    with pytest.raises(NodeExecutionError, match="mask is 12×12 but the image is 16×16"):
        inpaint(tmp_path, models, image=image(16), mask=box(12, 2, 6))
    with pytest.raises(NodeExecutionError, match="batch sizes do not match"):
        inpaint(tmp_path, models, image=image(16, batch=3), mask=box(16, 4, 10), image_embedding=emb)
    bad = box(16, 4, 10)
    bad[0, 0, 0] = np.nan
    with pytest.raises(NodeExecutionError, match="NaN"):
        inpaint(tmp_path, models, image=image(16), mask=bad)
    with pytest.raises(NodeExecutionError, match="expected a MASK"):
        inpaint(tmp_path, models, image=image(16), mask=np.zeros((1, 0, 16), np.float32))


def test_cancellation_stops_sampling(tmp_path, models):
    with pytest.raises(Cancelled):
        run(Inpaint, tmp_path, cancel_at=2, steps=5, image=image(16), mask=box(16, 4, 10), **models)
