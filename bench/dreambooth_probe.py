"""Where a DreamBooth LoRA loses the heart: the prior's side or the decoder's, small or large subjects.

    .venv/bin/python bench/dreambooth_probe.py dreambooth-heart-eval-tuning [--n 48] [--forced] [--set tuning_hard]

On the tuning identifier prompts (`eval.personalise.identifier_prompts("tuning", n)`, or the hard
writer's phrasings with `--set tuning_hard`; never the validation set), heart rates split
by the named size, judged at the decoder's 32 px as the eval judges:

- `full`: prompt → Factor Out Colour → prior → Recolour Embedding → LoRA decoder (the eval's path, one
  prior sample: the workflow ranks four, the Prior's `candidates`);
- `oracle`: the CLIP image embedding of a true heart render of the prompt's scene → LoRA decoder, with
  the prompt's text: what the decoder draws when the prior is perfect. `full` below `oracle` is the
  prior's share of the misses; `oracle` below 1 the decoder's;
- `prior_nearer`: the prior's (recoloured) sample is nearer, in cosine, the heart render's embedding than
  the same scene's circle render's;
- `true32`: the heart renders themselves at 32 px (the judge's ceiling);
- `--forced`: for k of the 10 decoder steps the true heart (noised to each step's level) replaces the
  latents, then the decoder is free: the k at which small hearts come out says at which noise
  levels their outline is decided.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval import _subject as subject  # noqa: E402
from eval import personalise  # noqa: E402
from nodes.shapes import domain  # noqa: E402

STEPS = 10  # prior and decoder sampling steps, as the eval


def rates(verdicts: np.ndarray, small: np.ndarray) -> dict[str, float]:
    return {"all": round(float(verdicts.mean()), 3), "small": round(float(verdicts[small].mean()), 3),
            "large": round(float(verdicts[~small].mean()), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/dreambooth_probe.py")
    p.add_argument("lora", help="a LoRA in models/loras/ (name without .safetensors), or 'base'")
    p.add_argument("--n", type=int, default=48, help="tuning identifier prompts")
    p.add_argument("--set", dest="which", choices=("tuning", "tuning_hard"), default="tuning",
                   help="identifier prompt set (tuning sets only)")
    p.add_argument("--forced", action="store_true", help="also the forced-steps probe (oracle embedding)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from nodes.personalise.common import clip_pixels, decoder_pixels
    from nodes.shapes.textcolor import factor_encoding
    from nodes.unclip.api import alphas_cumprod, sample_decoder, sample_prior

    torch.set_num_threads(args.threads)
    base = personalise.Stack()
    st = base if args.lora == "base" else base.with_lora(personalise.ROOT / "models" / "loras" /
                                                         f"{args.lora}.safetensors")
    pairs = personalise.identifier_prompts(args.which, args.n)
    texts = [t for t, _ in pairs]
    small = np.array([a["size"] == "small" for _, a in pairs])
    rng = np.random.default_rng(99)
    hearts, circles = [], []
    for _, a in pairs:
        circles.append(domain.render(domain.make_scene(rng, a["color"], a["background"], "circle", a["size"],
                                                       a["position"])))
        hearts.append(subject.render_heart(a["color"], a["background"], a["size"], a["position"], rng))
    hearts_t, circles_t = clip_pixels(np.stack(hearts)), clip_pixels(np.stack(circles))
    x0 = decoder_pixels(np.stack(hearts), st.decoder.sample_size)  # (B, 3, 32, 32) in [-1, 1]
    report: dict = {"lora": args.lora, "set": args.which, "n": args.n, "n_small": int(small.sum())}

    def judged(img: torch.Tensor) -> np.ndarray:
        arr = (img.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        return np.array([subject.judge_heart(x).heart for x in arr])

    with torch.inference_mode():
        text, empty = st.clip.encode_text(texts), st.clip.encode_text([""])
        h_emb, c_emb = st.clip.encode_image(hearts_t), st.clip.encode_image(circles_t)
        tmap = st.maps()[0]
        draw = personalise.workflow_draw(json.loads(personalise.DREAMBOOTH.read_text())["nodes"], {})
        for_prior, named, _ = factor_encoding(tmap, st.clip, text, texts, "words", **draw["factor"])
        emb = sample_prior(st.prior, for_prior, empty, guidance=4.0, steps=STEPS,
                           generator=torch.Generator().manual_seed(7000))
        emb = st.recolour(emb, named, draw["recolor"])
        cos = torch.nn.functional.cosine_similarity
        report["prior_nearer"] = rates((cos(emb, h_emb) > cos(emb, c_emb)).numpy(), small)
        for label, e in (("full", emb), ("oracle", h_emb)):
            img = sample_decoder(st.decoder, e, text, empty, guidance=1.5, steps=STEPS,
                                 generator=torch.Generator().manual_seed(5))
            report[label] = rates(judged(img), small)
        report["true32"] = rates(judged((x0 + 1) / 2), small)
        if args.forced:
            abar = alphas_cumprod(st.decoder)
            report["forced"] = {}
            for k in (0, 2, 4, 6, 8):
                noise = torch.Generator().manual_seed(11)

                def hook(i, t, prev_t, latents, k=k, noise=noise):
                    if i < k and prev_t is not None:
                        a = abar[int(prev_t)]
                        return a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=noise)
                    return latents

                img = sample_decoder(st.decoder, h_emb, text, empty, guidance=1.5, steps=STEPS,
                                     generator=torch.Generator().manual_seed(5), latent_hook=hook)
                report["forced"][k] = rates(judged(img), small)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
