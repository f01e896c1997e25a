"""The SAM pack: safe loading, tiny seeded model nodes (shapes, determinism, cache, errors), shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT, TESTS
from helpers import Recorder, link, node, workflow

import nodegraph
from nodegraph import Engine, NodeContext, NodeExecutionError, Settings
from nodegraph.testing import node_context
from nodes.sam.auto import SamAutoMasks
from nodes.sam.encode import SamEncodeImage, encode
from nodes.sam.loader import LoadSam
from nodes.sam.model import STOCK, TINY, build_sam, config_from_state_dict, load_sam, tiny_sam
from nodes.sam.overlay import MaskOverlay
from nodes.sam.prompt import SamPromptMask
from nodes.sam.types import example_sam
from nodes.shapes import domain

torch.set_num_threads(1)


# --- helpers ----------------------------------------------------------------------------------

def save_tiny(folder, seed: int = 0):
    """A model folder (config.json + model.safetensors) holding tiny_sam(seed)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tiny_sam(seed).state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(TINY))
    return folder


@pytest.fixture
def sam_settings(tmp_path):
    (tmp_path / "input").mkdir()
    save_tiny(tmp_path / "models" / "tiny-sam")
    return Settings(model_dirs=[tmp_path / "models"], input_dir=tmp_path / "input", output_dir=tmp_path / "out",
                    temp_dir=tmp_path / "tmp", nodes_dirs=[TESTS / "packs"], entry_point_packs=False)


@pytest.fixture
def sam_engine(sam_settings):
    return Engine.from_settings(sam_settings)


def context(engine: Engine, type_id: str = "sam.test") -> NodeContext:
    return node_context(engine.settings, models=engine.models, type_id=type_id)


def run_node(cls, engine, **values):
    spec_inputs = {name: f.default for name, f in cls.Inputs.model_fields.items() if not f.is_required()}
    spec_inputs.update(values)
    return cls().run(cls.Inputs.model_construct(**spec_inputs), context(engine))


