"""Latency and memory of the unCLIP cascade on this CPU, and the engine's overhead over the models alone.

    .venv/bin/python bench/unclip_bench.py                 # shipped models, 2 threads, batch 1
    .venv/bin/python bench/unclip_bench.py --batch 4 --repeats 3 --models DIR
    .venv/bin/python bench/unclip_bench.py --upsampler-256 ''   # without the 64 → 256 stage

Direct: the model library's calls (text encode → prior → decoder → upsample 64 → upsample 256, unless
--upsampler-256 is '') timed per stage, with the steps and guidance of `workflows/text2image.json`. Engine: the same graph
run through `nodegraph.Engine`, models loaded once (the loaders are cache hits), a new seed on every
repeat so everything after the loaders executes; per-node times come from the node-completed events.
Medians over the repeats after one warm-up. Overhead = engine end to end − direct end to end.
The direct runs also give each stage's process CPU time (all threads): on shared cores the wall
time grows with the other load, the CPU time hardly (with one thread it is the wall time of an idle core).

Memory: the peak resident set of this process after the direct runs (Python, torch, every model
loaded once, the activations of the largest stage), and of a fresh `nodegraph run
workflows/text2image.json --set prior.count=BATCH` (the command line as a user runs it, peak RSS of
the child process).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def link(n: str, out: str) -> dict[str, str]:
    return {"from": n, "output": out}


def graph(model: str, model_256: str, seed: int, batch: int, steps: tuple[int, ...], prompt: str) -> dict:
    def node(t, **inputs):
        return {"type": t, "version": 1, "inputs": inputs}

    nodes = {
        "clip": node("unclip.load_clip", model=model),
        "pm": node("unclip.load_prior", model=model),
        "dm": node("unclip.load_decoder", model=model),
        "um": node("unclip.load_upsampler", model=model),
        "enc": node("unclip.text_encode", clip=link("clip", "clip"), text=prompt),
        "prior": node("unclip.prior", prior=link("pm", "prior"), conditioning=link("enc", "conditioning"),
                      guidance=4.0, steps=steps[0], seed=seed, count=batch),
        "decoder": node("unclip.decoder", decoder=link("dm", "decoder"), image_embedding=link("prior", "embedding"),
                        conditioning=link("enc", "conditioning"), guidance=1.5, steps=steps[1], seed=seed),
        "up": node("unclip.upsample", upsampler=link("um", "upsampler"), images=link("decoder", "images"),
                   steps=steps[2], seed=seed),
    }
    if model_256:
        nodes["um256"] = node("unclip.load_upsampler", model=model_256)
        nodes["up256"] = node("unclip.upsample", upsampler=link("um256", "upsampler"), images=link("up", "images"),
                              steps=steps[3], seed=seed, color_sigma=8.0)
    return {"format": "nodegraph/1", "nodes": nodes}


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kB on Linux


def cli_peak_mb(models: Path, batch: int, threads: int) -> float:
    """Peak RSS of a fresh `nodegraph run workflows/text2image.json` at this batch (the only child process)."""
    env = {**os.environ, "NODEGRAPH_MODELS_DIR": str(models), "NODEGRAPH_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([str(Path(sys.executable).parent / "nodegraph"), "run", str(ROOT / "workflows" / "text2image.json"),
                        "--set", f"prior.count={batch}", "--output-dir", out, "--quiet"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    return peak_rss_mb(resource.RUSAGE_CHILDREN)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--model", default="shapes-unclip")
    p.add_argument("--upsampler-256", default="shapes-unclip-sr256", help="the 64 → 256 stage's model "
                   "(text2image.json's; '' = none)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", default="25,25,10,2", help="prior, decoder, upsampler 64, upsampler 256 steps "
                   "(text2image.json's)")
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
    up256 = load_upsampler(args.models / args.upsampler_256) if args.upsampler_256 else None
    load_s = time.perf_counter() - t0

    stages = ("text_encode", "prior", "decoder", "upsample", "upsample_256", "total")
    direct: dict[str, list[float]] = {k: [] for k in stages}
    cpu: dict[str, list[float]] = {k: [] for k in stages}  # process CPU seconds: what other load does not inflate
    for r in range(args.repeats + 1):
        g = [torch.Generator().manual_seed(r) for _ in range(4)]
        marks: list[tuple[float, float]] = []
        mark = lambda m=marks: m.append((time.perf_counter(), time.process_time()))  # noqa: E731

        with torch.inference_mode():
            mark()
            cond, uncond = clip.encode_text([prompt]), clip.encode_text([""])
            mark()
            emb = sample_prior(prior, cond, uncond, guidance=4.0, steps=steps[0], generator=g[0],
                               num_per_prompt=args.batch)
            mark()
            img = sample_decoder(decoder, emb, cond, uncond, guidance=1.5, steps=steps[1], generator=g[1])
            mark()
            img = run_upsample(up, img, steps=steps[2], generator=g[2], fix_colors=True)
            mark()
            if up256 is not None:
                run_upsample(up256, img, steps=steps[3], generator=g[3], fix_colors=True, color_sigma=8.0)
            mark()
        if r:
            spans = [*zip(marks, marks[1:], strict=False), (marks[0], marks[-1])]
            for k, (a, b) in zip(stages, spans, strict=True):
                direct[k].append(b[0] - a[0])
                cpu[k].append(b[1] - a[1])
    direct_peak = peak_rss_mb()

    settings = Settings(model_dirs=[args.models], output_dir=Path("/tmp/nodegraph-bench-out"),
                        temp_dir=Path("/tmp/nodegraph-bench-out/.temp"), entry_point_packs=False,
                        threads=args.threads)
    engine = Engine.from_settings(settings)
    per_node = {"enc": "text_encode", "prior": "prior", "decoder": "decoder", "up": "upsample", "up256": "upsample_256"}
    target = "up256" if up256 is not None else "up"
    eng: dict[str, list[float]] = {k: [] for k in (*direct, "engine_only")}
    for r in range(args.repeats + 1):
        durations: dict[str, float] = {}

        def sink(event, durations=durations):
            if event.event == "node_completed":
                durations[event.node] = event.duration

        prompt_r = prompt if r % 2 else prompt + " "  # a new text too, so text encode runs each time
        t0 = time.perf_counter()
        run = engine.run(graph(args.model, args.upsampler_256, 1000 + r, args.batch, steps, prompt_r), targets=[target],
                         sink=sink)
        total = time.perf_counter() - t0
        assert run.ok, run.error
        if r:
            for node_id, key in per_node.items():
                eng[key].append(durations.get(node_id, 0.0))
            eng["total"].append(total)
            eng["engine_only"].append(total - sum(durations.values()))

    def med(xs):
        return statistics.median(xs) if xs else float("nan")

    print(f"models {path}, batch {args.batch}, steps prior/decoder/upsampler 64/upsampler 256 {steps}, {args.threads} threads, "
          f"{args.repeats} repeats; model loading {load_s:.2f} s (once)")
    print(f"{'stage':<14}{'direct (s)':>12}{'engine (s)':>12}{'direct CPU (s)':>16}")
    for k in direct:
        print(f"{k:<14}{med(direct[k]):>12.3f}{med(eng[k]):>12.3f}{med(cpu[k]):>16.3f}")
    over = med(eng["total"]) - med(direct["total"])
    print(f"engine overhead end to end: {over * 1000:+.1f} ms ({100 * over / med(direct['total']):+.1f} %); "
          f"time outside nodes (validate, plan, keys, events): {med(eng['engine_only']) * 1000:.1f} ms")
    print(f"per image: {med(direct['total']) / args.batch:.3f} s direct")
    print(f"peak memory (RSS): this process after the direct runs {direct_peak:.0f} MB; "
          f"`nodegraph run workflows/text2image.json` at batch {args.batch}: "
          f"{cli_peak_mb(args.models, args.batch, args.threads):.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
