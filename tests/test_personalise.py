"""The personalisation pack on tiny seeded models: DreamBooth writes a LoRA that Load LoRA applies,
reports progress, honours cancel and is cached by its inputs; the subject rows; Imagic's stages
optimise, fine-tune a copy (never the cached decoder) and interpolate, towards the prior's sample
nearest the input.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import link, node, workflow

import nodegraph
from nodegraph import CancelToken, Engine, Settings
from nodes.personalise import subject
from nodes.shapes.api import analyse, captions, domain
from nodes.unclip.models import tiny


def subject_images(n: int = 3) -> np.ndarray:
    """n renders of one object (a red square) at different places: float (n, 64, 64, 3)."""
    rng = np.random.default_rng(0)
    scenes = [domain.make_scene(rng, "red", bg, "square", "large", pos)
              for bg, pos in zip(("white", "blue", "black"), ("center", "left", "top"), strict=False)][:n]
    return np.stack([domain.render(s, 64) for s in scenes]).astype(np.float32) / 255.0


@pytest.fixture
def tiny_engine(tmp_path):
    models = tmp_path / "models"
    (models / "loras").mkdir(parents=True)
    settings = Settings(model_dirs=[models, tiny.cached_root().parent], input_dir=tmp_path / "in",
                        output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp", entry_point_packs=False)
    (tmp_path / "in").mkdir()
    return Engine.from_settings(settings)


IDENT = "x"  # a word the tiny tokenizer keeps as one token ("sks" is three of its tokens)


def dreambooth_workflow(**train) -> dict:
    params = {"identifier": IDENT, "name": "t", "steps": 3, "batch": 4, "rank": 2, "class_images": 2,
              "class_steps": 2, "seed": 0, **train}
    return workflow(
        clip=node("unclip.load_clip", model="tiny-karlo"),
        prior_m=node("unclip.load_prior", model="tiny-karlo"),
        dec_m=node("unclip.load_decoder", model="tiny-karlo"),
        imgs=node("core.load_image", image="subject.png"),
        train=node("personalise.dreambooth", clip=link("clip", "clip"), prior=link("prior_m", "prior"),
                   decoder=link("dec_m", "decoder"), images=link("imgs", "image"), **params),
        lora=node("lora.load_lora", decoder=link("dec_m", "decoder"), prior=link("prior_m", "prior"),
                  clip=link("clip", "clip"), lora=link("train", "lora")),
        text=node("unclip.text_encode", clip=link("lora", "clip"), text=f"a red {params['identifier']} shape"),
        emb=node("unclip.prior", prior=link("lora", "prior"), conditioning=link("text", "conditioning"), steps=2),
        tuned=node("unclip.decoder", decoder=link("lora", "decoder"), image_embedding=link("emb", "embedding"),
                   conditioning=link("text", "conditioning"), steps=2, seed=1),
        base=node("unclip.decoder", decoder=link("dec_m", "decoder"), image_embedding=link("emb", "embedding"),
                  conditioning=link("text", "conditioning"), steps=2, seed=1),
    )


def put_subject(engine: Engine) -> None:
    from PIL import Image

    Image.fromarray((subject_images(1)[0] * 255).astype(np.uint8)).save(engine.settings.input_dir / "subject.png")


def test_dreambooth_writes_a_lora_that_load_lora_applies_with_progress_per_step(tiny_engine):
    put_subject(tiny_engine)
    events = []
    run = tiny_engine.run(dreambooth_workflow(), targets=["tuned", "base"], sink=events.append)
    assert run.ok, run.error
    path = tiny_engine.settings.model_dirs[0] / "loras" / "dreambooth-t.safetensors"
    assert path.is_file()
    from nodes.lora.api import read_lora

    lora = read_lora(path)
    assert set(lora.components()) == {"unet"}  # the prior is left as it is (prior_steps 0)
    assert set(lora.embeddings) == {IDENT} and lora.embeddings[IDENT].shape[0] == 1
    steps = [e.step for e in events if isinstance(e, nodegraph.Progress) and e.node == "train"]
    assert steps == [1, 2, 3]
    assert np.abs(run.outputs["tuned"]["images"] - run.outputs["base"]["images"]).max() > 1e-4


def test_dreambooth_learns_the_identifiers_row_and_leaves_other_words_and_the_prior_alone(tiny_engine):
    from nodes.lora.api import patch_clip, read_lora
    from nodes.unclip.api import load_clip

    put_subject(tiny_engine)
    assert tiny_engine.run(dreambooth_workflow(), targets=["train"]).ok
    for kind in ("unclip.clip:", "unclip.prior:", "unclip.decoder:"):  # trained through, never into
        key = next(k for k in tiny_engine.models.loaded() if k.startswith(kind))
        model = tiny_engine.models.load(key, lambda: pytest.fail("evicted"))
        module = model if isinstance(model, torch.nn.Module) else getattr(model, "prior", None) or model.text_proj
        assert all(p.grad is None for p in module.parameters())
    lora = read_lora(tiny_engine.settings.model_dirs[0] / "loras" / "dreambooth-t.safetensors")
    base = load_clip(tiny.cached_root())
    before = base.input_embeddings().weight.detach().clone()
    tuned = patch_clip(base, lora)
    assert torch.equal(base.input_embeddings().weight, before)  # the loaded CLIP is not changed
    (i,) = base.token_ids(IDENT)
    assert not torch.equal(tuned.input_embeddings().weight[i], before[i])  # the row was learnt
    with torch.no_grad():
        plain = ["a red square on the left", ""]
        assert torch.equal(tuned.encode_text(plain).embeds, base.encode_text(plain).embeds)
        named = [f"a red {IDENT} shape"]
        assert not torch.allclose(tuned.encode_text(named).embeds, base.encode_text(named).embeds)


def test_dreambooth_trains_a_prior_lora_only_when_asked_and_can_leave_clip_alone(tiny_engine):
    from nodes.lora.api import read_lora

    put_subject(tiny_engine)
    path = tiny_engine.settings.model_dirs[0] / "loras" / "dreambooth-t.safetensors"
    assert tiny_engine.run(dreambooth_workflow(prior_steps=2), targets=["train"]).ok
    assert set(read_lora(path).components()) == {"unet", "prior"}
    for params in ({"token_lr": 0.0}, {"identifier": "sks"}):  # "sks" is three tokens of the tiny tokenizer
        run = tiny_engine.run(dreambooth_workflow(**params), targets=["tuned"])
        assert run.ok, run.error
        lora = read_lora(path)
        assert set(lora.components()) == {"unet"} and not lora.embeddings
    assert any("not learnt" in t for t in run.ui["train"]["text"])  # says why, and what to choose instead


def test_after_prior_steps_the_decoder_learns_with_the_identifiers_learnt_row(tiny_engine, monkeypatch):
    """With prior_steps the row is fixed once the prior's LoRA is done; the decoder's later steps must
    see the prompt as the saved LoRA encodes it (the learnt row), not as CLIP encoded it before training."""
    import nodes.unclip.api as unclip_api
    from nodes.lora.api import patch_clip, read_lora
    from nodes.unclip.api import load_clip

    put_subject(tiny_engine)
    caps, texts = [], []
    rows, loss = subject.rows, unclip_api.decoder_loss

    def spy_rows(*args, **kwargs):
        out = rows(*args, **kwargs)
        caps.extend(out[1])
        return out

    def spy_loss(dec, x0, emb, text, *args, **kwargs):
        texts.append(text.embeds.detach().clone())
        return loss(dec, x0, emb, text, *args, **kwargs)

    monkeypatch.setattr(subject, "rows", spy_rows)
    monkeypatch.setattr(unclip_api, "decoder_loss", spy_loss)
    # 64 subject rows: with more, the tiny CLIP's short context cuts the identifier off some captions,
    # whose encodings the row cannot change
    run = tiny_engine.run(dreambooth_workflow(prior_steps=1, steps=3, token_lr=0.5, subject_pool=64),
                          targets=["train"])
    assert run.ok, run.error
    base = load_clip(tiny.cached_root())
    tuned = patch_clip(base, read_lora(tiny_engine.settings.model_dirs[0] / "loras" / "dreambooth-t.safetensors"))
    with torch.no_grad():
        before, after = base.encode_text(caps).embeds, tuned.encode_text(caps).embeds
    last = texts[-1]  # subject rows first, then class rows
    assert (torch.cdist(last, after).min(1).values < 1e-4).sum() >= 1
    assert (torch.cdist(last, before).min(1).values < 1e-4).sum() == 0


def test_dreambooth_names_contradictory_phase_settings(tiny_engine):
    put_subject(tiny_engine)
    for params, words in (({"prior_phase": 2, "prior_steps": 2}, "prior_steps or prior_phase"),
                          ({"prior_phase": 2, "prior_rank": 0, "token_lr": 0.0}, "nothing to train"),
                          ({"text_rank": 2, "prior_steps": 2}, "set text_rank to 0"),
                          ({"text_rank": 2, "prior_phase": 2}, "set text_rank to 0")):
        run = tiny_engine.run(dreambooth_workflow(**params), targets=["train"])
        assert run.status == "failed" and words in run.error.message, run.error


def test_prior_phase_trains_the_row_and_a_prior_lora_through_the_prior_first(tiny_engine):
    from nodes.lora.api import read_lora
    from nodes.unclip.api import load_prior

    put_subject(tiny_engine)
    path = tiny_engine.settings.model_dirs[0] / "loras" / "dreambooth-t.safetensors"
    events = []
    run = tiny_engine.run(dreambooth_workflow(prior_phase=2, prior_rank=2, subject_pool=8), targets=["tuned"],
                          sink=events.append)
    assert run.ok, run.error
    lora = read_lora(path)
    assert set(lora.components()) == {"unet", "prior"} and set(lora.embeddings) == {IDENT}
    assert all(d.rank == 2 for d in lora.deltas["prior"].values())
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        info = json.loads(f.metadata()["nodegraph_training"])
    assert info["prior_phase"] == 2 and info["prior_rank"] == 2 and info["subject_pool"] == 8
    progress = [e for e in events if isinstance(e, nodegraph.Progress) and e.node == "train"]
    assert [e.step for e in progress] == [1, 2, 3, 4, 5] and {e.total for e in progress} == {5}  # phase, decoder
    key = next(k for k in tiny_engine.models.loaded() if k.startswith("unclip.prior:"))
    loaded = tiny_engine.models.load(key, lambda: pytest.fail("evicted")).prior
    fresh = load_prior(tiny.cached_root()).prior
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), fresh.state_dict().values(), strict=True))
    assert tiny_engine.run(dreambooth_workflow(prior_phase=2, prior_rank=0), targets=["train"]).ok
    lora = read_lora(path)  # the row alone learns in the phase: the prior stays as it is
    assert set(lora.components()) == {"unet"} and set(lora.embeddings) == {IDENT}


def test_conv_rank_gives_the_full_resolution_convolutions_their_own_rank(tiny_engine):
    from nodes.lora.api import read_lora
    from nodes.personalise.training import full_resolution_convs
    from nodes.unclip.api import load_decoder

    put_subject(tiny_engine)
    assert tiny_engine.run(dreambooth_workflow(conv_rank=4, mid_share=0.5), targets=["train"]).ok
    deltas = read_lora(tiny_engine.settings.model_dirs[0] / "loras" / "dreambooth-t.safetensors").deltas["unet"]
    full = full_resolution_convs(load_decoder(tiny.cached_root()).unet)
    assert {"conv_in", "conv_out", "down_blocks.0.resnets.0.conv1"} <= set(full)
    assert all(deltas[m].rank == 4 for m in full)
    others = [d for m, d in deltas.items() if m not in full]
    assert others and all(d.rank == 2 for d in others)
    assert all(d.scale == 1.0 for d in deltas.values())  # alpha = rank for both ranks


def test_decoder_loss_per_row_averages_to_the_loss_and_takes_given_timesteps():
    from nodes.unclip.api import alphas_cumprod, load_clip, load_decoder
    from nodes.unclip.models.decoder import decoder_loss

    dec, clip = load_decoder(tiny.cached_root()), load_clip(tiny.cached_root())
    size = dec.sample_size
    x0 = torch.rand(3, 3, size, size) * 2 - 1
    with torch.no_grad():
        text = clip.encode_text(["a red square", "a blue star", ""])
        emb = torch.randn(3, dec.embedding_dim)
        abar = alphas_cumprod(dec)
        t = torch.tensor([400, 600, 800])
        whole = decoder_loss(dec, x0, emb, text, abar, torch.Generator().manual_seed(0), timesteps=t)
        rows = decoder_loss(dec, x0, emb, text, abar, torch.Generator().manual_seed(0), timesteps=t, reduce=False)
        other = decoder_loss(dec, x0, emb, text, abar, torch.Generator().manual_seed(0), timesteps=t.flip(0))
    assert rows.shape == (3,) and torch.allclose(rows.mean(), whole)
    assert not torch.allclose(whole, other)


def test_an_unchanged_training_is_cached_and_a_changed_one_reruns(tiny_engine):
    put_subject(tiny_engine)
    assert tiny_engine.run(dreambooth_workflow(), targets=["lora"]).ok
    again = tiny_engine.run(dreambooth_workflow(), targets=["lora"])
    assert again.executed == []  # nothing trains again (the cache answers before inputs are evaluated)
    assert tiny_engine.run(dreambooth_workflow(), targets=["train"]).cached == ["train"]
    changed = tiny_engine.run(dreambooth_workflow(steps=2), targets=["lora"])
    assert "train" in changed.executed


def test_a_repeated_training_reads_the_class_samples_and_writes_the_same_lora(tiny_engine, monkeypatch):
    from safetensors.torch import load_file

    import nodes.unclip.api as api
    from nodes.personalise.dreambooth import CLASS_CACHE

    put_subject(tiny_engine)
    sampled = []
    for name in ("sample_prior", "sample_decoder"):
        fn = getattr(api, name)
        monkeypatch.setattr(api, name, lambda *a, _fn=fn, _name=name, **kw: sampled.append(_name) or _fn(*a, **kw))
    loras = tiny_engine.settings.model_dirs[0] / "loras"
    assert tiny_engine.run(dreambooth_workflow(name="first"), targets=["train"]).ok
    assert sampled == ["sample_prior", "sample_decoder"] and len(list((loras / CLASS_CACHE).iterdir())) == 1
    assert tiny_engine.run(dreambooth_workflow(name="again"), targets=["train"]).ok  # another name: trains again
    assert sampled == ["sample_prior", "sample_decoder"]  # … from the kept class samples
    first, again = (load_file(str(loras / f"dreambooth-{n}.safetensors")) for n in ("first", "again"))
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert tiny_engine.run(dreambooth_workflow(name="more", class_steps=3), targets=["train"]).ok
    assert len(sampled) == 4 and len(list((loras / CLASS_CACHE).iterdir())) == 2  # other settings: sampled


def test_an_unusable_class_sample_entry_is_sampled_again_and_replaced(tiny_engine):
    from safetensors.torch import load_file

    from nodes.personalise.dreambooth import CLASS_CACHE

    put_subject(tiny_engine)
    loras = tiny_engine.settings.model_dirs[0] / "loras"
    assert tiny_engine.run(dreambooth_workflow(name="first"), targets=["train"]).ok
    (entry,) = (loras / CLASS_CACHE).glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated: safetensors' own error type, not OSError
    assert tiny_engine.run(dreambooth_workflow(name="again"), targets=["train"]).ok
    first, again = (load_file(str(loras / f"dreambooth-{n}.safetensors")) for n in ("first", "again"))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert set(load_file(str(entry))) == {"prior_emb", "class_img", "generator_state"}  # written anew
    entry.unlink()
    entry.mkdir()  # a directory where the entry would go: it cannot be written
    run = tiny_engine.run(dreambooth_workflow(name="third"), targets=["train"])
    assert run.ok, run.error  # trains without the cache
    third = load_file(str(loras / "dreambooth-third.safetensors"))
    assert all(torch.equal(first[k], third[k]) for k in first)


def _entries(folder, sizes_kb: dict[str, int]) -> None:
    """Cache entries named `name.safetensors` of `kb` KiB, the first the oldest (a minute apart)."""
    import os
    import time

    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for i, (name, kb) in enumerate(sizes_kb.items()):
        path = folder / f"{name}.safetensors"
        path.write_bytes(b"x" * (kb * 1024))
        os.utime(path, (now - 3600 + 60 * i, now - 3600 + 60 * i))


def _kept(folder) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.safetensors"))


def test_the_class_sample_cache_keeps_the_newest_entries_within_its_bytes_and_count(tmp_path, monkeypatch):
    import nodes.personalise.dreambooth as db

    folder = tmp_path / "cache"
    monkeypatch.setattr(db, "CLASS_CACHE_BYTES", 100 * 1024)
    monkeypatch.setattr(db, "CLASS_CACHE_ENTRIES", 3)
    _entries(folder, {"a": 30, "b": 30, "c": 30})
    new = {"t": torch.zeros(5 * 1024, dtype=torch.float32)}  # 20 KiB and a header
    db._write_class_samples(folder, folder / "d.safetensors", new)
    assert _kept(folder) == ["b", "c", "d"]  # 110 KiB with a: the oldest goes
    small = tmp_path / "small"
    _entries(small, {"a": 1, "b": 1, "c": 1})
    db._write_class_samples(small, small / "d.safetensors", new)
    assert _kept(small) == ["b", "c", "d"]  # small, but 3 entries at most
    # an entry larger than the bound is kept when it is the one just written; the others make room
    monkeypatch.setattr(db, "CLASS_CACHE_BYTES", 10 * 1024)
    db._write_class_samples(folder, folder / "g.safetensors", new)
    assert _kept(folder) == ["g"]


def test_the_class_sample_cache_evicts_oldest_first_even_an_old_entry_that_would_fit(tmp_path, monkeypatch):
    import nodes.personalise.dreambooth as db

    folder = tmp_path / "cache"
    monkeypatch.setattr(db, "CLASS_CACHE_BYTES", 100 * 1024)
    _entries(folder, {"old-small": 1, "newer-large": 90})
    db._write_class_samples(folder, folder / "d.safetensors", {"t": torch.zeros(5 * 1024)})  # 20 KiB
    assert _kept(folder) == ["d"]  # newer-large does not fit beside d: it goes, and old-small, older, too


def test_a_class_sample_entry_that_cannot_be_removed_is_left_and_the_others_go(tmp_path, monkeypatch):
    import nodes.personalise.dreambooth as db

    folder = tmp_path / "cache"
    monkeypatch.setattr(db, "CLASS_CACHE_BYTES", 50 * 1024)
    _entries(folder, {"a": 30, "b": 30, "c": 30})
    (folder / "0-stuck.safetensors").mkdir()  # the oldest; unlink refuses a directory
    import os

    os.utime(folder / "0-stuck.safetensors", (0, 0))
    db._write_class_samples(folder, folder / "d.safetensors", {"t": torch.zeros(4)})
    assert _kept(folder) == ["0-stuck", "c", "d"]
    # a folder that cannot be written: no entry, no error (training goes on without the cache)
    (tmp_path / "file").write_text("")
    db._write_class_samples(tmp_path / "file", tmp_path / "file" / "e.safetensors", {"t": torch.zeros(4)})


def test_cancel_stops_training_between_steps_and_writes_no_file(tiny_engine):
    put_subject(tiny_engine)
    cancel = CancelToken()

    def sink(event):
        if isinstance(event, nodegraph.Progress) and event.node == "train" and event.step == 2:
            cancel.cancel("user")

    run = tiny_engine.run(dreambooth_workflow(steps=50), targets=["lora"], sink=sink, cancel=cancel)
    assert run.status == "cancelled"
    assert not (tiny_engine.settings.model_dirs[0] / "loras" / "dreambooth-t.safetensors").exists()


def test_bad_name_or_identifier_fails_with_the_fix(tiny_engine):
    put_subject(tiny_engine)
    for bad, word in (({"name": "../x"}, "file name"), ({"identifier": "two words"}, "one word")):
        run = tiny_engine.run(dreambooth_workflow(**bad), targets=["train"])
        assert run.status == "failed" and word in run.error.message


def test_subject_rows_move_recolour_and_resize_the_object_and_name_the_identifier():
    rng = np.random.default_rng(1)
    images, caps = subject.rows(subject_images(), "sks", 24, rng)
    assert images.shape == (24, 64, 64, 3) and all("sks shape" in c for c in caps)
    found = [analyse(im) for im in images]
    assert all(a.found and a.shape == "square" for a in found)
    assert len({a.color for a in found}) >= 4 and len({a.position for a in found}) >= 4
    assert {a.size for a in found} == {"small", "large"}


def test_small_share_sets_the_share_of_subject_rows_drawn_small():
    for share, sizes in ((1.0, {"small"}), (0.0, {"large"})):
        images, _ = subject.rows(subject_images(), "sks", 12, np.random.default_rng(3), small_share=share)
        assert {analyse(im).size for im in images} == sizes
    images, _ = subject.rows(subject_images(), "sks", 200, np.random.default_rng(4), small_share=0.75)
    assert 0.65 < np.mean([analyse(im).size == "small" for im in images]) < 0.85


def test_subject_share_splits_each_step_and_keeps_one_row_of_each_kind():
    from nodes.personalise.dreambooth import subject_rows_per_step

    assert subject_rows_per_step(8, 0.5) == 4 and subject_rows_per_step(8, 0.625) == 5
    assert subject_rows_per_step(7, 0.5) == 3  # as the old half split, batch // 2
    assert subject_rows_per_step(2, 0.01) == 1 and subject_rows_per_step(4, 0.99) == 3


def test_subject_captions_come_from_both_writers_and_name_the_identifier_and_the_attributes():
    rng = np.random.default_rng(2)
    attrs = {"color": "blue", "background": "white", "size": "small", "position": "top left"}
    first = {subject.caption(attrs, "sks", rng, ("color", "background")) for _ in range(40)}
    both = [subject.caption(attrs, "sks", rng, ("color", "background"), p_second=0.5) for _ in range(200)]
    assert all("sks shape" in c and "blue" in c and "white" in c for c in first)
    assert all("sks shape" in c for c in both)
    others = [c for c in both if c not in first]  # the second writer's frames and orders
    assert len(others) > 50
    assert all(any(w in c for w in captions.COLORS["blue"]) for c in others)
    assert not any(w in c.split() for c in both for w in ("circle", "disc", "thing", "object"))  # no other noun


def imagic_inputs(engine: Engine, **target) -> dict:
    """The nodes every Imagic graph starts with: models, a render in the input folder, the target text,
    its prior sample (`target` overrides the Prior's ports) and the input's CLIP embedding."""
    from PIL import Image

    Image.fromarray((subject_images(1)[0] * 255).astype(np.uint8)).save(engine.settings.input_dir / "in.png")
    return dict(
        clip=node("unclip.load_clip", model="tiny-karlo"),
        prior_m=node("unclip.load_prior", model="tiny-karlo"),
        dec_m=node("unclip.load_decoder", model="tiny-karlo"),
        img=node("core.load_image", image="in.png"),
        text=node("unclip.text_encode", clip=link("clip", "clip"), text="a blue square"),
        target=node("unclip.prior", prior=link("prior_m", "prior"), conditioning=link("text", "conditioning"),
                    **{"steps": 2, **target}),
        enc_in=node("unclip.image_encode", clip=link("clip", "clip"), images=link("img", "image")),
    )


def test_imagic_stages_reconstruct_fine_tune_a_copy_and_interpolate(tiny_engine):
    wf = workflow(
        **imagic_inputs(tiny_engine),
        opt=node("personalise.imagic_embed", decoder=link("dec_m", "decoder"), image=link("img", "image"),
                 conditioning=link("text", "conditioning"), embedding=link("target", "embedding"), steps=3, batch=2),
        opt_in=node("personalise.imagic_embed", decoder=link("dec_m", "decoder"), image=link("img", "image"),
                    conditioning=link("text", "conditioning"), embedding=link("target", "embedding"),
                    init=link("enc_in", "embedding"), steps=1, batch=2, lr=1e-4),
        ft=node("personalise.imagic_finetune", decoder=link("dec_m", "decoder"), image=link("img", "image"),
                conditioning=link("text", "conditioning"), embedding=link("opt", "embedding"), steps=2, batch=2),
        mix=node("personalise.imagic_interpolate", optimised=link("opt", "embedding"),
                 target=link("target", "embedding"), eta=0.25),
        out=node("unclip.decoder", decoder=link("ft", "decoder"), image_embedding=link("mix", "embedding"),
                 conditioning=link("text", "conditioning"), steps=2),
        edit=node("personalise.imagic_edit", clip=link("clip", "clip"), decoder=link("ft", "decoder"),
                  optimised=link("opt", "embedding"), target=link("target", "embedding"),
                  conditioning=link("text", "conditioning"), etas="0.5, 1", steps=2),
    )
    base_unet = tiny_engine.run(wf, targets=["dec_m"]).outputs["dec_m"]["decoder"].model.unet
    before = {k: v.clone() for k, v in base_unet.state_dict().items()}
    run = tiny_engine.run(wf, targets=["out", "opt", "target", "mix", "ft", "dec_m", "edit", "opt_in", "enc_in"])
    assert run.ok, run.error
    opt, target, mix = (run.outputs[n]["embedding"] for n in ("opt", "target", "mix"))
    assert opt.shape == target.shape == (1, target.shape[1]) and not torch.allclose(opt, target)
    assert torch.allclose(mix, 0.25 * target + 0.75 * opt)
    assert run.outputs["dec_m"]["decoder"].model.unet is base_unet  # the cached decoder, unchanged
    assert run.outputs["ft"]["decoder"].model.unet is not base_unet
    assert all(torch.equal(base_unet.state_dict()[k], v) for k, v in before.items())
    assert run.outputs["out"]["images"].shape[0] == 1
    # started from the input's CLIP embedding, a tiny step stays next to it, far from the target
    opt_in, enc_in = run.outputs["opt_in"]["embedding"], run.outputs["enc_in"]["embedding"]
    assert torch.cosine_similarity(opt_in, enc_in).item() > 0.99
    edit = run.outputs["edit"]
    assert edit["eta"] in (0.5, 1.0) and edit["images"].shape[0] == 1
    assert edit["sweep"].shape[0] == 3 and len(edit["scores"].split(",")) == 3  # η 0, 0.5, 1


def test_imagic_target_keeps_the_prior_sample_nearest_the_input(tiny_engine):
    wf = workflow(
        **imagic_inputs(tiny_engine, steps=4, count=5, init=link("enc_in", "embedding"), strength=0.5),
        nearest=node("personalise.imagic_target", candidates=link("target", "embedding"),
                     reference=link("enc_in", "embedding")),
    )
    run = tiny_engine.run(wf, targets=["nearest", "target", "enc_in"])
    assert run.ok, run.error
    cands, ref = run.outputs["target"]["embedding"], run.outputs["enc_in"]["embedding"]
    sims = torch.cosine_similarity(cands, ref)
    assert cands.shape[0] == 5 and float(sims.max() - sims.min()) > 1e-4  # distinct samples to choose from
    out = run.outputs["nearest"]
    assert torch.equal(out["embedding"], cands[int(sims.argmax())][None])
    assert out["similarity"] == pytest.approx(float(sims.max()), abs=1e-6)


def test_imagic_target_says_when_widths_differ():
    from nodes.personalise.imagic import ImagicTarget

    inputs = ImagicTarget.Inputs(candidates=torch.zeros(3, 8), reference=torch.ones(1, 16))
    with pytest.raises(nodegraph.NodeExecutionError, match="same CLIP"):
        ImagicTarget().run(inputs, None)


def test_imagic_workflow_targets_the_prior_sample_nearest_the_input():
    import json

    from conftest import ROOT

    nodes = json.loads((ROOT / "workflows" / "imagic.json").read_text())["nodes"]
    prior = nodes["target"]["inputs"]
    assert prior["init"] == {"from": "encode_input", "output": "embedding"} and 0 < prior["strength"] < 1
    assert prior["count"] > 1
    assert nodes["nearest"]["inputs"]["candidates"]["from"] == "target"
    for stage, port in (("optimise", "embedding"), ("edit", "target")):
        assert nodes[stage]["inputs"][port] == {"from": "nearest", "output": "embedding"}


def test_imagic_edit_keeps_the_smallest_eta_that_comes_near_the_best_clip_score():
    from nodes.personalise.imagic import choose_eta, parse_etas

    assert parse_etas("1, 0.3;0.5") == [0.3, 0.5, 1.0]
    with pytest.raises(nodegraph.NodeExecutionError, match="not a number"):
        parse_etas("0.3, x")
    with pytest.raises(nodegraph.NodeExecutionError, match="outside"):
        parse_etas("0")
    scores = [40.0, 48.0, 50.0, 49.0]  # η sweep; the reconstruction scored 30
    assert choose_eta(scores, 30.0, 0.5) == 0  # 40 ≥ 30 + 0.5 · 20
    assert choose_eta(scores, 30.0, 0.6) == 1  # 40 < 42 ≤ 48
    assert choose_eta(scores, 30.0, 0.8) == 1
    assert choose_eta(scores, 30.0, 1.0) == 2
    assert choose_eta(scores, 55.0, 0.6) == 2  # no η beats the reconstruction: the best of the sweep


def test_imagic_takes_one_image_and_says_so(tiny_engine):
    from nodes.personalise.imagic import _one_image

    with pytest.raises(nodegraph.NodeExecutionError, match="one image"):
        _one_image(subject_images(2), "Imagic")


def test_object_mask_marks_the_subject_and_its_rim_not_the_background():
    from nodes.personalise.common import object_mask

    images, _ = subject.rows(subject_images(), "sks", 6, np.random.default_rng(2))
    masks = object_mask(images, 32)
    assert masks.shape == (6, 32, 32)
    for image, m in zip(images, masks, strict=True):
        true = torch.from_numpy(analyse(image).mask.astype(np.float32))[None, None]
        true32 = torch.nn.functional.avg_pool2d(true, 2)[0, 0] > 0.5  # the object at the decoder's size
        assert bool(m[true32].all())  # every object pixel is weighed
        assert 0 < float(m.mean()) < 0.5  # and most of the background is not


def test_decoder_loss_floors_the_noisiest_steps_and_weighs_pixels():
    from nodes.unclip.api import alphas_cumprod, decoder_loss, generator, load_clip, load_decoder

    dec = load_decoder(tiny.cached_root())
    x0 = torch.rand(8, 3, dec.sample_size, dec.sample_size) * 2 - 1
    emb = torch.randn(8, dec.text_proj.learned_classifier_free_guidance_embeddings.shape[0])
    text = load_clip(tiny.cached_root()).encode_text(["a red circle"] * 8)
    abar = alphas_cumprod(dec)
    with torch.no_grad():
        plain = decoder_loss(dec, x0, emb, text, abar, generator(3))
        floored = decoder_loss(dec, x0, emb, text, abar, generator(3), snr_floor=1.0)
        uniform = decoder_loss(dec, x0, emb, text, abar, generator(3), pixel_weight=torch.full((8, dec.sample_size, dec.sample_size), 3.0))
    assert float(floored) > float(plain)  # the same draws, the noisy ones weigh more
    assert torch.allclose(uniform, plain, rtol=1e-5)  # weights are normalised per image


def test_lora_initialisation_follows_the_seed_not_the_global_generator():
    from nodes.personalise import training
    from nodes.unclip.api import load_decoder

    unet = load_decoder(tiny.cached_root()).unet
    torch.manual_seed(1)
    a, _ = training.with_lora(unet, 2, training.DECODER_TARGETS, seed=5)
    state = torch.random.get_rng_state()
    torch.manual_seed(2)
    b, _ = training.with_lora(unet, 2, training.DECODER_TARGETS, seed=5)
    c, _ = training.with_lora(unet, 2, training.DECODER_TARGETS, seed=6)
    weights = [torch.cat([p.detach().flatten() for p in training.trainable(m)]) for m in (a, b, c)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    torch.manual_seed(1)
    training.with_lora(unet, 2, training.DECODER_TARGETS, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is left as it was


def test_object_share_gives_small_and_large_objects_the_same_share_of_the_loss():
    from nodes.personalise.common import share_weights

    mask = torch.zeros(2, 32, 32)
    mask[0, 10:14, 10:14] = 1  # 16 pixels
    mask[1, 4:24, 4:24] = 1  # 400 pixels
    w = share_weights(mask, 0.55)
    share = (w * mask).sum(dim=(1, 2)) / w.sum(dim=(1, 2))
    assert torch.allclose(share, torch.tensor([0.55, 0.55]), atol=1e-4)
    assert torch.equal(share_weights(mask, 0.1)[1], torch.ones(32, 32))  # never below the background's weight


def test_rephrase_keeps_the_identifier_and_every_word_and_varies_noun_article_and_order():
    rng = np.random.default_rng(5)
    text = "a picture of a blue sks shape, small, at the top, on a white background"
    out = [subject.rephrase(text, "sks", rng) for _ in range(300)]
    words = {"blue", "small", "top", "white", "background", "picture", "sks"}
    assert all(words <= set(o.replace(",", " ").replace(";", " ").split()) for o in out)
    assert any("sks shape" not in o for o in out) and any("sks shape" in o for o in out)
    assert any(not o.startswith("a picture") for o in out if o.split(", ")[0].endswith("sks shape"))
    assert any(o.startswith("on a white") for o in out) and any("; " in o for o in out)
    assert len(set(out)) > 30
    again = np.random.default_rng(5)
    assert out[:20] == [subject.rephrase(text, "sks", again) for _ in range(20)]


@pytest.mark.parametrize("mode", ["pool", "fresh", "varied"])
def test_captions_port_writes_subject_captions_afresh_each_step_only_when_asked(tiny_engine, monkeypatch, mode):
    put_subject(tiny_engine)
    pool, written, rephrased = [], [], []
    rows, caption, rephrase = subject.rows, subject.caption, subject.rephrase

    def spy_rows(*args, **kwargs):
        out = rows(*args, **kwargs)
        pool.extend(out[1])
        return out

    def spy_caption(*args, **kwargs):
        written.append(caption(*args, **kwargs))
        return written[-1]

    def spy_rephrase(*args, **kwargs):
        rephrased.append(rephrase(*args, **kwargs))
        return rephrased[-1]

    monkeypatch.setattr(subject, "rows", spy_rows)
    monkeypatch.setattr(subject, "caption", spy_caption)
    monkeypatch.setattr(subject, "rephrase", spy_rephrase)
    steps, batch = 4, 4  # 2 subject rows a step at subject_share 0.625
    # align 0: its own colourless captions (a test of their own) are not the captions port's
    run = tiny_engine.run(dreambooth_workflow(captions=mode, steps=steps, batch=batch, align=0), targets=["train"])
    assert run.ok, run.error
    fresh = written[len(pool):]  # rows() writes the pool's captions first
    if mode == "pool":
        assert fresh == [] and rephrased == []
    else:
        assert len(fresh) == steps * 2 and all(f"{IDENT} shape" in c for c in fresh)
        assert len(rephrased) == (0 if mode == "fresh" else steps * 2)


def _fixed_runs(templates) -> list[str]:
    """The fixed runs of three or more words between a template's {slots}."""
    import re

    runs = [" ".join(re.findall(r"[a-z-]+", f.lower())) for t in templates for f in re.split(r"\{[a-z]+\}", t)]
    return sorted({r for r in runs if len(r.split()) >= 3})


def test_tuning_hard_identifier_prompts_are_deterministic_and_share_no_phrase_with_training_captions():
    import re

    from eval import _tuning_hard_prompts as hard
    from eval import personalise

    a, b = personalise.identifier_prompts("tuning_hard", 48), personalise.identifier_prompts("tuning_hard", 48)
    assert a == b
    assert personalise.SEEDS["tuning_hard"] not in (personalise.SEEDS["tuning"], personalise.SEEDS["validation"])
    tuning = personalise.identifier_prompts("tuning", 48)
    assert not {t for t, _ in a} & {t for t, _ in tuning}
    assert all(re.search(r"\bsks\b", t) for t, _ in a) and all(at["color"] != "red" for _, at in a)
    assert any("sks shape" in t for t, _ in a) and any(re.search(r"\bsks\b(?! shape)", t) for t, _ in a)
    assert not any(w in t.split() for t, _ in a for w in ("circle", "square", "triangle", "star"))
    # its templates' fixed phrases and position phrases occur in no training caption (both writers,
    # the identifier's captions as DreamBooth writes them, and their rephrasings)
    rng = np.random.default_rng(0)
    corpus = []
    for s in domain.sample_scenes(3, 1500, "any"):
        c = subject.caption(s.attributes(), "sks", rng, domain.random_subset(rng), p_second=0.5)
        corpus += [c, subject.rephrase(c, "sks", rng), domain.caption(s, rng), captions.caption(s.attributes(), rng)]
    corpus = [" " + " ".join(re.findall(r"[a-z-]+", t.lower())) + " " for t in corpus]
    phrases = _fixed_runs(hard.FULL) + [p for ps in hard.POSITION_WORDS.values() for p in ps]
    shared = [p for p in phrases if any(f" {' '.join(re.findall(r'[a-z-]+', p))} " in t for t in corpus)]
    assert not shared, shared


@pytest.mark.parametrize("share", [0.0, 0.99])
def test_null_share_sets_the_subject_rows_trained_on_the_null_image_embedding(tiny_engine, monkeypatch, share):
    import nodes.unclip.api as unclip_api

    put_subject(tiny_engine)
    seen, loss = [], unclip_api.decoder_loss

    def spy_loss(dec, x0, emb, text, *args, **kwargs):
        seen.append((emb[:5].detach().clone(), dec.text_proj.learned_classifier_free_guidance_embeddings.detach()))
        return loss(dec, x0, emb, text, *args, **kwargs)

    monkeypatch.setattr(unclip_api, "decoder_loss", spy_loss)
    run = tiny_engine.run(dreambooth_workflow(null_share=share, steps=3, batch=8), targets=["train"])
    assert run.ok, run.error
    nulls = [bool(torch.equal(row, null)) for emb, null in seen for row in emb]  # 5 subject rows a step
    assert len(nulls) == 15 and all(nulls) == (share > 0.5) and any(nulls) == (share > 0.5)


def test_text_rank_trains_a_text_tower_lora_that_load_lora_applies_to_the_clip(tiny_engine):
    """text_rank: a LoRA on the text tower, saved as diffusers' text-encoder keys; Load LoRA merges it into
    a copy of the connected CLIP (the loaded one unchanged), and prompts with the identifier encode
    differently while ordinary ones stay near the frozen tower's encodings."""
    from nodes.lora.api import patch_clip, read_lora
    from nodes.unclip.api import load_clip

    put_subject(tiny_engine)
    path = tiny_engine.settings.model_dirs[0] / "loras" / "dreambooth-t.safetensors"
    run = tiny_engine.run(dreambooth_workflow(text_rank=2, text_lr=1e-2, steps=4), targets=["tuned", "base"])
    assert run.ok, run.error
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("text_encoder.text_model.encoder.layers.0.") and k.endswith(".lora_A.weight")
               for k in keys)
    lora = read_lora(path)
    assert set(lora.components()) == {"unet", "text_encoder"} and set(lora.embeddings) == {IDENT}
    base = load_clip(tiny.cached_root())
    before = {k: v.clone() for k, v in base.text_tower().state_dict().items()}
    tuned = patch_clip(base, lora)
    assert all(torch.equal(v, before[k]) for k, v in base.text_tower().state_dict().items())  # a copy is patched
    changed = [k for k, v in tuned.text_tower().state_dict().items() if not torch.equal(v, before[k])]
    assert any(".self_attn." in k for k in changed) and any(".mlp." in k for k in changed)
    with torch.no_grad():
        plain = ["a red square on the left", "there is a small blue circle at the top"]
        e_base, e_tuned = base.encode_text(plain).embeds, tuned.encode_text(plain).embeds
        assert not torch.equal(e_base, e_tuned)  # the tower did change …
        cos = torch.nn.functional.cosine_similarity(e_base, e_tuned)
        assert cos.min() > 0.99  # … but ordinary prompts encode nearly as before
        named = [f"a red {IDENT} shape"]
        rows_only = patch_clip(base, without_text_encoder(lora))
        assert not torch.allclose(tuned.encode_text(named).embeds, rows_only.encode_text(named).embeds)
        # clip_strength 0: the row alone
        assert torch.equal(patch_clip(base, lora, 0.0).encode_text(named).embeds, rows_only.encode_text(named).embeds)


