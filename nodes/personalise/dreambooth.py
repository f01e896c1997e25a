"""DreamBooth for the unCLIP cascade: a LoRA that binds a rare identifier word to a subject from a few
images, with the paper's prior-preservation loss on class images the model generates itself.

In unCLIP the decoder draws what the CLIP image embedding from the prior says, so the identifier
has to act on the text side. Its own row in CLIP's token table is learnt (pivotal tuning: textual
inversion together with the LoRA) so that the frozen prior maps prompts with the identifier towards
the subject's CLIP image embeddings, and a LoRA on the decoder (its attention, text cross-attention,
resnet convolutions and their embedding projections) learns to draw the subject from those embeddings
and the identifier's token. The row is also held in CLIP's own space (`align`): colourless identifier
captions nearer the subject's image embeddings than the domain's shapes, which is what the Prior node
ranks its `candidates` by. A prompt without the identifier meets the same CLIP and prior as before;
only the decoder's LoRA can move it. Optionally the prior gets a LoRA too (`prior_steps`), and the
text tower one (`text_rank`, as DreamBooth's text-encoder training; held to the frozen tower's
encodings of ordinary captions). The row is bundled in the LoRA file (`bundle_emb.<identifier>.*`),
the tower's LoRA as diffusers' `text_encoder.*` keys; Load LoRA puts both into a copy of the CLIP.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from pathlib import Path
from typing import Literal

import nodegraph
from nodegraph import IMAGE, Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CLIP, DECODER, PRIOR

log = logging.getLogger(__name__)

PREFIX = "dreambooth-"  # files in <models>/loras/ that runs write (git-ignored)
PRIOR_CLASS = 8  # prior-preservation captions per class image (see run)
PHASE_CLASS = 8  # the same in the prior phase (as PRIOR_CLASS), with as many again without their colour word
MID_BAND = (350, 850)  # decoder timesteps where a small subject's outline is decided (bench/dreambooth_probe.py)
PHASE_BATCH = 16  # subject rows (and preservation captions) per step of the prior phase
TEXT_KEEP = 512  # with text_rank: ordinary captions whose encodings the text tower's LoRA keeps
TEXT_KEEP_BATCH = 16  # … and how many of them each step
CLASS_GUIDANCE = (4.0, 1.5)  # prior and decoder guidance of the class samples
CLASS_CACHE = ".dreambooth-class"  # class samples kept in <models>/loras/<this>/ (hidden from Load LoRA; git-ignored)
CLASS_CACHE_ENTRIES = 16  # the cache keeps at most this many entries …
# … and this many bytes, newest first. An entry is, in float32, its class images (class_images, 3, S, S) and
# the prior's embeddings (1, 8 with prior_steps or 16 with prior_phase per class image, D): 0.8 MB at the defaults
# with the shipped models (S 32, D 128); with Karlo's (S 64, D 768) 3 MB of images and up to 3 MB of embeddings
# at 64 class images, up to ~100 MB at 1024
CLASS_CACHE_BYTES = 256 * 2**20
ALIGN_MARGIN = 0.02  # with align: how much nearer the subject than the nearest domain shape a caption must be
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _without_color(include: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(a for a in include if a != "color")


def prior_distill(net, frozen, scheduler, image_embeds, text, generator):
    """Prior preservation as distillation: the LoRA prior `net`'s x₀ prediction on the frozen prior's own
    samples `image_embeds` (noised at random levels) for ordinary captions `text`, against the frozen
    prior's prediction on the same input (lower variance than the samples as targets)."""
    import torch

    x0 = (image_embeds - frozen.clip_mean) / frozen.clip_std
    abar = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float32)
    t = torch.randint(0, len(abar), (len(x0),), generator=generator)
    a = abar[t][:, None]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=generator)
    kw = {"timestep": t, "proj_embedding": text.embeds, "encoder_hidden_states": text.hidden,
          "attention_mask": text.mask}
    with torch.no_grad():
        target = frozen(xt, **kw).predicted_image_embedding
    return torch.nn.functional.mse_loss(net(xt, **kw).predicted_image_embedding, target)


def text_keep_captions(n: int, identifier: str, rng) -> list[str]:
    """`n` ordinary captions without the identifier whose encodings the text tower's LoRA must keep:
    random scenes and attribute subsets by both writers, a quarter of them without their colour word
    (as Factor Out Colour hands prompts to the prior) and half rephrased (another article, the parts
    in another order), so that drift is held in many phrasings, not one writer's."""
    from ..shapes.api import captions, domain
    from . import subject

    out = []
    for k in range(n):
        include = domain.random_subset(rng)
        if k % 4 == 3:
            include = _without_color(include)
        text = captions.mixed_caption(domain.sample_scene(rng, "train").attributes(), rng, 0.5, include=include)
        out.append(subject.rephrase(text, identifier, rng) if k % 2 else text)
    return out


