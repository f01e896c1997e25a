"""MultiDiffusion node and sampler on the tiny seeded models: identity with the plain decoder, layouts, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edit_helpers import run

from nodegraph import NodeExecutionError
from nodes.compose.multidiffusion import coverage, panorama_paths, region_paths, window_starts
from nodes.compose.regions import MultiDiffusion
from nodes.unclip.models import tiny
from nodes.unclip.models.upsampler import upsample
from nodes.unclip.sampling import Decoder

torch.set_num_threads(1)
S = tiny.DECODER_SIZE


@pytest.fixture(scope="module")
def models():
    return {"decoder": tiny.decoder(), "conditioning": tiny.conditioning(("a red circle", "a blue square")),
            "image_embedding": torch.randn(2, tiny.TEXT_DIM, generator=torch.Generator().manual_seed(4))}


def test_windows_cover_the_canvas_and_the_last_is_flush_with_the_edge():
    assert window_starts(96, 32, 16) == [0, 16, 32, 48, 64]
    assert window_starts(100, 32, 32) == [0, 32, 64, 68]
    assert window_starts(32, 32, 8) == [0]
    paths = panorama_paths(32, 100, 32, 32, 1)
    assert bool((coverage(paths, 32, 100) >= 1).all())


def test_one_window_covering_the_canvas_is_exactly_the_plain_decoder(tmp_path, models):
    one = {"decoder": models["decoder"], "conditioning": tiny.conditioning(("a red circle",)),
           "image_embedding": models["image_embedding"][:1]}
    plain, _ = run(Decoder, tmp_path, steps=3, seed=5, **one)
    fused, _ = run(MultiDiffusion, tmp_path, steps=3, seed=5, width=S, height=S, **one)
    np.testing.assert_allclose(fused.images, plain.images, atol=1e-5)


def test_regions_paint_a_canvas_of_the_requested_size_and_return_their_masks(tmp_path, models):
    out, ctx = run(MultiDiffusion, tmp_path, steps=2, width=2 * S, height=S, regions="0 0 0.5 1\n0.5 0 1 1",
                   **models)
    assert out.images.shape == (1, S, 2 * S, 3) and np.isfinite(out.images).all()
    assert out.masks.shape == (2, S, 2 * S) and out.masks[0, :, :S].all() and not out.masks[0, :, S:].any()
    assert ctx.steps[-1] == (2, 2)


def test_a_panorama_fuses_overlapping_windows_into_a_wide_image(tmp_path, models):
    one = {**models, "image_embedding": models["image_embedding"][:1], "conditioning": tiny.conditioning()}
    out, _ = run(MultiDiffusion, tmp_path, steps=2, width=3 * S, height=S, stride=S // 2, **one)
    assert out.images.shape == (1, S, 3 * S, 3)
    assert out.masks.max() == 2  # interior pixels lie in two windows


def test_region_weights_are_one_inside_zero_in_other_regions_and_background_elsewhere():
    masks = torch.zeros(2, 16, 16)
    masks[0, :8, :8] = 1
    masks[1, 8:, 8:] = 1
    paths = region_paths(masks, 16, 0.5)
    w = paths[0].weight
    assert w[0, 0] == 1 and w[15, 15] == 0 and w[0, 15] == 0.5


def test_masks_replace_boxes_and_are_resized_to_the_canvas(tmp_path, models):
    masks = np.zeros((2, 4, 8), np.float32)
    masks[0, :, :4] = 1
    masks[1, :, 4:] = 1
    out, _ = run(MultiDiffusion, tmp_path, steps=2, width=2 * S, height=S, masks=masks, **models)
    assert out.masks.shape == (2, S, 2 * S) and out.masks[1, :, S:].all()


@pytest.mark.parametrize(("kw", "words"), [
    ({"regions": "0 0 0.5 1\n0 0 1 1\n0 0 1 0.5"}, "2 image embeddings and 2 prompts for 3 regions"),
    ({"regions": "0 0 1.5 1\n0 0 1 1"}, "not a box inside the canvas"),
    ({"regions": "left half\n0 0 1 1"}, "expected four numbers"),
    ({"regions": "0 0 0.2 0.2\n0.8 0.8 1 1", "background": 0.0}, "in no window with weight"),
    ({"width": S // 2}, "smaller than the decoder"),
])
def test_bad_layouts_say_what_to_fix(tmp_path, models, kw, words):
    kw = {"steps": 2, "width": S, "height": S, **kw}
    with pytest.raises(NodeExecutionError, match=words):
        run(MultiDiffusion, tmp_path, **{**models, **kw})


def test_the_upsampler_keeps_a_wide_images_aspect_ratio():
    low = torch.rand(1, 3, S, 3 * S, generator=torch.Generator().manual_seed(0))
    up = tiny.upsampler().model
    out = upsample(up, low, steps=2, generator=torch.Generator().manual_seed(0), fix_colors=True)
    assert out.shape == (1, 3, up.sample_size, 3 * up.sample_size)


def test_isolating_hides_the_other_regions_from_a_path_and_keeps_its_own():
    from nodes.compose.multidiffusion import _isolate

    masks = torch.zeros(2, 16, 16)
    masks[0, :8, :8] = 1
    masks[1, 8:, 8:] = 1
    paths = region_paths(masks, 16, 1.0)
    windows = torch.full((2, 3, 16, 16), 5.0)
    out = _isolate(windows, paths, torch.zeros(3), torch.tensor(1.0), torch.Generator().manual_seed(0))
    assert (out[0, :, :8, :8] == 5).all() and (out[0, :, :8, 8:] == 5).all()  # own region and background kept
    assert (out[0, :, 8:, 8:] == 0).all()  # the other region: the (noise-free at abar = 1) background colour
    assert (out[1, :, :8, :8] == 0).all() and (out[1, :, 8:, 8:] == 5).all()


def test_the_priors_count_makes_that_many_canvases_each_with_every_region(tmp_path, models):
    emb = torch.randn(4, tiny.TEXT_DIM, generator=torch.Generator().manual_seed(1))  # 2 prompts × count 2
    out, ctx = run(MultiDiffusion, tmp_path, steps=2, width=S, height=S, regions="0 0 0.5 1\n0.5 0 1 1",
                   **{**models, "image_embedding": emb})
    assert out.images.shape == (2, S, S, 3) and not np.allclose(out.images[0], out.images[1])
    assert ctx.steps[-1] == (4, 4)


def test_a_region_wider_than_a_window_is_covered_by_sliding_windows():
    masks = torch.zeros(1, 16, 40)
    masks[0, :, 2:38] = 1
    paths = region_paths(masks, 16, 1.0, stride=8)
    assert [p.x0 for p in paths] == [2, 10, 18, 22]
    assert bool((coverage(paths, 16, 40)[:, 2:38] >= 1).all())
