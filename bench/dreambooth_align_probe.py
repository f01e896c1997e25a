"""Where a DreamBooth LoRA's CLIP puts identifier prompts in CLIP's own space.

For the eval's identifier prompts (tuning and tuning_hard sets), the text embedding from Load LoRA's
CLIP, as encoded and as Factor Out Colour hands it to the prior (colour words dropped, re-encoded),
against the CLIP image embeddings of a true heart render of the prompt's scene and of the same scene
drawn as each domain shape: how often the heart is the nearest (cosine), and the mean margin over the
nearest domain shape. The Prior node's `candidates` rank samples by that text embedding, and
DreamBooth's `align` trains the row towards it.

    .venv/bin/python bench/dreambooth_align_probe.py dreambooth-heart-eval-tuning [--n 48]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch
    import torch.nn.functional as F

    from eval import _subject as subject
    from eval import personalise
    from nodes.shapes import domain
    from nodes.shapes.textcolor import factor_encoding

    p = argparse.ArgumentParser()
    p.add_argument("lora", help="a LoRA name in models/loras/ or a file")
    p.add_argument("--n", type=int, default=48)
    args = p.parse_args()
    path = Path(args.lora) if Path(args.lora).is_file() else ROOT / "models" / "loras" / f"{args.lora}.safetensors"
    stack = personalise.Stack().with_lora(path)
    tmap = stack.maps()[0]
    factor = personalise.workflow_draw(json.loads(personalise.DREAMBOOTH.read_text())["nodes"], {})["factor"]
    for which in ("tuning", "tuning_hard"):
        pairs = personalise.identifier_prompts(which, args.n)
        texts = [t for t, _ in pairs]
        with torch.inference_mode():
            enc = stack.clip.encode_text(texts)
            factored, _, _ = factor_encoding(tmap, stack.clip, enc, texts, "words", **factor)
            images = []
            for _, a in pairs:
                scene = (a["color"], a["background"], a["size"], a["position"])
                images.append(subject.render_heart(*scene, np.random.default_rng(1)))
                images += [domain.render(domain.make_scene(np.random.default_rng(1), a["color"], a["background"], sh,
                                                           a["size"], a["position"]), 64) for sh in domain.SHAPES]
            x = torch.from_numpy(np.stack(images).astype(np.float32) / 255).permute(0, 3, 1, 2)
            img = F.normalize(stack.clip.encode_image(x), dim=-1).reshape(len(pairs), 1 + len(domain.SHAPES), -1)
            for label, e in (("as encoded", enc.embeds), ("colour factored out", factored.embeds)):
                cos = (img @ F.normalize(e, dim=-1)[..., None])[..., 0]
                margin = cos[:, 0] - cos[:, 1:].max(1).values
                print(f"{which:12s} {label:20s} heart nearest {float((margin > 0).float().mean()):.3f}  "
                      f"mean margin {float(margin.mean()):+.4f}")


if __name__ == "__main__":
    main()
