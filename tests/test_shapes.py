"""The Shapes domain contract, the pixel analyser, the shapes nodes, training smoke runs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from helpers import link, node, workflow

from nodes.shapes import analyse, domain


def test_palette_shapes_sizes_positions_follow_the_contract():
    assert domain.PALETTE["red"] == (220, 30, 30) and domain.PALETTE["black"] == (20, 20, 20)
    assert len(domain.COLORS) == 8 and domain.SHAPES == ("circle", "square", "triangle", "star")
    rng = np.random.default_rng(0)
    for scene in domain.sample_scenes(0, 300, "any"):
        assert scene.color != scene.background
        for rgb, name in ((scene.fg_rgb, scene.color), (scene.bg_rgb, scene.background)):
            assert max(abs(a - b) for a, b in zip(rgb, domain.PALETTE[name], strict=True)) <= 12
        lo, hi = domain.SIZE_RANGES[scene.size]
        assert lo <= scene.r <= hi
        col, row = domain.POSITIONS[scene.position]
        assert abs(scene.cx - domain.GRID[col]) <= 0.04 + 1e-9 and abs(scene.cy - domain.GRID[row]) <= 0.04 + 1e-9
        assert domain.caption(scene, rng)
    with pytest.raises(ValueError, match="differ"):
        domain.make_scene(rng, "red", "red", "circle", "small", "center")


def test_heldout_pairs_never_appear_in_training_scenes():
    train = domain.sample_scenes(1, 3000, "train")
    assert not {(s.color, s.shape) for s in train} & domain.HELDOUT_PAIRS
    pairs = domain.sample_scenes(2, 50, "heldout_pairs")
    assert all((s.color, s.shape) in domain.HELDOUT_PAIRS for s in pairs)
    combos = domain.sample_scenes(3, 50, "heldout_combos")
    assert all(domain.split_of(s.color, s.background, s.shape, s.size, s.position) == "heldout_combos"
               for s in combos)


def test_the_analyser_reads_ground_truth_renders():
    scenes = domain.sample_scenes(7, 200, "any")
    hits = {a: 0 for a in domain.ATTRIBUTES}
    for s in scenes:
        got = analyse.analyse(domain.render(s, 64)).attributes()
        for a in domain.ATTRIBUTES:
            hits[a] += got[a] == getattr(s, a)
    assert all(v / len(scenes) >= 0.97 for v in hits.values()), hits


def test_the_analyser_mask_matches_the_exact_mask():
    s = domain.make_scene(np.random.default_rng(0), "blue", "white", "star", "large", "center")
    found = analyse.analyse(domain.render(s, 64))
    assert analyse.mask_iou(found.mask, domain.object_mask(s, 64)) > 0.9


def test_edge_width_is_under_a_pixel_on_renders_and_grows_with_blur():
    from PIL import Image, ImageFilter

    scenes = domain.sample_scenes(8, 6, "any")
    for size in (64, 256):
        sharp = [analyse.edge_width(domain.render(s, size)) for s in scenes]
        assert 0.5 < np.mean(sharp) < 1.0, sharp
    blurred = [analyse.edge_width(np.asarray(Image.fromarray(domain.render(s, 256)).filter(ImageFilter.GaussianBlur(2))))
               for s in scenes]
    bicubic = [analyse.edge_width(np.asarray(Image.fromarray(domain.render(s, 64)).resize((256, 256), Image.Resampling.BICUBIC)))
               for s in scenes]
    assert np.mean(blurred) > 2.5 and np.mean(bicubic) > 2.5  # a 10–90 % ramp of a σ = 2 px blur is ~5 px wide
    assert np.isnan(analyse.edge_width(np.full((64, 64, 3), 128, np.uint8)))  # no object, no edge


def test_two_object_scenes_are_apart_and_their_masks_are_the_visible_parts():
    pairs = domain.two_object_scenes(4, 20, "heldout_pairs")
    assert len(pairs) == 20
    for first, second in pairs:
        assert second.position != first.position and second.color not in (first.color, first.background)
        assert (first.color, first.shape) in domain.HELDOUT_PAIRS
        image, (m1, m2) = domain.render_layers([first, second], 128)
        assert image.shape == (128, 128, 3) and not (m1 & m2).any()
        assert np.array_equal(m1, domain.object_mask(first, 128)) and np.array_equal(m2, domain.object_mask(second, 128))
        inside = domain.coverage(second, 128) == 1.0
        assert np.array_equal(image[inside], np.broadcast_to(second.fg_rgb, (inside.sum(), 3)))
        assert tuple(image[0, 0]) == first.bg_rgb  # on the first one's background
    # a later object hides what it covers of an earlier one
    rng = np.random.default_rng(0)
    big = domain.make_scene(rng, "red", "white", "square", "large", "center")
    small = domain.make_scene(rng, "blue", "white", "circle", "small", "center")
    _, (under, over) = domain.render_layers([big, small], 64)
    assert np.array_equal(under, domain.object_mask(big, 64) & ~over) and over.sum() > 0


def test_decoder_fg_weight_mask_covers_the_object_and_its_rim():
    from train.decoder import object_mask32

    s = domain.make_scene(np.random.default_rng(1), "yellow", "black", "star", "small", "top left")
    m = object_mask32(domain.render(s, 32)[None], np.asarray([s.bg_rgb]))[0].numpy().astype(bool)
    exact = domain.object_mask(s, 32)
    assert m[exact].all()  # every object pixel weighs more
    touched = domain.coverage(s, 32, supersample=8) > 0
    grown = np.zeros_like(touched)  # and at most a 1-pixel rim beyond the pixels the object touches
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown |= np.roll(np.roll(touched, dy, 0), dx, 1)
    assert not (m & ~grown).any() and not m[-1].any()  # the far (bottom) row stays at weight 1


def test_clip_equivariance_loss_is_zero_only_for_one_shared_linear_colour_map():
    import torch

    from train.clip import equivariance_loss

    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 3, generator=g)  # the true Δrgb → Δembedding map
    e_orig, d_rgb = torch.randn(64, 8, generator=g), torch.rand(64, 3, generator=g) * 2 - 1
    linear = e_orig + d_rgb @ a.T  # repaints move every embedding the same way
    per_shape = e_orig + d_rgb @ a.T * torch.where(torch.arange(64)[:, None] % 2 == 0, 1.0, -1.0)
    eq_map = torch.nn.Linear(3, 8, bias=False)
    with torch.no_grad():
        eq_map.weight.copy_(a)
    one = torch.ones(())
    assert equivariance_loss(linear, e_orig, d_rgb, eq_map, one).item() < 1e-10
    assert equivariance_loss(per_shape, e_orig, d_rgb, eq_map, one).item() > 0.5
    # the best shared map for a shape-dependent change still misses: the loss cannot be fitted away
    fit = torch.nn.Linear(3, 8, bias=False)
    opt = torch.optim.Adam(fit.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = equivariance_loss(per_shape, e_orig, d_rgb, fit, one)
        loss.backward()
        opt.step()
    assert loss.item() > 0.5
    assert equivariance_loss(linear, e_orig, d_rgb, eq_map, 2 * one).item() < 1e-10  # scale divides


def test_scene_and_analyse_nodes(engine):
    wf = workflow(scene=node("shapes.scene", color="yellow", shape="triangle", size="small", position="top right",
                             background="purple", resolution=48, seed=3),
                  look=node("shapes.analyse", images=link("scene", "image")))
    run = engine.run(wf, targets=["scene", "look"])
    assert run.ok, run.error
    assert run.outputs["scene"]["image"].shape == (1, 48, 48, 3)
    assert run.outputs["scene"]["mask"].shape == (1, 48, 48)
    assert "yellow triangle" in run.outputs["scene"]["caption"]
    assert run.outputs["look"]["report"] == "0: yellow triangle, small, top right, on purple"
    bad = workflow(scene=node("shapes.scene", color="red", background="red"))
    run = engine.run(bad, targets=["scene"])
    assert run.status == "failed" and "different background" in run.error.message


def test_training_smoke_runs_every_stage(tmp_path):
    out = tmp_path / "bundle"
    proc = subprocess.run([sys.executable, "-m", "train", "all", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for sub in ("clip", "prior", "prior_ar", "prior_scheduler", "text_proj", "decoder", "decoder_scheduler", "super_res_first",
                "super_res_scheduler"):
        assert (out / sub).is_dir(), sub
    # decoder_tune continued the decoder stage's weights, and its record keeps the base run's
    from train.decoder import TUNE_PHASES

    chain = [json.loads((out / "training_log.json").read_text())["decoder"]]
    while isinstance(chain[-1].get("continued_from"), dict):
        chain.append(chain[-1]["continued_from"])
    assert len(chain) == 1 + len(TUNE_PHASES)
    assert chain[0]["snr_floor"] == 1.0 and chain[-1]["snr_floor"] == 0.0  # the base run, then the phases
    assert chain[0]["fg_weight"] == 4.0 and chain[-1]["fg_weight"] == 0.0  # the last phase weighs object pixels
    # prior_tune continued the prior stage's weights on both caption writers, and its record keeps the base run
    prior = json.loads((out / "training_log.json").read_text())["prior"]
    assert prior["p_new"] == 0.5 and isinstance(prior["continued_from"], dict)
    assert "continued_from" not in prior["continued_from"] and prior["continued_from"].get("p_new", 0.0) == 0.0
    # clip_bind continued the text tower through the prior, and recorded how far its training texts moved
    bind = json.loads((out / "training_log.json").read_text())["clip_bind"]
    assert 0.9 < bind["trained_texts_drift"]["pooled_cosine"] <= 1.0
    # then clip_place taught the vertical place words' rows ("high", "low", …), after clip_bind
    place = json.loads((out / "training_log.json").read_text())["clip_place"]
    assert place["rows"] >= len(place["words"]) and place["steps"] == 3
    # and clip_shape the lexicon's shape nouns' rows, through the prior and the decoder, after the decoder
    shape = json.loads((out / "training_log.json").read_text())["clip_shape"]
    assert shape["rows"] > 0 and shape["decoder_weight"] > 0 and shape["clip_sha256_before"] != shape["clip_sha256"]
    # CLIP (its text tower alone, or with the colour-equivariance term) can continue a bundle; the record keeps the
    # base run
    for stage, extra in (("clip_text", []), ("clip", ["--eq-weight", "2", "--p-recolor", "0.5"])):
        proc = subprocess.run([sys.executable, "-m", f"train.{stage}", "--smoke", "--out", str(out), "--init", str(out),
                               *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        record = json.loads((out / "training_log.json").read_text())[stage]
        assert isinstance(record["continued_from"], dict) and "continued_from" not in record["continued_from"]
    record = json.loads((out / "training_log.json").read_text())
    assert record["clip"]["eq_weight"] == 2.0 and record["prior"]["p_new"] == 0.5
    # the upsampler continues on the smoke decoder's own 32 px images of training scenes
    proc = subprocess.run([sys.executable, "-m", "train", "upsampler_decoded", "--smoke", "--out", str(out), "--cache",
                           str(tmp_path / "pairs")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "training_log.json").read_text())["upsampler_decoded"]
    assert record["n_decoded"] == 8 and record["kept"] == 8 and list((tmp_path / "pairs").glob("decoded-*.npz"))
    # the editing models land next to the bundle
    assert (tmp_path / "sam-shapes").is_dir() and (tmp_path / "controlnet-shapes").is_dir()
    assert list((tmp_path / "loras").glob("*.safetensors"))
    assert (tmp_path / "loras" / "shapes-lcm.safetensors").is_file()  # the consistency LoRA stage ran
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt*"))  # safetensors only
    # the evaluation runs end to end on what the smoke run wrote (a code-path check, not quality)
    proc = subprocess.run([sys.executable, "-m", "nodegraph", "eval", "shapes", "--quick", "--model", str(out),
                           "--n-aux", "2", "--threads", "1", "--steps", "2", "--upsample-steps", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "unseen" in proc.stdout and "latency per image" in proc.stdout
    assert "heldout_pairs_factored" in proc.stdout and "unseen_factored" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "nodegraph", "eval", "priors", "--quick", "--model", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| autoregressive |" in proc.stdout and "| no prior |" in proc.stdout and "| caption only |" in proc.stdout