def without_text_encoder(lora):
    """The LoRA without its text-encoder weights (the bundled rows kept)."""
    from nodes.lora.lora import subset

    return subset(lora, ("unet", "prior", "text_proj"))


def test_text_rank_zero_trains_as_before(tiny_engine):
    """text_rank 0 (the default) writes no text-encoder weights and draws the very same LoRA as a
    workflow that does not name the port."""
    from safetensors.torch import load_file

    put_subject(tiny_engine)
    path = tiny_engine.settings.model_dirs[0] / "loras" / "dreambooth-t.safetensors"
    assert tiny_engine.run(dreambooth_workflow(), targets=["train"]).ok
    old = load_file(str(path))
    assert not any(k.startswith("text_encoder.") for k in old)
    assert tiny_engine.run(dreambooth_workflow(text_rank=0, text_preservation=3.0), targets=["train"]).ok
    new = load_file(str(path))
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)


def test_text_rank_without_the_row_saves_the_tower_lora_alone(tiny_engine):
    from nodes.lora.api import read_lora

    put_subject(tiny_engine)
    run = tiny_engine.run(dreambooth_workflow(text_rank=2, token_lr=0.0), targets=["tuned"])
    assert run.ok, run.error
    lora = read_lora(tiny_engine.settings.model_dirs[0] / "loras" / "dreambooth-t.safetensors")
    assert set(lora.components()) == {"unet", "text_encoder"} and not lora.embeddings


