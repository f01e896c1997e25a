"""Latency of the unCLIP stages on this CPU, and the engine's overhead over calling the models directly.

    .venv/bin/python bench/unclip_bench.py                 # shipped models, 2 threads, batch 1
    .venv/bin/python bench/unclip_bench.py --batch 4 --repeats 3 --models DIR

Direct: the model library's calls (text encode → prior → decoder → upsample) timed per stage.
Engine: the same graph as `workflows/text2image.json` (same steps, guidance, batch) run through
`nodegraph.Engine`, models loaded once (the loaders are cache hits), a new seed on every repeat so
everything after the loaders executes; per-node times come from the node-completed events. Medians
over the repeats after one warm-up. Overhead = engine end to end − direct end to end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def link(n: str, out: str) -> dict[str, str]:
    return {"from": n, "output": out}


def graph(model: str, seed: int, batch: int, steps: tuple[int, int, int], prompt: str) -> dict:
    def node(t, **inputs):
        return {"type": t, "version": 1, "inputs": inputs}

    return {"format": "nodegraph/1", "nodes": {
        "clip": node("unclip.load_clip", model=model),
        "pm": node("unclip.load_prior", model=model),
        "dm": node("unclip.load_decoder", model=model),
        "um": node("unclip.load_upsampler", model=model),
        "enc": node("unclip.text_encode", clip=link("clip", "clip"), text=prompt),
        "prior": node("unclip.prior", prior=link("pm", "prior"), conditioning=link("enc", "conditioning"),
                      guidance=4.0, steps=steps[0], seed=seed, count=batch),
        "decoder": node("unclip.decoder", decoder=link("dm", "decoder"), image_embedding=link("prior", "embedding"),
                        conditioning=link("enc", "conditioning"), guidance=4.0, steps=steps[1], seed=seed),
        "up": node("unclip.upsample", upsampler=link("um", "upsampler"), images=link("decoder", "images"),
                   steps=steps[2], seed=seed),
    }}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--model", default="shapes-unclip")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", default="25,25,10", help="prior, decoder, upsampler steps")
    args = p.parse_args()
    import torch

    from nodegraph import Engine, Settings
    from nodes.unclip.models import (
        load_clip,
        load_decoder,
        load_prior,
        load_upsampler,
        sample_decoder,
        sample_prior,
    )
    from nodes.unclip.models import upsample as run_upsample

    torch.set_num_threads(args.threads)
    steps = tuple(int(s) for s in args.steps.split(","))
    prompt = "a small red circle in the top left corner on a white background"
    path = args.models / args.model
    t0 = time.perf_counter()
    clip, prior, decoder, up = load_clip(path), load_prior(path), load_decoder(path), load_upsampler(path)
    load_s = time.perf_counter() - t0

    direct: dict[str, list[float]] = {k: [] for k in ("text_encode", "prior", "decoder", "upsample", "total")}
    for r in range(args.repeats + 1):
        g = [torch.Generator().manual_seed(r) for _ in range(3)]
        with torch.inference_mode():
            t0 = time.perf_counter()
            cond, uncond = clip.encode_text([prompt]), clip.encode_text([""])
            t1 = time.perf_counter()
            emb = sample_prior(prior, cond, uncond, guidance=4.0, steps=steps[0], generator=g[0],
                               num_per_prompt=args.batch)
            t2 = time.perf_counter()
            img = sample_decoder(decoder, emb, cond, uncond, guidance=4.0, steps=steps[1], generator=g[1])
            t3 = time.perf_counter()
            run_upsample(up, img, steps=steps[2], generator=g[2], fix_colors=True)
            t4 = time.perf_counter()
        if r:
            for k, v in zip(direct, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
                direct[k].append(v)

    settings = Settings(model_dirs=[args.models], output_dir=Path("/tmp/nodegraph-bench-out"),
                        temp_dir=Path("/tmp/nodegraph-bench-out/.temp"), entry_point_packs=False,
                        threads=args.threads)
    engine = Engine.from_settings(settings)
    per_node = {"enc": "text_encode", "prior": "prior", "decoder": "decoder", "up": "upsample"}
    eng: dict[str, list[float]] = {k: [] for k in (*direct, "engine_only")}
    for r in range(args.repeats + 1):
        durations: dict[str, float] = {}

        def sink(event, durations=durations):
            if event.event == "node_completed":
                durations[event.node] = event.duration

        prompt_r = prompt if r % 2 else prompt + " "  # a new text too, so text encode runs each time
        t0 = time.perf_counter()
        run = engine.run(graph(args.model, 1000 + r, args.batch, steps, prompt_r), targets=["up"], sink=sink)
        total = time.perf_counter() - t0
        assert run.ok, run.error
        if r:
            for node_id, key in per_node.items():
                eng[key].append(durations.get(node_id, 0.0))
            eng["total"].append(total)
            eng["engine_only"].append(total - sum(durations.values()))

    def med(xs):
        return statistics.median(xs) if xs else float("nan")

    print(f"models {path}, batch {args.batch}, steps prior/decoder/upsampler {steps}, {args.threads} threads, "
          f"{args.repeats} repeats; model loading {load_s:.2f} s (once)")
    print(f"{'stage':<14}{'direct (s)':>12}{'engine (s)':>12}")
    for k in direct:
        print(f"{k:<14}{med(direct[k]):>12.3f}{med(eng[k]):>12.3f}")
    over = med(eng["total"]) - med(direct["total"])
    print(f"engine overhead end to end: {over * 1000:+.1f} ms ({100 * over / med(direct['total']):+.1f} %); "
          f"time outside nodes (validate, plan, keys, events): {med(eng['engine_only']) * 1000:.1f} ms")
    print(f"per image: {med(direct['total']) / args.batch:.3f} s direct")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
