"""The 64 px upsampler that also sees the CLIP image embedding (`super_res_embed/`), and its trial stage."""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")

from nodes.unclip.models import load_upsampler, upsample  # noqa: E402
from nodes.unclip.models.tiles import plan_tiles, tiled_forward  # noqa: E402
from nodes.unclip.models.upsampler import UpsamplerModel, with_embedding  # noqa: E402
from train.common import SHIPPED  # noqa: E402

DIM = 128  # the shipped CLIP's embedding width


@pytest.fixture(scope="module")
def shipped():
    return load_upsampler(SHIPPED)


def images(seed: int = 0, n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def embeds(seed: int = 0, n: int = 2) -> torch.Tensor:
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed))


def run(model, imgs, emb=None, seed=0, **kw):
    with torch.inference_mode():
        return upsample(model, imgs, steps=2, generator=torch.Generator().manual_seed(seed), fix_colors=True,
                        image_embeds=emb, **kw)


def embedded(shipped, nonzero: bool) -> UpsamplerModel:
    unet, embed = with_embedding(shipped.first, DIM)
    if nonzero:  # as after training: the path's last layer is no longer zero
        torch.manual_seed(0)
        torch.nn.init.normal_(embed.proj.linear_2.weight, std=0.5)
    return UpsamplerModel(unet.eval(), None, shipped.scheduler, embed.eval())


def save(model: UpsamplerModel, root) -> None:
    model.first.save_pretrained(root / "super_res_first")
    model.embed.save_pretrained(root / "super_res_embed")
    shutil.copytree(SHIPPED / "super_res_scheduler", root / "super_res_scheduler")


def test_step_zero_is_exactly_the_shipped_upsampler_whatever_the_embedding(shipped):
    model = embedded(shipped, nonzero=False)
    base = run(shipped, images())
    assert torch.equal(run(model, images(), embeds(1)), base)
    assert torch.equal(run(model, images(), embeds(2)), base)
    assert torch.equal(run(model, images(), None), base)


def test_a_trained_embedding_path_changes_the_drawing_and_none_turns_it_off(shipped):
    model = embedded(shipped, nonzero=True)
    a, b = run(model, images(), embeds(1)), run(model, images(), embeds(2))
    assert (a - b).abs().mean() > 1e-3
    # no embedding: zero class labels, the UNet as it was (here the shipped one's weights)
    assert torch.equal(run(model, images(), None), run(shipped, images()))
    # one row serves every image; k rows serve k images each, in order
    one = run(model, images(n=2), embeds(1, n=1))
    assert torch.equal(one, run(model, images(n=2), embeds(1, n=1).expand(2, DIM)))
    two = run(model, images(n=4), embeds(1, n=2))  # 2 rows for 4 images: each row for its 2, in order
    assert torch.equal(two, run(model, images(n=4), embeds(1, n=2).repeat_interleave(2, dim=0)))
    assert not torch.equal(two, run(model, images(n=4), embeds(1, n=2).repeat(2, 1)))
    # a zero row is the embedding dropped, as training drops it: the same as none
    assert torch.equal(run(model, images(), torch.zeros(2, DIM)), run(model, images(), None))
    with pytest.raises(ValueError, match="3 embeddings for 2 images"):
        run(model, images(n=2), embeds(1, n=3))
    with pytest.raises(ValueError, match=r"\(B, 128\)"):
        run(model, images(n=2), torch.randn(2, 64))


def test_an_upsampler_without_the_path_ignores_an_embedding(shipped):
    assert shipped.embed is None and shipped.first.config.class_embed_type is None
    assert torch.equal(run(shipped, images(), embeds(1)), run(shipped, images()))


