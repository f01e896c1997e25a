"""How often Factor Out Colour's read-out names the object colour, by phrasing type (text encodings only).

    PYTHONPATH=. .venv/bin/python bench/factor_readout.py --threads 1 [--n 600] [--words 100] [--images 24]

Fits the text colour map of the shipped CLIP (`fit_text_color_map`, as the node does), then reads the
colour of captions the fit never saw: the two training writers (`domain.caption`, writer 1;
`captions.caption`, writer 2) on training-split and held-out-pair scenes of another seed, and the
tuning generator's prompts (`eval._tuning_prompts`). Never the validation generator. Each caption is
put in one phrasing group:

- `object first`: names the object colour and the background, the object's colour word first;
- `background first`: the same, the background's colour word first ("a plain white canvas showing
  a red disk");
- `no background`: names the object colour, not the background;
- `colour-free`: names no object colour (it may name the background); the read-out should see none.

and scored as `right`, `background` (the read-out named the background's colour), `other` (another
colour) or `none` (it saw no colour). `--words K` also runs method "words" (`drop_color_words`) on K
captions per group: how often the colour it outputs is the object's, how often the prior's text lost
only words of the object's colour, and how often it read two colours (the prompt is passed on).
`--images N` also draws N prompts of each phrasing that names both colours (the tuning set's, and the
second writer's of held-out combinations) through the prior and decoder (`eval.shapes.Stack`, 64 px,
15 + 15 steps), plain and factored ("words" + Recolour), and prints what the analyser reads.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 9_101  # neither the fit's (77) nor the tuning generator's


def _color_words(color: str) -> list[str]:
    from nodes.shapes import captions

    return sorted(set(captions.COLORS[color]) | {color}, key=len, reverse=True)


def _first(text: str, color: str) -> int | None:
    hits = [m.start() for w in _color_words(color) for m in re.finditer(rf"\b{re.escape(w)}\b", text)]
    return min(hits) if hits else None


def group_of(text: str, named: dict[str, str], scene: dict[str, str]) -> str:
    if "color" not in named:
        return "colour-free"
    if "background" not in named:
        return "no background"
    c, b = _first(text, scene["color"]), _first(text, scene["background"])
    if c is None or b is None:  # a writer's phrase that hides a word (should not happen)
        return "other order"
    return "background first" if b < c else "object first"


def writer_captions(writer: str, split: str, n: int, seed: int) -> list[tuple[str, dict, dict]]:
    """(text, named attributes, scene attributes) of n scenes of `split`, each with a random subset named
    (half the time all five, as the writers draw it)."""
    import numpy as np

    from nodes.shapes import captions, domain

    write = domain.caption if writer == "writer 1" else captions.caption
    out = []
    for i, s in enumerate(domain.sample_scenes(seed, n, split)):  # type: ignore[arg-type]
        attrs = s.attributes()
        include = domain.random_subset(np.random.default_rng([seed, 1, i]))
        text = write(attrs, np.random.default_rng([seed, 2, i]), include=include)
        out.append((text, {a: attrs[a] for a in include}, attrs))
    return out


def tuning_prompts(n: int) -> list[tuple[str, dict, dict]]:
    from eval import _tuning_prompts as gen

    prompts = (gen.full_prompts("heldout_combos", n) + gen.full_prompts("heldout_pairs", n)
               + gen.short_prompts(n) + gen.short_prompts(n, heldout_pairs=True))
    return [(p.text, p.named, p.scene) for p in prompts]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=Path, default=ROOT / "models" / "shapes-unclip")
    ap.add_argument("--n", type=int, default=600, help="captions per writer and split")
    ap.add_argument("--words", type=int, default=0, help="captions per group to run method 'words' on")
    ap.add_argument("--images", type=int, default=0, help="prompts per phrasing to draw, plain and factored")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from nodes.shapes.textcolor import NAMED, drop_color_words, fit_text_color_map
    from nodes.unclip.models import load_clip

    torch.set_num_threads(args.threads)
    clip = load_clip(args.models)
    t0 = time.perf_counter()
    tmap = fit_text_color_map(clip)
    print(f"fit: {time.perf_counter() - t0:.1f} s, right on {tmap.accuracy:.4f} of its captions, "
          f"explains {tmap.explained:.2f} of a swap")

    sources = {f"{w}, {s}": writer_captions(w, s, args.n, SEED) for w in ("writer 1", "writer 2")
               for s in ("train", "heldout_pairs")}
    sources["tuning"] = tuning_prompts(max(1, args.n // 3))
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    examples: dict[tuple[str, ...], list[str]] = defaultdict(list)
    max_free = 0.0
    for source, items in sources.items():
        texts = [t for t, _, _ in items]
        with torch.no_grad():
            scores = torch.cat([tmap.read(clip.encode_text(texts[i:i + 500])) for i in range(0, len(texts), 500)])
        best = scores.max(1)
        by_group = defaultdict(list)
        for (text, named, scene), v, k in zip(items, best.values, best.indices, strict=True):
            group = group_of(text, named, scene)
            got = tmap.colors[int(k)] if float(v) > NAMED else ""
            truth = named.get("color", "")
            if truth:
                verdict = ("right" if got == truth else "none" if not got
                           else "background" if got == scene["background"] else "other")
            else:
                max_free = max(max_free, float(v))
                verdict = "right" if not got else "background" if got == scene["background"] else "other"
            counts[(source, group)][verdict] += 1
            counts[(source, group)]["n"] += 1
            if verdict != "right" and len(examples[(source, group)]) < 2:
                examples[(source, group)].append(f"{text!r} → {got or '(none)'}")
            by_group[group].append((text, named, scene))
        if args.words:
            for group, rows in by_group.items():
                if group == "colour-free":
                    continue
                rows = rows[:args.words]
                dropped = drop_color_words(tmap, clip, [t for t, _, _ in rows])
                c = counts[(source, group)]
                for d, (text, named, scene) in zip(dropped, rows, strict=True):
                    c["words_n"] += 1
                    c["words_right"] += d.color == named["color"]
                    c["words_two"] += len(getattr(d, "read", ())) > 1  # (a Dropped of before the field: none)
                    # the prior's text lost exactly words of the object's colour, and kept all others
                    ok = (d.cleared and d.words and {w.strip(",.:") for w in d.words}
                          <= set(" ".join(_color_words(scene["color"])).split()))
                    c["words_exact"] += bool(ok)
                    if not ok and len(examples[(source, group, "words")]) < 2:
                        examples[(source, group, "words")].append(
                            f"{text!r} → {d.color or '(none)'}, prior: {d.text!r}")

    print(f"\n{'source':28} {'phrasing':17} {'n':>5} {'right':>6} {'bg':>6} {'other':>6} {'none':>6}"
          + ("  words: colour, exact drop, two colours" if args.words else ""))
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (source, group), c in sorted(counts.items()):
        n = c["n"]
        line = (f"{source:28} {group:17} {n:5d} {c['right'] / n:6.3f} {c['background'] / n:6.3f} "
                f"{c['other'] / n:6.3f} {c['none'] / n:6.3f}")
        if c.get("words_n"):
            k = c["words_n"]
            line += f"  {c['words_right'] / k:.3f} {c['words_exact'] / k:.3f} {c['words_two'] / k:.3f} of {k}"
        print(line)
        totals[group][0] += c["right"]
        totals[group][1] += n
    print()
    for group, (right, n) in sorted(totals.items()):
        print(f"all sources, {group:17} right {right / n:.3f} of {n}")
    print(f"largest score of a caption naming no object colour: {max_free:.2f} (NAMED = {NAMED})")
    print("\nmisreads (up to 2 per row):")
    for key, ex in sorted(examples.items()):
        for e in ex:
            print(f"  [{' / '.join(key)}] {e}")
    if args.images:
        images(args.models, args.images)
    return 0


def images(models: Path, n: int) -> None:
    """Colour / background / shape the analyser reads, plain and factored, by phrasing."""
    import numpy as np

    from eval.shapes import FACTOR_STRENGTH, Settings, Stack, _to_numpy
    from nodes.shapes import analyse

    stack = Stack(models, Settings(prior_steps=15, decoder_steps=15, upsample=False))
    rows: dict[str, list] = defaultdict(list)
    for source, items in (("writer 2", writer_captions("writer 2", "heldout_combos", 400, SEED + 1)),
                          ("tuning", tuning_prompts(150))):
        for text, named, scene in items:
            group = group_of(text, named, scene)
            if group in ("object first", "background first") and len(rows[f"{source}, {group}"]) < n:
                rows[f"{source}, {group}"].append((text, scene))
    print(f"\n{'prompts':28} {'n':>3}  plain: colour / background / shape   factored: colour / background / shape")
    for key, items in sorted(rows.items()):
        prompts = [t for t, _ in items]
        out = []
        for factor in (None, FACTOR_STRENGTH):
            found = [analyse.analyse(im).attributes() for im in _to_numpy(stack.text_to_image(
                prompts, 3, factor=factor, factor_method="words"))]
            out.append(" / ".join(f"{np.mean([f[a] == s[a] for f, (_, s) in zip(found, items, strict=True)]):.2f}"
                                  for a in ("color", "background", "shape")))
        print(f"{key:28} {len(items):3d}  {out[0]:>32}   {out[1]:>32}")


if __name__ == "__main__":
    sys.exit(main())
