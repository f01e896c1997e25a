"""The 32 → 64 px upsampler's conditioning augmentation and its continuations (`upsampler_tune`, `upsampler_decoded`)."""

from __future__ import annotations

import torch

from train.upsampler import TUNE, corrupt


def _edge(b: int = 8) -> torch.Tensor:
    """(b, 3, 32, 32) in [-1, 1]: a hard vertical edge at x = 16."""
    x = -torch.ones(b, 3, 32, 32)
    x[..., 16:] = 1.0
    return x


def _softness(x: torch.Tensor) -> float:
    """How far the edge moved, summed along a row ([-1, 1] units), averaged over rows and images."""
    return float((x - _edge(x.shape[0])).abs()[:, 0].sum(-1).mean())


def test_gaussian_blur_softens_conditioning_more_than_the_base_runs_three_tap_blur():
    torch.manual_seed(0)
    base = corrupt(_edge(64), max_noise=0.0, p_blur=1.0)
    torch.manual_seed(0)
    soft = corrupt(_edge(64), max_noise=0.0, p_blur=1.0, max_blur=1.0)
    assert abs(_softness(base) - 0.5) < 1e-5  # the 3-tap half blur: a quarter level each side of the edge
    assert _softness(soft) > 1.2 * _softness(base)
    assert torch.allclose(soft.mean(), _edge(64).mean(), atol=1e-4)  # a blur, not a shift


def test_no_blur_share_leaves_the_conditioning_untouched():
    assert torch.equal(corrupt(_edge(), max_noise=0.0, p_blur=0.0, max_blur=1.0), _edge())


def test_the_continuation_blurs_most_conditioning_and_keeps_the_base_run_lower_lr():
    args = dict(zip(TUNE[::2], TUNE[1::2], strict=True))
    assert float(args["--p-blur"]) > 0.3 and float(args["--max-blur"]) > 0
    assert float(args["--lr"]) < 5e-4


def test_decoded_pairs_are_kept_only_while_they_show_their_renders_scene():
    import numpy as np

    from nodes.shapes import domain
    from train.data import downsample
    from train.upsampler_decoded import aligned

    scenes = domain.sample_scenes(7, 6, split="train")
    renders = downsample(np.stack([domain.render(s, 64) for s in scenes]))
    assert aligned(renders, renders, 0.6).all()
    shuffled = renders[[1, 2, 3, 4, 5, 0]]  # another scene's image
    differs = [(a.background, a.position) != (b.background, b.position)
               for a, b in zip(scenes, [scenes[i] for i in (1, 2, 3, 4, 5, 0)], strict=True)]
    assert not aligned(shuffled, renders, 0.6)[differs].any()
