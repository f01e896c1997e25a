"""Interpolation strip on the tiny seeded models: shapes, end frames, keyframes, strip shown."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edit_helpers import run

from nodegraph import NodeExecutionError
from nodes.edit.interpolate import InterpolationStrip
from nodes.unclip.models import tiny
from nodes.unclip.sampling import Decoder

torch.set_num_threads(1)
S = tiny.DECODER_SIZE


@pytest.fixture(scope="module")
def models():
    g = torch.Generator().manual_seed(2)
    return {"decoder": tiny.decoder(), "conditioning": tiny.conditioning(("",)),
            "a": torch.randn(1, tiny.TEXT_DIM, generator=g), "b": torch.randn(1, tiny.TEXT_DIM, generator=g)}


def strip(tmp_path, models, **kw):
    kw.setdefault("steps", 4)
    return run(InterpolationStrip, tmp_path, **{**models, **kw})


def test_frames_strip_and_preview(tmp_path, models):
    out, ctx = strip(tmp_path, models, frames=5, padding=2)
    assert out.frames.shape == (5, S, S, 3)
    assert out.strip.shape == (1, S, 5 * S + 4 * 2, 3)
    assert np.array_equal(out.strip[0, :, S + 2:2 * S + 2], out.frames[1])
    assert out.embedding.shape == (5, tiny.TEXT_DIM)
    (shown,) = ctx.ui["images"]
    assert shown["type"] == "temp" and (tmp_path / "temp" / shown["filename"]).is_file()
    assert ctx.steps[-1] == (4, 4)
    again, _ = strip(tmp_path, models, frames=5, padding=2)
    assert np.array_equal(out.frames, again.frames)
    assert np.abs(out.frames[0] - out.frames[-1]).mean() > 1e-3  # the embedding changes the image


def test_end_frames_are_the_decoder_images_of_a_and_b_with_the_same_seed(tmp_path, models):
    out, _ = strip(tmp_path, models, frames=3, seed=9, scheduler="ddim")  # a sampler without step noise
    for frame, emb in ((out.frames[0], models["a"]), (out.frames[-1], models["b"])):
        plain, _ = run(Decoder, tmp_path, decoder=models["decoder"], image_embedding=emb,
                       conditioning=models["conditioning"], guidance=1.5, steps=4, seed=9, scheduler="ddim")
        np.testing.assert_allclose(frame, plain.images[0], atol=1e-4)  # batch-size rounding only


def test_keyframe_batch_and_rows(tmp_path, models):
    keys = torch.cat([models["a"], models["b"], -models["a"]])
    out, _ = strip(tmp_path, models, a=keys, b=None, frames=5)
    torch.testing.assert_close(out.embedding[[0, 2, 4]], keys, atol=1e-5, rtol=1e-5)
    rows, _ = strip(tmp_path, models, a=keys[:2], b=keys[1:], frames=3, padding=0)
    assert rows.frames.shape == (6, S, S, 3) and rows.strip.shape == (1, 2 * S, 3 * S, 3)
    with pytest.raises(NodeExecutionError, match="at least 2 keyframe"):
        strip(tmp_path, models, b=None)
    with pytest.raises(NodeExecutionError, match="one prompt"):
        strip(tmp_path, models, conditioning=tiny.conditioning(("a", "b")))
