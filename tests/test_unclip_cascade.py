"""The 64 → 256 px super-resolution stage: its training writes a Karlo-layout folder the upsampler
loader reads, and trained weights (`models/shapes-unclip-sr256`) draw sharp edges.

Judged against exact 256 px renders of the same scenes with the analyser's edge width. The full
figures come from `bench/sharpness.py` (more scenes, the 64 px upsampler's output, text → image;
docs/unclip.md). The weight tests are skipped when no weights are in models/ (none are shipped yet).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT

from nodes.shapes import analyse, domain

MODEL = ROOT / "models" / "shapes-unclip-sr256"
needs_weights = pytest.mark.skipif(not (MODEL / "super_res_first").is_dir(),
                                   reason="no 256 px weights in models/: run `python -m train upsampler_256`")
torch.set_num_threads(1)


def test_training_smoke_writes_a_stage_the_upsampler_loader_runs(tmp_path):
    from nodes.unclip.models import load_upsampler, upsample
    from train import upsampler256

    out = tmp_path / "sr256"
    assert upsampler256.main(["--smoke", "--out", str(out)]) == 0
    assert (out / "super_res_first" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((out / "model_index.json").read_text())["super_res_scheduler"][1] == "DPMSolverMultistepScheduler"
    assert json.loads((out / "training_log.json").read_text())["upsampler_256"]["steps"] == 2
    low = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        image = upsample(load_upsampler(out), low, steps=2, fix_colors=True, color_sigma=8.0)
    assert image.shape == (1, 3, 256, 256) and 0 <= image.min() and image.max() <= 1


@pytest.fixture(scope="module")
def scenes_and_outputs():
    from torchvision.transforms.functional import gaussian_blur

    from nodes.unclip.models import load_upsampler, upsample
    from nodes.unclip.models.upsampler import upscale_condition

    scenes = domain.sample_scenes(606, 4, "heldout_combos")
    truth = torch.from_numpy(np.stack([domain.render(s, 256) for s in scenes])).permute(0, 3, 1, 2) / 255.0
    # a 64 px image as soft as the 64 px upsampler's output: the area average, blurred by σ = 1 px
    low = gaussian_blur(F.avg_pool2d(truth, 4), 7, 1.0)
    with torch.inference_mode():
        out = upsample(load_upsampler(MODEL), low, steps=4, generator=torch.Generator().manual_seed(0),
                       fix_colors=True, color_sigma=8.0)
    return scenes, truth, out, upscale_condition(low, 256).clamp(0, 1)


def edge(images) -> float:
    return float(np.mean([analyse.edge_width(im.permute(1, 2, 0).numpy()) for im in images]))


@needs_weights
@pytest.mark.slow
def test_256_stage_draws_sharp_edges_from_a_soft_64_px_image(scenes_and_outputs):
    _, truth, out, bicubic = scenes_and_outputs
    assert out.shape == (4, 3, 256, 256)
    # renders measure ~0.75 px, the bicubic enlargement of the soft input ~10 px (bench: docs/unclip.md)
    assert edge(out) < 1.5 < 0.2 * edge(bicubic), (edge(out), edge(truth), edge(bicubic))


@needs_weights
@pytest.mark.slow
def test_256_stage_keeps_the_scene(scenes_and_outputs):
    scenes, truth, out, _ = scenes_and_outputs
    for scene, image in zip(scenes, out, strict=True):
        seen = analyse.analyse(image.permute(1, 2, 0).numpy())
        assert seen.attributes() == scene.attributes()
        assert analyse.mask_iou(seen.mask, domain.object_mask(scene, 128)) > 0.9
    psnr = 10 * torch.log10(1 / ((out - truth) ** 2).mean())
    assert psnr > 25, psnr
