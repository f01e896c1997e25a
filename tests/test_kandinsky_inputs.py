"""Bad Kandinsky input gets an error naming the folder and the fix, at validation where it is knowable;
loading keeps one copy of the weights and the model store's memory bound applies."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from helpers import link, node, workflow
from safetensors.torch import load_file

import nodegraph
from nodegraph import Engine, ModelStore, Settings
from nodegraph.modelstore import model_nbytes
from nodes.kandinsky.models import load_decoder, load_prior, text2image
from nodes.kandinsky.models.tiny import NAMES, build_all, build_prior


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = build_all(tmp_path_factory.mktemp("models"))
    build_prior(root / "narrow-prior", seed=1, dim=16)
    (root / "not-a-model").mkdir()
    (root / "not-a-model" / "notes.txt").write_text("hello")
    return root


@pytest.fixture
def engine(models_dir, tmp_path):
    return Engine.from_settings(Settings(model_dirs=[models_dir], output_dir=tmp_path / "out",
                                         temp_dir=tmp_path / "temp", entry_point_packs=False))


def text2image_workflow(prior=NAMES["prior"], decoder=NAMES["text2image"], loader="kandinsky.load_decoder",
                        decoder_node="kandinsky.decoder"):
    return workflow(
        load_prior=node("kandinsky.load_prior", model=prior),
        enc=node("unclip.text_encode", clip=link("load_prior", "clip"), text="a cat"),
        prior=node("kandinsky.prior", prior=link("load_prior", "prior"), clip=link("load_prior", "clip"),
                   conditioning=link("enc", "conditioning"), steps=2),
        load_decoder=node(loader, model=decoder),
        decoder=node(decoder_node, decoder=link("load_decoder", "decoder"), image_embedding=link("prior", "embedding"),
                     negative_embedding=link("prior", "negative"), steps=2, width=64, height=64),
        save=node("core.save_image", images=link("decoder", "images"), filename_prefix="k"),
    )


def issues(engine, wf):
    result = engine.validate(wf)
    assert not result.valid
    return [(i.code, i.node, i.port, i.message) for i in result.issues]


def test_a_folder_of_neither_layout_is_refused_at_validation(engine, models_dir):
    [(code, nid, port, message)] = issues(engine, text2image_workflow(prior="not-a-model"))
    assert (code, nid, port) == ("invalid_model", "load_prior", "model")
    assert str(models_dir / "not-a-model") in message and "neither Kandinsky 2.2 layout" in message
    assert "prior/, scheduler/, text_encoder/" in message


def test_a_decoder_folder_given_as_the_prior_says_which_loader_takes_it(engine):
    [(_, nid, _, message)] = issues(engine, text2image_workflow(prior=NAMES["text2image"]))
    assert nid == "load_prior" and "decoder folder" in message and "Load Kandinsky Decoder" in message


def test_a_missing_subfolder_is_named(engine, models_dir, tmp_path):
    copy = models_dir / "prior-copy"
    shutil.copytree(models_dir / NAMES["prior"], copy, dirs_exist_ok=True)
    shutil.rmtree(copy / "image_processor")
    try:
        [(_, _, _, message)] = issues(engine, text2image_workflow(prior="prior-copy"))
    finally:
        shutil.rmtree(copy)
    assert "image_processor/ missing" in message and "copy the missing subfolder" in message


def test_the_wrong_decoder_variant_is_refused_and_the_inpaint_folder_named(engine):
    [(_, nid, port, message)] = issues(engine, text2image_workflow(decoder=NAMES["inpaint"]))
    assert (nid, port) == ("load_decoder", "model")
    assert "kandinsky-2-2-decoder-inpaint folder (inpaint)" in message and "inpaint loader" in message


def test_a_decoder_paired_with_the_wrong_prior_width_is_an_issue_before_running(engine, models_dir):
    [(code, nid, port, message)] = issues(engine, text2image_workflow(prior="narrow-prior"))
    assert (code, nid, port) == ("invalid_model", "decoder", "image_embedding")
    assert "width 32" in message and "16 wide" in message and str(models_dir / "narrow-prior") in message
    # and the library says the same when called directly
    decoder = load_decoder(models_dir / NAMES["text2image"])
    with pytest.raises(ValueError, match="takes image embeddings of width 32 .* are 16 wide"):
        text2image(decoder, torch.zeros(1, 16), torch.zeros(1, 16), 64, 64, steps=1)


def test_a_latent_decoder_into_the_pixel_decoder_is_a_type_mismatch_naming_where_it_goes(engine):
    wf = text2image_workflow()
    wf["nodes"]["decoder"] = node("unclip.decoder", decoder=link("load_decoder", "decoder"),
                                  image_embedding=link("prior", "embedding"), conditioning=link("enc", "conditioning"))
    found = [i for i in issues(engine, wf) if i[0] == "type_mismatch"]
    assert found and "kandinsky.DECODER" in found[0][3] and "goes into kandinsky.decoder" in found[0][3]


def test_a_config_that_does_not_match_its_weights_is_named(engine, models_dir, tmp_path):
    copy = tmp_path / "decoder"
    shutil.copytree(models_dir / NAMES["text2image"], copy)
    cfg = json.loads((copy / "unet" / "config.json").read_text())
    cfg["block_out_channels"] = [24, 32]
    (copy / "unet" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"weights in unet/ do not match unet/config.json.*restore unet/"):
        load_decoder(copy)
    prior = tmp_path / "prior"
    shutil.copytree(models_dir / NAMES["prior"], prior)
    cfg = json.loads((prior / "text_encoder" / "config.json").read_text())
    cfg["num_hidden_layers"] = 3  # the file has 2: transformers would initialise the third at random
    (prior / "text_encoder" / "config.json").write_text(json.dumps(cfg))
    run = engine.run(text2image_workflow(prior=str(prior)), targets=["prior"])
    assert not run.ok and "text_encoder/ do not match text_encoder/config.json" in run.error.message


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _pickle_bin(folder, name):
    """Replace the folder's safetensors by a .bin that also holds a code-running object."""
    [st] = list(folder.glob("*.safetensors"))
    state = dict(load_file(str(st)))
    state["payload"] = _Evil()
    st.unlink()
    torch.save(state, folder / name)
    return folder / name


