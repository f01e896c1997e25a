"""Measurements of the shipped InstructPix2Pix model (`python -m eval instruct`).

    nice -n 10 .venv/bin/python -m eval instruct [--set validation|tuning] [--n 50] [--guidance 2.0]
                                                 [--image-guidance 1.5] [--steps 20] [--no-upsample]
                                                 [--model models/shapes-ip2p] [--json out.json]
                                                 [--slot prior|input|target|null|diff|instr|weak] [--theta T]
                                                 [--edit-prior DIR]
    nice -n 10 .venv/bin/python -m eval instruct --clip-space [--set tuning] [--n 200] [--theta 1.0]

Edits come from `nodes.shapes.edits`, kinds in turn (colour, shape, size, position, background):
source scenes from the held-out attribute combinations (no model rendered them in training),
instructions from the held-out phrasings (verbs and word orders training never used), edited
scenes outside the held-out colour–shape pairs. Two disjoint seeded sets: `tuning` (seed 101, the
one to pick settings on) and `validation` (seed 202, the reported one).

Each source is rendered at 64 px (as Load Image gives it), edited as `workflows/instruct_edit.json`
does (Instruct: Edit Embedding → Instruct Edit at 32 px, then the upsampler to 64 px unless
`--no-upsample`; the defaults are the workflow's settings) and judged by
the pixel analyser against the edited scene's attributes: *changed* = the asked attribute shows
the new value; *kept* = an attribute the instruction did not name shows its old value.
Targets: changed ≥ 0.85; each kept attribute ≥ 0.90.

`--clip-space` judges the edit prior alone, without drawing: the cosine of its prediction to the true
edited render's CLIP embedding, and *changed* / *kept* as a linear probe per attribute reads them
(logistic regression on the CLIP embeddings of 8,000 renders of other scenes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from eval._judge import judge
from eval.probes import fit_linear_probe
from nodes.shapes import domain, edits

ROOT = Path(__file__).resolve().parents[1]
SEEDS = {"tuning": 101, "validation": 202}
TARGETS = {"changed": 0.85, "kept": 0.90}


def edit_set(name: str, n: int) -> list[edits.Edit]:
    return edits.sample_edits(SEEDS[name], n, scenes="heldout_combos", phrasing="heldout",
                              targets=("train", "heldout_combos"))


def slot_texts(e: edits.Edit) -> tuple[str, str]:
    """Captions of the edit's source and target that name only the changed attribute (same paraphrase)."""
    return (domain.caption(e.source, np.random.default_rng(0), include=(e.kind,)),
            domain.caption(e.target, np.random.default_rng(0), include=(e.kind,)))


def slot_embeddings(slot: str, theta: float, model, clip, chunk: list[edits.Edit], src):
    """The image-embedding slot (B, D) for a diagnostic `slot` mode, or None for the model's own (`input`).

    `null`: the learned null embedding; `diff`: the input's CLIP embedding moved by θ along the text diff
    (DALL·E 2) from a caption of the source to one of the target that name the changed attribute only
    (the captions come from the true scenes: a diagnostic, not something the node can do alone);
    `instr`: moved by θ along the diff from the empty prompt to the instruction (needs nothing else);
    `weak`: slerped by θ towards the null embedding; `prior`: slerped by θ towards the edit prior's
    prediction from the input's embedding and the instruction (what Instruct: Edit Embedding does);
    `target`: slerped by θ towards the true edited scene's CLIP embedding (an oracle: the ceiling of `prior`)."""
    if slot == "input":
        return None
    if slot == "target":
        import torch

        from nodes.unclip.embeddings import slerp

        size = src.shape[-1]
        tgt = torch.from_numpy(np.stack([domain.render(e.target, size) for e in chunk])).permute(0, 3, 1, 2) / 255
        return slerp(model.image_embedding(src), model.image_embedding(tgt), theta)
    if slot == "prior":
        from nodes.instruct.edit_prior import blend

        src_emb = model.image_embedding(src)
        edited = model.edit_prior.edit(src_emb, clip.encode_text([e.instruction for e in chunk]))
        return blend(src_emb, edited, theta)
    if slot == "null":
        return model.null_embedding(len(chunk)).clone()
    from nodes.unclip.embeddings import slerp, text_diff

    if slot == "weak":
        return slerp(model.image_embedding(src), model.null_embedding(len(chunk)), theta)

    if slot == "instr":
        a, b = clip.encode_text([""]), clip.encode_text([e.instruction for e in chunk])
        return text_diff(model.image_embedding(src), a.embeds, b.embeds, theta)
    pairs = [slot_texts(e) for e in chunk]
    a, b = clip.encode_text([p[0] for p in pairs]), clip.encode_text([p[1] for p in pairs])
    return text_diff(model.image_embedding(src), a.embeds, b.embeds, theta)


