"""The edit prior of the InstructPix2Pix pack: the model's shape contract, its files, Instruct: Edit
Embedding through the engine, and the evaluation's `prior` slot mode. Tiny seeded models throughout.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import link, node, workflow

from nodegraph import Engine, Settings
from nodes.instruct.edit_prior import EditPrior, blend, load_edit_prior, save_edit_prior
from nodes.instruct.model import load_instruct, save_instruct
from nodes.instruct.tiny import tiny_instruct
from nodes.unclip.models import tiny


def tiny_prior(trained: bool = False) -> EditPrior:
    torch.manual_seed(0)
    prior = EditPrior(embed_dim=tiny.TEXT_DIM, text_width=tiny.TEXT_DIM, max_tokens=tiny.CONTEXT, width=16,
                      layers=1, heads=2)
    if trained:  # a non-zero head: the prior then changes its input
        torch.nn.init.normal_(prior.out[1].weight, std=0.5)
    return prior.eval()


def encode(texts: list[str]):
    with torch.inference_mode():
        return tiny.clip().model.encode_text(texts)


def _edit_embeddings(clip, prior, cases):
    """(source, edited, predicted) CLIP image embeddings of edits: renders at 64 px, the prior's edit."""
    from nodes.shapes import domain

    def embed(scenes):
        images = np.stack([domain.render(s, 64) for s in scenes])
        return clip.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)

    with torch.inference_mode():
        src, tgt = embed([e.source for e in cases]), embed([e.target for e in cases])
        return src, tgt, prior.edit(src, clip.encode_text([e.instruction for e in cases]))


def test_the_edit_prior_maps_b_embeddings_and_instructions_to_b_embeddings_of_the_same_width():
    prior, text = tiny_prior(trained=True), encode(["make it blue", "move it up", "grow it"])
    emb = torch.randn(3, tiny.TEXT_DIM, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = prior.edit(emb, text)
        one = prior.edit(emb, encode(["make it blue"]))  # one instruction for every row
    assert out.shape == emb.shape and one.shape == emb.shape
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], one[1])  # the instruction acts per row
    torch.testing.assert_close(out[0], one[0])


def test_an_untrained_edit_prior_returns_its_input_and_amount_zero_the_input_whatever_the_prior():
    emb = torch.randn(2, tiny.TEXT_DIM, generator=torch.Generator().manual_seed(2))
    text = encode(["make it blue", "change the background to black"])
    with torch.no_grad():
        torch.testing.assert_close(tiny_prior().edit(emb, text), emb)
        edited = tiny_prior(trained=True).edit(emb, text)
    assert not torch.allclose(edited, emb)
    torch.testing.assert_close(blend(emb, edited, 0.0), emb)
    torch.testing.assert_close(blend(emb, edited, 1.0), edited)
    half = blend(emb, edited, 0.5)
    cos = torch.nn.functional.cosine_similarity
    assert (cos(half, emb) > cos(edited, emb)).all() and (cos(half, edited) > cos(emb, edited)).all()


def test_the_edit_prior_saves_in_fp16_loads_in_fp32_and_a_missing_folder_says_how_to_train_one(tmp_path):
    prior = tiny_prior(trained=True)
    path = save_edit_prior(prior, tmp_path)
    assert (path / "config.json").is_file() and (path / "diffusion_pytorch_model.safetensors").is_file()
    back = load_edit_prior(tmp_path)
    assert next(back.parameters()).dtype == torch.float32
    for k, v in prior.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v.half().float(), msg=k)
    with pytest.raises(FileNotFoundError, match="python -m train ip2p_edit"):
        load_edit_prior(tmp_path / "nowhere")


def test_an_instructpix2pix_folder_carries_its_edit_prior_and_loads_without_one(tmp_path):
    save_instruct(tiny_instruct().model, tmp_path / "with", base=tiny.cached_root())
    assert isinstance(load_instruct(tmp_path / "with").edit_prior, EditPrior)
    model = tiny_instruct().model
    bare = type(model)(model.text_proj, model.unet, model.scheduler, model.clip, None)
    save_instruct(bare, tmp_path / "without", base=tiny.cached_root())
    assert load_instruct(tmp_path / "without").edit_prior is None


# --- the node, through the engine ------------------------------------------------------------------