def test_a_saved_embedding_upsampler_loads_as_a_diffusers_folder_and_refuses_half_of_one(shipped, tmp_path):
    model = embedded(shipped, nonzero=True)
    save(model, tmp_path / "up")
    loaded = load_upsampler(tmp_path / "up")
    assert loaded.embed is not None and loaded.first.config.class_embed_type == "identity"
    assert torch.equal(run(loaded, images(), embeds(1)), run(model, images(), embeds(1)))
    config = json.loads((tmp_path / "up" / "super_res_embed" / "config.json").read_text())
    assert config["_class_name"] == "UpsamplerEmbedding" and config["embedding_dim"] == DIM
    shutil.copytree(SHIPPED / "super_res_first", tmp_path / "up" / "super_res_last")  # Karlo's last-step net
    with pytest.raises(ValueError, match="super_res_last/ .* does not take"):
        load_upsampler(tmp_path / "up")
    shutil.rmtree(tmp_path / "up" / "super_res_last")
    shutil.rmtree(tmp_path / "up" / "super_res_embed")
    with pytest.raises(ValueError, match="go together"):
        load_upsampler(tmp_path / "up")


class LabelNet(torch.nn.Module):
    """A UNet stand-in without spatial context whose output depends on each frame's class labels."""

    def __init__(self, unet):
        super().__init__()
        self.config = unet.config
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(6, 3, 1)

    def forward(self, sample, timestep, class_labels=None):
        return type("Out", (), {"sample": torch.tanh(self.conv(sample)) + class_labels[:, :3, None, None]})()


def test_tiles_give_each_crop_its_own_frames_labels(shipped):
    net = LabelNet(shipped.first)
    x = torch.rand(2, 6, 128, 128, generator=torch.Generator().manual_seed(0))
    labels = torch.randn(2, 128, generator=torch.Generator().manual_seed(1))
    active = torch.zeros(2, 1, 128, 128, dtype=torch.bool)
    active[:, :, 20:30, 10:20] = True
    tiles = plan_tiles(active, 16, 8, 4)
    assert tiles is not None and {b for b, _, _ in tiles.crops} == {0, 1}
    dense = net(x, 0, labels).sample
    sparse = tiled_forward(net, x, 0, tiles, torch.zeros_like(dense), class_labels=labels)
    assert torch.allclose(sparse[tiles.covered.expand_as(dense)], dense[tiles.covered.expand_as(dense)], atol=1e-6)


def test_the_node_passes_the_embedding_to_an_upsampler_that_sees_it(shipped, tmp_path):
    from nodegraph import Engine, Settings

    save(embedded(shipped, nonzero=True), tmp_path / "models" / "shapes-unclip-emb")
    engine = Engine.from_settings(Settings.from_env(threads=1, output_dir=tmp_path / "out",
                                                    model_dirs=[tmp_path / "models", SHIPPED.parent]))

    def workflow(upsampler: str, with_embedding: bool, colour: str = "red") -> dict:
        up = {"upsampler": {"from": "load_up", "output": "upsampler"}, "images": {"from": "low", "output": "image"},
              "steps": 2, "seed": 0}
        if with_embedding:
            up["image_embedding"] = {"from": "enc", "output": "embedding"}
        scene = {"shape": "star", "color": colour, "size": "small", "position": "center", "background": "white"}
        return {"format": "nodegraph/1", "nodes": {
            "load_clip": {"type": "unclip.load_clip", "version": 1, "inputs": {"model": "shapes-unclip"}},
            "load_up": {"type": "unclip.load_upsampler", "version": 1, "inputs": {"model": upsampler}},
            "low": {"type": "shapes.scene", "version": 1, "inputs": {**scene, "resolution": 32}},
            "high": {"type": "shapes.scene", "version": 1, "inputs": {**scene, "color": colour, "resolution": 64}},
            "enc": {"type": "unclip.image_encode", "version": 1, "inputs": {
                "clip": {"from": "load_clip", "output": "clip"}, "images": {"from": "high", "output": "image"}}},
            "up": {"type": "unclip.upsample", "version": 1, "inputs": up}}}

    def out(*args):
        run = engine.run(workflow(*args), targets=["up"])
        assert run.ok, run.error
        return torch.as_tensor(run.outputs["up"]["images"])

    assert not torch.equal(out("shapes-unclip-emb", True), out("shapes-unclip-emb", False))
    # the shipped (Karlo-layout, image-only) upsampler runs as before with the port connected
    assert torch.equal(out("shapes-unclip", True), out("shapes-unclip", False))