def text_keep_loss(tower, frozen_enc, texts: list[str]):
    """How far the LoRA'd tower's encodings of `texts` are from the frozen tower's `frozen_enc`: the
    pooled embedding's and the real tokens' states' squared error, each relative to the frozen one's
    mean square (so 0.01 is a 10 % RMS change)."""
    import torch

    enc = tower.encode_text(texts)
    mask = frozen_enc.mask[..., None].to(enc.hidden)
    pooled = torch.mean((enc.embeds - frozen_enc.embeds) ** 2) / torch.mean(frozen_enc.embeds ** 2)
    hidden = torch.sum((enc.hidden - frozen_enc.hidden) ** 2 * mask) / torch.sum(frozen_enc.hidden ** 2 * mask)
    return pooled + hidden


def _digest_tensors(h, tensors) -> None:
    import torch

    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())


def _sampling_sources() -> list[Path]:
    """The files of the code that draws the class samples (this module and the unCLIP library's prior,
    decoder and schedulers): a change to any of them makes cached samples stale."""
    import inspect

    from ..unclip import api

    files = [__file__, inspect.getsourcefile(api.sample_prior), inspect.getsourcefile(api.sample_decoder),
             api.schedulers.__file__]
    return [Path(f) for f in dict.fromkeys(files) if f]


def class_key(pri, dec, prior_text, uncond, n_decoded: int, steps: int, gen) -> str:
    """What the class samples depend on, hashed: the prior's and the decoder's weights, configs and
    schedulers, the captions' encodings, the generator's state, the counts and guidance, the code that
    samples them, and the libraries, threads and CPU that compute them (so a cached sample is bit-identical
    to a fresh one). Where a model was loaded from is left out: the same weights from another folder hit."""
    import hashlib
    import platform

    import diffusers
    import torch

    h = hashlib.sha256(f"dreambooth-class/1 torch {torch.__version__} diffusers {diffusers.__version__} "
                       f"threads {torch.get_num_threads()} cpu {platform.machine()} "
                       f"{torch.backends.cpu.get_cpu_capability()} n {n_decoded} steps {steps} guidance "
                       f"{CLASS_GUIDANCE}".encode())
    for path in _sampling_sources():
        h.update(path.read_bytes())
    for module in (pri.prior, dec.text_proj, dec.unet):
        config = {k: v for k, v in dict(module.config).items() if not k.startswith("_")}  # no load path
        h.update(f"{type(module).__name__} {sorted(config.items())!r}".encode())
        state = module.state_dict()
        h.update(repr(list(state)).encode())
        _digest_tensors(h, state.values())
    for sched in (pri.scheduler, dec.scheduler):
        config = {k: v for k, v in dict(getattr(sched, "config", {})).items() if not k.startswith("_")}
        h.update(f"{type(sched).__name__} {sorted(config.items())!r}".encode())
    for enc in (prior_text, uncond):
        _digest_tensors(h, (enc.embeds, enc.hidden, enc.mask))
    _digest_tensors(h, (gen.get_state(),))
    return h.hexdigest()[:32]


def _read_class_samples(path, n_prior: int, n_decoded: int, gen):
    """(prior embeddings, class images) of a cache entry, the generator set to the state stored with
    them; None (and the entry removed) when it is unreadable or does not fit."""
    from safetensors.torch import load_file

    try:
        got = load_file(str(path))
        prior_emb, class_img, state = got["prior_emb"], got["class_img"], got["generator_state"]
        if (prior_emb.shape[0] != n_prior or class_img.ndim != 4 or class_img.shape[0] != min(n_decoded, n_prior)
                or state.shape != gen.get_state().shape):
            raise ValueError(f"shapes {tuple(prior_emb.shape)}, {tuple(class_img.shape)}, {tuple(state.shape)}")
        gen.set_state(state)
    except Exception as exc:  # noqa: BLE001 - safetensors' errors derive from Exception alone: sample again
        log.warning("class-sample cache entry %s is unusable (%s); sampling again", path.name, exc)
        with contextlib.suppress(OSError):  # a read-only folder: the fresh samples are not kept either
            path.unlink(missing_ok=True)
        return None
    return prior_emb, class_img


def _prune_class_cache(folder, keep) -> None:
    """Keep the newest entries (by modification time: reading one touches it) within CLASS_CACHE_ENTRIES
    and CLASS_CACHE_BYTES in all: from the first entry that would exceed either, that one and every older
    one go (a small old entry never outlives a larger newer one); `keep`, the entry just written, stays
    whatever its size. An entry that cannot be removed (or vanishes meanwhile) is left and the others
    still go."""
    entries = []
    for p in folder.glob("*.safetensors"):
        try:
            st = p.stat()
        except OSError:  # removed meanwhile (another training's pruning)
            continue
        entries.append((p != keep, -st.st_mtime, st.st_size, p))  # `keep` first, then newest first
    count = total = 0
    full = False
    for _, _, size, p in sorted(entries, key=lambda e: e[:2]):
        full = full or (p != keep and (count >= CLASS_CACHE_ENTRIES or total + size > CLASS_CACHE_BYTES))
        if not full:
            count, total = count + 1, total + size
            continue
        try:
            p.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove the class-sample cache entry %s (%s)", p.name, exc)