def run_edits(cases: list[edits.Edit], model_dir: Path, bundle: Path, guidance: float, image_guidance: float,
              steps: int, upsample: bool, seed: int = 0, batch: int = 10, slot: str = "input",
              theta: float = 0.3, edit_prior: Path | None = None) -> np.ndarray:
    """The edited images (N, S, S, 3) uint8 of `cases`, through the workflow's nodes' library calls
    (`slot`, `theta`: see `slot_embeddings`; `edit_prior`: the folder holding `edit_prior/` for slot `prior`,
    default `model_dir`)."""
    import torch

    from nodes.instruct.model import load_instruct, sample_instruct
    from nodes.unclip.api import load_clip, load_upsampler
    from nodes.unclip.api import upsample as upsample_images

    model, clip = load_instruct(model_dir), load_clip(bundle)
    if slot == "prior" and (edit_prior is not None or model.edit_prior is None):
        from nodes.instruct.edit_prior import load_edit_prior

        model.edit_prior = load_edit_prior(edit_prior or model_dir)
    up = load_upsampler(bundle) if upsample else None
    out = []
    with torch.inference_mode():
        uncond = clip.encode_text([""])
        for i in range(0, len(cases), batch):
            chunk = cases[i:i + batch]
            src = torch.from_numpy(np.stack([domain.render(e.source, 64) for e in chunk])).permute(0, 3, 1, 2) / 255
            cond = clip.encode_text([e.instruction for e in chunk])
            g = torch.Generator().manual_seed(seed + i)
            emb = slot_embeddings(slot, theta, model, clip, chunk, src)
            img = sample_instruct(model, src, cond, uncond, guidance=guidance, image_guidance=image_guidance,
                                  steps=steps, generator=g, image_embeds=emb)
            if up is not None:  # the workflow's Upsample node: 10 steps, colours from the input
                img = upsample_images(up, img, steps=10, generator=torch.Generator().manual_seed(seed + i),
                                      fix_colors=True)
            out.append((img.permute(0, 2, 3, 1).numpy() * 255).round().clip(0, 255).astype(np.uint8))
    return np.concatenate(out)


def score(cases: list[edits.Edit], images: np.ndarray) -> dict:
    """Per kind: changed, and kept per attribute; overall the same, plus every-other-attribute-kept."""
    rows = []
    for e, im in zip(cases, images, strict=True):
        v = judge(im, e.target.attributes())
        rows.append({"kind": e.kind, "changed": v.right(e.kind), "kept": {a: v.right(a) for a in e.kept},
                     "clean": v.clean})
    out: dict = {"n": len(rows)}
    for kind in (*edits.EDIT_KINDS, None):
        sel = [r for r in rows if kind is None or r["kind"] == kind]
        kept = {a: float(np.mean([r["kept"][a] for r in sel if a in r["kept"]])) for a in domain.ATTRIBUTES
                if any(a in r["kept"] for r in sel)}
        out[kind or "all"] = {"n": len(sel), "changed": float(np.mean([r["changed"] for r in sel])),
                              "kept": kept, "all_kept": float(np.mean([all(r["kept"].values()) for r in sel])),
                              "clean": float(np.mean([r["clean"] for r in sel]))}
    return out


def print_table(name: str, res: dict) -> None:
    print(f"\n{name}: {res['n']} edits (held-out scenes and phrasings)")
    print(f"{'edit':<11} {'n':>3} {'changed':>8} " + " ".join(f"{a[:5]:>6}" for a in domain.ATTRIBUTES)
          + f" {'allkept':>8} {'clean':>6}")
    for kind in (*edits.EDIT_KINDS, "all"):
        r = res[kind]
        kept = " ".join(f"{r['kept'][a]:6.2f}" if a in r["kept"] else f"{'–':>6}" for a in domain.ATTRIBUTES)
        print(f"{kind:<11} {r['n']:>3} {r['changed']:8.2f} {kept} {r['all_kept']:8.2f} {r['clean']:6.2f}")
    print(f"targets: changed ≥ {TARGETS['changed']}, each kept attribute ≥ {TARGETS['kept']}")


def attribute_probes(clip) -> dict:
    """Per attribute: a linear probe (weights (D, K), bias (K,), labels) on unit CLIP image embeddings of
    6,000 training-split and 2,000 held-out-combination renders (seeds 5, 6: neither set's scenes)."""
    import torch

    scenes = domain.sample_scenes(5, 6000, "train") + domain.sample_scenes(6, 2000, "heldout_combos")
    with torch.no_grad():
        x = clip.encode_image(torch.from_numpy(np.stack([domain.render(s, 64) for s in scenes])).permute(0, 3, 1, 2)
                              / 255)
    x = x / x.norm(dim=-1, keepdim=True)
    probes = {}
    for a in domain.ATTRIBUTES:
        labels = sorted({s.attributes()[a] for s in scenes})
        w, b = fit_linear_probe(x, [labels.index(s.attributes()[a]) for s in scenes], len(labels), steps=400)
        probes[a] = (w, b, labels)
    return probes


