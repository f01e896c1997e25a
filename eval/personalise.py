"""DreamBooth and Imagic on the shipped models, judged by the pixel analyser.

    .venv/bin/python -m eval personalise dreambooth [--set validation|tuning|tuning_hard] [--n 16] [--lora NAME]
    .venv/bin/python -m eval personalise imagic [--set validation|tuning] [--n 12]

DreamBooth: trains the LoRA by running `workflows/dreambooth.json` up to its training node with the
engine (unless `--lora` names an existing file), then draws as that workflow does (text → Factor Out
Colour → prior → Recolour Embedding → decoder, the default text→image path, with the workflow's Prior
and Decoder `candidates` unless `--prior-candidates` / `--decoder-candidates` say otherwise) with the
LoRA merged (Load LoRA's code) and without it, same seeds:

- `subject`: prompts with the identifier naming a colour other than the example's red, a size, a
  position and a background; the image shows the subject when the heart template fits better than
  every domain shape (eval/_subject.py), plus its colour / size / position right;
- `no identifier`: the README's unseen-combination prompts (all five attributes named), with and
  without the LoRA: mean named-attribute accuracy, and the difference (language drift).

Imagic: renders of scenes → the three stages (workflow `imagic.json`'s nodes, run through the
engine) with a target text naming another colour or another shape; the edited attribute changed,
and position and size kept.

The tuning set is the training caption generator with seed 7 and the README's tuning prompts; the
`tuning_hard` set is the hard tuning writer (`eval/_tuning_hard_prompts.py`: its templates and
synonyms, the identifier's noun phrase where the shape's word goes) on a seed of its own, with that
writer's unseen-combination prompts for drift, for phrasings the training captions never use; the
validation set is other templates and seeds, never tuned on.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path
from typing import Annotated

import numpy as np

from nodes.shapes import domain

from . import _judge as judge
from . import _subject as subject
from . import _tuning_hard_prompts as hard_prompts
from . import _tuning_prompts as tuning_prompts
from . import _validation_prompts as validation_prompts

log = logging.getLogger("eval.personalise")
ROOT = Path(__file__).resolve().parents[1]
DREAMBOOTH = ROOT / "workflows" / "dreambooth.json"
IMAGIC = ROOT / "workflows" / "imagic.json"
BUNDLE = ROOT / "models" / "shapes-unclip"
SEEDS = {"tuning": 7, "tuning_hard": hard_prompts.SEED + 200, "validation": 2411}
IDENTIFIER = "sks"
# tuning_hard: the identifier as the paper's "[V] [class noun]", or alone as a user may write it
HARD_NOUNS = ("{i} shape", "{i} shape", "{i}")
EXAMPLE_COLOR = "red"
TARGETS = {"subject": 0.80, "drift": 0.03, "imagic_changed": 0.70, "imagic_kept": 0.85}
# validation phrasings of identifier prompts (training captions come from the domain's generator)
_TEMPLATES = (
    "draw {a} {z} {c} {i} shape {p}, {bg} background",
    "{a} {c} {i} shape that is {z}, {p}, on {bg}",
    "{bg} background with {a} {z} {c} {i} shape {p}",
    "{z} {c} {i} shape {p} on a {bg} backdrop",
)
_SIZE = {"small": ("small", "little", "tiny"), "large": ("big", "large")}


def identifier_prompts(which: str, n: int) -> list[tuple[str, dict[str, str]]]:
    """(prompt, named attributes) for scenes whose colour is not the example subject's."""
    from nodes.personalise.subject import caption

    rng = np.random.default_rng(SEEDS[which] + 1)
    out = []
    while len(out) < n:
        s = domain.sample_scene(rng, "any")
        if s.color == EXAMPLE_COLOR:
            continue
        attrs = {k: v for k, v in s.attributes().items() if k != "shape"}
        if which == "tuning":
            text = caption(s.attributes(), IDENTIFIER, rng, domain.ATTRIBUTES)
        elif which == "tuning_hard":
            noun = HARD_NOUNS[int(rng.integers(len(HARD_NOUNS)))].format(i=IDENTIFIER)
            text = hard_prompts.full_text(rng, s.attributes(), noun=noun)
        else:
            z = _SIZE[s.size][int(rng.integers(len(_SIZE[s.size])))]
            t = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
            first = t.split("{a}")[1].split()[0] if "{a}" in t else ""
            word = {"{z}": z, "{c}": s.color}.get(first, "x")
            text = t.format(a="an" if word[0] in "aeiou" else "a", z=z, c=s.color, i=IDENTIFIER,
                            p=domain.POSITION_PHRASES[s.position][0], bg=s.background)
        out.append((text, attrs))
    return out