def _embedding_workflow(upsampler: str, source: str) -> dict:
    """low (32 px) → up, with image_embedding from the shipped CLIP (128 wide), via `source`."""
    scene = {"shape": "star", "color": "red", "size": "small", "position": "center", "background": "white"}
    nodes = {
        "load_clip": {"type": "unclip.load_clip", "version": 1, "inputs": {"model": "shapes-unclip"}},
        "load_up": {"type": "unclip.load_upsampler", "version": 1, "inputs": {"model": upsampler}},
        "low": {"type": "shapes.scene", "version": 1, "inputs": {**scene, "resolution": 32}},
        "enc": {"type": "unclip.image_encode", "version": 1, "inputs": {
            "clip": {"from": "load_clip", "output": "clip"}, "images": {"from": "low", "output": "image"}}},
        "up": {"type": "unclip.upsample", "version": 1, "inputs": {
            "upsampler": {"from": "load_up", "output": "upsampler"}, "images": {"from": "low", "output": "image"},
            "steps": 2, "image_embedding": {"from": source, "output": "embedding"}}},
        "save": {"type": "core.preview_image", "version": 1, "inputs": {"images": {"from": "up", "output": "images"}}}}
    # an embedding operation the check follows (slerp of the encoding with itself), and one it does not know
    nodes["lerp"] = {"type": "unclip.embedding_interpolate", "version": 1, "inputs": {
        "a": {"from": "enc", "output": "embedding"}, "b": {"from": "enc", "output": "embedding"}, "steps": 1}}
    nodes["recolor"] = {"type": "shapes.embedding_recolor", "version": 1, "inputs": {
        "clip": {"from": "load_clip", "output": "clip"}, "embedding": {"from": "enc", "output": "embedding"},
        "color": "red", "strength": 0.0}}
    return {"format": "nodegraph/1", "nodes": nodes}


@pytest.fixture
def narrow_engine(shipped, tmp_path):
    """An engine whose model folders hold `up-64`: an upsampler that takes 64-wide embeddings (not the shipped 128)."""
    from nodegraph import Engine, Settings

    unet, embed = with_embedding(shipped.first, 64)
    save(UpsamplerModel(unet, None, shipped.scheduler, embed), tmp_path / "models" / "up-64")
    return Engine.from_settings(Settings.from_env(threads=1, output_dir=tmp_path / "out",
                                                  model_dirs=[tmp_path / "models", SHIPPED.parent]))


@pytest.mark.parametrize("source", ["enc", "lerp"])
def test_an_embedding_of_another_width_is_refused_before_the_run(narrow_engine, source):
    from nodegraph import WorkflowInvalid

    wf = _embedding_workflow("up-64", source)
    result = narrow_engine.validate(wf)
    assert not result.valid
    [issue] = result.issues
    assert (issue.code, issue.node, issue.port) == ("invalid_model", "up", "image_embedding")
    assert "width 64" in issue.message and "128 wide" in issue.message and "bundle" in issue.message
    events = []
    with pytest.raises(WorkflowInvalid, match="width 64"):
        narrow_engine.run(wf, sink=events.append)
    assert not events  # nothing ran
    # the shipped (image-only) upsampler ignores the embedding: nothing to refuse
    assert narrow_engine.validate(_embedding_workflow("shapes-unclip", source)).valid


def _config_only(root, files: dict[str, dict]) -> None:
    """A model folder of JSON configs only: what validation reads (nothing loads)."""
    for name, config in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(config))


