"""CPU time of one DreamBooth training with the defaults (`workflows/dreambooth.json` up to its training
node, through the engine, one thread), and optionally where it goes.

    .venv/bin/python bench/dreambooth_time.py [--name time] [--set-node steps=100] [--profile runs/db.prof]
    .venv/bin/python bench/dreambooth_time.py --compare A.safetensors B.safetensors

Prints the node's own CPU seconds (time.process_time over its run, as the LoRA's metadata records them:
`cpu_seconds`, of which `cpu_seconds_class` generating the class images), the process's CPU seconds
around the engine run (model loading included) and wall seconds, and the 1-minute load average
before and after (other jobs on the cores inflate CPU time too: compare runs made back to back).
`--profile FILE` runs under cProfile and prints the top functions by cumulative time (cProfile adds
overhead of its own; time with it off). `--compare` says whether two LoRA files hold bit-identical
tensors (and the largest absolute difference of each that is not).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def compare(a: Path, b: Path) -> bool:
    """True when the two safetensors files hold the same tensor names, dtypes, shapes and bytes."""
    import torch
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    same = True
    if ta.keys() != tb.keys():
        print(f"different tensors: only in {a.name}: {sorted(ta.keys() - tb.keys())[:5]}, "
              f"only in {b.name}: {sorted(tb.keys() - ta.keys())[:5]}")
        same = False
    diffs = []
    for k in sorted(ta.keys() & tb.keys()):
        x, y = ta[k], tb[k]
        if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y):
            same = False
            d = (x.float() - y.float()).abs().max().item() if x.shape == y.shape else float("nan")
            diffs.append((d, k))
    for d, k in sorted(diffs, reverse=True)[:10]:
        print(f"  {k}: max |diff| {d:.3g}")
    print(f"{len(ta.keys() & tb.keys())} tensors compared: " + ("bit-identical" if same else f"{len(diffs)} differ"))
    return same


class Breakdown:
    """CPU seconds (time.process_time) of the training's parts, by wrapping the functions the node calls:
    forward passes by function, and every `every`-th step the backward of the decoder's and the prior's
    losses apart (torch.autograd.grad on the step's graph, retained; extra work, reported apart and
    excluded from nothing else: the node's total includes it)."""

    def __init__(self, every: int = 10):
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.every = every
        self.last: dict[str, object] = {}

    def wrap(self, owner, name: str, label: str, keep: bool = False) -> None:
        fn = getattr(owner, name)

        def timed(*a, **kw):
            t = time.process_time()
            out = fn(*a, **kw)
            self.cpu[label] = self.cpu.get(label, 0.0) + time.process_time() - t
            self.calls[label] = self.calls.get(label, 0) + 1
            if keep:
                self.last[label] = out
            return out

        setattr(owner, name, timed)

    def install(self) -> None:
        import torch

        import nodes.unclip.api as api
        from nodes.personalise import subject, training
        from nodes.unclip.models.clip import OpenClipEncoder

        api.decoder_loss, api.prior_loss = api.decoder_loss, api.prior_loss  # resolve the lazy names first
        api.sample_prior, api.sample_decoder = api.sample_prior, api.sample_decoder
        for owner, name, label, keep in ((api, "decoder_loss", "decoder forward (text_proj + UNet + loss)", True),
                                         (api, "prior_loss", "prior forward (frozen prior + loss)", True),
                                         (api, "sample_prior", "class: prior sampling", False),
                                         (api, "sample_decoder", "class: decoder sampling", False),
                                         (subject, "rows", "subject rows (cut-out, placement, captions)", False),
                                         (OpenClipEncoder, "encode_text", "text encoding (forward)", False),
                                         (OpenClipEncoder, "tokenize", "  of which tokenising", False),
                                         (OpenClipEncoder, "encode_image", "CLIP image encoding", False),
                                         (torch.Tensor, "backward", "backward (all losses)", False),
                                         (torch.optim.AdamW, "step", "AdamW step", False),
                                         (torch.nn.utils, "clip_grad_norm_", "gradient clipping", False),
                                         (training, "with_lora", "LoRA set-up (deep copy, peft)", False),
                                         (training, "frozen", "frozen copies", False)):
            self.wrap(owner, name, label, keep)
        fit = training.fit
        me = self

        def fit_timed(groups, loss_fn, steps, on_step, **kw):
            params = [p for g in groups for p in g["params"]]

            def loss_probe(step):
                t = time.process_time()
                out = loss_fn(step)
                me.cpu["loss function (forwards, sampling rows)"] = \
                    me.cpu.get("loss function (forwards, sampling rows)", 0.0) + time.process_time() - t
                if step % me.every == 0:
                    for label, key in (("decoder", "decoder forward (text_proj + UNet + loss)"),
                                       ("prior", "prior forward (frozen prior + loss)")):
                        part = me.last.get(key)
                        if part is None or not part.requires_grad:
                            continue
                        t = time.process_time()
                        torch.autograd.grad(part.sum(), params, retain_graph=True, allow_unused=True)
                        me.cpu[f"sampled backward: {label} alone"] = \
                            me.cpu.get(f"sampled backward: {label} alone", 0.0) + time.process_time() - t
                    me.calls["sampled steps"] = me.calls.get("sampled steps", 0) + 1
                return out

            def on_step_timed(done, loss):
                t = time.process_time()
                on_step(done, loss)
                me.cpu["progress / cancel"] = me.cpu.get("progress / cancel", 0.0) + time.process_time() - t

            return fit(groups, loss_probe, steps, on_step_timed, **kw)

        training.fit = fit_timed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/dreambooth_time.py")
    p.add_argument("--name", default="time", help="writes models/loras/dreambooth-NAME.safetensors")
    p.add_argument("--set-node", action="append", default=[], metavar="PORT=VALUE",
                   help="another value for a training input (JSON value), e.g. steps=100")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile", type=Path, help="run under cProfile and write the stats to this file")
    p.add_argument("--top", type=int, default=40, help="with --profile: functions to print")
    p.add_argument("--breakdown", type=int, nargs="?", const=10, metavar="EVERY",
                   help="CPU seconds by part; every EVERY-th step also the decoder's and the prior's backward apart")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = p.parse_args(argv)
    if args.compare:
        return 0 if compare(*args.compare) else 1

    import torch

    import nodegraph

    torch.set_num_threads(args.threads)
    overrides = {"train.name": args.name}
    for item in args.set_node:
        port, _, value = item.partition("=")
        overrides[f"train.{port}"] = json.loads(value)
    wf, issues = nodegraph.apply_overrides(json.loads((ROOT / "workflows" / "dreambooth.json").read_text()), overrides)
    if wf is None or issues:
        raise SystemExit(f"bad overrides: {issues}")
    engine = nodegraph.Engine.from_settings(nodegraph.Settings.from_env(threads=args.threads,
                                                                        output_dir=ROOT / "runs"))
    breakdown = None
    if args.breakdown:
        breakdown = Breakdown(args.breakdown)
        breakdown.install()
    load0 = os.getloadavg()[0]
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
    t0, cpu0 = time.time(), time.process_time()
    if prof:
        prof.enable()
    result = engine.run(wf, targets=["train"])
    if prof:
        prof.disable()
    cpu, wall = time.process_time() - cpu0, time.time() - t0
    if not result.ok:
        raise SystemExit(f"training failed: {result.error}")
    from safetensors import safe_open

    path = Path(engine.settings.model_dirs[0]) / "loras" / f"{result.outputs['train']['lora']}.safetensors"
    with safe_open(str(path), framework="pt") as f:
        info = json.loads((f.metadata() or {}).get("nodegraph_training", "{}"))
    report = {"lora": str(path), "class_images_cached": info.get("class_images_cached"),
              "node_cpu_seconds": info.get("cpu_seconds"),
              "node_cpu_seconds_class": info.get("cpu_seconds_class"), "node_wall_seconds": info.get("seconds"),
              "process_cpu_seconds": round(cpu, 1), "wall_seconds": round(wall, 1), "threads": args.threads,
              "load_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
              "final_loss": info.get("final_loss")}
    if breakdown:
        report["breakdown_cpu_seconds"] = {k: round(v, 1) for k, v in breakdown.cpu.items()}
        report["breakdown_calls"] = breakdown.calls
    print(json.dumps(report, indent=1))
    if prof:
        import pstats

        prof.dump_stats(str(args.profile))
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