@pytest.fixture
def engine(tmp_path):
    models = tmp_path / "models"
    model = tiny_instruct().model
    save_instruct(type(model)(model.text_proj, model.unet, model.scheduler, model.clip, tiny_prior(trained=True)),
                  models / "tiny-ip2p", base=tiny.cached_root())
    save_instruct(type(model)(model.text_proj, model.unet, model.scheduler, model.clip, None),
                  models / "bare-ip2p", base=tiny.cached_root())
    settings = Settings(model_dirs=[models, tiny.cached_root().parent], input_dir=tmp_path / "in",
                        output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp", entry_point_packs=False)
    return Engine.from_settings(settings)


def prior_workflow(instructions: str, amount: float, model: str = "tiny-ip2p") -> dict:
    return workflow(
        clip=node("unclip.load_clip", model="tiny-karlo"),
        model=node("instruct.load", model=model),
        scene=node("shapes.scene", color="red", shape="circle", position="top left", resolution=64),
        enc=node("unclip.text_encode", clip=link("clip", "clip"), text=instructions),
        emb=node("unclip.image_encode", clip=link("clip", "clip"), images=link("scene", "image")),
        edited=node("instruct.edit_embedding", model=link("model", "model"), image_embedding=link("emb", "embedding"),
                    instruction=link("enc", "conditioning"), amount=amount),
        edit=node("instruct.edit", model=link("model", "model"), images=link("scene", "image"),
                  instruction=link("enc", "conditioning"), image_embedding=link("edited", "embedding"), steps=2),
    )


def test_edit_embedding_feeds_instruct_edit_and_amount_zero_is_the_input_embedding(engine):
    run = engine.run(prior_workflow("make it blue\nmove it up", 1.0), targets=["edit", "edited", "emb"])
    assert run.ok, run.error
    assert run.outputs["edit"]["images"].shape[0] == 2
    edited, emb = run.outputs["edited"]["embedding"], run.outputs["emb"]["embedding"]
    assert edited.shape == (2, tiny.TEXT_DIM) and emb.shape == (1, tiny.TEXT_DIM)
    assert not torch.allclose(edited[0], edited[1])  # one row per instruction
    zero = engine.run(prior_workflow("make it blue\nmove it up", 0.0), targets=["edited"])
    torch.testing.assert_close(zero.outputs["edited"]["embedding"], emb.expand(2, -1))


def test_edit_embedding_on_a_model_without_an_edit_prior_is_a_clear_error(engine):
    run = engine.run(prior_workflow("make it blue", 1.0, model="bare-ip2p"), targets=["edited"])
    assert run.status == "failed"
    assert "has no edit prior" in run.error.message and "python -m train ip2p_edit" in run.error.message


# --- the evaluation's slot mode --------------------------------------------------------------------

def test_the_evaluations_prior_slot_is_the_input_slerped_towards_the_edit_priors_prediction():
    from eval.instruct import edit_set, slot_embeddings

    model = tiny_instruct().model
    model = type(model)(model.text_proj, model.unet, model.scheduler, tiny.clip().model, tiny_prior(trained=True))
    cases = edit_set("tuning", 3)
    src = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        slot = slot_embeddings("prior", 0.4, model, tiny.clip().model, cases, src)
        own = model.image_embedding(src)
        want = blend(own, model.edit_prior.edit(own, encode([e.instruction for e in cases])), 0.4)
        none = slot_embeddings("prior", 0.0, model, tiny.clip().model, cases, src)
    torch.testing.assert_close(slot, want)
    torch.testing.assert_close(none, own)
    assert not torch.allclose(slot, own)


def test_the_evaluation_runs_with_the_prior_slot_on_tiny_models(tmp_path):
    from eval.instruct import edit_set, run_edits

    model = tiny_instruct().model
    save_instruct(type(model)(model.text_proj, model.unet, model.scheduler, tiny.clip().model,
                              tiny_prior(trained=True)), tmp_path / "ip2p", base=tiny.cached_root())
    cases = edit_set("tuning", 2)
    out = {slot: run_edits(cases, tmp_path / "ip2p", tiny.cached_root(), guidance=3.0, image_guidance=1.5,
                           steps=2, upsample=False, slot=slot, theta=1.0) for slot in ("input", "prior")}
    assert out["prior"].shape == out["input"].shape and out["prior"].dtype == np.uint8
    assert np.abs(out["prior"].astype(int) - out["input"]).max() > 0


# --- the shipped edit prior ------------------------------------------------------------------------

def test_shipped_edit_prior_moves_held_out_edits_towards_the_edited_scenes_embedding():
    """CLIP space only (cheap): docs/personalise.md has the figures (cosine 0.97 against the input's 0.83)."""
    from conftest import ROOT

    shipped, bundle = ROOT / "models" / "shapes-ip2p", ROOT / "models" / "shapes-unclip"
    if not (shipped / "edit_prior").is_dir() or not (bundle / "clip").is_dir():
        pytest.skip("shipped weights absent: run `python -m train ip2p_edit` after the base bundle is trained")
    from eval.instruct import edit_set
    from nodes.unclip.api import load_clip

    clip, prior = load_clip(bundle), load_edit_prior(shipped)
    cases = edit_set("tuning", 20)

    cos = torch.nn.functional.cosine_similarity
    src, tgt, pred = _edit_embeddings(clip, prior, cases)
    assert float(cos(pred, tgt).mean()) > float(cos(src, tgt).mean()) + 0.08
    assert float((cos(pred, tgt) > cos(src, tgt)).float().mean()) >= 0.8


# --- the trainer's attribute probes and size-edit draws --------------------------------------------

def test_the_probe_loss_is_low_for_the_edited_scenes_attributes_and_high_when_the_size_is_wrong():
    from nodes.shapes import domain
    from train.ip2p_edit import attribute_labels, fit_probes, probe_loss

    scenes = domain.sample_scenes(0, 300, "train")
    labels, sizes = attribute_labels(scenes)
    assert sizes == [len(domain.COLORS), len(domain.SHAPES), 2, 9, len(domain.COLORS)]
    g = torch.Generator().manual_seed(4)  # embeddings (N, 32): a random direction per attribute value, plus noise
    emb = sum(torch.randn(k, 32, generator=g)[labels[:, a]] for a, k in enumerate(sizes))
    emb = emb + 0.1 * torch.randn(emb.shape, generator=g)
    probes = fit_probes(emb, labels, sizes, steps=100)
    flipped = labels.clone()
    flipped[:, 2] = 1 - flipped[:, 2]  # small ↔ large
    right, wrong = probe_loss(emb, probes, labels), probe_loss(emb, probes, flipped)
    assert right < 0.1 and wrong > right + 1.0
    pred = emb.clone().requires_grad_(True)
    probe_loss(pred, probes, flipped).backward()  # the gradient moves a prediction towards the target's size
    assert float(probe_loss(emb - 0.5 * pred.grad / pred.grad.norm(dim=-1, keepdim=True) * emb.norm(dim=-1,
                 keepdim=True), probes, flipped)) < float(wrong)


def test_size_rate_draws_size_edits_that_many_times_as_often_and_rate_one_draws_uniformly():
    from nodes.shapes import edits
    from train.ip2p_edit import draw_weights

    pairs = edits.sample_edits(0, 50)  # kinds in turn: 10 of each
    assert draw_weights(pairs, 1.0) is None
    p = draw_weights(pairs, 3.0)
    size = np.array([e.kind == "size" for e in pairs])
    assert p.sum() == pytest.approx(1.0) and p[size].sum() == pytest.approx(3 / 7)
    assert np.allclose(p[size], 3 * p[~size][0])


def test_the_trainer_with_probe_loss_size_rate_and_both_caption_writers_writes_a_loadable_prior(tmp_path):
    import json

    from conftest import ROOT

    bundle = ROOT / "models" / "shapes-unclip"
    if not (bundle / "clip").is_dir() or not (bundle / "decoder").is_dir():
        pytest.skip("base bundle absent: train it with `python -m train unclip`")
    from train import ip2p_edit

    assert ip2p_edit.main(["--smoke", "--out", str(tmp_path), "--bundle", str(bundle), "--probe-weight", "1",
                           "--size-rate", "3", "--caption-mix", "0.5"]) == 0
    prior = load_edit_prior(tmp_path / "shapes-ip2p")
    assert prior.config.width == 32
    log = json.loads((tmp_path / "shapes-ip2p" / "edit_prior" / "training_log.json").read_text())
    assert log["steps_done"] == 3 and log["config"]["probe_weight"] == 1.0 and log["config"]["caption_mix"] == 0.5


def test_shipped_edit_prior_carries_size_edits_that_name_a_size_word_of_the_captions():
    """Size is the smallest change in CLIP space: a size edit's prediction must lie nearer the edited scene
    than the input (they differ in size alone). Held-out size phrasings with a caption size word ("tiny",
    "little", "huge") or "size" all do (the previous edit prior: 9 of 15); words CLIP never learnt cannot."""
    from conftest import ROOT

    from nodes.shapes import domain

    shipped, bundle = ROOT / "models" / "shapes-ip2p", ROOT / "models" / "shapes-unclip"
    if not (shipped / "edit_prior").is_dir() or not (bundle / "clip").is_dir():
        pytest.skip("shipped weights absent: run `python -m train ip2p_edit` after the base bundle is trained")
    from eval.instruct import edit_set
    from nodes.unclip.api import load_clip

    words = {w for ws in domain.SIZE_WORDS.values() for w in ws} | {"size"}
    cases = [e for e in edit_set("tuning", 100) if e.kind == "size" and words & set(e.instruction.split())]
    assert len(cases) >= 12
    clip, prior = load_clip(bundle), load_edit_prior(shipped)

    cos = torch.nn.functional.cosine_similarity
    src, tgt, pred = _edit_embeddings(clip, prior, cases)
    nearer = cos(pred, tgt) > cos(pred, src)
    assert nearer.all(), [e.instruction for e, ok in zip(cases, nearer, strict=True) if not ok]