def test_text_keep_captions_name_no_identifier_and_vary_their_phrasing():
    from nodes.personalise.dreambooth import text_keep_captions

    caps = text_keep_captions(200, IDENT, np.random.default_rng(0))
    assert len(set(caps)) > 190 and not any(f" {IDENT} " in f" {c} " for c in caps)
    assert any(";" in c for c in caps)  # rephrased


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_alone_share_names_the_identifier_without_its_class_noun(tiny_engine, monkeypatch, share):
    from nodes.personalise import dreambooth
    from nodes.unclip.models import clip as clip_module

    seen: list[str] = []
    real = clip_module.TransformersClipEncoder.encode_text

    def spy(self, texts):
        seen.extend(texts)
        return real(self, texts)

    monkeypatch.setattr(clip_module.TransformersClipEncoder, "encode_text", spy)
    put_subject(tiny_engine)
    assert tiny_engine.run(dreambooth_workflow(alone_share=share, subject_pool=64), targets=["train"]).ok
    subj = [t for t in seen if IDENT in t.split()]
    alone = [t for t in subj if f"{IDENT} shape" not in t]
    assert subj and dreambooth.DreamBooth.Inputs.model_fields["alone_share"].default == 0.0
    assert (len(alone) == 0) if share == 0 else (0.3 < len(alone) / len(subj) < 0.7)



