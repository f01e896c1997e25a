"""`python -m train all` regenerates every shipped weight; `python -m train STAGE` runs one stage.

    python -m train all                 # clip → prior → decoder → upsampler into models/shapes-unclip
    python -m train all --smoke         # a few steps of each on tiny models, into a temporary directory
    python -m train decoder --threads 1 --steps 800   # one stage, with config overrides

Stages after CLIP read `clip/` from the same output directory. Each stage appends its wall time to
`<out>/training_log.json`. With other load on the machine, running the upsampler (independent of
CLIP) in a second 1-thread process alongside the CLIP → prior → decoder chain is faster overall.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time

from train import clip, decoder, prior, upsampler

STAGES = {"clip": clip.main, "prior": prior.main, "decoder": decoder.main, "upsampler": upsampler.main}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["all", *STAGES])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--threads", default=None)
    args, rest = p.parse_known_args(argv)
    common = (["--smoke"] if args.smoke else []) + (["--threads", args.threads] if args.threads else [])
    out = args.out or (tempfile.mkdtemp(prefix="nodegraph-train-smoke-") if args.smoke else None)
    if out:
        common += ["--out", out]
    stages = list(STAGES) if args.stage == "all" else [args.stage]
    if args.stage == "all" and rest:
        p.error(f"config overrides {rest} apply to one stage; run the stages one by one")
    times = {}
    for name in stages:
        t0 = time.time()
        code = STAGES[name](common + rest)
        times[name] = time.time() - t0
        if code:
            return code
    logging.getLogger("train").info("wall time per stage: %s; output in %s",
                                    ", ".join(f"{k} {v:.0f} s" for k, v in times.items()), out or "models/")
    print(f"trained {', '.join(stages)} into {out or 'models/shapes-unclip'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
