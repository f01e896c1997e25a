"""Which stage of `workflows/text2image.json` each miss of the full-caption rows comes from (by hand; not a test).

    PYTHONPATH=. .venv/bin/python bench/miss_probe.py --threads 1 [--n 96] [--rows unseen,heldout_pairs]
        [--set prior.count=... | --workflow FILE] [--dump FILE.jsonl]
    PYTHONPATH=. .venv/bin/python bench/miss_probe.py --threads 1 --no-oracle --rows short_pairs --n 32

Rows: `unseen` and `heldout_pairs` (full captions, one image a prompt) and `short_pairs`, the short
held-out-pair prompts ("a red star": the evaluation's `short_heldout_pairs` row, 4 images a prompt,
one prompt a run, its seeds), judged on colour and shape only and without the oracle.

The tuning sets only (`eval/_tuning_prompts.py`, with `--prompts tuning_hard` the hard tuning set
`eval/_tuning_hard_prompts.py`, or with `--prompts probe` `bench/fast_probe.py`'s
training-writer captions; the validation set is for reporting). Every image is
the shipped workflow's, run through the engine with the evaluation's prompts, batches and seeds
(`eval text2image --sets tuning` at count 1 judges the same 256 px images). For each prompt the probe
keeps what every stage made and judges it against what the prompt named:

- `readout`: the colour Factor Out Colour hands to Recolour Embedding (the prompt's colour, read by
  the text tower; a prompt it passes on names two, `a/b`, and counts as right when `a` is);
- `prior`, `recolour`: the prior's sample and Recolour's edit of it, read by linear probes
  (colour, shape) fitted on CLIP image embeddings of renders of every scene, held-out pairs included,
  so that they measure the embedding, not the probe (as `bench/heldout_probe.py` step 2);
- `32 px`, `64 px`, `256 px`: the decoder's image and the two upsamplers', by the pixel analyser;
- `oracle 32 / 64 / 256 px`: the same decoder (same prompt, seeds) given the CLIP image embedding of
  a true 64 px render of the prompt's scene in place of Recolour's output, then the same upsamplers.

A miss at 256 px is put on the first stage that explains it: the read-out (colour only), the prior
(its sample reads wrong and Recolour did not mend it), Recolour (the sample read right and the edit
made it wrong, or the edit missed its target), the decoder (the embedding reads right, the 32 px
image is wrong), or the upsamplers (the 32 px image is right). The oracle rows say how often the
decoder misses given an embedding that is exactly right, whatever came before it.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("decoder", "upsample", "upsample_256")
SIZES = {"decoder": "32 px", "upsample": "64 px", "upsample_256": "256 px"}
ATTRS = ("color", "shape", "size", "position", "background")


def fit_probes(clip, n: int = 3000, seed: int = 13):
    """Linear (colour, shape) probes on unit CLIP image embeddings of renders of `n` scenes of every split."""
    import torch
    import torch.nn.functional as F

    from eval.probes import fit_linear_probe
    from nodes.shapes import domain

    scenes = domain.sample_scenes(seed, n, "any")
    ims = torch.from_numpy(np.stack([domain.render(s, 64) for s in scenes])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        x = F.normalize(torch.cat([clip.encode_image(ims[i:i + 500]) for i in range(0, n, 500)]), dim=-1)
    probes = {}
    for attr, values in (("color", domain.COLORS), ("shape", domain.SHAPES)):
        w, b = fit_linear_probe(x, [values.index(getattr(s, attr)) for s in scenes], len(values), steps=300)
        probes[attr] = (w, b, values)
    return probes


def read_probes(probes, emb) -> list[dict[str, str]]:
    import torch.nn.functional as F

    z = F.normalize(emb.float(), dim=-1)
    cols = {a: [values[k] for k in (z @ w * 10 + b).argmax(1).tolist()] for a, (w, b, values) in probes.items()}
    return [{a: cols[a][i] for a in cols} for i in range(len(emb))]


def oracle_workflow(wf: dict, scenes: list[dict[str, str]], seed: int) -> dict:
    """`wf` with the decoder's image embedding taken from CLIP Image Encode of true renders of `scenes`."""
    wf = copy.deepcopy(wf)
    names = []
    for i, s in enumerate(scenes):
        name = f"oracle_scene_{i}"
        wf["nodes"][name] = {"type": "shapes.scene", "version": 1, "inputs": {
            **{a: s[a] for a in ATTRS}, "resolution": 64, "seed": seed + i}}
        names.append((name, "image"))
    link = names[0]
    for i, other in enumerate(names[1:]):
        node = f"oracle_batch_{i}"
        wf["nodes"][node] = {"type": "core.image_batch", "version": 1, "inputs": {
            "a": {"from": link[0], "output": link[1]}, "b": {"from": other[0], "output": other[1]}}}
        link = (node, "images")
    wf["nodes"]["oracle_encode"] = {"type": "unclip.image_encode", "version": 1, "inputs": {
        "clip": {"from": "load_clip", "output": "clip"}, "images": {"from": link[0], "output": link[1]}}}
    wf["nodes"]["decoder"]["inputs"]["image_embedding"] = {"from": "oracle_encode", "output": "embedding"}
    return wf