@pytest.mark.parametrize(("kp", "kd", "factored"), [(1, 1, False), (3, 1, False), (1, 2, False), (3, 2, True)])
def test_the_dreambooth_eval_ranks_candidates_as_the_prior_and_decoder_nodes(monkeypatch, kp, kd, factored):
    """The eval draws as the workflow: with prior candidates it keeps, of each prompt's kp samples, the
    one nearest (cosine) the text embedding the prior was given (through Factor Out Colour: the prompt
    without its colour words); with decoder candidates it decodes kd images per embedding and keeps the
    one whose CLIP image embedding is nearest that embedding (after Recolour Embedding)."""
    import torch
    import torch.nn.functional as F

    from eval import personalise
    from nodes.unclip import api

    stack = personalise.Stack(tiny.cached_root())
    prompts = ["a red square", "a blue circle at the top"]
    seen = {}
    real_decoder = api.sample_decoder

    def decoder(model, emb, *a, **kw):
        seen["emb"], seen["images"] = emb.clone(), real_decoder(model, emb, *a, **kw)
        return seen["images"]

    monkeypatch.setattr(api, "sample_decoder", decoder)
    from nodes.unclip import sampling

    real_rank = sampling.rank_candidates

    def rank(emb, text, k):
        out = real_rank(emb, text, k)
        seen["ranked"] = out.clone()  # the eval recolours it in place
        return out

    monkeypatch.setattr(sampling, "rank_candidates", rank)
    images = stack.generate(prompts, seed=5, steps=2, prior_candidates=kp, decoder_candidates=kd, factored=factored)
    assert len(images) == len(prompts)
    with torch.inference_mode():
        plain = text = stack.clip.encode_text(prompts)
        if factored:
            from nodes.shapes.textcolor import factor_encoding

            text, _, _ = factor_encoding(stack.maps()[0], stack.clip, plain, prompts, "words")
        pool = api.sample_prior(stack.prior, text, stack.clip.encode_text([""]), guidance=4.0, steps=2,
                                generator=torch.Generator().manual_seed(5), num_per_prompt=kp)
        pool = pool.reshape(len(prompts), kp, -1)

        def nearest(t):
            return (F.normalize(pool, dim=-1) @ F.normalize(t.embeds, dim=-1)[..., None])[..., 0].argmax(1)

        best = nearest(text)
        kept = pool[torch.arange(len(prompts)), best]
        if kp > 1:
            torch.testing.assert_close(seen["ranked"], kept)
        if factored:  # ranked by the text the prior saw, not the prompt as written; then recoloured
            assert not torch.equal(best, nearest(plain))
            assert not torch.allclose(seen["emb"][::kd], kept)
            kept = seen["emb"][::kd]
        # each kept embedding decoded kd times, in a row
        torch.testing.assert_close(seen["emb"], kept.repeat_interleave(kd, 0))
        drawn = seen["images"].reshape(len(prompts), kd, *seen["images"].shape[1:])
        near = (F.normalize(stack.clip.encode_image(seen["images"]), dim=-1).reshape(len(prompts), kd, -1)
                @ F.normalize(kept, dim=-1)[..., None])[..., 0].argmax(1)
    for i, im in enumerate(images):
        want = (drawn[i, near[i]].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(im, want)


def test_the_dreambooth_eval_draws_with_the_workflows_candidates_unless_told(monkeypatch):
    import json

    from eval import personalise

    got = []
    monkeypatch.setattr(personalise, "eval_dreambooth", lambda *a, **kw: got.append(kw) or {})
    personalise.main(["dreambooth", "--lora", "x"])
    personalise.main(["dreambooth", "--lora", "x", "--prior-candidates", "1", "--decoder-candidates", "3"])
    personalise.main(["dreambooth", "--lora", "x", "--set-node", "prior.candidates=4"])
    personalise.main(["dreambooth", "--lora", "x", "--set-node", "factor.roles=false",
                      "--set-node", "recolor.keep_apart=false"])
    nodes = json.loads(personalise.DREAMBOOTH.read_text())["nodes"]
    cands = [kw["candidates"] for kw in got]
    assert cands[0] == (nodes["prior"]["inputs"].get("candidates", 1), nodes["dec"]["inputs"].get("candidates", 1))
    assert cands[0][0] > 1  # prior samples ranked by the text, as DALL·E 2 ranks two
    assert cands[1] == (1, 3)
    assert cands[2] == (4, cands[0][1])  # an override of the workflow's port draws with it
    # Factor Out Colour and Recolour Embedding as the workflow sets them (as text2image.json: both
    # readings on), or as overridden
    factor, recolor = nodes["factor"]["inputs"], nodes["recolor"]["inputs"]
    assert got[0]["draw"] == {"factor": {k: factor[k] for k in ("strength", "roles", "words_alone")},
                              "recolor": {"strength": recolor["strength"], "keep_apart": True}}
    assert factor["roles"] is True and factor["words_alone"] is True
    assert got[3]["draw"] == {"factor": {**got[0]["draw"]["factor"], "roles": False},
                              "recolor": {**got[0]["draw"]["recolor"], "keep_apart": False}}
    for bad, says in (("factor.method=linear", "method 'linear'"), ("recolor.strength=5", "recolor.strength"),
                      ("factor.roles=maybe", "factor.roles"), ("dec.steps=3", "dec.steps: not used"),
                      ("recolor.keep_appart=false", "recolor.keep_appart: not used")):
        with pytest.raises(SystemExit, match=says):  # before any training
            personalise.main(["dreambooth", "--set-node", bad])
    with pytest.raises(SystemExit, match="train.steps: not used"):  # nothing is trained with --lora
        personalise.main(["dreambooth", "--lora", "x", "--set-node", "train.steps=5"])
    assert len(got) == 4
    # an older Factor Out Colour is read as the engine reads it: migrated (version 4 had no words_alone)
    old = json.loads(json.dumps(nodes))
    old["factor"]["version"] = 4
    del old["factor"]["inputs"]["words_alone"]
    assert personalise.workflow_draw(old, {})["factor"]["words_alone"] is False
    old["factor"]["version"] = 99
    with pytest.raises(SystemExit, match="cannot upgrade"):
        personalise.workflow_draw(old, {})


def test_the_dreambooth_eval_factors_and_recolours_as_the_nodes_hand_on(monkeypatch):
    """The eval gives Factor Out Colour's settings to its reading, hands its colours to Recolour
    Embedding's own move as the node's `color` output carries them (one a prompt, comma-separated; a
    prompt naming none keeps its sample) and decodes what that move returns."""
    import torch

    from eval import personalise
    from nodes.shapes import recolor, textcolor
    from nodes.unclip import api

    stack = personalise.Stack(tiny.cached_root())
    seen: dict = {}
    real_factor, real_recolor, real_decoder = textcolor.factor_encoding, recolor.recolor_rows, api.sample_decoder

    def factor(*a, **kw):
        seen["factor_kw"] = kw
        out = real_factor(*a, **kw)
        seen["named"] = out[1]
        return out

    def move(emb, cmap, bmap, **kw):
        seen["recolor_kw"], seen["before"] = kw, emb.clone()
        seen["moved"] = real_recolor(emb, cmap, bmap, **kw)[0]
        return real_recolor(emb, cmap, bmap, **kw)

    def decoder(model, emb, *a, **kw):
        seen["decoded"] = emb.clone()
        return real_decoder(model, emb, *a, **kw)

    monkeypatch.setattr(textcolor, "factor_encoding", factor)
    monkeypatch.setattr(recolor, "recolor_rows", move)
    monkeypatch.setattr(api, "sample_decoder", decoder)
    prompts = ["a red square", "a blue circle at the top", "a square"]
    stack.generate(prompts, seed=1, steps=2, factored=True, factor={"roles": False, "words_alone": False},
                   recolor={"strength": 0.5, "keep_apart": False})
    assert seen["factor_kw"] == {"roles": False, "words_alone": False}
    named = seen["named"]
    assert named[0] and named[1] and not named[2]
    assert seen["recolor_kw"] == {"color": ",".join(named), "strength": 0.5, "apart": False}
    torch.testing.assert_close(seen["decoded"], seen["moved"].to(seen["decoded"]))
    torch.testing.assert_close(seen["decoded"][2], seen["before"][2])  # no colour named: kept
    assert not torch.allclose(seen["decoded"][0], seen["before"][0])
    seen.clear()
    stack.generate(["a red square", "a red square"], seed=1, steps=2, factored=True)
    assert seen["named"][0] == seen["named"][1] and seen["recolor_kw"]["color"] == seen["named"][0]  # one for all
    assert seen["recolor_kw"]["strength"] == 1.0 and seen["recolor_kw"]["apart"] is True  # the node's defaults
    seen.clear()
    stack.generate(prompts, seed=1, steps=2)  # the plain path: neither node
    assert "factor_kw" not in seen and "recolor_kw" not in seen


def test_align_moves_the_identifiers_row_by_colourless_captions_against_the_domain_shapes(tiny_engine, monkeypatch):
    """align's hinge reaches the identifier's row: with the prior's and decoder's losses held at zero the
    row moves with align and stays with align 0; its captions name no colour (as Factor Out Colour hands
    prompts to the prior, whose candidates are ranked by them), and without augment it is unused."""
    import json

    import torch
    from safetensors import safe_open

    from nodes.lora.api import read_lora
    from nodes.unclip import api

    put_subject(tiny_engine)
    caps = []
    caption = subject.caption

    def spy_caption(attrs, ident, rng, include, *a):
        caps.append((caption(attrs, ident, rng, include, *a), "color" in include))
        return caps[-1][0]

    monkeypatch.setattr(subject, "caption", spy_caption)
    monkeypatch.setattr(api, "prior_loss", lambda *a, **kw: torch.zeros((), requires_grad=True))
    monkeypatch.setattr(api, "decoder_loss", lambda dec, x0, *a, **kw: torch.zeros(len(x0), requires_grad=True))
    clip = api.load_clip(tiny.cached_root())
    start = clip.input_embeddings().weight[clip.token_ids(IDENT)].detach()
    moved = {}
    for align, augment in ((0.0, True), (10.0, True), (10.0, False)):
        caps.clear()
        name = f"a{align:g}{augment:d}"
        run = tiny_engine.run(dreambooth_workflow(steps=4, align=align, augment=augment, name=name),
                              targets=["train"])
        assert run.ok, run.error
        path = tiny_engine.settings.model_dirs[0] / "loras" / f"dreambooth-{name}.safetensors"
        with safe_open(str(path), framework="pt") as f:
            used = json.loads(f.metadata()["nodegraph_training"])["align"]
        assert used == (align if augment else 0.0)
        pool = len(caps) // 2 if used else len(caps)
        if used:  # the pool's captions, then align's: as many, none naming the colour
            assert len(caps) == 2 * pool and not any(named for _, named in caps[pool:])
            assert all(f"{IDENT} shape" in c for c, _ in caps[pool:])
        moved[name] = float((read_lora(path).embeddings[IDENT] - start).abs().max())
    assert moved["a01"] == 0.0 and moved["a100"] == 0.0 and moved["a101"] > 1e-4, moved
