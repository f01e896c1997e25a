"""The ControlNet pack: the model made from the decoder UNet, the controlled UNet, the nodes, the engine.

Tiny seeded models throughout; one test measures the shipped ControlNet on the shipped models at
a small sample size.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import ROOT
from helpers import link, node, workflow

from nodegraph import Engine, NodeExecutionError, Settings
from nodes.controlnet.model import (
    Control,
    ControlledUNet,
    UnCLIPControlNetModel,
    check_compatible,
    controlnet_from_unet,
    load_controlnet,
    match_batch,
    save_controlnet,
)
from nodes.controlnet.preprocess import control_masks
from nodes.controlnet.tiny import tiny_controlnet
from nodes.shapes import domain
from nodes.shapes.analyse import mask_iou
from nodes.unclip.models import tiny


@pytest.fixture(scope="module")
def unet():
    return tiny.decoder().model.unet


def unet_inputs(unet, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    size = unet.config.sample_size
    return dict(sample=torch.randn(batch, 3, size, size, generator=g), timestep=torch.tensor(400),
                encoder_hidden_states=torch.randn(batch, 6, unet.config.cross_attention_dim, generator=g),
                class_labels=torch.randn(batch, 4 * unet.config.block_out_channels[0], generator=g),
                attention_mask=torch.ones(batch, 6, dtype=torch.bool))


def control_image(n: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    masks = [domain.object_mask(domain.sample_scene(rng, "any"), size) for _ in range(n)]
    return torch.from_numpy(np.stack(masks).astype(np.float32))[:, None].repeat(1, 3, 1, 1)


# --- the model ------------------------------------------------------------------------------------

def test_from_unet_copies_the_encoder_and_starts_as_a_no_op(unet):
    cn = controlnet_from_unet(unet)
    assert cn.config.mid_block_type == "UNetMidBlock2DSimpleCrossAttn"
    assert type(cn.mid_block).__name__ == "UNetMidBlock2DSimpleCrossAttn"
    assert cn.mid_block.attentions[0].heads == unet.mid_block.attentions[0].heads
    # the copied encoder computes what the UNet's does: compare the mid block outputs
    seen = {}
    hooks = [m.mid_block.register_forward_hook(lambda _m, _i, out, k=k: seen.__setitem__(k, out))
             for k, m in (("unet", unet), ("cn", cn))]
    args = unet_inputs(unet)
    with torch.no_grad():
        base = unet(**args).sample
        controlled = ControlledUNet(unet, (Control(cn, control_image()),))(**args).sample
        cn(args["sample"], args["timestep"], encoder_hidden_states=args["encoder_hidden_states"],
           controlnet_cond=control_image().expand(2, -1, -1, -1), class_labels=args["class_labels"],
           attention_mask=args["attention_mask"])
    for h in hooks:
        h.remove()
    torch.testing.assert_close(seen["cn"], seen["unet"], atol=1e-6, rtol=1e-5)
    # zero convolutions: a fresh ControlNet changes nothing
    torch.testing.assert_close(controlled, base, atol=1e-6, rtol=1e-5)


def test_conditioning_embedding_keeps_the_decoder_resolution(unet):
    cn = controlnet_from_unet(unet)
    x = torch.rand(1, 3, unet.config.sample_size, unet.config.sample_size)
    assert cn.controlnet_cond_embedding(x).shape[-2:] == x.shape[-2:]


def test_save_and_load_roundtrip_in_diffusers_layout(tmp_path):
    cn = tiny_controlnet().model
    save_controlnet(cn, tmp_path / "cn")
    assert sorted(p.name for p in (tmp_path / "cn").iterdir()) == ["config.json",
                                                                    "diffusion_pytorch_model.safetensors"]
    loaded = load_controlnet(tmp_path / "cn")
    assert isinstance(loaded, UnCLIPControlNetModel) and loaded.dtype == torch.float32
    for (name, a), b in zip(loaded.state_dict().items(), cn.state_dict().values(), strict=True):
        assert torch.equal(a, b.half().float()), name  # fp16 storage, fp32 in memory


def test_loader_refuses_pickles_with_code_and_names_missing_files(tmp_path):
    cn = tiny_controlnet().model
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_controlnet(tmp_path / "empty")
    save_controlnet(cn, tmp_path / "evil")
    (tmp_path / "evil" / "diffusion_pytorch_model.safetensors").unlink()

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"conv_in.weight": Payload()}, tmp_path / "evil" / "diffusion_pytorch_model.bin")
    with pytest.raises(NodeExecutionError, match="refused"):
        load_controlnet(tmp_path / "evil")


def test_incompatible_controlnet_is_a_clear_error(unet):
    other = copy.deepcopy(unet.config)
    from diffusers import UNet2DConditionModel

    bigger = UNet2DConditionModel(**{**other, "block_out_channels": (32, 64), "norm_num_groups": 8})
    cn = controlnet_from_unet(bigger)
    with pytest.raises(ValueError, match="made for another decoder.*block_out_channels"):
        check_compatible(cn, unet)


def test_strength_zero_control_runs_the_unet_exactly_as_without(unet):
    cn = tiny_controlnet().model
    args = unet_inputs(unet)
    with torch.no_grad():
        base = unet(**args).sample
        zero = ControlledUNet(unet, (Control(cn, control_image(), 0.0),))(**args).sample
        one = ControlledUNet(unet, (Control(cn, control_image(), 1.0),))(**args).sample
    assert torch.equal(zero, base)
    assert (one - base).abs().max() > 1e-3


def test_stacked_controls_add_their_residuals(unet):
    cn = tiny_controlnet().model
    args = unet_inputs(unet)
    img = control_image()
    with torch.no_grad():
        two_halves = ControlledUNet(unet, (Control(cn, img, 0.5), Control(cn, img, 0.5)))(**args).sample
        one = ControlledUNet(unet, (Control(cn, img, 1.0),))(**args).sample
    torch.testing.assert_close(two_halves, one, atol=1e-5, rtol=1e-4)


def test_start_end_limit_the_control_to_part_of_the_denoising(unet):
    cn = tiny_controlnet().model
    args = unet_inputs(unet)  # timestep 400 of 1000: progress 0.6
    with torch.no_grad():
        base = unet(**args).sample
        late = ControlledUNet(unet, (Control(cn, control_image(), 1.0, 0.7, 1.0),))(**args).sample
        early = ControlledUNet(unet, (Control(cn, control_image(), 1.0, 0.0, 0.7),))(**args).sample
    assert torch.equal(late, base) and not torch.equal(early, base)


def test_control_images_broadcast_and_pair_with_guidance_halves():
    img = control_image(2, 16)
    assert match_batch(img[:1], 4, (16, 16), torch.float32).shape == (4, 3, 16, 16)
    doubled = match_batch(img, 4, (16, 16), torch.float32)
    assert torch.equal(doubled[:2], img) and torch.equal(doubled[2:], img)  # [uncond; cond]
    assert match_batch(img, 2, (8, 8), torch.float32).shape == (2, 3, 8, 8)  # resized
    with pytest.raises(ValueError, match="one control image, or one per generated image"):
        match_batch(control_image(3, 16), 4, (16, 16), torch.float32)


def test_preprocessor_silhouette_matches_the_exact_mask_and_edges_outline_it():
    rng = np.random.default_rng(3)
    scenes = [domain.sample_scene(rng, "any") for _ in range(6)]
    images = np.stack([domain.render(s, 64) for s in scenes]).astype(np.float32) / 255
    sil, empty = control_masks(images, 32, "silhouette")
    edges, _ = control_masks(images, 32, "edges")
    assert not empty and sil.shape == (6, 32, 32)
    for s, m, e in zip(scenes, sil, edges, strict=True):
        assert mask_iou(m > 0.5, domain.object_mask(s, 32)) >= 0.8
        assert (e <= m).all() and 0 < e.sum() < m.sum()
    blank, empty = control_masks(np.full((1, 16, 16, 3), 0.5, np.float32), 16)
    assert empty == [0] and blank.sum() == 0


# --- the nodes, through the engine -----------------------------------------------------------------

@pytest.fixture
def cn_engine(tmp_path):
    models = tmp_path / "models"
    save_controlnet(tiny_controlnet().model, models / "controlnet" / "tiny-cn", fp16=False)
    settings = Settings(model_dirs=[models, tiny.cached_root().parent], input_dir=tmp_path / "in",
                        output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp", entry_point_packs=False)
    return Engine.from_settings(settings)


def pipeline(**extra) -> dict:
    nodes = {
        "clip": node("unclip.load_clip", model="tiny-karlo"),
        "text": node("unclip.text_encode", clip=link("clip", "clip"), text="a red circle\na blue star"),
        "prior_m": node("unclip.load_prior", model="tiny-karlo"),
        "dec_m": node("unclip.load_decoder", model="tiny-karlo"),
        "emb": node("unclip.prior", prior=link("prior_m", "prior"), conditioning=link("text", "conditioning"),
                    steps=2, seed=1),
        "cn": node("controlnet.load_controlnet", controlnet="tiny-cn"),
        "scene": node("shapes.scene", position="top left", resolution=64),
        "ctl": node("controlnet.control_image", images=link("scene", "image"), size=16),
        "base": decode("dec_m"),
    }
    nodes.update(extra)
    return workflow(**nodes)


def apply(strength: float, source: str = "dec_m", **kw) -> dict:
    return node("controlnet.apply", decoder=link(source, "decoder"), controlnet=link("cn", "controlnet"),
                image=link("ctl", "control"), strength=strength, **kw)


def decode(source: str) -> dict:
    return node("unclip.decoder", decoder=link(source, "decoder"), image_embedding=link("emb", "embedding"),
                conditioning=link("text", "conditioning"), steps=2, seed=7)


def test_strength_zero_equals_no_controlnet_and_strength_one_differs(cn_engine):
    run = cn_engine.run(pipeline(a0=apply(0.0), a1=apply(1.0), d0=decode("a0"), d1=decode("a1")),
                        targets=["base", "d0", "d1", "ctl"])
    assert run.ok, run.error
    base, d0, d1 = (run.outputs[n]["images"] for n in ("base", "d0", "d1"))
    assert (base == d0).all()
    assert abs(base - d1).max() > 1e-3
    ctl = run.outputs["ctl"]["control"]
    assert ctl.shape == (1, 16, 16, 3) and set(np.unique(ctl)) <= {0.0, 1.0} and ctl.sum() > 0


def test_controlled_decoder_leaves_the_base_untouched_and_caches(cn_engine):
    wf = pipeline(a=apply(1.0), d=decode("a"))
    first = cn_engine.run(wf, targets=["d", "base"])
    assert first.ok, first.error
    again = cn_engine.run(wf, targets=["d", "base"])
    assert again.executed == []
    wf["nodes"]["a"]["inputs"]["strength"] = 0.5
    changed = cn_engine.run(wf, targets=["d", "base"])
    assert sorted(changed.executed) == ["a", "d"]
    assert (changed.outputs["base"]["images"] == first.outputs["base"]["images"]).all()
    key = next(k for k in cn_engine.models.loaded() if k.startswith("unclip.decoder:"))
    stored = cn_engine.models.load(key, lambda: pytest.fail("evicted"))
    assert not isinstance(stored.unet, ControlledUNet)


def test_lora_on_a_controlled_decoder_keeps_the_control(cn_engine, tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from test_lora import TARGETS, peft_state, write_lora

    _, sd = peft_state(tiny.decoder().model.unet, TARGETS, seed=4)
    write_lora(cn_engine.settings.model_dirs[0] / "loras" / "t.safetensors", {"unet": sd})
    wf = pipeline(
        a=apply(1.0), la=node("lora.load_lora", decoder=link("a", "decoder"), lora="t"), d1=decode("la"),
        lo=node("lora.load_lora", decoder=link("dec_m", "decoder"), lora="t"), al=apply(1.0, source="lo"),
        d2=decode("al"), d3=decode("lo"))
    run = cn_engine.run(wf, targets=["d1", "d2", "d3"])
    assert run.ok, run.error
    torch.testing.assert_close(torch.from_numpy(run.outputs["d1"]["images"]),
                               torch.from_numpy(run.outputs["d2"]["images"]), atol=1e-5, rtol=1e-4)
    assert abs(run.outputs["d1"]["images"] - run.outputs["d3"]["images"]).max() > 1e-3


def test_apply_errors_name_the_problem(cn_engine):
    run = cn_engine.run(pipeline(a=apply(1.0, start=0.8, end=0.2), d=decode("a")), targets=["d"])
    assert not run.ok and "start" in run.error.message
    from nodegraph import WorkflowInvalid

    with pytest.raises(WorkflowInvalid, match=r"\[invalid_model\] cn: model 'nope' not found"):  # before it runs
        cn_engine.run(pipeline(cn=node("controlnet.load_controlnet", controlnet="nope")), targets=["cn"])


# --- the shipped ControlNet ------------------------------------------------------------------------

SHIPPED = ROOT / "models" / "controlnet-shapes"
BUNDLE = ROOT / "models" / "shapes-unclip"


@pytest.mark.slow
def test_shipped_controlnet_puts_the_object_on_the_silhouette_against_the_prompt():
    if not (SHIPPED / "config.json").is_file() or not (BUNDLE / "decoder").is_dir() or \
            not (BUNDLE / "prior").is_dir():
        pytest.skip("shipped weights absent: run `python -m train.controlnet` after the base bundle is trained")
    from bench.control_eval import control_iou, load_bundle

    res = control_iou(load_bundle(BUNDLE), SHIPPED, n=8, seed=321)
    assert res["iou_controlnet"] >= 0.6, res
    assert res["iou_controlnet"] >= res["iou_without"] + 0.25, res  # the prompt alone puts it elsewhere