def scene_image(seed: int = 3, size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    scene = domain.sample_scenes(seed, 1, "heldout_combos")[0]
    return (domain.render(scene, size)[None].astype(np.float32) / 255.0,
            domain.object_mask(scene, size))


# --- safe loading -----------------------------------------------------------------------------

class _OpensAFile:
    """Unpickling this calls open(path, "w"): a checkpoint that runs code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_the_canary_checkpoint_would_run_code_if_unpickled(tmp_path):
    # the canary really works: an unrestricted unpickler creates the file (so the next test can fail)
    canary = tmp_path / "proof.txt"
    torch.save({"weight": torch.zeros(2), "payload": _OpensAFile(canary)}, tmp_path / "proof.pth")
    assert not canary.exists()
    torch.load(tmp_path / "proof.pth", weights_only=False)
    assert canary.exists()


def test_loader_refuses_a_checkpoint_that_would_run_code(sam_engine, sam_settings, tmp_path):
    canary = tmp_path / "pwned.txt"
    evil = sam_settings.model_dirs[0] / "evil_sam.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1), "payload": _OpensAFile(canary)}, evil)
    with pytest.raises(NodeExecutionError) as err:
        run_node(LoadSam, sam_engine, model="evil_sam.pth")
    assert not canary.exists()
    message = str(err.value)
    assert "evil_sam.pth" in message and "refused" in message and "safetensors" in message
    # and through the engine: a failed run with that message, still no file
    result = sam_engine.run(workflow(load=node("sam.load_sam", model="evil_sam.pth"),
                                     enc=node("sam.encode_image", sam=link("load", "sam"),
                                              image=link("img", "images")),
                                     img=node("core.solid_color", width=8, height=8, color="#808080"),
                                     mask=node("sam.prompt_mask", embedding=link("enc", "embedding")),
                                     ov=node("sam.mask_overlay", image=link("img", "images"),
                                             mask=link("mask", "mask")),
                                     save=node("core.save_image", images=link("ov", "image"))))
    assert not result.ok and result.error.node == "load" and "refused" in result.error.message
    assert not canary.exists()


def test_loader_builds_the_architecture_from_config_json_and_is_shared(sam_engine):
    a = run_node(LoadSam, sam_engine, model="tiny-sam").sam
    b = run_node(LoadSam, sam_engine, model="tiny-sam").sam
    assert a.model is b.model  # loaded once, shared through the model store
    assert a.info["image_size"] == TINY["img_size"] and a.info["type"] == "custom"
    ref = tiny_sam(0).state_dict()
    got = a.model.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_bare_checkpoint_architecture_comes_from_tensor_shapes(tmp_path):
    sam = tiny_sam(1)
    torch.save(sam.state_dict(), tmp_path / "bare.pth")  # a plain state dict, like Meta's files
    # the tiny decoder's head count is not visible in the shapes: a clear error asks for a config
    with pytest.raises(NodeExecutionError, match="config.json"):
        load_sam(tmp_path / "bare.pth")
    (tmp_path / "bare.json").write_text(json.dumps({**TINY, "decoder_heads": 2}))
    loaded, config = load_sam(tmp_path / "bare.pth")
    assert config["decoder_heads"] == 2
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        assert torch.equal(loaded.image_encoder(x), sam.image_encoder(x))


def test_meta_vit_b_l_h_architectures_are_recognised_from_their_shapes():
    for name, config in STOCK.items():
        with torch.device("meta"):  # shapes only: no memory, no weights
            state = build_sam(config).state_dict()
        assert config_from_state_dict(state) == config, name


def test_model_type_that_does_not_fit_is_a_clear_error(sam_engine):
    with pytest.raises(NodeExecutionError, match="does not fit the SAM architecture vit_b"):
        run_node(LoadSam, sam_engine, model="tiny-sam", model_type="vit_b")


def test_unknown_model_name_lists_the_available_ones(sam_engine):
    with pytest.raises(NodeExecutionError, match="tiny-sam"):
        run_node(LoadSam, sam_engine, model="no-such-sam")


# --- nodes on the tiny seeded model -------------------------------------------------------------

def test_prompt_mask_has_the_image_size_and_is_deterministic(sam_engine):
    handle = example_sam()
    images = np.random.default_rng(0).random((2, 20, 30, 3), dtype=np.float32)  # a batch, not square
    emb = run_node(SamEncodeImage, sam_engine, sam=handle, image=images).embedding
    assert emb.original_size == (20, 30) and emb.features.shape[0] == 2
    outs = [run_node(SamPromptMask, sam_engine, embedding=emb, x=0.3, y=0.6) for _ in range(2)]
    mask = outs[0].mask
    assert mask.shape == (2, 20, 30) and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert isinstance(outs[0].score, float)
    np.testing.assert_array_equal(outs[0].mask, outs[1].mask)
    # the same image embedded again gives the same features (no hidden state)
    again = encode(handle, images)
    assert torch.equal(again.features, emb.features)


def test_fraction_and_pixel_units_name_the_same_point(sam_engine):
    emb = encode(example_sam(), np.random.default_rng(1).random((1, 20, 30, 3), dtype=np.float32))
    # fraction f is pixel f·W − 0.5
    a = run_node(SamPromptMask, sam_engine, embedding=emb, x=0.5, y=0.25, mask_choice="single")
    b = run_node(SamPromptMask, sam_engine, embedding=emb, x=14.5, y=4.5, units="pixels", mask_choice="single")
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.score == b.score
    c = run_node(SamPromptMask, sam_engine, embedding=emb, x=0.9, y=0.9, mask_choice="single")
    assert c.score != a.score  # the point matters


@pytest.mark.parametrize("values, fragment", [
    ({"x": 1.5}, "outside the image"),
    ({"x": 30, "y": 3, "units": "pixels"}, "outside the 30×20 image"),
    ({"x": -1, "y": 3, "units": "pixels"}, "0..29"),
    ({"box": "0.5, 0.5, 0.2, 0.9"}, "x0 < x1"),
    ({"box": "1, 2, 3"}, "expected 4 numbers"),
    ({"extra_points": "0.2, 0.3, 7"}, "label must be 1"),
    ({"use_point": False}, "no prompt"),
])
def test_bad_prompts_are_clear_errors(sam_engine, values, fragment):
    emb = encode(example_sam(), np.zeros((1, 20, 30, 3), np.float32))
    with pytest.raises(NodeExecutionError, match=fragment):
        run_node(SamPromptMask, sam_engine, embedding=emb, **values)


def test_point_outside_the_image_fails_the_run_with_the_fix(sam_engine, sam_settings):
    image, _ = scene_image()
    nodegraph.save_png(nodegraph.to_pil(image)[0], sam_settings.input_dir / "scene.png", None, {})
    wf = workflow(load=node("sam.load_sam", model="tiny-sam"),
                  img=node("core.load_image", image="scene.png"),
                  enc=node("sam.encode_image", sam=link("load", "sam"), image=link("img", "image")),
                  mask=node("sam.prompt_mask", embedding=link("enc", "embedding"), x=100, y=5, units="pixels"),
                  ov=node("sam.mask_overlay", image=link("img", "image"), mask=link("mask", "mask")),
                  save=node("core.save_image", images=link("ov", "image")))
    result = sam_engine.run(wf)
    assert not result.ok and result.error.node == "mask" and result.error.error_type == "NodeExecutionError"
    assert "outside the 40×40 image" in result.error.message and "units 'fraction'" in result.error.message


def test_box_and_extra_points_reach_the_model(sam_engine):
    emb = encode(example_sam(), np.random.default_rng(2).random((1, 24, 24, 3), dtype=np.float32))
    base = run_node(SamPromptMask, sam_engine, embedding=emb, x=0.5, y=0.5, mask_choice="single")
    boxed = run_node(SamPromptMask, sam_engine, embedding=emb, x=0.5, y=0.5, box="0.1, 0.1, 0.6, 0.6",
                     mask_choice="single")
    negative = run_node(SamPromptMask, sam_engine, embedding=emb, x=0.5, y=0.5, extra_points="0.2, 0.2, 0",
                        mask_choice="single")
    box_only = run_node(SamPromptMask, sam_engine, embedding=emb, use_point=False, box="2, 2, 20, 20",
                        units="pixels", mask_choice="single")
    scores = {base.score, boxed.score, negative.score, box_only.score}
    assert len(scores) == 4


def test_changing_the_point_reruns_only_the_mask_and_what_follows(sam_engine, sam_settings):
    image, _ = scene_image()
    nodegraph.save_png(nodegraph.to_pil(image)[0], sam_settings.input_dir / "scene.png", None, {})

    def wf(x):
        return workflow(load=node("sam.load_sam", model="tiny-sam"),
                        img=node("core.load_image", image="scene.png"),
                        enc=node("sam.encode_image", sam=link("load", "sam"), image=link("img", "image")),
                        mask=node("sam.prompt_mask", embedding=link("enc", "embedding"), x=x, y=0.5),
                        ov=node("sam.mask_overlay", image=link("img", "image"), mask=link("mask", "mask")),
                        save=node("core.save_image", images=link("ov", "image")))

    first, second, third = Recorder(), Recorder(), Recorder()
    assert sam_engine.run(wf(0.5), sink=first).ok
    assert first.ran == {"load", "img", "enc", "mask", "ov", "save"}
    assert sam_engine.run(wf(0.5), sink=second).ok
    assert second.ran == set()
    assert sam_engine.run(wf(0.25), sink=third).ok
    assert third.ran == {"mask", "ov", "save"} and "enc" in third.cached
    assert sam_engine.models.loads == 1


def test_auto_masks_outputs_are_consistent(sam_engine):
    images = np.random.default_rng(3).random((2, 16, 20, 3), dtype=np.float32)
    out = run_node(SamAutoMasks, sam_engine, sam=example_sam(), image=images, points_per_side=4,
                   pred_iou_thresh=0.0, stability_score_thresh=0.0, select="largest")
    assert out.mask.shape == (2, 16, 20)
    assert out.masks.shape[1:] == (16, 20) and out.masks.shape[0] == max(1, out.count)
    if out.count:
        # 'largest' orders image 0's masks by area; its first is the 'mask' output
        areas = out.masks.sum((1, 2))
        np.testing.assert_array_equal(out.masks[0], out.mask[0])
        assert areas[0] >= areas[1:][:1].max(initial=0) or out.count == 1
    strict = run_node(SamAutoMasks, sam_engine, sam=example_sam(), image=images, points_per_side=4,
                      pred_iou_thresh=1.0, stability_score_thresh=1.0)
    assert strict.count == 0 and not strict.masks.any() and not strict.mask.any()


def test_overlay_tints_only_the_mask_and_checks_sizes(sam_engine):
    image = np.full((1, 6, 6, 3), 0.2, np.float32)
    mask = np.zeros((1, 6, 6), np.float32)
    mask[0, 1:3, 1:3] = 1
    out = run_node(MaskOverlay, sam_engine, image=image, mask=mask, color="#ff0000", opacity=1.0)
    np.testing.assert_allclose(out.image[0, 1, 1], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(out.image[0, 4, 4], [0.2, 0.2, 0.2])
    np.testing.assert_array_equal(out.mask_image[..., 0], mask)
    with pytest.raises(NodeExecutionError, match="does not fit"):
        run_node(MaskOverlay, sam_engine, image=image, mask=np.zeros((1, 5, 6), np.float32))


def test_refinement_moves_a_rounded_mask_onto_the_square_the_image_shows():
    from nodes.sam.refine import refine_masks

    image = np.full((64, 64, 3), (0.9, 0.8, 0.1), np.float32)
    image[16:48, 20:52] = (0.2, 0.3, 0.8)
    truth = np.zeros((64, 64), bool)
    truth[16:48, 20:52] = True
    yy, xx = np.mgrid[:64, :64]
    # what SAM's bilinearly upsampled quarter-size logits look like: the square with its corners cut
    logits = 16.0 - (np.abs(xx - 35.5) ** 3 + np.abs(yy - 31.5) ** 3) ** (1 / 3)
    raw = logits > 0
    refined = refine_masks(logits[None], image, img_size=128)[0]

    def iou(m):
        return (m & truth).sum() / (m | truth).sum()

    assert iou(raw) < 0.9 and iou(refined) > 0.99, (iou(raw), iou(refined))


def test_refine_off_gives_sams_own_mask(sam_engine):
    from segment_anything import SamPredictor

    image, _ = scene_image()  # (1, 40, 40, 3)
    emb = run_node(SamEncodeImage, sam_engine, sam=example_sam(), image=image).embedding
    off = run_node(SamPromptMask, sam_engine, embedding=emb, x=0.5, y=0.5, refine=False, mask_choice="single").mask
    predictor = SamPredictor(emb.sam.model)
    predictor.set_image((image[0] * 255 + 0.5).astype(np.uint8))
    masks, _, _ = predictor.predict(point_coords=np.array([[19.5, 19.5]]), point_labels=np.array([1]),
                                    multimask_output=False)
    np.testing.assert_array_equal(off[0], masks[0].astype(np.float32))


# --- the shipped weights ------------------------------------------------------------------------

SHIPPED = ROOT / "models" / "sam-shapes"
# two-object scenes from one point, outlines refined (`refine` on, as workflows/sam_mask.json): bench/sam_eval.py --objects 2 measures
# 0.94–0.97 at 64, 128 and 256 px (0.85–0.86 unrefined); 20 prompts here, so a margin below that
THRESHOLD_TWO_OBJECTS = 0.88


def heldout_iou(sam_engine, n: int, prompt: str, objects: int = 1, size: int = 128) -> float:
    """Mean IoU against the exact masks of held-out scenes (seed 777, unseen attribute combinations and
    colour–shape pairs; with two objects, `domain.two_object_scenes`, a prompt per object) through the
    nodes, from one point at a random pixel of the object or its box."""
    from safetensors.torch import load_file  # noqa: F401 - the shipped file must be safetensors

    handle = run_node(LoadSam, sam_engine, model=str(SHIPPED)).sam
    rng = np.random.default_rng(777)
    half = n // 2
    if objects == 1:
        images = [(s,) for s in domain.sample_scenes(777, half, "heldout_combos")
                  + domain.sample_scenes(778, n - half, "heldout_pairs")]
    else:
        images = domain.two_object_scenes(777, half, "heldout_combos") + domain.two_object_scenes(778, n - half,
                                                                                                "heldout_pairs")
    ious = []
    for scenes in images:
        image, truths = domain.render_layers(list(scenes), size)
        emb = encode(handle, image[None].astype(np.float32) / 255.0)
        for truth in truths:
            ys, xs = np.nonzero(truth)
            if prompt == "point":
                k = int(rng.integers(len(xs)))
                out = run_node(SamPromptMask, sam_engine, embedding=emb, x=float(xs[k]), y=float(ys[k]),
                               units="pixels", refine=True)
            else:
                box = f"{xs.min()}, {ys.min()}, {xs.max()}, {ys.max()}"
                out = run_node(SamPromptMask, sam_engine, embedding=emb, use_point=False, box=box, units="pixels",
                               mask_choice="single", refine=True)
            m = out.mask[0] > 0.5
            ious.append((m & truth).sum() / (m | truth).sum())
    return float(np.mean(ious))


@pytest.mark.slow
def test_shipped_sam_segments_heldout_shapes_from_one_point(sam_engine):
    assert heldout_iou(sam_engine, 20, "point") >= 0.85


@pytest.mark.slow
def test_shipped_sam_segments_heldout_shapes_from_a_box(sam_engine):
    assert heldout_iou(sam_engine, 20, "box") >= 0.85


@pytest.mark.slow
@pytest.mark.parametrize("size", [64, 256])
def test_shipped_sam_segments_each_of_two_objects_from_one_point(sam_engine, size):
    assert heldout_iou(sam_engine, 10, "point", objects=2, size=size) >= THRESHOLD_TWO_OBJECTS


def test_shipped_weights_are_small_safetensors_with_a_config():
    from safetensors import safe_open

    assert (SHIPPED / "config.json").is_file()
    weights = SHIPPED / "model.safetensors"
    assert weights.stat().st_size < 8e6
    with safe_open(str(weights), "pt") as f:
        assert "image_encoder.pos_embed" in f.keys()
    config = json.loads((SHIPPED / "config.json").read_text())
    assert config["img_size"] == 128