@pytest.mark.parametrize("encoder", ["image", "text"])
def test_the_width_check_reads_the_tower_that_made_the_embedding(tmp_path, encoder):
    """An SD-2.1-unCLIP-style root: images are encoded by image_encoder/ (1024 wide), texts by
    text_encoder/ (512 wide); each upsampler accepts the embeddings of its width only."""
    from nodegraph import Engine, Settings
    from nodes.unclip.checks import clip_width

    models = tmp_path / "models"
    _config_only(models / "sd21", {"text_encoder/config.json": {"projection_dim": 512},
                                   "tokenizer/tokenizer_config.json": {},
                                   "image_encoder/config.json": {"projection_dim": 1024}})
    for width in (512, 1024):
        _config_only(models / f"up-{width}", {"super_res_embed/config.json": {"embedding_dim": width},
                                              "super_res_first/config.json": {},
                                              "super_res_scheduler/scheduler_config.json": {}})
    assert clip_width(models / "sd21", "text")[0] == 512 and clip_width(models / "sd21", "image")[0] == 1024
    engine = Engine.from_settings(Settings.from_env(threads=1, output_dir=tmp_path / "out", model_dirs=[models]))
    wf = _embedding_workflow("up-1024", "enc")
    wf["nodes"]["load_clip"]["inputs"]["model"] = "sd21"
    if encoder == "text":
        wf["nodes"]["enc"] = {"type": "unclip.text_encode", "version": 1, "inputs": {
            "clip": {"from": "load_clip", "output": "clip"}, "text": "a red star"}}
    del wf["nodes"]["lerp"], wf["nodes"]["recolor"]
    right, wrong = ("up-1024", "up-512") if encoder == "image" else ("up-512", "up-1024")
    wf["nodes"]["load_up"]["inputs"]["model"] = right
    assert engine.validate(wf).valid
    wf["nodes"]["load_up"]["inputs"]["model"] = wrong
    [issue] = engine.validate(wf).issues
    assert issue.port == "image_embedding" and f"{encoder}_encoder" in issue.message


def test_an_embedding_of_another_width_from_an_unknown_node_fails_before_sampling(narrow_engine):
    wf = _embedding_workflow("up-64", "recolor")
    assert narrow_engine.validate(wf).valid  # the check cannot tell through shapes.embedding_recolor
    events = []
    run = narrow_engine.run(wf, sink=events.append)
    assert not run.ok and run.error.node == "up"
    assert "(B, 64)" in run.error.message and "128 wide" in run.error.message
    assert "the decoder's `image_embedding`" in run.error.message
    assert not [e for e in events if getattr(e, "event", "") == "progress" and e.node == "up"]


def test_a_count_of_embeddings_that_does_not_divide_the_images_is_refused_with_the_fix(shipped):
    model = embedded(shipped, nonzero=False)
    assert model.class_labels(embeds(n=2), 4).shape[0] == 4  # one per decoded embedding, its 2 images each
    assert shipped.class_labels(embeds(n=3), 4) is None  # an image-only upsampler ignores them
    with pytest.raises(ValueError, match=r"3 embeddings for 4 images; give 1, one per image, or one per decoded "
                       r"embedding \(the decoder's `image_embedding`"):
        model.class_labels(embeds(n=3), 4)
    with pytest.raises(ValueError, match=r"\(B, 128\).* 64 wide, not from the CLIP of its bundle; connect"):
        model.class_labels(torch.randn(4, 64), 4)


def test_the_trial_refuses_the_shipped_bundle_and_a_missing_out():
    from train.upsampler_embed import _tracked, main

    before = sorted((p.name, p.stat().st_mtime_ns) for p in (SHIPPED / "super_res_first").iterdir())
    assert main(["--smoke", "--out", str(SHIPPED)]) == 2
    assert main(["--smoke"]) == 2
    sr256 = SHIPPED.parent / "shapes-unclip-sr256"  # another shipped upsampler, which git tracks
    if _tracked(sr256 / "super_res_first"):  # (outside a git checkout the guard cannot tell: not run)
        assert main(["--smoke", "--out", str(sr256)]) == 2 and not (sr256 / "super_res_embed").exists()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (SHIPPED / "super_res_first").iterdir()) == before
    assert not (SHIPPED / "super_res_embed").exists()


def test_smoke_trial_writes_a_loadable_upsampler_that_sees_the_embedding(tmp_path):
    from train.__main__ import main

    threads = torch.get_num_threads()
    try:
        assert main(["upsampler_embed", "--smoke", "--out", str(tmp_path / "up")]) == 0
    finally:
        torch.set_num_threads(threads)
    model = load_upsampler(tmp_path / "up")
    assert model.embed is not None and model.embed.config.embedding_dim == DIM
    assert model.embed.proj.linear_2.weight.abs().sum() > 0  # the path has started to learn
    record = json.loads((tmp_path / "up" / "training_log.json").read_text())["upsampler_embed"]
    assert record["steps"] == 2 and record["init"] == "models/shapes-unclip" and record["wall_seconds"] > 0
    index = json.loads((tmp_path / "up" / "model_index.json").read_text())
    assert index["super_res_first"] == ["diffusers", "UNet2DModel"] and "super_res_embed" in index
