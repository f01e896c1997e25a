"""The 32 → 64 px upsampler's conditioning augmentation and its continuations (`upsampler_tune`, `upsampler_decoded`)."""

from __future__ import annotations

import numpy as np
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


def _data(n: int = 12):
    from nodes.shapes import domain
    from train.data import ShapesData, downsample

    scenes = domain.sample_scenes(3, n, split="train")
    im64 = np.stack([domain.render(s, 64) for s in scenes])
    zeros = np.zeros((n, 3), np.uint8)
    return ShapesData(im64, downsample(im64), np.zeros((n, 5), np.int64), zeros, zeros)


def test_a_batch_takes_decoder_made_conditioning_for_its_share_and_matches_rows_to_it():
    from train.upsampler import conditioning

    ds = _data()
    idx = np.arange(6, 12)
    assert np.array_equal(conditioning(ds, idx.copy(), None, 1.0, np.random.default_rng(0)), ds.images32[6:12])
    rows = np.array([0, 2, 4])
    images = 255 - ds.images32[rows]  # stand-ins that differ from every render
    idx_all = idx.copy()
    got = conditioning(ds, idx_all, (rows, images), 1.0, np.random.default_rng(0))
    assert set(idx_all[:3]) == {0, 2, 4} and list(idx_all[3:]) == [9, 10, 11]  # all 3 pairs, then the batch
    for i in range(3):  # each decoder-made image sits with its own scene's row
        assert np.array_equal(got[i], images[list(rows).index(idx_all[i])])
    assert np.array_equal(got[3:], ds.images32[9:12])
    none = conditioning(ds, idx.copy(), (rows, images), 0.0, np.random.default_rng(0))
    assert np.array_equal(none, ds.images32[6:12])


def test_decoded_pairs_are_generated_once_then_read_from_the_cache(tmp_path, monkeypatch):
    from train import upsampler_decoded as ud
    from train.common import Timer

    ds = _data()
    calls = []

    def fake(cfg, bundle, data, timer):  # the renders themselves, one scene replaced by another's image
        calls.append(cfg.n_decoded)
        out = data.images32[:cfg.n_decoded].copy()
        out[1] = data.images32[7]
        return out

    monkeypatch.setattr(ud, "generate_pairs", fake)
    cfg = ud.Config(n_decoded=4, n_data=len(ds), cache=str(tmp_path))
    rows, images, _ = ud.decoded_pairs(cfg, ds, Timer())
    assert calls == [4] and len(list(tmp_path.glob("decoded-*.npz"))) == 1
    assert 0 in rows and np.array_equal(images[list(rows).index(0)], ds.images32[0])
    again = ud.decoded_pairs(ud.Config(n_decoded=4, n_data=20_000, cache=str(tmp_path)), ds, Timer())
    assert calls == [4] and np.array_equal(again[0], rows)  # the scenes are a prefix: n_data does not matter
    ud.decoded_pairs(ud.Config(n_decoded=5, n_data=len(ds), cache=str(tmp_path)), ds, Timer())
    assert calls == [4, 5]


def test_upsampler_embed_mixes_in_the_decoded_pairs_and_records_them(tmp_path, monkeypatch):
    import json

    from train import upsampler_decoded as ud
    from train import upsampler_embed

    seen = []
    real = upsampler_embed.conditioning

    def spy(ds, idx, decoded, p, rng):
        low = real(ds, idx, decoded, p, rng)
        seen.append((decoded is not None and p, np.isin(idx, decoded[0]).mean() if decoded is not None else 0.0))
        return low

    monkeypatch.setattr(ud, "generate_pairs", lambda cfg, bundle, ds, timer: ds.images32[:cfg.n_decoded])
    monkeypatch.setattr(upsampler_embed, "conditioning", spy)
    threads = torch.get_num_threads()
    try:
        assert upsampler_embed.main(["--smoke", "--out", str(tmp_path / "up"), "--n-decoded", "8", "--p-decoded",
                                     "1", "--cache", str(tmp_path / "pairs")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert seen == [(1.0, 1.0)] * 2  # every sample of both steps from the decoded pairs' scenes
    record = json.loads((tmp_path / "up" / "training_log.json").read_text())["upsampler_embed"]
    assert record["n_decoded"] == 8 and record["kept"] == 8 and record["p_decoded"] == 1.0
    assert "cache" not in record and list((tmp_path / "pairs").glob("decoded-*.npz"))
