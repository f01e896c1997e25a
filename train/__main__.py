"""`python -m train all` regenerates every shipped weight; `python -m train STAGE` runs one stage.

    python -m train all                 # the unCLIP bundle, then the editing models (hours on 2 cores)
    python -m train unclip              # clip → clip_vocab → prior → prior_tune → clip_bind → clip_place → arprior → decoder → decoder_tune → clip_shape → upsampler (models/shapes-unclip) → upsampler_256
    python -m train editing             # sam, lora, controlnet, lcm, ip2p, ip2p_edit (lora … ip2p on the shipped decoder)
    python -m train all --smoke         # a few steps of each on tiny models, into a temporary directory
    python -m train decoder --threads 1 --steps 800   # one stage, with config overrides

Bundle stages (`clip`, `clip_vocab`, `prior`, `prior_tune`, `clip_bind`, `clip_place`, `arprior`, `decoder`, `decoder_tune`, `clip_shape`, `upsampler`) write into one
Karlo-layout bundle (`--out`, default models/shapes-unclip); stages after CLIP read `clip/` from it (`clip_bind`, which
continues the text tower through the frozen prior, comes after the prior as it did for the shipped weights; `clip_shape`, which reads the decoder too, after the decoder). `arprior`, the autoregressive
prior, writes `prior_ar/` (outside Karlo's layout) with its own `training_log.json`; rerun it whenever `clip/`
changes (`python -m train arprior`, about 15 min on one thread). The editing stages write
next to it: `lora`, `lcm` → `<models>/loras/`, `controlnet` → `<models>/controlnet-shapes/`, `sam` →
`<models>/sam-shapes/`, `ip2p` (InstructPix2Pix, made from the decoder) → `<models>/shapes-ip2p/`, `ip2p_edit`
(its edit prior in CLIP space) → `<models>/shapes-ip2p/edit_prior/`,
where `<models>` is the bundle's parent folder. Each stage records its wall
time in a `training_log.json` beside its weights. With other load on the machine, running the
upsampler (independent of CLIP) in a second 1-thread process alongside the CLIP → prior → decoder
chain is faster overall. The second super-resolution stage (`python -m train upsampler_256`, 64 → 256
px) writes its own model folder next to the bundle, `<models>/shapes-unclip-sr256` (Karlo's naming
inside, the layout `unclip.load_upsampler` loads); it needs nothing from the bundle. `python -m train
clip_text` continues the bundle's CLIP text tower in place on a second caption writer
(`nodes/shapes/captions.py`); it is in no group: its result is not shipped (docs/unclip.md says what it measured).
`python -m train upsampler_tune` continues the bundle's 64 px upsampler on softer conditioning, and `python -m
train upsampler_decoded` on the bundle decoder's own 32 px images of training scenes, and `python -m train
decoder_sharp` continues the bundle's decoder with more of its loss on the object's outline (run it on a copy of
the bundle); they are in no group either (docs/unclip.md, "Short prompts' outlines"). `python -m train
clip_vocab_tune --out DIR` trains the vocabulary rows again after `clip_bind` (a trial, in no group; it refuses
to write into the shipped bundle). `python -m train upsampler_embed --out DIR` continues the bundle's 64 px
upsampler as one that also sees the CLIP image embedding (a trial, in no group; `super_res_first/`,
`super_res_embed/` and `super_res_scheduler/` into DIR; it refuses the shipped bundle without `--ship true`).
`python -m train decoder_long --out COPY` continues the bundle's decoder in place for the whole 1,500-step
schedule of `decoder_tune`'s fourth phase (which stops at step 1,250; in no group; run it on a copy of the bundle).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from train import (
    arprior,
    clip,
    clip_bind,
    clip_place,
    clip_shape,
    clip_text,
    clip_vocab,
    clip_vocab_tune,
    controlnet,
    decoder,
    ip2p,
    ip2p_edit,
    lcm,
    lora,
    prior,
    sam,
    upsampler,
    upsampler256,
    upsampler_decoded,
    upsampler_embed,
)

BUNDLE = {"clip": clip.main, "clip_vocab": clip_vocab.main, "prior": prior.main, "prior_tune": prior.tune,
          "clip_bind": clip_bind.main, "clip_place": clip_place.main, "arprior": arprior.main,
          "decoder": decoder.main, "decoder_tune": decoder.tune, "clip_shape": clip_shape.main, "upsampler": upsampler.main}
TRIALS = {"clip_text": clip_text.main, "clip_vocab_tune": clip_vocab_tune.main, "upsampler_tune": upsampler.tune,
          "upsampler_decoded": upsampler_decoded.main, "upsampler_embed": upsampler_embed.main,
          "decoder_sharp": decoder.sharp, "decoder_long": decoder.long}
# (continue a bundle in place; not in the shipped recipe as they are: docs/unclip.md)
CASCADE = {"upsampler_256": upsampler256.main}  # later super-resolution stages: a folder each, beside the bundle
EDITING = {"sam": sam.main, "lora": lora.main, "controlnet": controlnet.main, "lcm": lcm.main, "ip2p": ip2p.main,
           "ip2p_edit": ip2p_edit.main}
STAGES = {**BUNDLE, **TRIALS, **CASCADE, **EDITING}
GROUPS = {"all": [*BUNDLE, *CASCADE, *EDITING], "unclip": [*BUNDLE, *CASCADE], "editing": list(EDITING)}  # the shipped weights


def _out_args(stage: str, bundle: Path | None) -> list[str]:
    """Where a stage writes, given the bundle folder (None: each stage's own default)."""
    if bundle is None:
        return []
    if stage in BUNDLE or stage in TRIALS:
        return ["--out", str(bundle)]
    if stage == "upsampler_256":
        return ["--out", str(bundle.parent / "shapes-unclip-sr256")]
    if stage == "sam":
        return ["--out", str(bundle.parent / "sam-shapes")]
    # lora, controlnet, lcm, ip2p, ip2p_edit: write into the models folder, start from the bundle's decoder
    return ["--out", str(bundle.parent), "--bundle", str(bundle)]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=[*GROUPS, *STAGES])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", default=None, help="the bundle folder (default models/shapes-unclip)")
    p.add_argument("--threads", default=None)
    args, rest = p.parse_known_args(argv)
    common = (["--smoke"] if args.smoke else []) + (["--threads", args.threads] if args.threads else [])
    bundle = Path(args.out) if args.out else None
    if bundle is None and args.smoke:
        bundle = Path(tempfile.mkdtemp(prefix="nodegraph-train-smoke-")) / "shapes-unclip"
    stages = GROUPS.get(args.stage, [args.stage])
    if len(stages) > 1 and rest:
        p.error(f"config overrides {rest} apply to one stage; run the stages one by one")
    times = {}
    for name in stages:
        t0 = time.time()
        code = STAGES[name](common + _out_args(name, bundle) + rest)
        times[name] = time.time() - t0
        if code:
            return code
    logging.getLogger("train").info("wall time per stage: %s", ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print(f"trained {', '.join(stages)} into {bundle.parent if bundle else 'models/'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