class Stack:
    """The shipped CLIP, prior and decoder, with or without a LoRA merged in."""

    def __init__(self, bundle: Path = BUNDLE):
        from nodes.unclip.api import load_clip, load_decoder, load_prior

        self.clip = load_clip(bundle)
        self.prior = load_prior(bundle)
        self.decoder = load_decoder(bundle)

    def with_lora(self, path: Path) -> Stack:
        import dataclasses

        from nodes.lora.api import patch, patch_clip, read_lora, subset

        lora = read_lora(path)
        parts = patch({"unet": self.decoder.unet, "text_proj": self.decoder.text_proj, "prior": self.prior.prior},
                      subset(lora, ("unet", "text_proj", "prior")), 1.0)
        out = copy.copy(self)
        out.__dict__.pop("_tmap", None)  # the LoRA's CLIP reads colour words its own way (its image tower is
        # the base's, and the workflow's Recolour Embedding reads the base CLIP's maps)
        # the identifier's learnt row and the text tower's LoRA, when the file has them
        out.clip = patch_clip(self.clip, lora)
        out.decoder = dataclasses.replace(self.decoder, unet=parts["unet"], text_proj=parts["text_proj"])
        out.prior = dataclasses.replace(self.prior, prior=parts["prior"])
        return out

    def maps(self):
        """The text, image colour and image background maps of Factor Out Colour and Recolour Embedding for
        this CLIP (fitted once)."""
        from nodes.shapes.recolor import fit_background_map, fit_color_map
        from nodes.shapes.textcolor import fit_text_color_map

        if not hasattr(self, "_tmap"):
            self._tmap = fit_text_color_map(self.clip)
        if not hasattr(self, "_imaps"):
            self._imaps = fit_color_map(self.clip), fit_background_map(self.clip)
        return self._tmap, *self._imaps

    def recolour(self, emb, named: list[str], recolor: dict | None = None):
        """Recolour Embedding's move on `emb` (B, D) to each row's colour read by Factor Out Colour (`named`),
        handed on as the node's `color` output carries them (one for all, or one a row, comma-separated); no
        colour named: `emb` as it is. `recolor`: the node's `strength`, `keep_apart` (None: its defaults)."""
        from nodes.shapes.recolor import recolor_rows

        color = named[0] if len(set(named)) == 1 else ",".join(named)
        if not color.strip():
            return emb
        settings = {"strength": 1.0, "keep_apart": True, **(recolor or {})}
        _, cmap, bmap = self.maps()
        return recolor_rows(emb, cmap, bmap, color=color, strength=settings["strength"],
                            apart=settings["keep_apart"])[0].to(emb)

    def generate(self, prompts: list[str], seed: int, steps: int, batch: int = 8,
                 factored: bool = False, prior_candidates: int = 1, decoder_candidates: int = 1,
                 factor: dict | None = None, recolor: dict | None = None) -> list[np.ndarray]:
        """uint8 images (S, S, 3) at the decoder's resolution, prior guidance 4, decoder 1.5 (the workflows').

        `factored`: as the default text→image workflow draws, through Factor Out Colour (method words)
        and Recolour Embedding: the prior sees the prompt without its colour words, and its sample is
        moved to the named colour by Recolour Embedding's own move (`recolor_rows`); `factor` gives Factor Out
        Colour's `strength`, `roles`, `words_alone` and `recolor` Recolour Embedding's `strength`,
        `keep_apart` (None: the nodes' defaults). `prior_candidates` / `decoder_candidates`: as the Prior and Decoder
        nodes' `candidates`, samples drawn per output and the one nearest (cosine) the prompt's text
        embedding (prior) or the embedding it was decoded from (decoder, by its CLIP image embedding) kept.
        One generator draws the prior's samples and then the decoder's noise, so more prior candidates also
        change the decoder's noise."""
        import torch

        from nodes.shapes.textcolor import factor_encoding
        from nodes.unclip.api import sample_decoder, sample_prior
        from nodes.unclip.sampling import rank_candidates, rank_images

        out = []
        with torch.inference_mode():
            empty = self.clip.encode_text([""])
            for i in range(0, len(prompts), batch):
                texts = prompts[i:i + batch]
                text = self.clip.encode_text(texts)
                gen = torch.Generator().manual_seed(seed + i)
                kp, kd = prior_candidates, decoder_candidates
                for_prior = text
                if factored:
                    tmap = self.maps()[0]
                    for_prior, named, _ = factor_encoding(tmap, self.clip, text, texts, "words", **(factor or {}))
                emb = sample_prior(self.prior, for_prior, empty, guidance=4.0, steps=steps, generator=gen,
                                   num_per_prompt=kp)
                if kp > 1:
                    emb = rank_candidates(emb, for_prior.embeds, kp)
                if factored:
                    emb = self.recolour(emb, named, recolor)
                img = sample_decoder(self.decoder, emb.repeat_interleave(kd, dim=0),
                                     text.repeat_interleave(kd) if kd > 1 else text, empty, guidance=1.5,
                                     steps=steps, generator=gen)
                if kd > 1:
                    img = rank_images(img, self.clip.encode_image(img), emb, kd)
                out.extend((img.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
        return out


def run_workflow(path: Path, overrides: dict, node: str, threads: int) -> tuple[dict, float]:
    """Run a workflow up to `node` with the engine; (that node's outputs, seconds)."""
    import nodegraph

    engine = nodegraph.Engine.from_settings(nodegraph.Settings.from_env(threads=threads, output_dir=ROOT / "runs"))
    wf, issues = nodegraph.apply_overrides(json.loads(path.read_text()), overrides)
    if wf is None or issues:
        raise SystemExit(f"{path.name}: bad overrides {issues}")
    t0 = time.time()

    def sink(event) -> None:
        if isinstance(event, nodegraph.Progress) and event.total and event.step % 10 == 0:
            log.info("%s: step %d/%d, %.0f s", event.node, event.step, event.total, time.time() - t0)

    result = engine.run(wf, targets=[node], sink=sink)
    if not result.ok:
        raise SystemExit(f"{path.name} failed: {result.error}")
    return result.outputs[node], time.time() - t0


DRAW_PORTS = {"factor": ("method", "strength", "roles", "words_alone"), "recolor": ("strength", "keep_apart")}


def workflow_draw(nodes: dict, overrides: dict) -> dict:
    """How dreambooth.json draws, as `Stack.generate` keywords: Factor Out Colour's `strength`, `roles`,
    `words_alone` (`factor`) and Recolour Embedding's `strength`, `keep_apart` (`recolor`), with
    --set-node factor.… / recolor.… overrides, checked against the nodes' ports."""
    import pydantic

    from nodes.shapes.recolor import EmbeddingRecolor
    from nodes.shapes.textcolor import FactorColor

    out = {}
    for node, cls in (("factor", FactorColor), ("recolor", EmbeddingRecolor)):
        ports = DRAW_PORTS[node]
        entry = nodes[node]
        version = entry.get("version", cls.version)
        inputs = entry["inputs"] if version == cls.version else cls.migrate(version, dict(entry["inputs"]))
        if inputs is None:  # as the engine reads an older node: migrated, or refused
            raise SystemExit(f"dreambooth.json: node {node!r} is version {version}, which this install's "
                             f"{cls.version} cannot upgrade; re-create the node")
        values = {}
        for port in ports:
            field = cls.Inputs.model_fields[port]
            value = overrides.get(f"{node}.{port}", inputs.get(port, field.default))
            try:
                kind = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
                values[port] = pydantic.TypeAdapter(kind).validate_python(value)
            except pydantic.ValidationError as exc:
                raise SystemExit(f"{node}.{port}={value!r}: {exc.errors()[0]['msg']}") from None
        out[node] = values
    method = out["factor"].pop("method")
    if method not in ("auto", "words"):
        raise SystemExit(f"dreambooth.json: Factor Out Colour method {method!r}; the eval draws with 'words' (what "
                         "'auto' means for the shipped Shapes CLIP)")
    return out


def eval_dreambooth(which: str, n: int, steps: int, lora: str, train_steps: int | None, threads: int,
                    save: Path | None = None, overrides: dict | None = None, candidates: tuple[int, int] = (1, 1),
                    draw: dict | None = None) -> dict:
    """`draw`: `factor` / `recolor` settings for `Stack.generate` (`workflow_draw`; None: the nodes' defaults)."""
    report: dict = {"set": which}
    report["candidates"] = {"prior": candidates[0], "decoder": candidates[1]}
    report["draw"] = draw or "defaults"
    draw = {"factored": True, "prior_candidates": candidates[0], "decoder_candidates": candidates[1], **(draw or {})}
    if lora:
        path = Path(lora) if Path(lora).is_file() else ROOT / "models" / "loras" / f"{lora}.safetensors"
    else:
        overrides = {"train.name": f"heart-eval-{which}", **(overrides or {})}
        if train_steps:  # else the workflow's own
            overrides["train.steps"] = train_steps
        outputs, seconds = run_workflow(DREAMBOOTH, overrides, "train", threads)
        path = ROOT / "models" / "loras" / f"{outputs['lora']}.safetensors"
        report["train_seconds_wall"] = round(seconds, 1)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        report["training"] = json.loads((f.metadata() or {}).get("nodegraph_training", "{}"))
    base = Stack()
    tuned = base.with_lora(path)
    seed = SEEDS[which] * 1000

    pairs = identifier_prompts(which, n)
    t0 = time.time()
    images = tuned.generate([p for p, _ in pairs], seed, steps, **draw)
    report["seconds_per_image"] = round((time.time() - t0) / len(pairs), 2)
    if save:
        from PIL import Image

        save.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(images, axis=1)).save(save / f"dreambooth_{which}_subject.png")
    verdicts = [subject.judge_heart(im) for im in images]
    report["subject"] = {
        "n": len(pairs), "heart": float(np.mean([v.heart for v in verdicts])),
        **{k: float(np.mean([getattr(v, k) == a[k] for v, (_, a) in zip(verdicts, pairs, strict=True)]))
           for k in ("color", "size", "position")}}
    for size in ("small", "large"):  # the heart rate of the prompts naming each size
        hits = [v.heart for v, (_, a) in zip(verdicts, pairs, strict=True) if a["size"] == size]
        report["subject"][f"heart_{size}"] = float(np.mean(hits)) if hits else None
    report["subject_examples"] = [{"prompt": p, "heart": v.heart, "iou": round(v.heart_iou, 2)}
                                  for (p, _), v in list(zip(pairs, verdicts, strict=True))[:4]]

    module = {"tuning": tuning_prompts, "tuning_hard": hard_prompts}.get(which, validation_prompts)
    prompts = module.full_prompts("heldout_combos", n)
    texts = [p.text for p in prompts]
    rows = {}
    for label, stack in (("base", base), ("lora", tuned)):
        ims = stack.generate(texts, seed + 1, steps, **draw)
        v = [judge.judge(im, p.named) for im, p in zip(ims, prompts, strict=True)]
        s = judge.summarise(v)
        rows[label] = {a: round(s[a], 3) for a in domain.ATTRIBUTES} | {"mean": round(
            float(np.mean([s[a] for a in domain.ATTRIBUTES])), 3)}
    rows["drift"] = round(rows["base"]["mean"] - rows["lora"]["mean"], 3)
    report["no_identifier"] = rows
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval personalise")
    p.add_argument("method", choices=("dreambooth", "imagic"))
    p.add_argument("--set", dest="which", choices=tuple(SEEDS), default="validation")
    p.add_argument("--n", type=int, default=16, help="prompts (DreamBooth) or scenes (Imagic)")
    p.add_argument("--steps", type=int, default=10, help="prior and decoder sampling steps")
    p.add_argument("--lora", default="", help="DreamBooth: judge this LoRA instead of training one")
    p.add_argument("--train-steps", type=int, default=None,
                   help="DreamBooth training steps (default: the workflow's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the report here too")
    p.add_argument("--save-images", type=Path, help="DreamBooth: write the subject images here, in a row")
    p.add_argument("--prior-candidates", type=int, default=None, help="DreamBooth: prior samples per image, the "
                   "nearest the prompt's text embedding kept (the Prior node's `candidates`; default: the workflow's)")
    p.add_argument("--decoder-candidates", type=int, default=None, help="DreamBooth: images decoded per image, "
                   "the nearest its embedding (CLIP) kept (the Decoder node's `candidates`; default: the workflow's)")
    p.add_argument("--set-node", action="append", default=[], metavar="NODE.PORT=VALUE",
                   help="override a port of the method's workflow (JSON values), e.g. finetune.steps=40 "
                   "(imagic.json) or train.token_lr=0.01 (dreambooth.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    import torch

    torch.set_num_threads(args.threads)
    overrides = {}
    for item in args.set_node:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    if args.method == "dreambooth":
        nodes = json.loads(DREAMBOOTH.read_text())["nodes"]
        drawn = {"prior.candidates", "dec.candidates", *(f"factor.{k}" for k in DRAW_PORTS["factor"]),
                 *(f"recolor.{k}" for k in DRAW_PORTS["recolor"])}
        unused = sorted(k for k in overrides if k not in drawn and (args.lora or not k.startswith("train.")))
        if unused:
            raise SystemExit(f"--set-node {', '.join(unused)}: not used by the eval, which draws with "
                             f"{', '.join(sorted(drawn))}" + ("" if args.lora else " and trains with train.*")
                             + " (guidance as the workflow's, 4 and 1.5; sampling steps from --steps)")
        candidates = tuple(given if given is not None else int(overrides.get(f"{node}.candidates",
                                                                               nodes[node]["inputs"].get("candidates", 1)))
                           for given, node in ((args.prior_candidates, "prior"), (args.decoder_candidates, "dec")))
        report = eval_dreambooth(args.which, args.n, args.steps, args.lora, args.train_steps, args.threads,
                                 args.save_images, overrides, candidates=candidates,
                                 draw=workflow_draw(nodes, overrides))
    else:
        from ._imagic import eval_imagic

        report = eval_imagic(args.which, args.n, args.steps, args.threads, overrides=overrides)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0
