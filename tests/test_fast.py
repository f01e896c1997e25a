"""Few-step sampling: the LCM scheduler, the shipped consistency LoRA and the `*_fast` workflows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT

from nodegraph import Engine, Settings
from nodegraph.config import default_model_dirs
from nodes.unclip.models import schedulers as sch
from nodes.unclip.models import tiny

LCM_LORA = ROOT / "models" / "loras" / "shapes-lcm.safetensors"
BUNDLE = ROOT / "models" / "shapes-unclip"
TWINS = {"text2image_fast.json": "text2image.json", "variation_fast.json": "variation.json"}


def _outputs(wf: dict) -> dict[str, dict]:
    """The output nodes (every core.save_image), with the node they save from."""
    return {k: v["inputs"]["images"]["from"] for k, v in wf["nodes"].items() if v["type"] == "core.save_image"}


@pytest.mark.parametrize("fast", sorted(TWINS))
def test_fast_workflows_keep_the_prompt_node_and_the_outputs_of_their_full_step_twins(fast):
    wf = json.loads((ROOT / "workflows" / fast).read_text())
    twin = json.loads((ROOT / "workflows" / TWINS[fast]).read_text())
    assert _outputs(wf) == _outputs(twin)
    if "prompt" in twin["nodes"]:
        assert wf["nodes"]["prompt"]["type"] == twin["nodes"]["prompt"]["type"] == "core.text"
        assert "value" in wf["nodes"]["prompt"]["inputs"]
    dec = wf["nodes"]["decoder"]["inputs"]
    assert dec["scheduler"] == "lcm" and dec["steps"] <= 4 and dec["guidance"] == 1.0
    assert wf["nodes"][dec["decoder"]["from"]]["inputs"]["lora"] == "shapes-lcm"
    up = wf["nodes"]["upsample"]
    if up["type"] == "core.image_resize":
        # 32 → 64 px without the upsampler's UNet: the 256 px stage draws the detail
        assert "load_upsampler" not in wf["nodes"]
        assert up["inputs"]["scale"] == 2.0 and up["inputs"]["method"] == "bicubic"
    else:
        assert up["inputs"]["steps"] < twin["nodes"]["upsample"]["inputs"]["steps"]
    assert wf["nodes"]["upsample_256"]["inputs"]["steps"] < twin["nodes"]["upsample_256"]["inputs"]["steps"]
    # both paths run the 256 px stage's UNet on the same tiles, so the speed-up is the sampling's alone
    assert wf["nodes"]["upsample_256"]["inputs"]["tile"] == twin["nodes"]["upsample_256"]["inputs"]["tile"] > 0
    if "prior" in wf["nodes"]:
        prior, full = wf["nodes"]["prior"]["inputs"], twin["nodes"]["prior"]["inputs"]
        # the full path's own sampler (the checkpoint's unCLIP schedule), fewer steps
        assert prior.get("scheduler", "default") == full.get("scheduler", "default") == "default"
        assert prior["steps"] < full["steps"]


def test_lcm_is_diffusers_lcm_scheduler_on_the_checkpoints_own_noise_schedule():
    model = tiny.decoder().model
    sched = sch.make_scheduler(model.scheduler, "lcm")
    from diffusers import LCMScheduler

    assert isinstance(sched, LCMScheduler)
    assert sched.config.prediction_type == model.scheduler.config.prediction_type
    assert torch.allclose(sched.alphas_cumprod, model.scheduler.alphas_cumprod)
    assert sch.timesteps(sched, 4).tolist()[0] == 999  # starts from pure noise


@pytest.fixture(scope="module")
def shipped_engine(tmp_path_factory):
    if not LCM_LORA.is_file() or not (BUNDLE / "decoder").is_dir():
        pytest.skip("shipped weights absent: run `python -m train lcm` after the base bundle is trained")
    base = tmp_path_factory.mktemp("fast")
    return Engine.from_settings(Settings(model_dirs=default_model_dirs(), input_dir=ROOT / "input",
                                         output_dir=base / "out", temp_dir=base / "temp",
                                         entry_point_packs=False))


def test_text2image_fast_with_the_shipped_lcm_lora_draws_the_prompt_at_256_px(shipped_engine):
    from eval import _judge as judge

    wf = json.loads((ROOT / "workflows" / "text2image_fast.json").read_text())
    wf["nodes"]["prompt"]["inputs"]["value"] = "a large red circle in the center on a white background"
    run = shipped_engine.run(wf, targets=["upsample", "upsample_256"])
    assert run.ok, run.error
    assert np.asarray(run.outputs["upsample"]["images"]).shape == (4, 64, 64, 3)
    images = np.asarray(run.outputs["upsample_256"]["images"])
    assert images.shape == (4, 256, 256, 3)
    named = {"color": "red", "shape": "circle", "size": "large", "position": "center", "background": "white"}
    verdicts = [judge.judge(img, named) for img in images]
    assert sum(v.all_named_right for v in verdicts) >= 3, [v.analysis.attributes() for v in verdicts]


def test_the_lcm_lora_changes_the_decoder_and_strength_zero_gives_the_base_back(shipped_engine):
    wf = json.loads((ROOT / "workflows" / "variation_fast.json").read_text())
    outs = {}
    for strength in (0.0, 1.0):
        wf["nodes"]["lcm_lora"]["inputs"]["strength"] = strength
        run = shipped_engine.run(wf, targets=["decoder"])
        assert run.ok, run.error
        outs[strength] = np.asarray(run.outputs["decoder"]["images"])
    assert np.abs(outs[1.0] - outs[0.0]).mean() > 1e-3


def test_the_prior_node_samples_with_a_deterministic_few_step_scheduler_from_its_config():
    from nodes.unclip.models import sample_prior
    from nodes.unclip.sampling import Prior

    assert "scheduler" in Prior.Inputs.model_fields
    model, cond = tiny.prior().model, tiny.conditioning()
    sched = sch.make_scheduler(model.scheduler, "dpm++")
    assert sched.config.prediction_type == model.scheduler.config.prediction_type == "sample"

    def sample(name, seed):
        with torch.inference_mode():
            return sample_prior(model, cond.cond, cond.uncond, steps=6, scheduler=name,
                                generator=torch.Generator().manual_seed(seed))

    a, b = sample("dpm++", 0), sample("dpm++", 0)
    assert a.shape == sample(None, 0).shape and torch.isfinite(a).all()
    assert torch.equal(a, b)  # seeded: the same embedding again
    assert not torch.allclose(a, sample("dpm++", 1))  # another seed, another sample


def test_one_step_with_the_unclip_scheduler_is_a_clear_error_and_dpm_takes_one_step():
    from diffusers import UnCLIPScheduler

    base = UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000)
    with pytest.raises(ValueError, match=r"steps ≥ 2.*'dpm\+\+'"):
        sch.timesteps(sch.make_scheduler(base), 1)
    assert len(sch.timesteps(sch.make_scheduler(base), 2)) == 2
    assert len(sch.timesteps(sch.make_scheduler(base, "dpm++"), 1)) == 1


@pytest.mark.parametrize("fast", sorted(TWINS))
@pytest.mark.parametrize("stage", ["prior", "decoder", "upsample", "upsample_256"])
def test_a_bench_variant_with_one_stage_set_back_to_full_steps_is_a_valid_workflow(fast, stage, engine, settings):
    import shutil

    from bench.fast_bench import variant

    (settings.input_dir / "examples").mkdir()
    shutil.copy(ROOT / "input" / "examples" / "green_square.png", settings.input_dir / "examples")

    wf = json.loads((ROOT / "workflows" / fast).read_text())
    twin = json.loads((ROOT / "workflows" / TWINS[fast]).read_text())
    out = variant(wf, twin, f"full:{stage}")
    result = engine.validate(json.dumps(out))
    assert result.valid, result.issues
    if stage in wf["nodes"]:
        assert {k: out["nodes"][stage][k] for k in ("type", "inputs")} == \
            {k: twin["nodes"][stage][k] for k in ("type", "inputs")}
    # seeds are set by node order, so the stages after the swapped one keep the full path's seeds
    seeded = [k for k, v in out["nodes"].items() if "seed" in v["inputs"]]
    if stage == "upsample":
        assert seeded == [k for k, v in twin["nodes"].items() if "seed" in v["inputs"]]
