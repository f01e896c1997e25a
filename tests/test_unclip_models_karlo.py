"""The model library reproduces diffusers' `UnCLIPPipeline` on a random tiny Karlo checkpoint.

`UnCLIPPipeline` draws every stage's noise from one generator; the library gives each stage its
own (the nodes seed them separately). To compare like with like, the pipeline gets explicit initial
latents drawn from per-stage generators, and its schedulers are `_StageNoiseScheduler`s, a
test-side UnCLIPScheduler whose `step` ignores the pipeline's shared generator and uses the stage's
own generator, continuing the same random stream the library uses for that stage.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from diffusers import UnCLIPPipeline, UnCLIPScheduler
from diffusers.utils.torch_utils import randn_tensor

from nodes.unclip.models import (
    load_clip,
    load_decoder,
    load_prior,
    load_upsampler,
    sample_decoder,
    sample_prior,
    upsample,
)
from nodes.unclip.models.tiny import build_tiny_karlo


class _StageNoiseScheduler(UnCLIPScheduler):
    """UnCLIPScheduler drawing its step noise from `stage_generator` instead of the pipeline's."""

    stage_generator: torch.Generator | None = None

    def step(self, *args, generator=None, **kwargs):
        return super().step(*args, generator=self.stage_generator, **kwargs)


@pytest.fixture(scope="module")
def karlo(tmp_path_factory):
    return build_tiny_karlo(tmp_path_factory.mktemp("karlo") / "tiny-karlo", seed=0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("prompts,per_prompt", [(["a red circle"], 1), (["a red circle", "two blue squares"], 2)])
def test_library_sampling_equals_unclip_pipeline(karlo, prompts, per_prompt):
    clip, prior, decoder, upsampler = load_clip(karlo), load_prior(karlo), load_decoder(karlo), load_upsampler(karlo)
    steps = {"prior": 3, "decoder": 3, "super_res": 3}
    seeds = {"prior": 11, "decoder": 22, "super_res": 33}
    with torch.no_grad():
        cond, uncond = clip.encode_text(prompts), clip.encode_text([""])
        emb = sample_prior(prior, cond, uncond, guidance=4.0, steps=steps["prior"], generator=_gen(seeds["prior"]),
                           num_per_prompt=per_prompt)
        small = sample_decoder(decoder, emb, cond.repeat_interleave(per_prompt), uncond, guidance=8.0,
                               steps=steps["decoder"], generator=_gen(seeds["decoder"]))
        ours = upsample(upsampler, small, steps=steps["super_res"], generator=_gen(seeds["super_res"]))

        schedulers = {name: _StageNoiseScheduler.from_config(sch.config) for name, sch in
                      (("prior", prior.scheduler), ("decoder", decoder.scheduler),
                       ("super_res", upsampler.scheduler))}
        batch = len(prompts) * per_prompt
        shapes = {"prior": (batch, prior.embedding_dim), "decoder": (batch, 3, decoder.sample_size,
                                                                      decoder.sample_size),
                  "super_res": (batch, 3, upsampler.sample_size, upsampler.sample_size)}
        latents = {}
        for name in shapes:
            g = _gen(seeds[name])
            latents[name] = randn_tensor(shapes[name], generator=g)
            schedulers[name].stage_generator = g  # step noise continues the stage's stream
        pipe = UnCLIPPipeline(prior=prior.prior, decoder=decoder.unet, text_proj=decoder.text_proj,
                              text_encoder=clip.text_encoder, tokenizer=clip.tokenizer,
                              super_res_first=upsampler.first, super_res_last=upsampler.last,
                              prior_scheduler=schedulers["prior"], decoder_scheduler=schedulers["decoder"],
                              super_res_scheduler=schedulers["super_res"])
        pipe.set_progress_bar_config(disable=True)
        out = pipe(text_model_output=(cond.embeds, cond.hidden), text_attention_mask=cond.mask,
                   num_images_per_prompt=per_prompt, prior_num_inference_steps=steps["prior"],
                   decoder_num_inference_steps=steps["decoder"], super_res_num_inference_steps=steps["super_res"],
                   prior_latents=latents["prior"], decoder_latents=latents["decoder"],
                   super_res_latents=latents["super_res"], prior_guidance_scale=4.0, decoder_guidance_scale=8.0,
                   output_type="np").images
    theirs = torch.from_numpy(out).permute(0, 3, 1, 2)
    assert ours.shape == theirs.shape == (batch, 3, upsampler.sample_size, upsampler.sample_size)
    assert ours.std() > 0.01  # a real image, not a constant
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_karlo_decoder_accepts_other_schedulers_and_a_preview_callback(karlo):
    clip, decoder = load_clip(karlo), load_decoder(karlo)
    with torch.no_grad():
        cond, uncond = clip.encode_text(["a star"]), clip.encode_text([""])
        emb = torch.randn(1, cond.embeds.shape[-1], generator=_gen(0))
        for name in ("ddim", "ddpm", "dpm++", "euler_a", "unclip"):
            seen: list = []

            def record(i, n, preview, seen=seen):
                seen.append((i, n, tuple(preview.shape)))

            img = sample_decoder(decoder, emb, cond, uncond, guidance=3.0, steps=2, generator=_gen(1), scheduler=name,
                                 callback=record)
            assert img.shape == (1, 3, decoder.sample_size, decoder.sample_size)
            assert torch.isfinite(img).all() and 0 <= img.min() and img.max() <= 1
            assert [s[:2] for s in seen] == [(1, 2), (2, 2)] and seen[0][2] == tuple(img.shape)


def test_text_only_karlo_clip_refuses_image_encoding_with_a_clear_message(karlo, tmp_path):
    # the text-to-image Karlo release has no image_encoder/ (the image-variation one has)
    text_only = tmp_path / "text-only"
    shutil.copytree(karlo, text_only, ignore=shutil.ignore_patterns("image_encoder", "feature_extractor"))
    clip = load_clip(text_only)
    with pytest.raises(ValueError, match="text-only"):
        clip.encode_image(torch.rand(1, 3, 32, 32))


def test_cancelling_from_the_callback_leaves_the_model_reusable(karlo):
    clip, prior = load_clip(karlo), load_prior(karlo)
    with torch.no_grad():
        cond, uncond = clip.encode_text(["a red circle"]), clip.encode_text([""])

        def cancel(step, total, preview):
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            sample_prior(prior, cond, uncond, steps=3, generator=_gen(0), callback=cancel)
        a = sample_prior(prior, cond, uncond, steps=3, generator=_gen(0))
        b = sample_prior(prior, cond, uncond, steps=3, generator=_gen(0))
    torch.testing.assert_close(a, b)


def test_karlo_image_encoder_embeds_images_in_the_text_space(karlo):
    clip = load_clip(karlo)
    with torch.no_grad():
        emb = clip.encode_image(torch.rand(2, 3, 48, 40))
        text = clip.encode_text(["a red circle"]).embeds
    assert emb.shape == (2, text.shape[-1])
    assert torch.isfinite(emb).all()
