"""The autoregressive prior: its codebook, its causal transformer, sampling, saving, the node, the train stage."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ROOT

from nodegraph import Engine, Settings
from nodes.unclip.models.ar_prior import (
    ARPrior,
    ARPriorConfig,
    ARPriorModel,
    CodeBook,
    load_ar_prior,
    sample_ar_prior,
)
from nodes.unclip.models.clip import TextEncoding

SHIPPED = ROOT / "models" / "shapes-unclip"


def tiny_text(batch: int = 3, lengths=(3, 6, 8), dim: int = 16, context: int = 8, seed: int = 0) -> TextEncoding:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, context, dtype=torch.bool)
    for i, n in enumerate(lengths[:batch]):
        mask[i, :n] = True
    return TextEncoding(torch.randn(batch, dim, generator=g), torch.randn(batch, context, dim, generator=g), mask)


def tiny_model(seed: int = 0, components: int = 4, bins: int = 8) -> ARPrior:
    torch.manual_seed(seed)
    net = ARPrior(ARPriorConfig(embedding_dim=16, text_width=16, context_length=8, components=components, bins=bins,
                                width=16, layers=1, heads=2))
    net.codebook.fit(torch.randn(128, 16, generator=torch.Generator().manual_seed(seed)))
    return net.eval()


def test_codebook_keeps_a_low_rank_embedding_through_codes():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(2000, 6, generator=g) @ torch.randn(6, 32, generator=g) + 3.0  # rank 6, offset mean
    book = CodeBook(32, components=6, bins=64).fit(emb)
    codes = book.encode(emb)
    assert codes.shape == (2000, 6) and codes.dtype == torch.int64
    assert int(codes.min()) == 0 and int(codes.max()) == 63
    counts = torch.stack([torch.bincount(codes[:, k], minlength=64) for k in range(6)])
    assert counts.min() >= 20 and counts.max() <= 45  # equal-mass bins: about 2000 / 64 each
    cos = torch.nn.functional.cosine_similarity(book.decode(codes), emb, dim=-1)
    assert cos.mean() > 0.999 and cos.min() > 0.95  # the outer bins are wide: the tails are coarse


def test_codebook_refuses_too_few_embeddings_to_fit():
    with pytest.raises(ValueError, match="at least 16 embeddings"):
        CodeBook(4, components=2, bins=8).fit(torch.randn(10, 4))


def test_logits_of_a_prompt_do_not_depend_on_the_other_prompts_in_its_batch():
    net, text = tiny_model(), tiny_text()
    codes = torch.randint(0, 8, (3, 3))
    with torch.no_grad():
        batch = net.logits(text, codes)
        for i in range(3):
            alone = net.logits(TextEncoding(text.embeds[i:i + 1], text.hidden[i:i + 1], text.mask[i:i + 1]),
                               codes[i:i + 1])
            torch.testing.assert_close(batch[i:i + 1], alone, atol=1e-5, rtol=1e-5)


def test_a_code_changes_only_the_predictions_after_it():
    net, text = tiny_model(), tiny_text()
    codes = torch.randint(0, 8, (3, 3))
    other = codes.clone()
    other[:, 1] = (other[:, 1] + 1) % 8
    with torch.no_grad():
        a, b = net.logits(text, codes), net.logits(text, other)
    # logits[:, j] predicts code j from codes < j: code 1 enters the predictions of codes 2 and 3 only
    torch.testing.assert_close(a[:, :2], b[:, :2])
    assert (a[:, 2:] - b[:, 2:]).abs().max() > 1e-4


def test_sampling_is_seeded_and_temperature_zero_ignores_the_seed():
    model = ARPriorModel(tiny_model())
    text, empty = tiny_text(), tiny_text(batch=1, lengths=(1,))

    def sample(seed, **kw):
        return sample_ar_prior(model, text, empty, generator=torch.Generator().manual_seed(seed), **kw)

    with torch.no_grad():
        torch.testing.assert_close(sample(1), sample(1))
        assert not torch.equal(sample(1), sample(2))
        torch.testing.assert_close(sample(1, temperature=0), sample(2, temperature=0))
        torch.testing.assert_close(sample(1, top_k=1), sample(1, temperature=0))
        out = sample(3, guidance=3.0, top_k=4)
        many = sample_ar_prior(model, text, empty, num_per_prompt=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 16) and many.shape == (6, 16)
    # every sample is a decoded code sequence: it lies in the codebook's PCA subspace
    book = model.prior.codebook
    torch.testing.assert_close(book.project(out) @ book.basis + book.mean, out, atol=1e-4, rtol=1e-4)


def test_a_prompt_from_another_clip_is_refused_with_the_fix():
    model = ARPriorModel(tiny_model())
    wrong = tiny_text(dim=12)
    with pytest.raises(ValueError, match="python -m train arprior"):
        sample_ar_prior(model, wrong, wrong)
    with pytest.raises(ValueError, match="temperature must be"):
        sample_ar_prior(model, tiny_text(), tiny_text(), temperature=-1)


def test_save_and_load_give_the_same_model(tmp_path):
    net, text = tiny_model(seed=3), tiny_text()
    net.save(tmp_path / "bundle" / "prior_ar")
    loaded = load_ar_prior(tmp_path / "bundle").prior
    codes = torch.randint(0, 8, (3, 2))
    with torch.no_grad():
        torch.testing.assert_close(loaded.logits(text, codes), net.logits(text, codes))
    assert json.loads((tmp_path / "bundle" / "prior_ar" / "config.json").read_text())["components"] == 4
    with pytest.raises(FileNotFoundError, match="python -m train arprior"):
        load_ar_prior(tmp_path)


def test_training_on_text_dependent_codes_lowers_the_loss():
    # image embeddings that are a function of the text: the prior can learn them, a constant cannot
    net = tiny_model(components=3, bins=4)
    g = torch.Generator().manual_seed(1)
    text = tiny_text(batch=8, lengths=(8,) * 8)
    text = TextEncoding(torch.randn(64, 16, generator=g), torch.randn(64, 8, 16, generator=g),
                        torch.ones(64, 8, dtype=torch.bool))
    net.codebook.fit(text.embeds @ torch.randn(16, 16, generator=g))
    codes = net.codebook.encode(text.embeds @ torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = net.loss(text, codes).item()
    for _ in range(60):
        loss = net.loss(text, codes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first


def test_the_ar_prior_node_swaps_for_the_diffusion_prior_in_a_workflow(tmp_path):
    text2image = json.loads((ROOT / "workflows" / "text2image.json").read_text())
    # the AR workflows are the plain recipe: text2image.json without Factor Out Colour and Recolour
    for nid in ("factor", "recolor"):
        del text2image["nodes"][nid]
    text2image["nodes"]["prior"]["inputs"]["conditioning"] = {"from": "enc", "output": "conditioning"}
    text2image["nodes"]["decoder"]["inputs"]["image_embedding"] = {"from": "prior", "output": "embedding"}
    ar = json.loads((ROOT / "workflows" / "text2image_ar.json").read_text())
    engine = Engine.from_settings(Settings(output_dir=tmp_path, entry_point_packs=False))
    reg = engine.registry
    diffusion, autoregressive = reg.get(text2image["nodes"]["prior"]["type"]), reg.get(ar["nodes"]["prior"]["type"])
    # the same link inputs apart from the model, the same outputs
    links = {name: port.type.name for name, port in diffusion.inputs.items() if port.type.link_only}
    assert links.pop("prior") == "unclip.PRIOR"
    assert links.pop("init") == "unclip.EMBEDDING"  # optional: the diffusion prior may refine the AR prior's samples
    assert {name: autoregressive.inputs[name].type.name for name in links} == links
    assert autoregressive.inputs["prior"].type.name == "unclip.AR_PRIOR"
    assert {n: p.type.name for n, p in autoregressive.outputs.items()} == \
        {n: p.type.name for n, p in diffusion.outputs.items()}
    # and the rest of the workflow is unchanged
    same = {k for k in text2image["nodes"] if k not in ("load_prior", "prior", "save", "save_grid")}
    def graph(node: dict) -> dict:  # editor positions aside
        return {k: v for k, v in node.items() if k != "ui"}

    assert all(graph(text2image["nodes"][k]) == graph(ar["nodes"][k]) for k in same)


def test_train_stage_writes_a_loadable_prior_and_its_wall_time(tmp_path):
    from train import arprior

    bundle = tmp_path / "shapes-unclip"
    bundle.mkdir()
    (bundle / "clip").symlink_to(SHIPPED / "clip")
    assert arprior.main(["--smoke", "--out", str(bundle)]) == 0
    model = load_ar_prior(bundle)
    log = json.loads((bundle / "prior_ar" / "training_log.json").read_text())["arprior"]
    assert log["wall_seconds"] > 0 and log["clip_sha256"] == arprior.clip_sha256(SHIPPED)
    assert model.prior.config.context_length == 32 and model.embedding_dim == 128


def test_continuing_a_trained_prior_keeps_its_codebook_and_writes_checkpoints(tmp_path):
    from train import arprior

    first, second = tmp_path / "a", tmp_path / "b"
    for bundle in (first, second):
        bundle.mkdir()
        (bundle / "clip").symlink_to(SHIPPED / "clip")
    assert arprior.main(["--smoke", "--out", str(first)]) == 0
    assert arprior.main(["--smoke", "--out", str(second), "--init", str(first / "prior_ar"), "--steps", "3",
                         "--save-every", "2", "--data-seed", "1"]) == 0
    before, after = load_ar_prior(first).prior, load_ar_prior(second).prior
    assert after.config == before.config
    for name in ("mean", "basis", "edges", "centres"):  # refitting on other data would move these
        assert torch.equal(getattr(after.codebook, name), getattr(before.codebook, name))
    assert not torch.equal(after.head.weight, before.head.weight)  # and it did train
    load_ar_prior(second / "prior_ar" / "step-2")
    log = json.loads((second / "prior_ar" / "training_log.json").read_text())["arprior"]
    assert log["steps"] == 3 and log["continued_from"]["steps"] == 3


def test_the_caption_only_ablation_gives_the_decoder_its_null_image_embedding():
    from types import SimpleNamespace

    from eval.priors import ARSettings, _embeddings

    null = torch.randn(1, 16)
    stack = SimpleNamespace(decoder=SimpleNamespace(text_proj=SimpleNamespace(
        learned_classifier_free_guidance_embeddings=null)), s=None, gen=lambda seed: None)
    emb = _embeddings(stack, None, "caption only", tiny_text(3), 0, ARSettings(1.0, 1.0, 0))
    assert emb.shape == (3, 16) and torch.equal(emb, null.expand(3, -1))


def test_shipped_ar_prior_was_trained_on_the_shipped_clip_and_fits_its_budget():
    from train import arprior

    folder = SHIPPED / "prior_ar"
    log = json.loads((folder / "training_log.json").read_text())["arprior"]
    assert log["clip_sha256"] == arprior.clip_sha256(SHIPPED), \
        "clip/ changed since the AR prior was trained: retrain it with `python -m train arprior`"
    assert sum(f.stat().st_size for f in folder.iterdir()) < 5 * 2**20


def test_shipped_ar_prior_samples_depend_on_their_prompt():
    """Quality, cheaply (no decoder): a sample for a caption is closer (cosine) to its own scene's CLIP image
    embedding than to the other scenes', and its own scene is the nearest far more often than chance (1/12).
    The shipped AR prior measures 0.98 against 0.26, nearest 12 of 12; the bars leave room for a retrain."""
    import numpy as np

    from nodes.shapes import domain
    from nodes.unclip.models import load_clip
    from train.data import to_tensor

    clip = load_clip(SHIPPED / "clip")
    model = load_ar_prior(SHIPPED)
    rng = np.random.default_rng(7)
    scenes = domain.sample_scenes(7, 12, "train")
    captions = [domain.full_caption(s, rng) for s in scenes]
    with torch.no_grad():
        target = clip.encode_image(to_tensor(np.stack([domain.render(s, 64) for s in scenes])))
        sample = sample_ar_prior(model, clip.encode_text(captions), clip.encode_text([""]), guidance=2.0,
                                 temperature=0.0)
    sim = torch.nn.functional.normalize(sample, dim=-1) @ torch.nn.functional.normalize(target, dim=-1).T
    own = sim.diagonal().mean()
    others = (sim.sum() - sim.diagonal().sum()) / (12 * 11)
    assert own > others + 0.4, (own, others)
    assert (sim.argmax(1) == torch.arange(12)).float().mean() >= 0.75