def images_of(run, node: str) -> np.ndarray:
    x = np.asarray(run.outputs[node]["images"])
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def blame(rec: dict, attr: str) -> str:
    """The stage a 256 px miss of `attr` is put on (see the module docstring)."""
    want = rec["named"][attr]
    if attr == "color" and rec["readout"].split("/")[0] != want:
        return "read-out"
    if attr in ("color", "shape"):
        prior_ok = rec["prior"][attr] == want
        recolour_ok = rec["recolour"][attr] == want
        if not recolour_ok:
            # colour is factored out, so the prior's sample need not have it: Recolour's edit owns it
            return "recolour" if attr == "color" or prior_ok else "prior"
    if rec["32 px"][attr] != want:
        return "decoder"
    return "upsamplers"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=None)
    p.add_argument("--workflow", type=Path, default=ROOT / "workflows" / "text2image.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=96, help="prompts per row")
    p.add_argument("--rows", default="unseen,heldout_pairs", help="unseen, heldout_pairs, short_pairs")
    p.add_argument("--prompts", default="tuning", choices=("tuning", "tuning_hard", "probe"),
                   help="the tuning set, the hard tuning set (eval/_tuning_hard_prompts.py), or bench/fast_probe.py's "
                   "training-writer captions (half background first) of scenes of the row's split; never the "
                   "validation set")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--count", type=int, default=4, help="images per short prompt (the short_pairs row)")
    p.add_argument("--no-oracle", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.PORT=VALUE")
    p.add_argument("--dump", type=Path, default=None, metavar="FILE.jsonl", help="one JSON line per prompt")
    args = p.parse_args()
    if args.n < 1:
        p.error(f"--n {args.n}: give at least 1 prompt per row")
    unknown = set(args.rows.split(",")) - {"unseen", "heldout_pairs", "short_pairs"}
    if unknown:
        p.error(f"--rows: unknown row(s) {', '.join(sorted(unknown)) or '(empty)'}; choose from unseen, "
                "heldout_pairs, short_pairs")
    if "short_pairs" in args.rows.split(",") and not args.no_oracle:
        p.error("--rows short_pairs: run it with --no-oracle (a short prompt leaves the scene open)")

    import torch

    from eval import _judge as judge
    from eval import _tuning_hard_prompts, _tuning_prompts
    from eval.text2image import ROW_SEEDS, _set_seeds
    from nodegraph import Engine, Settings
    from nodes.unclip.api import load_clip

    torch.set_num_threads(args.threads)
    if args.prompts == "probe":
        sys.path.insert(0, str(ROOT / "bench"))
        import fast_probe as prompt_set
    else:
        prompt_set = _tuning_hard_prompts if args.prompts == "tuning_hard" else _tuning_prompts
    base = json.loads(args.workflow.read_text())
    for item in args.overrides:
        target, value = item.split("=", 1)
        node, port = target.split(".", 1)
        try:
            base["nodes"][node]["inputs"][port] = json.loads(value)
        except json.JSONDecodeError:
            base["nodes"][node]["inputs"][port] = value
    models = args.models or ROOT / "models"
    t0 = time.time()
    probes = fit_probes(load_clip(models / "shapes-unclip"))
    print(f"probes fitted: {time.time() - t0:.0f} s", flush=True)
    tmp = tempfile.TemporaryDirectory(prefix="miss-probe-")  # nothing is saved there: no save node runs
    overrides = {"threads": args.threads, "output_dir": Path(tmp.name)}
    if args.models is not None:
        overrides["model_dirs"] = [args.models]
    engine = Engine.from_settings(Settings.from_env(**overrides))
    records: list[dict] = []
    split = {"unseen": "heldout_combos", "heldout_pairs": "heldout_pairs"}
    for row in args.rows.split(","):
        short = row == "short_pairs"
        # as eval.text2image.run_prompts does: short prompts one a run, `count` images each
        prompts = prompt_set.short_prompts(args.n, heldout_pairs=True) if short else \
            prompt_set.full_prompts(split[row], args.n)
        count, step = (args.count, 1) if short else (1, args.batch)
        t0 = time.time()
        for i in range(0, len(prompts), step):
            chunk = prompts[i:i + step]
            wf = copy.deepcopy(base)
            wf["nodes"]["prompt"]["inputs"]["value"] = "\n".join(q.text for q in chunk)
            wf["nodes"]["prior"]["inputs"]["count"] = count
            _set_seeds(wf, ROW_SEEDS["short_heldout_pairs" if short else row] + 1009 * i)
            run = engine.run(wf, targets=[*STAGES, "prior", "recolor", "factor"])
            if not run.ok:
                raise RuntimeError(run.error)
            ims = {s: images_of(run, s) for s in STAGES}
            prior_read = read_probes(probes, run.outputs["prior"]["embedding"])
            recolour_read = read_probes(probes, run.outputs["recolor"]["embedding"])
            colors = run.outputs["factor"]["color"].split(",") if run.outputs["factor"]["color"] else []
            if len(colors) == 1:
                colors = colors * len(chunk)
            for_prior = list(getattr(run.outputs["factor"]["conditioning"], "texts", ()) or [""] * len(chunk))
            oracle = None
            if not args.no_oracle:
                orun = engine.run(oracle_workflow(wf, [q.scene for q in chunk], 7000 + i), targets=list(STAGES))
                if not orun.ok:
                    raise RuntimeError(orun.error)
                oracle = {s: images_of(orun, s) for s in STAGES}
            for k in range(len(chunk) * count):
                q = chunk[k // count]
                rec = {"row": row, "index": i + k // count, "text": q.text, "named": q.named,
                       "readout": colors[k // count] if k // count < len(colors) else "",
                       "for_prior": for_prior[k // count], "prior": prior_read[k], "recolour": recolour_read[k]}
                for s in STAGES:
                    v = judge.judge(ims[s][k], q.named)
                    rec[SIZES[s]] = v.analysis.attributes()
                    if s == "upsample_256":
                        rec["clean"] = v.clean
                    if oracle is not None:
                        rec[f"oracle {SIZES[s]}"] = judge.judge(oracle[s][k], q.named).analysis.attributes()
                records.append(rec)
        print(f"{row}: {len(prompts)} prompts, {time.time() - t0:.0f} s", flush=True)

    for row in args.rows.split(","):
        recs = [r for r in records if r["row"] == row]
        print(f"\n{row} ({len(recs)} images), share right per stage:")
        cols = ["readout", "prior", "recolour", "32 px", "64 px", "256 px"]
        if not args.no_oracle:
            cols += ["oracle 32 px", "oracle 64 px", "oracle 256 px"]
        print(f"{'attribute':<12}" + "".join(f"{c:>15}" for c in cols))
        for attr in (a for a in ATTRS if a in recs[0]["named"]):
            cells = []
            for c in cols:
                if c == "readout":
                    vals = [r["readout"].split("/")[0] == r["named"][attr] for r in recs] if attr == "color" else []
                elif c in ("prior", "recolour"):
                    vals = [r[c][attr] == r["named"][attr] for r in recs] if attr in ("color", "shape") else []
                else:
                    vals = [r[c][attr] == r["named"][attr] for r in recs]
                cells.append(f"{np.mean(vals):>15.2f}" if vals else f"{'–':>15}")
            print(f"{attr:<12}" + "".join(cells))
        both = np.mean([all(r["256 px"][a] == r["named"][a] for a in r["named"]) for r in recs])
        print(f"all named right at 256 px: {both:.2f}; clean: {np.mean([r['clean'] for r in recs]):.2f}")
        for attr in ("color", "shape"):
            misses = [r for r in recs if r["256 px"][attr] != r["named"][attr]]
            print(f"{attr} misses at 256 px: {len(misses)}; by stage: "
                  + ", ".join(f"{k} {v}" for k, v in Counter(blame(r, attr) for r in misses).most_common()))
            for r in misses:
                print(f"   [{blame(r, attr)}] {r['text']!r} (prior: {r['for_prior']!r}): named {r['named'][attr]}; "
                      f"read-out {r['readout'] or '–'}; "
                      f"prior {r['prior'][attr]}, recolour {r['recolour'][attr]}; 32/64/256 px "
                      f"{r['32 px'][attr]}/{r['64 px'][attr]}/{r['256 px'][attr]}"
                      + (f"; oracle {r['oracle 32 px'][attr]}/{r['oracle 256 px'][attr]}" if "oracle 32 px" in r else ""))
    tmp.cleanup()
    if args.dump is not None:
        with args.dump.open("w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