def _write_class_samples(folder, path, tensors: dict) -> None:
    """Write a cache entry atomically (a temporary file renamed over it), then keep the newest entries,
    CLASS_CACHE_ENTRIES and CLASS_CACHE_BYTES at most (`_prune_class_cache`), and drop temporary files
    older than an hour (an interrupted write's); any failure (a read-only or full models folder) leaves
    training without the cache."""
    import os
    import tempfile

    from safetensors.torch import save

    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(save(tensors))
        os.replace(tmp, path)
        tmp = None
        _prune_class_cache(folder, path)
        for p in folder.glob(".*.tmp"):
            if time.time() - p.stat().st_mtime > 3600:
                p.unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001 - the cache is an optimisation: train without it
        log.warning("could not keep the class samples in %s (%s)", folder, exc)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def class_samples(pri, dec, prior_text, uncond, n_decoded: int, steps: int, gen, folder, check_cancelled):
    """Prior preservation's samples: the frozen prior's image embeddings for every caption of `prior_text`
    and the frozen decoder's images (B, 3, S, S) in [0, 1] for the first `n_decoded`, drawn from `gen`;
    and whether they came from the cache. They depend only on the models, the captions, the seed's
    generator state, the counts and the sampling code (`class_key`), so they are kept in `folder` under a
    hash of all of those, with the generator's state after sampling: a repeated training that draws the
    same class captions reads them instead of sampling again and continues bit for bit as a fresh one
    would. The newest entries are kept, CLASS_CACHE_ENTRIES and CLASS_CACHE_BYTES at most."""
    import os

    from ..unclip.api import sample_decoder, sample_prior
    from .common import take

    key = class_key(pri, dec, prior_text, uncond, n_decoded, steps, gen)
    path = folder / f"{key}.safetensors"
    if path.is_file():
        got = _read_class_samples(path, prior_text.embeds.shape[0], n_decoded, gen)
        if got is not None:
            with contextlib.suppress(OSError):
                os.utime(path)  # most recently used
            return *got, True
    prior_emb = sample_prior(pri, prior_text, uncond, guidance=CLASS_GUIDANCE[0], steps=steps, generator=gen)
    check_cancelled()
    class_img = sample_decoder(dec, prior_emb[:n_decoded], take(prior_text, slice(0, n_decoded)), uncond,
                               guidance=CLASS_GUIDANCE[1], steps=steps, generator=gen)
    _write_class_samples(folder, path, {"prior_emb": prior_emb.contiguous(), "class_img": class_img.contiguous(),
                                        "generator_state": gen.get_state()})
    return prior_emb, class_img, False


def subject_rows_per_step(batch: int, share: float) -> int:
    """Subject rows in a step of `batch` rows (the rest are class images): `share` of them, rounded
    down, and at least one of each kind."""
    return min(batch - 1, max(1, int(batch * share)))