def clip_space(cases: list[edits.Edit], model_dir: Path, bundle: Path, theta: float) -> None:
    """Print the edit prior's CLIP-space figures next to the input's own embedding and the true edited one."""
    import torch

    from nodes.instruct.edit_prior import blend, load_edit_prior
    from nodes.unclip.api import load_clip

    clip, prior = load_clip(bundle), load_edit_prior(model_dir)
    probes = attribute_probes(clip)

    def embed(scenes):
        return clip.encode_image(torch.from_numpy(np.stack([domain.render(s, 64) for s in scenes])).permute(0, 3, 1, 2)
                                 / 255)

    with torch.no_grad():
        src, tgt = embed([e.source for e in cases]), embed([e.target for e in cases])
        pred = blend(src, prior.edit(src, clip.encode_text([e.instruction for e in cases])), theta)
    for name, emb in (("input's own", src), ("true edited", tgt), (f"edit prior, amount {theta}", pred)):
        u = emb / emb.norm(dim=-1, keepdim=True)
        read = {a: [labels[i] for i in (u @ w * 10 + b).argmax(1)] for a, (w, b, labels) in probes.items()}
        right = {a: [read[a][i] == e.target.attributes()[a] for i, e in enumerate(cases)] for a in domain.ATTRIBUTES}
        changed = np.mean([right[e.kind][i] for i, e in enumerate(cases)])
        kept = [np.mean([right[a][i] for i, e in enumerate(cases) if e.kind != a]) for a in domain.ATTRIBUTES]
        per = [np.mean([right[k][i] for i, e in enumerate(cases) if e.kind == k]) for k in edits.EDIT_KINDS]
        cos = torch.nn.functional.cosine_similarity(emb, tgt, dim=-1).mean().item()
        print(f"{name:<22} cosine {cos:.3f}  changed {changed:.2f}  kept " + " ".join(f"{v:.2f}" for v in kept)
              + "  changed per kind " + " ".join(f"{v:.2f}" for v in per))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m eval instruct", description=__doc__.split("\n\n")[0])
    p.add_argument("--set", choices=list(SEEDS), default="validation")
    p.add_argument("--n", type=int, default=50, help="edits (kinds in turn)")
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--image-guidance", type=float, default=1.5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--no-upsample", action="store_true")
    p.add_argument("--model", default=str(ROOT / "models" / "shapes-ip2p"))
    p.add_argument("--bundle", default=str(ROOT / "models" / "shapes-unclip"))
    p.add_argument("--slot", choices=("input", "prior", "target", "null", "diff", "instr", "weak"), default="prior",
                   help="image-embedding slot: the input's CLIP embedding (the model's own), the input's slerped "
                        "towards the edit prior's prediction (the workflow's), the null one, or the input's moved "
                        "along the true captions' text diff (diagnostic), the instruction's, or towards null; `target`: towards the "
                        "true edited scene's embedding (oracle)")
    p.add_argument("--theta", type=float, default=None, help="slerp amount for --slot prior, target (default 1.0: "
                   "the edit prior's amount in the workflow), diff, instr, weak (default 0.3)")
    p.add_argument("--edit-prior", default="", help="folder holding edit_prior/ for --slot prior (default: --model)")
    p.add_argument("--clip-space", action="store_true", help="judge the edit prior alone in CLIP space (no drawing)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="")
    p.add_argument("--save-grid", default="", help="write source/edit pairs to this PNG")
    args = p.parse_args(argv)
    if args.theta is None:
        args.theta = 1.0 if args.slot in ("prior", "target") else 0.3
    import torch

    torch.set_num_threads(args.threads)
    cases = edit_set(args.set, args.n)
    if args.clip_space:
        clip_space(cases, Path(args.edit_prior or args.model), Path(args.bundle), args.theta)
        return 0
    t0 = time.time()
    images = run_edits(cases, Path(args.model), Path(args.bundle), args.guidance, args.image_guidance, args.steps,
                       not args.no_upsample, slot=args.slot, theta=args.theta,
                       edit_prior=Path(args.edit_prior) if args.edit_prior else None)
    seconds = time.time() - t0
    res = score(cases, images)
    truth = score(cases, np.stack([domain.render(e.target, images.shape[1]) for e in cases]))
    print_table(f"{args.set}, guidance {args.guidance}, image guidance {args.image_guidance}, {args.steps} steps"
                f"{'' if args.no_upsample else ' + upsampler'}"
                f"{'' if args.slot == 'input' else f', slot {args.slot}'}{f' θ {args.theta}' if args.slot not in ('input', 'null') else ''}",
                res)
    print(f"analyser on the true edited renders: changed {truth['all']['changed']:.2f}, all kept "
          f"{truth['all']['all_kept']:.2f}")
    print(f"{seconds:.0f} s for {len(cases)} edits ({seconds / len(cases):.2f} s each, {args.threads} thread(s))")
    if args.save_grid:
        from PIL import Image

        src = np.stack([domain.render(e.source, images.shape[1]) for e in cases])
        rows = np.concatenate([np.concatenate(list(src), 1), np.concatenate(list(images), 1)], 0)
        Image.fromarray(rows).save(args.save_grid)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "result": res, "truth": truth,
                                               "seconds": seconds,
                                               "cases": [{"kind": e.kind, "instruction": e.instruction,
                                                          "source": e.source.attributes(),
                                                          "target": e.target.attributes()} for e in cases]},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
