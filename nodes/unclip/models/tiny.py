"""Tiny seeded Karlo-layout unCLIP checkpoints, built offline: for tests and link-type examples.

`build_tiny_karlo(root)` writes one in the layout `UnCLIPPipeline` checkpoints are published in,
with the real shape constraints and every weight randomised (so every term of the math matters in a
comparison); `clip()`, `prior()`, `ar_prior()`, `decoder()`, `upsampler()` and `conditioning()` return handles on
a per-process cached one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TEXT_DIM = 32  # CLIP text width = projection dim
CONTEXT = 16  # tokenizer max length = prior num_embeddings
DECODER_CH = (16, 32)
DECODER_SIZE = 16
SUPER_RES_SIZE = 32
IMAGE_SIZE = 32  # the tiny CLIP image tower's input


def byte_level_tokenizer(path: Path, max_length: int = CONTEXT):
    """A CLIPTokenizer whose vocabulary is the 256 byte symbols (plain and `</w>`) + 2 specials."""
    from transformers import CLIPTokenizer

    path.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable-unicode map, which CLIP's byte-level BPE uses."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def randomise(module: torch.nn.Module, gen: torch.Generator, scale: float = 0.02) -> None:
    """Add seeded noise to every parameter (zero-initialised ones included)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def build_tiny_karlo(root: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Karlo-layout checkpoint to `root` and return the path: the published folders
    (`model_index.json` naming the text_proj library "unclip", as Karlo's does; a byte-level
    `CLIPTokenizer` with no merges) and the real shape constraints between the stages."""
    from diffusers import PriorTransformer, UnCLIPScheduler, UNet2DConditionModel, UNet2DModel
    from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    tokenizer = byte_level_tokenizer(root / "tokenizer")
    tokenizer.save_pretrained(root / "tokenizer")
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_DIM, projection_dim=TEXT_DIM, intermediate_size=37,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=CONTEXT,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)).eval()
    text_encoder.save_pretrained(root / "text_encoder")
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=TEXT_DIM, projection_dim=TEXT_DIM, intermediate_size=37, num_hidden_layers=1,
        num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=8)).eval()
    image_encoder.save_pretrained(root / "image_encoder")
    (root / "feature_extractor").mkdir(exist_ok=True)
    (root / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
         "crop_size": IMAGE_SIZE, "size": IMAGE_SIZE}))

    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=TEXT_DIM, num_layers=1,
                             num_embeddings=CONTEXT, additional_embeddings=4)
    randomise(prior, gen)
    with torch.no_grad():
        prior.clip_mean.copy_(torch.randn(prior.clip_mean.shape, generator=gen) * 0.5)
        prior.clip_std.copy_(torch.rand(prior.clip_std.shape, generator=gen) + 0.5)
    prior.save_pretrained(root / "prior")

    text_proj = UnCLIPTextProjModel(clip_extra_context_tokens=4, clip_embeddings_dim=TEXT_DIM,
                                    time_embed_dim=4 * DECODER_CH[0], cross_attention_dim=TEXT_DIM)
    randomise(text_proj, gen, 0.1)
    text_proj.save_pretrained(root / "text_proj")

    decoder = UNet2DConditionModel(
        sample_size=DECODER_SIZE, in_channels=3, out_channels=6,  # learned variance, as Karlo's decoder
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=DECODER_CH, layers_per_block=1,
        cross_attention_dim=TEXT_DIM, attention_head_dim=8, resnet_time_scale_shift="scale_shift",
        class_embed_type="identity", norm_num_groups=8)
    randomise(decoder, gen)
    decoder.save_pretrained(root / "decoder")

    for i, name in enumerate(("super_res_first", "super_res_last")):
        sr = UNet2DModel(sample_size=SUPER_RES_SIZE, in_channels=6, out_channels=3, layers_per_block=1,
                         block_out_channels=(16, 32), down_block_types=("ResnetDownsampleBlock2D",) * 2,
                         up_block_types=("ResnetUpsampleBlock2D",) * 2, resnet_time_scale_shift="scale_shift",
                         norm_num_groups=8)
        randomise(sr, torch.Generator().manual_seed(seed + 100 + i))
        sr.save_pretrained(root / name)

    UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000,
                    clip_sample_range=5.0).save_pretrained(root / "prior_scheduler")
    UnCLIPScheduler(variance_type="learned_range", prediction_type="epsilon",
                    num_train_timesteps=1000).save_pretrained(root / "decoder_scheduler")
    UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="epsilon",
                    num_train_timesteps=1000).save_pretrained(root / "super_res_scheduler")

    index = {
        "_class_name": "UnCLIPPipeline",
        "_diffusers_version": "0.12.0.dev0",
        "decoder": ["diffusers", "UNet2DConditionModel"],
        "decoder_scheduler": ["diffusers", "UnCLIPScheduler"],
        "prior": ["diffusers", "PriorTransformer"],
        "prior_scheduler": ["diffusers", "UnCLIPScheduler"],
        "super_res_first": ["diffusers", "UNet2DModel"],
        "super_res_last": ["diffusers", "UNet2DModel"],
        "super_res_scheduler": ["diffusers", "UnCLIPScheduler"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "text_proj": ["unclip", "UnCLIPTextProjModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
    }
    (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return root


_CACHED: dict[str, object] = {}


def cached_root() -> Path:
    """A tiny checkpoint built once per process (seed 0) in a temporary directory."""
    import atexit
    import shutil
    import tempfile

    if "root" not in _CACHED:
        tmp = Path(tempfile.mkdtemp(prefix="nodegraph-tiny-karlo-"))
        atexit.register(shutil.rmtree, tmp, True)
        _CACHED["root"] = build_tiny_karlo(tmp / "tiny-karlo", seed=0)
    return _CACHED["root"]  # type: ignore[return-value]


def _handle(kind: str, load):
    from nodegraph import ModelHandle

    key = f"model:{kind}"
    if key not in _CACHED:
        _CACHED[key] = load(cached_root())
    return ModelHandle(_CACHED[key], "tiny-karlo", f"unclip.{kind}")


def clip():
    from .clip import load_clip

    return _handle("clip", load_clip)


def prior():
    from .prior import load_prior

    return _handle("prior", load_prior)


def ar_prior():
    """A seeded AR prior for the tiny CLIP: its codebook fitted on random embeddings, random weights."""
    from nodegraph import ModelHandle

    from .ar_prior import ARPrior, ARPriorConfig, ARPriorModel

    if "model:ar_prior" not in _CACHED:
        torch.manual_seed(0)
        net = ARPrior(ARPriorConfig(embedding_dim=TEXT_DIM, text_width=TEXT_DIM, context_length=CONTEXT,
                                    components=4, bins=8, width=16, layers=1, heads=2))
        net.codebook.fit(torch.randn(64, TEXT_DIM, generator=torch.Generator().manual_seed(0)))
        _CACHED["model:ar_prior"] = ARPriorModel(net.eval())
    return ModelHandle(_CACHED["model:ar_prior"], "tiny-karlo", "unclip.ar_prior")


def decoder():
    from .decoder import load_decoder

    return _handle("decoder", load_decoder)


def upsampler():
    from .upsampler import load_upsampler

    return _handle("upsampler", load_upsampler)


def conditioning(texts: tuple[str, ...] = ("a red circle",), negative: str = ""):
    """The encoding of `texts` with the tiny CLIP, as CLIP Text Encode outputs it."""
    import torch

    from ..encode import Conditioning

    model = clip().model
    with torch.inference_mode():
        return Conditioning(model.encode_text(list(texts)), model.encode_text([negative]), tuple(texts), negative)