class DreamBooth(Node):
    """Teach the models a subject from 3–5 images under a rare identifier word (DreamBooth, as a LoRA).

    Learns the identifier's row in CLIP's token table and a LoRA on a copy of the decoder (the loaded
    models are not changed), with prior preservation on images the model generates for ordinary
    prompts; writes `<models>/loras/dreambooth-<name>.safetensors` (the row bundled in it) and outputs
    its name for Load LoRA, whose `clip` output then encodes "a red sks shape at the top". Takes
    minutes; progress per step, cancellable between steps.
    """

    name = "dreambooth"
    title = "DreamBooth (train LoRA)"
    search_aliases = ("train lora", "personalise", "personalize", "subject", "fine-tune")
    category = "personalise"

    class Inputs(nodegraph.Inputs):
        clip: CLIP = Port(description="The CLIP of the bundle (frozen; encodes prompts and the subject images).")
        prior: PRIOR = Port(description="The prior to personalise (a copy gets the LoRA).")
        decoder: DECODER = Port(description="The decoder to personalise (a copy gets the LoRA).")
        images: IMAGE = Port(description="3–5 images of the subject: one object on a plain background.")
        identifier: str = Port("sks", description="The rare word that will name the subject in prompts "
                               "(one word the models never saw).")
        name: str = Port("subject", description="The LoRA is written to <models>/loras/dreambooth-<name>.safetensors "
                         "(letters, digits, '-', '_', '.').")
        steps: int = Port(600, ge=1, le=5000, description="Training steps.")
        prior_steps: int = Port(0, ge=0, le=5000, description="The first steps also train a LoRA on the prior "
                                "(0: the prior stays as it is, and prompts without the identifier meet it "
                                "unchanged; the identifier's row carries the subject to it).")
        prior_phase: int = Port(0, ge=0, le=5000, description="Steps of a first phase through the prior alone "
                                "(cheap: no decoding): the identifier's row (at phase_token_lr) and, with "
                                "prior_rank above 0, a LoRA on the prior (at prior_lr) learn the subject's image "
                                "embeddings, the LoRA held to the frozen prior's own predictions on ordinary "
                                "captions; with the LoRA the row is then kept as it is for the decoder's steps. "
                                "0: no such phase (a trial: it raised the tuning heart rate, not the "
                                "validation one; docs/personalise.md).")
        prior_rank: int = Port(8, ge=0, le=64, description="With prior_phase: rank of the prior's LoRA (0: the row "
                               "alone learns in that phase and the prior stays as it is).")
        prior_preservation: float = Port(2.0, ge=0.0, le=10.0, description="With prior_phase and prior_rank: "
                                         "weight of the prior LoRA's preservation loss (its predictions held to "
                                         "the frozen prior's on ordinary captions).")
        phase_token_lr: float = Port(2e-2, ge=0.0, le=1.0, description="With prior_phase: learning rate of the "
                                     "identifier's row in that phase.")
        subject_pool: int = Port(0, ge=0, le=4096, description="Distinct subject rows (placements, colours, "
                                 "captions) drawn before training; 0: 64 per image, at least 256.")
        token_lr: float = Port(5e-3, ge=0.0, le=1.0, description="Learning rate of the identifier's own row "
                               "in CLIP's token table (pivotal tuning); 0 keeps CLIP as it is and leaves the "
                               "identifier to the LoRAs.")
        text_rank: int = Port(0, ge=0, le=64, description="Rank of a LoRA on CLIP's text tower (every block's "
                              "attention and MLP), learnt with the row through the frozen prior and the "
                              "decoder, as DreamBooth's text-encoder training, so the identifier is read in "
                              "context; held to the frozen tower's encodings of ordinary captions "
                              "(text_preservation). Saved in the LoRA file; Load LoRA applies it to the CLIP. "
                              "0: the tower stays as it is.")
        text_lr: float = Port(5e-4, gt=0.0, le=1.0, description="With text_rank: learning rate of the text "
                              "tower's LoRA.")
        text_preservation: float = Port(10.0, ge=0.0, le=1000.0, description="With text_rank: weight of the "
                                        "loss keeping the tower's pooled embedding and token states on ordinary "
                                        "captions without the identifier (both writers, many phrasings) as "
                                        "the frozen tower's.")
        batch: int = Port(8, ge=2, le=256, description="Decoder and prior rows per step: subject rows and class "
                          "images (see subject_share).")
        subject_share: float = Port(0.625, gt=0.0, lt=1.0, description="Share of each step's rows that are subject "
                                    "rows; the rest are class images (at least one of each).")
        rank: int = Port(8, ge=1, le=64, description="LoRA rank (decoder and prior).")
        conv_rank: int = Port(0, ge=0, le=64, description="Rank of the decoder LoRA on the convolutions at its full "
                              "resolution (conv_in, conv_out and the 32 px resnets' convolutions), where outlines "
                              "are drawn; 0: conv_in and conv_out get none and the 32 px resnets take `rank`.")
        lr: float = Port(2e-3, gt=0.0, le=1.0, description="Learning rate of the decoder LoRA.")
        prior_lr: float = Port(1e-3, gt=0.0, le=1.0, description="Learning rate of the prior LoRA.")
        class_images: int = Port(64, ge=2, le=1024, description="Images the model generates for ordinary prompts, "
                                 "for prior preservation (with prior_steps, the prior's own preservation rows "
                                 "are 8× as many captions, sampled without decoding; with prior_phase and "
                                 "prior_rank, 16×, half of them without their colour word).")
        class_steps: int = Port(10, ge=2, le=100, description="Denoising steps when generating the class images.")
        preservation: float = Port(1.0, ge=0.0, le=10.0, description="Weight λ of the prior-preservation loss.")
        object_weight: float = Port(4.0, ge=0.0, le=20.0, description="With object_share 0: extra loss weight of "
                                    "the subject's pixels (and a 1-pixel rim) in the decoder loss; 4 makes them "
                                    "weigh 5×, so the outline, a few percent of the image, is what the LoRA learns.")
        object_share: float = Port(0.55, ge=0.0, lt=1.0, description="When above 0, replaces object_weight: the "
                                   "subject's pixels and rim carry this share of each image's decoder loss, "
                                   "so a small subject weighs as much as a large one.")
        mid_share: float = Port(0.0, ge=0.0, le=1.0, description="Share of the decoder rows whose noise level is "
                                "drawn from the middle band (timesteps 350–850 of 1000), where a small subject's "
                                "outline is decided; the rest are drawn uniformly (0: all uniform).")
        snr_floor: float = Port(1.0, ge=0.0, le=5.0, description="Floor of the decoder loss weight at high noise, "
                                "in x₀ terms (min-SNR-5 alone all but ignores the noisiest steps, where the "
                                "outline is decided; 1 counts them as the shipped decoder's tuning did).")
        captions: Literal["pool", "fresh", "varied"] = Port("pool", description="Subject rows' captions. "
                                                            "pool: one caption per row, written once; fresh: a "
                                                            "new caption (either writer, any attributes named) "
                                                            "each time a row is drawn; varied: fresh, then "
                                                            "rephrased in ways neither writer has (the class "
                                                            "noun dropped, another article, the parts in "
                                                            "another order), so the identifier is learnt in "
                                                            "more phrasings than the writers'.")
        alone_share: float = Port(0.0, ge=0.0, le=1.0, description="Share of subject captions that name the "
                                  "identifier alone, without the class noun (\"a red sks at the top\"), as users "
                                  "may write it; 0: always \"sks shape\".")
        null_share: float = Port(0.2, ge=0.0, lt=1.0, description="Share of subject rows whose image embedding "
                                 "is the null one, so that the identifier's token alone, through the decoder's "
                                 "text conditioning, must carry the subject.")
        augment: bool = Port(True, description="Cut the subject out and place it at other sizes, positions and "
                             "colours on other backgrounds (Shapes domain), so prompts can move and recolour it. "
                             "Off: the images as they are.")
        small_share: float = Port(0.6, ge=0.0, le=1.0, description="With augment: the share of subject rows "
                                  "placed at the domain's small size.")
        align: float = Port(1.0, ge=0.0, le=10.0, description="Weight of a hinge loss on the identifier's row in "
                            "CLIP's own space: a subject caption without its colour word (as Factor Out Colour hands "
                            "it to the prior) at least 0.02 nearer (cosine) the subject row's image embedding than "
                            "the same scene drawn as any domain shape, so that the prior's candidates ranked by the "
                            "text (the Prior node's `candidates`, 4 in dreambooth.json) keep the subject's. It acts "
                            "while the row learns (with prior_steps, only those steps; with text_rank, the tower's "
                            "LoRA learns from it too; its captions always name the class noun). Unused without "
                            "augment, without the learnt row, or with prior_phase's prior LoRA (the row is fixed "
                            "then); 0: off.")
        seed: nodegraph.Seed = Port(0, description="Random seed (data, noise, class prompts).")

    class Outputs(nodegraph.Outputs):
        lora: str = Port(description="The LoRA's name in <models>/loras/, for Load LoRA.")
        class_images: IMAGE = Port(description="The class images the model generated, at the decoder's "
                                   "resolution.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import dataclasses

        import numpy as np
        import torch

        from ..lora.api import save_lora
        from ..shapes.api import captions, domain
        from ..unclip.api import (
            TextEncoding,
            alphas_cumprod,
            decoder_loss,
            generator,
            prior_loss,
        )
        from . import subject, training
        from .common import clip_pixels, decoder_pixels, object_mask, share_weights, take

        if not _NAME.match(inputs.name):
            raise NodeExecutionError(f"name {inputs.name!r} is not a file name; use letters, digits, '-', '_' or '.'")
        ident = inputs.identifier.strip()
        if not ident or " " in ident:
            raise NodeExecutionError(f"identifier {inputs.identifier!r} must be one word, e.g. 'sks'")
        token_ids: list[int] = []
        if inputs.token_lr > 0:
            token_ids = inputs.clip.model.token_ids(ident)
            if len(token_ids) != 1:  # its rows are shared with other words: learning them would move those
                note = (f"identifier {ident!r} is {len(token_ids)} tokens for this CLIP's tokenizer, so its row is "
                        "not learnt and the LoRA alone carries it; choose a word the tokenizer keeps whole (e.g. "
                        "'sks' for the shipped CLIP) to learn it too")
                ctx.log.warning(note)
                ctx.show(text=[note])
                token_ids = []
        if not ctx.settings.model_dirs:
            raise NodeExecutionError("no models folder to write the LoRA to; set NODEGRAPH_MODELS_DIR")
        images = nodegraph.as_image_batch(inputs.images)
        if len(images) < 1:
            raise NodeExecutionError("no subject images; connect 3–5 images of the subject")
        if 0 < inputs.subject_pool < len(images):
            raise NodeExecutionError(f"subject_pool {inputs.subject_pool} is fewer rows than the {len(images)} "
                                     "subject images, so some would never be seen; raise it, or 0 for the default")
        if inputs.prior_phase > 0 and inputs.prior_rank > 0 and inputs.prior_steps > 0:
            raise NodeExecutionError("prior_steps and prior_phase (with prior_rank above 0) both train a LoRA on "
                                     "the prior; set prior_steps or prior_phase to 0")
        if inputs.text_rank > 0 and (inputs.prior_steps > 0 or inputs.prior_phase > 0):
            raise NodeExecutionError("text_rank trains the text tower through the whole run, so it would move the "
                                     "encodings that prior_steps / prior_phase fitted the prior (and the fixed row) "
                                     "to; set text_rank to 0, or prior_steps and prior_phase to 0")
        if inputs.prior_phase > 0 and inputs.prior_rank == 0 and not token_ids:
            raise NodeExecutionError("prior_phase has nothing to train: the identifier's row is not learnt "
                                     "(token_lr 0, or an identifier of several tokens) and prior_rank is 0; "
                                     "raise prior_rank, or set prior_phase to 0")
        t0, cpu0 = time.time(), time.process_time()
        clip, pri, dec = inputs.clip.model, inputs.prior.model, inputs.decoder.model
        rng = np.random.default_rng(inputs.seed)
        gen = generator(inputs.seed)
        size = dec.sample_size

        # subject rows and the class images of prior preservation, generated by the model itself
        pool = inputs.subject_pool or max(256, 64 * len(images))
        scenes: list[dict[str, str]] = []
        placed: list = []
        subj64, subj_caps = subject.rows(images, ident, pool, rng, augment=inputs.augment,
                                           small_share=inputs.small_share, scenes=scenes, placed=placed)
        # fresh captions come from a stream of their own: images, indices and noise stay as with "pool"
        cap_rng = np.random.default_rng([inputs.seed, 17])
        alone_rng = np.random.default_rng([inputs.seed, 31])  # the same for alone_share

        def alone(texts: list[str]) -> list[str]:
            if inputs.alone_share == 0:
                return texts
            return [subject.without_class_noun(t, ident) if alone_rng.random() < inputs.alone_share else t
                    for t in texts]

        subj_caps = alone(subj_caps)

        def captions_of(idx: list[int]) -> list[str]:
            if inputs.captions == "pool":
                return [subj_caps[j] for j in idx]
            out = alone([subject.caption(scenes[j], ident, cap_rng, domain.random_subset(cap_rng), 0.5) for j in idx])
            return [subject.rephrase(t, ident, cap_rng) for t in out] if inputs.captions == "varied" else out

        # the prior's class rows are cheap (no decoding): PRIOR_CLASS times as many captions keep the prior's
        # whole caption space in place; the decoder's class images are the first `class_images` of them
        phase_lora = inputs.prior_phase > 0 and inputs.prior_rank > 0
        prior_steps = 0 if phase_lora else inputs.prior_steps  # the phase's LoRA replaces the joint one
        n_prior = (PHASE_CLASS if phase_lora else PRIOR_CLASS if prior_steps > 0 else 1) * inputs.class_images
        class_caps = [captions.mixed_caption(domain.sample_scene(rng, "train").attributes(), rng, 0.5)
                      for _ in range(n_prior)]  # both writers, as the subject rows
        if phase_lora:  # and as Factor Out Colour hands prompts to the prior: without the colour
            class_caps += [captions.mixed_caption(domain.sample_scene(rng, "train").attributes(), rng, 0.5,
                                                  include=_without_color(domain.random_subset(rng)))
                           for _ in range(n_prior)]
            n_prior *= 2
        with torch.no_grad():
            subj_text = clip.encode_text(subj_caps)
            subj_emb = clip.encode_image(clip_pixels(subj64))
            prior_text = clip.encode_text(class_caps)
            uncond = clip.encode_text([""])
            ctx.check_cancelled()
            prior_emb, class_img, class_cached = class_samples(
                pri, dec, prior_text, uncond, inputs.class_images, inputs.class_steps, gen,
                ctx.settings.model_dirs[0] / "loras" / CLASS_CACHE, ctx.check_cancelled)
            class_text, class_emb = take(prior_text, slice(0, inputs.class_images)), prior_emb[:inputs.class_images]
            # the hinge acts in the decoder's steps, while the row learns there (not after a prior phase's LoRA)
            align = inputs.align if token_ids and inputs.augment and not phase_lora else 0.0
            if align > 0:  # each subject row's scene drawn as every domain shape: the row's negatives
                shapes = domain.SHAPES
                others = np.stack([domain.render(dataclasses.replace(sc, shape=sh), subj64.shape[1])
                                   for sc in placed for sh in shapes])
                align_pos = torch.nn.functional.normalize(subj_emb, dim=-1)
                align_neg = torch.nn.functional.normalize(torch.cat([
                    clip.encode_image(clip_pixels(others[k:k + 256])) for k in range(0, len(others), 256)]),
                    dim=-1).reshape(len(placed), len(shapes), -1)
                # captions without their colour word, as Factor Out Colour hands prompts to the prior (and
                # the Prior node ranks its candidates by them); a stream of their own
                align_rng = np.random.default_rng([inputs.seed, 37])
                align_caps = [subject.caption(sc, ident, align_rng, _without_color(domain.random_subset(align_rng)), 0.5)
                              for sc in scenes]
        cpu_class = time.process_time() - cpu0
        subj_x0 = decoder_pixels(subj64, size)
        # the same weighting on the class rows: preservation holds where the subject's loss pulls hardest
        subj_m = object_mask(subj64, size)
        class_m = object_mask(class_img.permute(0, 2, 3, 1).numpy(), size)
        if inputs.object_share > 0:
            subj_w, class_w = share_weights(subj_m, inputs.object_share), share_weights(class_m, inputs.object_share)
        else:
            subj_w, class_w = 1 + inputs.object_weight * subj_m, 1 + inputs.object_weight * class_m
        class_x0 = class_img * 2 - 1
        weighted = inputs.object_weight > 0 or inputs.object_share > 0
        ctx.check_cancelled()

        ranks = {m: inputs.conv_rank for m in training.full_resolution_convs(dec.unet)} if inputs.conv_rank else None
        unet, unet_cfg = training.with_lora(dec.unet, inputs.rank, training.DECODER_RESNET_TARGETS, seed=inputs.seed,
                                            ranks=ranks)
        prior_net, prior_cfg = None, None
        if phase_lora:
            prior_net, prior_cfg = training.with_lora(pri.prior, inputs.prior_rank, training.PRIOR_TARGETS,
                                                      seed=inputs.seed + 1)
        elif prior_steps > 0:
            prior_net, prior_cfg = training.with_lora(pri.prior, inputs.rank, training.PRIOR_TARGETS,
                                                      seed=inputs.seed + 1)
        elif token_ids or inputs.text_rank > 0:  # the row learns through the prior, whose own weights stay as they are
            prior_net = training.frozen(pri.prior)
        tuned_prior = dataclasses.replace(pri, prior=prior_net) if prior_net is not None else pri
        row, text_tower, text_lora = None, None, None
        if inputs.text_rank > 0:  # a LoRA on a copy of the text tower, learnt with the row
            text_tower, text_lora = training.with_text_lora(clip, inputs.text_rank, seed=inputs.seed + 2)
            keep_rng = np.random.default_rng([inputs.seed, 29])  # a stream of its own: the others stay put
            keep_caps = text_keep_captions(TEXT_KEEP, ident, keep_rng)
            with torch.no_grad():
                keep_enc = clip.encode_text(keep_caps)
        elif token_ids:
            text_tower = training.frozen(clip)
        if token_ids:  # the identifier's row, learnt through a frozen copy of the text tower
            row = torch.nn.Parameter(clip.input_embeddings().weight[token_ids].detach().clone())
            training.substitute_rows(text_tower.input_embeddings(), token_ids, row)
        # the decoder's text projection is trained through, never into: a frozen copy, so the loaded one
        # collects no gradients (the LoRA'd UNet replaces the decoder's own in the loss)
        dec = dataclasses.replace(dec, text_proj=training.frozen(dec.text_proj))
        abar = alphas_cumprod(dec)
        null = dec.text_proj.learned_classifier_free_guidance_embeddings[None]
        n_subj = subject_rows_per_step(inputs.batch, inputs.subject_share)
        lam = inputs.preservation
        if inputs.prior_phase > 0 and row is not None or phase_lora:
            frozen_prior = training.frozen(pri.prior) if phase_lora else None

            def phase_loss(step: int):
                i_s = torch.from_numpy(rng.choice(len(subj_x0), size=PHASE_BATCH, replace=len(subj_x0) < PHASE_BATCH))
                text = text_tower.encode_text(captions_of(i_s.tolist())) if row is not None \
                    else take(subj_text, i_s)
                total = prior_loss(tuned_prior, subj_emb[i_s], text, gen)
                if phase_lora:  # preservation: the LoRA prior predicts as the frozen one on its own samples
                    i_p = torch.from_numpy(rng.choice(n_prior, size=PHASE_BATCH, replace=n_prior < PHASE_BATCH))
                    total = total + inputs.prior_preservation * prior_distill(prior_net, frozen_prior, pri.scheduler, prior_emb[i_p],
                                                        take(prior_text, i_p), gen)
                return total

            groups = [{"params": [row], "lr": inputs.phase_token_lr}] if row is not None else []
            if phase_lora:
                groups.append({"params": training.trainable(prior_net), "lr": inputs.prior_lr})
            total_steps = inputs.prior_phase + inputs.steps
            training.fit(groups, phase_loss, inputs.prior_phase, lambda done, _loss: ctx.progress(done, total_steps))
            if phase_lora:
                prior_net.requires_grad_(False)
            if row is not None and phase_lora:  # the row stays what the prior's LoRA was trained with
                row.requires_grad_(False)
                with torch.no_grad():
                    subj_text = text_tower.encode_text(subj_caps)

        def loss(step: int):
            if row is not None and step == prior_steps > 0:
                row.requires_grad_(False)  # the row stays what the prior's LoRA was trained with
            i_s = torch.from_numpy(rng.choice(len(subj_x0), size=n_subj, replace=len(subj_x0) < n_subj))
            i_c = torch.from_numpy(rng.choice(len(class_x0), size=inputs.batch - n_subj,
                                              replace=len(class_x0) < inputs.batch - n_subj))
            emb = subj_emb[i_s].clone()
            emb[torch.from_numpy(rng.random(n_subj) < inputs.null_share)] = null
            # with the row (learning or, after prior_steps, fixed): the text as the saved LoRA will encode it
            if text_tower is not None:
                text = text_tower.encode_text(captions_of(i_s.tolist()))
            elif inputs.captions != "pool":
                with torch.no_grad():
                    text = clip.encode_text(captions_of(i_s.tolist()))
            else:
                text = take(subj_text, i_s)
            # subject and class rows in one UNet call (one call's overhead, not two); the losses are their means
            t = torch.randint(0, len(abar), (inputs.batch,), generator=gen)
            mid = torch.rand(inputs.batch, generator=gen) < inputs.mid_share
            t[mid] = torch.randint(MID_BAND[0], MID_BAND[1], (int(mid.sum()),), generator=gen)
            per_row = decoder_loss(dec, torch.cat([subj_x0[i_s], class_x0[i_c]]), torch.cat([emb, class_emb[i_c]]),
                                   TextEncoding.cat([text, take(class_text, i_c)]), abar, gen, unet=unet,
                                   snr_floor=inputs.snr_floor, timesteps=t, reduce=False,
                                   pixel_weight=torch.cat([subj_w[i_s], class_w[i_c]]) if weighted else None)
            total = per_row[:n_subj].mean() + lam * per_row[n_subj:].mean()
            if step < prior_steps:  # after them the prior's LoRA is done: its grads stay None
                l_pri = prior_loss(tuned_prior, subj_emb[i_s], text, gen)
                i_p = torch.from_numpy(rng.choice(n_prior, size=len(i_c), replace=n_prior < len(i_c)))
                l_pri_class = prior_loss(tuned_prior, prior_emb[i_p], take(prior_text, i_p), gen)
                total = total + l_pri + lam * l_pri_class
            elif (row is not None and row.requires_grad or text_lora) and prior_steps == 0:
                # the frozen prior's loss on the subject rows: only the identifier's row (and the text
                # tower's LoRA) learn from it
                total = total + prior_loss(tuned_prior, subj_emb[i_s], text, gen)
            if align > 0 and row.requires_grad:
                # the row in CLIP's space: the colourless caption nearer (cosine) its subject row than the
                # scene drawn as any domain shape, by ALIGN_MARGIN (a hinge: no pull once it is)
                caps = text_tower.encode_text([align_caps[j] for j in i_s.tolist()]).embeds
                t_al = torch.nn.functional.normalize(caps, dim=-1)
                cos_pos = (align_pos[i_s] * t_al).sum(-1)
                cos_neg = (align_neg[i_s] @ t_al[..., None])[..., 0].max(-1).values
                total = total + align * torch.relu(ALIGN_MARGIN - (cos_pos - cos_neg)).mean()
            if text_lora:  # ordinary captions keep their encodings
                i_k = keep_rng.choice(TEXT_KEEP, size=TEXT_KEEP_BATCH, replace=False)
                total = total + inputs.text_preservation * text_keep_loss(
                    text_tower, take(keep_enc, torch.from_numpy(i_k)), [keep_caps[k] for k in i_k])
            return total

        groups = [{"params": training.trainable(unet), "lr": inputs.lr}]
        if prior_steps > 0:
            groups.append({"params": training.trainable(prior_net), "lr": inputs.prior_lr})
        if row is not None and row.requires_grad:
            groups.append({"params": [row], "lr": inputs.token_lr})
        if text_lora:
            groups.append({"params": [p for a in text_lora.values() for p in a.parameters()], "lr": inputs.text_lr})
        cpu_phase = time.process_time() - cpu0
        done0, total_steps = inputs.prior_phase, inputs.prior_phase + inputs.steps
        losses = training.fit(groups, loss, inputs.steps, lambda done, _loss: ctx.progress(done0 + done, total_steps))
        path = ctx.settings.model_dirs[0] / "loras" / f"{PREFIX}{inputs.name}.safetensors"
        seconds = round(time.time() - t0, 1)
        info = {"method": "dreambooth", "identifier": ident, "steps": inputs.steps,
                "prior_steps": min(prior_steps, inputs.steps), "token_lr": inputs.token_lr,
                "conv_rank": inputs.conv_rank, "mid_share": inputs.mid_share,
                "prior_phase": inputs.prior_phase, "prior_rank": inputs.prior_rank if phase_lora else 0,
                "subject_pool": pool, "captions": inputs.captions, "null_share": inputs.null_share,
                "text_rank": inputs.text_rank, "alone_share": inputs.alone_share, "align": align,
                **({"text_lr": inputs.text_lr, "text_preservation": inputs.text_preservation}
                   if inputs.text_rank > 0 else {}),
                "seconds": seconds,
                "cpu_seconds": round(time.process_time() - cpu0, 1),
                "cpu_seconds_class": round(cpu_class, 1), "class_images_cached": class_cached, "cpu_seconds_prior_phase": round(cpu_phase - cpu_class, 1),
                "subject_images": len(images), "class_images": inputs.class_images, "final_loss": losses[-1]}
        save_lora(path, unet, unet_cfg, info, prior_net if prior_steps > 0 or phase_lora else None, prior_cfg,
                  embeddings={ident: row.detach()} if row is not None else None, text_encoder=text_lora)
        ctx.log.info("DreamBooth: %d steps in %.0f s, loss %.4f → %.4f; wrote %s", inputs.steps, seconds,
                     losses[0], losses[-1], path)
        ctx.show(text=[f"{path.name}: {inputs.steps} steps in {seconds:.0f} s, loss {losses[0]:.3f} → {losses[-1]:.3f}"])
        return self.Outputs(lora=path.stem, class_images=nodegraph.from_tensor(class_img))
