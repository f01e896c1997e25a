"""The Kandinsky nodes, run through the engine, give diffusers' Kandinsky 2.2 pipelines' images.

Tiny random folders are written in the published layouts by the pipelines' own `save_pretrained`
(`nodes/kandinsky/models/tiny.py`); the pipelines here load them with their own `from_pretrained`.

Seeding: diffusers splits Kandinsky into a prior pipeline and a decoder pipeline, each taking a
generator; our Kandinsky Prior and decoding nodes each seed their own generator from their `seed`.
So a graph with prior seed p and decoder seed d equals `prior_pipe(..., generator=Generator().
manual_seed(p))` followed by `decoder_pipe(..., generator=Generator().manual_seed(d))` — initial
noise, the schedulers' step noise and img2img's noise all come from that stage's stream. The prior
pipeline's `interpolate` runs the prior once per text with one shared generator; our graph has one
Kandinsky Prior node per text, each with its seed, which the test reproduces by giving each of the
pipeline's prior calls its own generator (`_PerCallGenerators`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    KandinskyV22ControlnetPipeline,
    KandinskyV22Img2ImgPipeline,
    KandinskyV22InpaintPipeline,
    KandinskyV22Pipeline,
    KandinskyV22PriorPipeline,
)
from helpers import link, node, workflow
from PIL import Image

from nodegraph import Engine, Settings
from nodes.kandinsky.models.tiny import NAMES, build_all

ATOL = 1e-5


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def input_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("input")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(folder / "photo.png")
    Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8), "RGB").save(folder / "other.png")
    alpha = np.full((64, 64), 255, dtype=np.uint8)
    alpha[8:40, 16:56] = 0  # transparent = the mask load_image gives = what to repaint
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(folder / "masked.png")
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), "L").convert("RGB").save(folder / "depth.png")
    return folder


@pytest.fixture(scope="module")
def engine(models_dir, input_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return Engine.from_settings(Settings(model_dirs=[models_dir], input_dir=input_dir, output_dir=out,
                                         temp_dir=out / "temp", entry_point_packs=False))


@pytest.fixture(scope="module")
def prior_pipe(models_dir):
    pipe = KandinskyV22PriorPipeline.from_pretrained(models_dir / NAMES["prior"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pipe(cls, models_dir, variant, scheduler=None):
    pipe = cls.from_pretrained(models_dir / NAMES[variant])
    if scheduler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _prior_nodes(prompt="a red cat on a sofa", negative="", seed=11, steps=3, guidance=4.0, count=1, pid="prior"):
    return {
        "load_prior": node("kandinsky.load_prior", model=NAMES["prior"]),
        f"enc_{pid}": node("unclip.text_encode", clip=link("load_prior", "clip"), text=prompt, negative=negative),
        pid: node("kandinsky.prior", prior=link("load_prior", "prior"), clip=link("load_prior", "clip"),
                  conditioning=link(f"enc_{pid}", "conditioning"), seed=seed, steps=steps, guidance=guidance,
                  count=count),
    }


def _run(engine, nodes, target):
    run = engine.run(workflow(**nodes), targets=[target])
    assert run.ok, run.error
    return run.outputs[target]


def _close(ours, theirs):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape
    assert ours.std() > 0.01  # an image, not a constant
    assert np.abs(ours - theirs).max() <= ATOL, np.abs(ours - theirs).max()


@pytest.mark.parametrize("negative,count,guidance,scheduler", [
    ("", 1, 4.0, "default"),  # DDPM, the published decoder's scheduler
    ("blurry, low quality", 2, 4.0, "default"),  # a negative prompt: the prior samples it too
    ("", 2, 1.0, "ddim"),  # guidance off in both stages; another scheduler
])
def test_text_to_image_equals_the_prior_and_decoder_pipelines(engine, models_dir, prior_pipe, negative, count,
                                                              guidance, scheduler):
    nodes = _prior_nodes(negative=negative, count=count, guidance=guidance)
    nodes["load_decoder"] = node("kandinsky.load_decoder", model=NAMES["text2image"])
    nodes["decoder"] = node("kandinsky.decoder", decoder=link("load_decoder", "decoder"),
                            image_embedding=link("prior", "embedding"), negative_embedding=link("prior", "negative"),
                            seed=22, steps=3, guidance=guidance, width=64, height=64, scheduler=scheduler)
    ours = _run(engine, nodes, "decoder")["images"]
    prior = _run(engine, nodes, "prior")

    with torch.no_grad():
        out = prior_pipe("a red cat on a sofa", negative_prompt=negative or None, num_images_per_prompt=count,
                         num_inference_steps=3, guidance_scale=guidance, generator=_gen(11))
        np.testing.assert_allclose(prior["embedding"].numpy(), out.image_embeds.numpy(), atol=ATOL, rtol=0)
        np.testing.assert_allclose(prior["negative"].numpy(), out.negative_image_embeds.numpy(), atol=ATOL, rtol=0)
        pipe = _pipe(KandinskyV22Pipeline, models_dir, "text2image", scheduler)
        theirs = pipe(image_embeds=out.image_embeds, negative_image_embeds=out.negative_image_embeds, height=64,
                      width=64, num_inference_steps=3, guidance_scale=guidance, generator=_gen(22),
                      output_type="np").images
    _close(ours, theirs)
    assert ours.shape == (count, 64, 64, 3)


class _PerCallGenerators(KandinskyV22PriorPipeline):
    """The prior pipeline with a generator per prior call (`interpolate` calls the prior per text)."""

    generators: list[torch.Generator] = []

    def __call__(self, *args, generator=None, **kwargs):
        return super().__call__(*args, generator=self.generators.pop(0) if self.generators else generator, **kwargs)


def test_image_and_text_mix_equals_the_prior_interpolate(engine, models_dir, prior_pipe, input_dir):
    nodes = _prior_nodes(prompt="a cat", seed=5, pid="cat")
    nodes.update(_prior_nodes(prompt="a starry night", seed=6, pid="night"))
    nodes.update({
        "image": node("core.load_image", image="other.png"),
        "image_emb": node("unclip.image_encode", clip=link("load_prior", "clip"), images=link("image", "image")),
        "mix": node("kandinsky.embedding_mix", a=link("cat", "embedding"), b=link("image_emb", "embedding"),
                    c=link("night", "embedding"), weight_a=0.3, weight_b=0.5, weight_c=0.2),
        "zero": node("kandinsky.zero_embedding", clip=link("load_prior", "clip")),
        "load_decoder": node("kandinsky.load_decoder", model=NAMES["text2image"]),
        "decoder": node("kandinsky.decoder", decoder=link("load_decoder", "decoder"),
                        image_embedding=link("mix", "embedding"), negative_embedding=link("zero", "embedding"),
                        seed=7, steps=3, width=64, height=64),
    })
    ours = _run(engine, nodes, "decoder")["images"]
    with torch.no_grad():
        pipe = _PerCallGenerators(**prior_pipe.components)
        pipe.set_progress_bar_config(disable=True)
        pipe.generators = [_gen(5), _gen(6)]
        image = Image.open(input_dir / "other.png").convert("RGB")
        out = pipe.interpolate(["a cat", image, "a starry night"], [0.3, 0.5, 0.2], num_inference_steps=3,
                               generator=_gen(0))
        decoder = _pipe(KandinskyV22Pipeline, models_dir, "text2image")
        theirs = decoder(image_embeds=out.image_embeds, negative_image_embeds=out.negative_image_embeds, height=64,
                         width=64, num_inference_steps=3, generator=_gen(7), output_type="np").images
    _close(ours, theirs)


@pytest.mark.parametrize("size,strength", [(64, 0.5), (128, 0.8)])  # 128: the image is resized first
def test_image_to_image_equals_the_img2img_pipeline(engine, models_dir, prior_pipe, input_dir, size, strength):
    nodes = _prior_nodes(seed=3)
    nodes.update({
        "image": node("core.load_image", image="photo.png"),
        "load_decoder": node("kandinsky.load_decoder", model=NAMES["text2image"]),
        "img2img": node("kandinsky.img2img", decoder=link("load_decoder", "decoder"), images=link("image", "image"),
                        image_embedding=link("prior", "embedding"), negative_embedding=link("prior", "negative"),
                        strength=strength, seed=4, steps=4, batch=2, width=size, height=size),
    })
    ours = _run(engine, nodes, "img2img")["images"]
    with torch.no_grad():
        out = prior_pipe("a red cat on a sofa", num_inference_steps=3, generator=_gen(3))
        pipe = _pipe(KandinskyV22Img2ImgPipeline, models_dir, "text2image")
        theirs = pipe(image=Image.open(input_dir / "photo.png").convert("RGB"), image_embeds=out.image_embeds,
                      negative_image_embeds=out.negative_image_embeds, strength=strength, num_inference_steps=4,
                      num_images_per_prompt=2, height=size, width=size, generator=_gen(4), output_type="np").images
    _close(ours, theirs)


def test_inpainting_equals_the_inpaint_pipeline(engine, models_dir, prior_pipe, input_dir):
    nodes = _prior_nodes(seed=8)
    nodes.update({
        "image": node("core.load_image", image="masked.png"),
        "load_decoder": node("kandinsky.load_inpaint_decoder", model=NAMES["inpaint"]),
        "inpaint": node("kandinsky.inpaint", decoder=link("load_decoder", "decoder"), images=link("image", "image"),
                        mask=link("image", "mask"), image_embedding=link("prior", "embedding"),
                        negative_embedding=link("prior", "negative"), seed=9, steps=3, batch=2),
    })
    ours = _run(engine, nodes, "inpaint")["images"]
    rgba = Image.open(input_dir / "masked.png")
    mask = Image.fromarray(255 - np.asarray(rgba)[..., 3], "L")  # white = repaint, as diffusers takes it
    with torch.no_grad():
        out = prior_pipe("a red cat on a sofa", num_inference_steps=3, generator=_gen(8))
        pipe = _pipe(KandinskyV22InpaintPipeline, models_dir, "inpaint")
        theirs = pipe(image=rgba.convert("RGB"), mask_image=mask, image_embeds=out.image_embeds,
                      negative_image_embeds=out.negative_image_embeds, height=64, width=64, num_inference_steps=3,
                      num_images_per_prompt=2, generator=_gen(9), output_type="np").images
    _close(ours, theirs)
    # the kept region is the input's MoVQ reconstruction, the masked one is new
    assert np.abs(ours[0] - ours[1])[8:40, 16:56].mean() > np.abs(ours[0] - ours[1])[48:, :8].mean()


def test_controlnet_depth_equals_the_controlnet_pipeline(engine, models_dir, prior_pipe, input_dir):
    nodes = _prior_nodes(seed=12)
    nodes.update({
        "depth": node("core.load_image", image="depth.png"),
        "load_decoder": node("kandinsky.load_controlnet_decoder", model=NAMES["controlnet"]),
        "controlnet": node("kandinsky.controlnet", decoder=link("load_decoder", "decoder"),
                           hint=link("depth", "image"), image_embedding=link("prior", "embedding"),
                           negative_embedding=link("prior", "negative"), seed=13, steps=3),
    })
    ours = _run(engine, nodes, "controlnet")["images"]
    hint = torch.from_numpy(np.array(Image.open(input_dir / "depth.png").convert("RGB"))).float() / 255.0
    with torch.no_grad():
        out = prior_pipe("a red cat on a sofa", num_inference_steps=3, generator=_gen(12))
        pipe = _pipe(KandinskyV22ControlnetPipeline, models_dir, "controlnet")
        theirs = pipe(image_embeds=out.image_embeds, negative_image_embeds=out.negative_image_embeds,
                      hint=hint.permute(2, 0, 1).unsqueeze(0), height=64, width=64, num_inference_steps=3,
                      generator=_gen(13), output_type="np").images
    _close(ours, theirs)


def test_the_unclip_loaders_and_prior_read_a_kandinsky_prior_folder(engine, prior_pipe):
    nodes = {
        "clip": node("unclip.load_clip", model=NAMES["prior"]),
        "load": node("unclip.load_prior", model=NAMES["prior"]),  # prior/ + scheduler/ (not prior_scheduler/)
        "enc": node("unclip.text_encode", clip=link("clip", "clip"), text="a red cat on a sofa"),
        "prior": node("unclip.prior", prior=link("load", "prior"), conditioning=link("enc", "conditioning"),
                      guidance=4.0, steps=3, seed=11),
    }
    ours = _run(engine, nodes, "prior")["embedding"]
    with torch.no_grad():
        theirs = prior_pipe("a red cat on a sofa", num_inference_steps=3, generator=_gen(11)).image_embeds
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=ATOL, rtol=0)