def test_a_pickle_bin_is_refused_with_our_message_naming_the_file(engine, models_dir, tmp_path):
    copy = tmp_path / "decoder"
    shutil.copytree(models_dir / NAMES["text2image"], copy)
    path = _pickle_bin(copy / "unet", "diffusion_pytorch_model.bin")
    run = engine.run(workflow(d=node("kandinsky.load_decoder", model=str(copy))), targets=["d"])
    assert not run.ok
    assert str(path) in run.error.message and "a pickle that could run code); refused" in run.error.message


def test_a_plain_bin_state_dict_loads(models_dir, tmp_path):
    copy = tmp_path / "prior"
    shutil.copytree(models_dir / NAMES["prior"], copy)
    st = copy / "prior" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(st)), copy / "prior" / "diffusion_pytorch_model.bin")
    st.unlink()
    a, b = load_prior(copy, torch.float32, "cpu"), load_prior(models_dir / NAMES["prior"], torch.float32, "cpu")
    torch.testing.assert_close(a.prior.state_dict(), b.prior.state_dict(), rtol=0, atol=0)


def test_karlo_pickle_bin_is_refused_by_the_unclip_loaders(tmp_path):
    from nodes.unclip.models.tiny import build_tiny_karlo

    root = build_tiny_karlo(tmp_path / "karlo")
    path = _pickle_bin(root / "decoder", "diffusion_pytorch_model.bin")
    engine = Engine.from_settings(Settings(model_dirs=[tmp_path], output_dir=tmp_path / "out",
                                           entry_point_packs=False))
    run = engine.run(workflow(d=node("unclip.load_decoder", model="karlo")), targets=["d"])
    assert not run.ok and str(path) in run.error.message and "refused" in run.error.message


def test_weights_load_in_the_dtype_asked_for(models_dir):
    prior = load_prior(models_dir / NAMES["prior"], torch.bfloat16, "cpu")
    assert prior.prior.dtype == torch.bfloat16
    assert all(p.device.type != "meta" for p in prior.prior.parameters())


def test_the_model_memory_bound_unloads_the_least_recently_used_and_handles_reload(models_dir):
    loads = []

    def loader(name):
        def load():
            loads.append(name)
            return load_decoder(models_dir / NAMES[name])
        return load

    one = ModelStore([models_dir]).handle("a", loader("text2image"), "a", "k")
    size = model_nbytes(one.model)
    assert size > 100_000  # the tiny decoder's weights, counted from its modules
    store = ModelStore([models_dir], max_bytes=int(size * 1.5))
    a = store.handle("a", loader("text2image"), "a", "k")
    b = store.handle("b", loader("inpaint"), "b", "k")
    assert store.loaded() == ["b"] and store.nbytes() <= int(size * 1.5)  # a was unloaded
    assert a.model.variant == "text2image"  # the handle loads it again
    assert store.loaded() == ["a"] and loads == ["text2image", "text2image", "inpaint", "text2image"]
    assert b.model.variant == "inpaint"


def test_model_memory_comes_from_the_environment():
    settings = Settings.from_env({"NODEGRAPH_MODEL_MEMORY": "12GiB"})
    assert settings.model_memory == 12 * 1024**3
    assert Engine(nodegraph.Registry(), settings).models.max_bytes == 12 * 1024**3
    with pytest.raises(ValueError, match="NODEGRAPH_MODEL_MEMORY"):
        Settings.from_env({"NODEGRAPH_MODEL_MEMORY": "lots"})


def test_using_a_handle_makes_its_model_the_most_recently_used(models_dir):
    store = ModelStore([models_dir], max_items=2)
    a = store.handle("a", lambda: load_decoder(models_dir / NAMES["text2image"]), "a", "k")
    store.handle("b", lambda: load_decoder(models_dir / NAMES["inpaint"]), "b", "k")
    assert a.model.variant == "text2image"  # a use: a is now the most recent
    store.handle("c", lambda: load_decoder(models_dir / NAMES["controlnet"]), "c", "k")
    assert store.loaded() == ["a", "c"] and store.loads == 3  # b went, not a


def test_a_model_handle_pickles_with_its_model(tmp_path):
    """A handle sent to another process (a cluster worker's outputs) carries its model, not the weak reference."""
    import pickle

    from nodegraph import ModelStore

    store = ModelStore([tmp_path])
    handle = store.handle("k", lambda: _Weights(7), "name", "kind", {"a": 1})
    copy = pickle.loads(pickle.dumps(handle))
    assert copy.model.value == 7 and (copy.name, copy.kind, copy.info) == ("name", "kind", {"a": 1})


class _Weights:  # weak-referenceable, picklable: what a handle holds weakly
    def __init__(self, value):
        self.value = value
