"""Where short prompts' scenes stop being clean: the judge at each stage of `text2image.json`, per variant.

    .venv/bin/python bench/short_clean.py --short 12 --variant base --variant dec_g3=decoder.guidance=3

Runs the tuning set's short prompts (`eval._tuning_prompts.short_prompts`) through the workflow with
the seeds `eval text2image` gives them (its `short` row: 4 images a prompt), and judges each image at
the decoder (32 px), the first upsampler (64 px) and the 256 px stage (`eval._judge`). Every variant
runs through one engine, so stages a variant leaves unchanged are cache hits. A variant is
`NAME=NODE.PORT=VALUE[,NODE.PORT=VALUE...]` (a value that is JSON is parsed: numbers, true, a link
`{"from": "prior", "output": "embedding"}`, or a whole node for a key without a port; separate items
with `;` when a value holds commas); `bicubic` swaps the 64 px upsampler for a bicubic resize; `plain` is the paper's path (`factor.method=off`,
the decoder on the prior's embedding); `oracle` gives the decoder, in place of Recolour's output, the CLIP
image embeddings of true 64 px renders of training-split scenes that match what each prompt named (the
open attributes drawn at random, one scene per image), as `bench/miss_probe.py`'s oracle rows do;
`oracle32` also gives the 64 px upsampler those scenes' true 32 px renders in place of the decoder's images. Tuning set only: the validation generator is never read here.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval import _judge as judge  # noqa: E402
from eval import _tuning_prompts as tuning  # noqa: E402
from eval.text2image import ROW_SEEDS, TEXT2IMAGE, _set_seeds  # noqa: E402

STAGES = (("decoder", "images"), ("upsample", "images"), ("upsample_256", "images"))
BICUBIC = {"type": "core.image_resize", "version": 1, "inputs": {
    "images": {"from": "decoder", "output": "images"}, "width": 0, "height": 0, "scale": 2.0, "method": "bicubic"}}
PLAIN = {"factor.method": "off", "decoder.image_embedding": {"from": "prior", "output": "embedding"}}


def parse_variant(spec: str) -> tuple[str, dict]:
    if spec == "plain":
        return "plain", dict(PLAIN)
    name, _, rest = spec.partition("=")
    sets: dict = {}
    for item in filter(None, rest.split(";") if ";" in rest else rest.split(",")):
        key, _, value = item.partition("=")
        if key == "plain":
            sets.update(PLAIN)
            continue
        if key in ("oracle", "oracle32"):
            sets["oracle"] = key
            continue
        if key == "bicubic":
            sets["upsample"] = BICUBIC
            continue
        try:
            sets[key] = json.loads(value)
        except json.JSONDecodeError:
            sets[key] = value
    return name, sets


def batch_chain(wf: dict, names: list[str], prefix: str) -> tuple[str, str]:
    """Join the `image` outputs of the nodes `names` into one batch with a chain of Image Batch nodes
    (`{prefix}_1` …); the (node, output) that holds the batch."""
    link = (names[0], "image")
    for k, name in enumerate(names[1:], 1):
        wf["nodes"][f"{prefix}_{k}"] = {"type": "core.image_batch", "version": 1, "inputs": {
            "a": {"from": link[0], "output": link[1]}, "b": {"from": name, "output": "image"}}}
        link = (f"{prefix}_{k}", "images")
    return link


def oracle_nodes(wf: dict, named: dict[str, str], count: int, seed: int, feed32: bool = False) -> None:
    """Point `wf`'s decoder at CLIP Image Encode of `count` renders of training scenes matching `named`
    (and with `feed32` the 64 px upsampler at the same scenes' true 32 px renders)."""
    from nodes.shapes import domain

    rng = np.random.default_rng(seed)
    for k in range(count):
        for _ in range(100_000):
            scene = domain.sample_scene(rng, "train")
            if all(getattr(scene, a) == v for a, v in named.items()):
                break
        else:  # e.g. a held-out (colour, shape) pair: no training scene has it
            raise SystemExit(f"no training scene has {named}; the oracle needs attributes the training split draws")
        wf["nodes"][f"oracle_scene_{k}"] = {"type": "shapes.scene", "version": 1, "inputs": {
            **scene.attributes(), "resolution": 64, "seed": seed + k}}
    link = batch_chain(wf, [f"oracle_scene_{k}" for k in range(count)], "oracle_batch")
    wf["nodes"]["oracle_encode"] = {"type": "unclip.image_encode", "version": 1, "inputs": {
        "clip": {"from": "load_clip", "output": "clip"}, "images": {"from": link[0], "output": link[1]}}}
    wf["nodes"]["decoder"]["inputs"]["image_embedding"] = {"from": "oracle_encode", "output": "embedding"}
    if "image_embedding" in wf["nodes"]["upsample"]["inputs"]:  # an upsampler that sees the decoder's embedding
        wf["nodes"]["upsample"]["inputs"]["image_embedding"] = {"from": "oracle_encode", "output": "embedding"}
    if feed32:
        for k in range(count):
            scene64 = wf["nodes"][f"oracle_scene_{k}"]
            wf["nodes"][f"oracle_scene32_{k}"] = {**scene64, "inputs": {**scene64["inputs"], "resolution": 32}}
        link32 = batch_chain(wf, [f"oracle_scene32_{k}" for k in range(count)], "oracle_batch32")
        wf["nodes"]["upsample"]["inputs"]["images"] = {"from": link32[0], "output": link32[1]}


def to_uint8(images) -> np.ndarray:
    return np.clip(np.rint(np.asarray(images) * 255), 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--short", type=int, default=12, help="tuning short prompts (4 images each)")
    p.add_argument("--start", type=int, default=0, help="skip the first prompts (their seeds unchanged)")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", type=Path, default=None, help="a models folder in place of models/")
    p.add_argument("--variant", action="append", default=[], help="NAME=NODE.PORT=VALUE,... (base: none)")
    p.add_argument("--stages", default="decoder,upsample,upsample_256")
    p.add_argument("--save", type=Path, default=None, help="save each variant's images here")
    p.add_argument("--dump", type=Path, default=None, help="per-image verdicts as JSON lines")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from nodegraph import Engine, Settings

    variants = [parse_variant(v) for v in (args.variant or ["base="])]
    stages = [s for s in STAGES if s[0] in args.stages.split(",")]
    prompts = tuning.short_prompts(args.short)
    base = json.loads(TEXT2IMAGE.read_text())
    dump = args.dump.open("a") if args.dump else None
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"threads": args.threads, "output_dir": Path(tmp)}
        if args.models is not None:
            overrides["model_dirs"] = [args.models]
        engine = Engine.from_settings(Settings.from_env(**overrides))
        for name, sets in variants:
            t0 = time.time()
            verdicts: dict[str, list] = {s: [] for s, _ in stages}
            for i, prompt in enumerate(prompts):
                if i < args.start:
                    continue
                wf = copy.deepcopy(base)
                wf["nodes"]["prompt"]["inputs"]["value"] = prompt.text
                wf["nodes"]["prior"]["inputs"]["count"] = args.count
                _set_seeds(wf, ROW_SEEDS["short"] + 1009 * i)
                for key, value in sets.items():
                    if key == "oracle":
                        oracle_nodes(wf, prompt.named, args.count, 7000 + 1009 * i, value == "oracle32")
                        continue
                    node, _, port = key.rpartition(".")
                    if not node:  # a whole node: {"type": ..., "version": ..., "inputs": ...}
                        wf["nodes"][key] = value
                    else:
                        wf["nodes"][node]["inputs"][port] = value
                run = engine.run(wf, targets=[s for s, _ in stages])
                if not run.ok:
                    raise RuntimeError(f"{name}: {run.error}")
                for stage, out in stages:
                    for k, img in enumerate(to_uint8(run.outputs[stage][out])):
                        v = judge.judge(img, prompt.named)
                        verdicts[stage].append(v)
                        if args.save is not None:
                            from PIL import Image

                            folder = args.save / name / stage
                            folder.mkdir(parents=True, exist_ok=True)
                            Image.fromarray(img).save(folder / f"{i * args.count + k:04d}.png")
                        if dump is not None:
                            a = v.analysis
                            dump.write(json.dumps({
                                "variant": name, "stage": stage, "image": i * args.count + k, "prompt": prompt.text,
                                "clean": v.clean, "all_named": v.all_named_right, "found": a.found,
                                "iou": round(a.shape_iou, 3), "shape": a.shape, "bg_dist": round(v.background_distance, 1),
                                "stray": round(v.stray, 4)}) + "\n")
            cells = []
            for stage, _ in stages:
                vs = verdicts[stage]
                s = judge.summarise(vs, group=args.count)
                ious = [v.analysis.shape_iou for v in vs if v.analysis.found]
                cells.append(f"{stage} clean {s['clean']:.3f} named {s['all_named']:.3f} "
                             f"iou {np.mean(ious):.3f} (min {np.min(ious):.2f})")
            print(f"{name:>14} [{time.time() - t0:5.0f} s] " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
