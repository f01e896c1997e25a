"""Tiny random Kandinsky 2.2 folders in the published layouts, built offline (tests, link-type examples).

`build_prior(root)` writes what `kandinsky-community/kandinsky-2-2-prior` has, through
`KandinskyV22PriorPipeline.save_pretrained` (so `model_index.json` and every subfolder are diffusers'
own): `prior/`, `scheduler/` (UnCLIPScheduler), `text_encoder/` (CLIPTextModelWithProjection),
`tokenizer/` (a byte-level CLIPTokenizer written here), `image_encoder/`
(CLIPVisionModelWithProjection), `image_processor/` (CLIPImageProcessor). `build_decoder(root,
variant)` writes `-decoder`, `-decoder-inpaint` or `-controlnet-depth` (`unet/`, `scheduler/`
(DDPMScheduler), `movq/` (VQModel)) through the matching pipeline.

The architectures are the real ones at small widths: the prior's `num_embeddings` is the tokenizer's
77, the UNet has the real block types, 8 output channels (learned variance), image-only conditioning
(`encoder_hid_dim_type` "image_proj"), and the MoVQ has four levels (8 px per latent), which the
ControlNet's hint encoder needs. Weights are seeded and randomised (zero-initialised ones included).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...unclip.api import tiny as unclip_tiny

DIM = 32  # CLIP width = projection = prior embedding = decoder encoder_hid_dim
IMAGE = 32  # the tiny image tower's input size
SIZE = 64  # a tiny decoder's natural output (8 × 8 latents)
NAMES = {"prior": "kandinsky-2-2-prior", "text2image": "kandinsky-2-2-decoder",
         "inpaint": "kandinsky-2-2-decoder-inpaint", "controlnet": "kandinsky-2-2-controlnet-depth"}


def build_prior(root: str | Path, seed: int = 0, dim: int = DIM) -> Path:
    from diffusers import KandinskyV22PriorPipeline, PriorTransformer, UnCLIPScheduler
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    root = Path(root)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tokenizer = unclip_tiny.byte_level_tokenizer(root / "tokenizer", max_length=77)
    text = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=dim, projection_dim=dim, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).eval()
    image = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=dim, projection_dim=dim, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        image_size=IMAGE, patch_size=8, hidden_act="gelu")).eval()
    processor = CLIPImageProcessor(crop_size={"height": IMAGE, "width": IMAGE}, size={"shortest_edge": IMAGE},
                                   do_center_crop=True, do_normalize=True, do_resize=True, resample=3,
                                   image_mean=[0.48145466, 0.4578275, 0.40821073],
                                   image_std=[0.26862954, 0.26130258, 0.27577711])
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=16, embedding_dim=dim, num_layers=1,
                             num_embeddings=77, additional_embeddings=4)
    unclip_tiny.randomise(prior, gen)
    with torch.no_grad():
        prior.clip_mean.copy_(torch.randn(prior.clip_mean.shape, generator=gen) * 0.5)
        prior.clip_std.copy_(torch.rand(prior.clip_std.shape, generator=gen) + 0.5)
    scheduler = UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000,
                                clip_sample=True, clip_sample_range=10.0)
    KandinskyV22PriorPipeline(prior=prior, image_encoder=image, text_encoder=text, tokenizer=tokenizer,
                              scheduler=scheduler, image_processor=processor).save_pretrained(root)
    return root


def build_decoder(root: str | Path, variant: str = "text2image", seed: int = 0, dim: int = DIM) -> Path:
    from diffusers import (
        DDPMScheduler,
        KandinskyV22ControlnetPipeline,
        KandinskyV22InpaintPipeline,
        KandinskyV22Pipeline,
        UNet2DConditionModel,
        VQModel,
    )

    root = Path(root)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    in_channels = {"text2image": 4, "inpaint": 9, "controlnet": 8}[variant]
    unet = UNet2DConditionModel(
        sample_size=SIZE // 8, in_channels=in_channels, out_channels=8,  # mean and learned variance
        addition_embed_type="image_hint" if variant == "controlnet" else "image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(16, 32), layers_per_block=1,
        encoder_hid_dim=dim, encoder_hid_dim_type="image_proj", cross_attention_dim=32, attention_head_dim=4,
        resnet_time_scale_shift="scale_shift", class_embed_type=None, norm_num_groups=8)
    unclip_tiny.randomise(unet, gen)
    movq = VQModel(block_out_channels=(32, 32, 32, 32), in_channels=3, out_channels=3, latent_channels=4,
                   down_block_types=("DownEncoderBlock2D",) * 3 + ("AttnDownEncoderBlock2D",),
                   up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 3, layers_per_block=1,
                   norm_num_groups=8, norm_type="spatial", num_vq_embeddings=12, vq_embed_dim=4, sample_size=SIZE)
    unclip_tiny.randomise(movq, gen)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, prediction_type="epsilon", steps_offset=1,
                              timestep_spacing="leading", variance_type="fixed_small", thresholding=False)
    cls = {"text2image": KandinskyV22Pipeline, "inpaint": KandinskyV22InpaintPipeline,
           "controlnet": KandinskyV22ControlnetPipeline}[variant]
    cls(unet=unet, scheduler=scheduler, movq=movq).save_pretrained(root)
    return root


def build_all(models_dir: str | Path, seed: int = 0) -> Path:
    """The four folders under their published names in `models_dir`."""
    models_dir = Path(models_dir)
    build_prior(models_dir / NAMES["prior"], seed)
    for variant in ("text2image", "inpaint", "controlnet"):
        build_decoder(models_dir / NAMES[variant], variant, seed)
    return models_dir


_CACHED: dict[str, object] = {}


def cached_models_dir() -> Path:
    """A model folder with the four tiny folders, built once per process in a temporary directory."""
    import atexit
    import shutil
    import tempfile

    if "dir" not in _CACHED:
        tmp = Path(tempfile.mkdtemp(prefix="nodegraph-tiny-kandinsky-"))
        atexit.register(shutil.rmtree, tmp, True)
        _CACHED["dir"] = build_all(tmp)
    return _CACHED["dir"]  # type: ignore[return-value]


def handle(what: str):
    """A ModelHandle on a tiny model: 'prior', 'clip' or a decoder variant (link-type examples)."""
    from nodegraph import ModelHandle

    from . import load_clip, load_decoder, load_prior

    key = f"model:{what}"
    if key not in _CACHED:
        root = cached_models_dir() / NAMES.get(what, NAMES["prior"])
        load = {"prior": load_prior, "clip": load_clip}.get(what, load_decoder)
        _CACHED[key] = load(root, torch.float32, "cpu")
    kind = {"prior": "unclip.prior", "clip": "unclip.clip"}.get(what, f"kandinsky.{what}")
    return ModelHandle(_CACHED[key], "tiny-kandinsky", kind)
