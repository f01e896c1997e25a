"""Where composition breaks on the held-out (colour, shape) pairs (run by hand; not a test).

    .venv/bin/python bench/heldout_probe.py [--models DIR] [--threads 2] [--n-decode 48]

1. CLIP image space: linear probes (colour, shape) and a linear RGB regression, trained on render
   embeddings of training-split scenes, read on renders of held-out-pair scenes.
2. Prior: its samples for held-out-pair captions, classified by probes trained on render embeddings of
   all scenes (so the probe itself has seen those pairs; it measures the prior, not the probe).
3. Decoder: given the *true* image embedding of held-out-pair renders (with the caption, and with the
   empty prompt), the pixel analyser's colour and shape accuracy on what it draws.
4. A bound for a colour-factorised prior: the prior given the caption *without* its colour (an
   in-distribution prompt), decoded with the full caption as it is, and after moving its sample along
   a linear colour map (Δrgb → Δembedding, fitted on training-split repaintings) to the named colour's
   palette RGB, or to the RGB read from the prior's sample for the full caption. Not a pipeline we
   ship (it needs the colour word parsed out of the prompt); it says which part fails to compose.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=str(ROOT / "models" / "shapes-unclip"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-decode", type=int, default=48)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from eval.probes import fit_linear_probe
    from eval.shapes import Settings, Stack, _to_numpy
    from nodes.shapes import analyse, domain
    from nodes.unclip.models import sample_decoder, sample_prior, upsample

    torch.set_num_threads(args.threads)
    st = Stack(Path(args.models), Settings())

    def encode(ims: np.ndarray) -> torch.Tensor:
        """CLIP image embeddings of uint8 images (N, H, W, 3)."""
        x = torch.from_numpy(ims).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            return torch.cat([st.clip.encode_image(x[i:i + 500]) for i in range(0, len(x), 500)])

    def embed(scenes) -> torch.Tensor:
        return encode(np.stack([domain.render(s, 64) for s in scenes]))

    def decode_and_judge(emb: torch.Tensor, texts: list, truth: list) -> str:
        """Decode (25 steps, guidance 1.5) and upsample 16 at a time (texts: one encoding per 16);
        the analyser's accuracy against the scenes `truth`."""
        found = []
        for i in range(0, len(emb), 16):
            with torch.no_grad():
                im = sample_decoder(st.decoder, emb[i:i + 16], texts[i // 16], st.empty, guidance=1.5, steps=25,
                                    generator=torch.Generator().manual_seed(i))
                im = upsample(st.upsampler, im, steps=7, generator=torch.Generator().manual_seed(i + 1), fix_colors=True)
            found += [analyse.analyse(x).attributes() for x in _to_numpy(im)]
        return ", ".join(f"{a} {np.mean([f[a] == getattr(s, a) for f, s in zip(found, truth, strict=True)]):.2f}"
                         for a in attrs)

    def probe(x: torch.Tensor, labels: list[int], k: int):
        w, b = fit_linear_probe(x, labels, k, steps=300)
        return lambda z: (F.normalize(z, dim=-1) @ w * 10 + b).argmax(1).tolist()

    attrs = {"color": domain.COLORS, "shape": domain.SHAPES}
    train = domain.sample_scenes(11, 3000, "train")
    held = domain.sample_scenes(12, 400, "heldout_pairs")
    x_tr, x_ho = embed(train), embed(held)
    print("1. CLIP image embeddings of held-out-pair renders, probes trained on the training split:")
    for a, vals in attrs.items():
        read = probe(F.normalize(x_tr, dim=-1), [vals.index(getattr(s, a)) for s in train], len(vals))
        acc = np.mean([vals[p] == getattr(s, a) for p, s in zip(read(x_ho), held, strict=True)])
        print(f"   {a} classifier: {acc:.3f}")
    design = torch.cat([F.normalize(x_tr, dim=-1), torch.ones(len(x_tr), 1)], 1)
    rgb = torch.tensor([s.fg_rgb for s in train]).float() / 255
    coef = torch.linalg.lstsq(design, rgb).solution
    pred = torch.cat([F.normalize(x_ho, dim=-1), torch.ones(len(x_ho), 1)], 1) @ coef
    palette = torch.tensor([domain.PALETTE[c] for c in domain.COLORS]).float() / 255
    nearest = torch.cdist(pred, palette).argmin(1).tolist()
    print(f"   RGB regression → nearest palette colour: "
          f"{np.mean([domain.COLORS[k] == s.color for k, s in zip(nearest, held, strict=True)]):.3f}")

    every = domain.sample_scenes(13, 3000, "any")
    x_all = F.normalize(embed(every), dim=-1)
    readers = {a: probe(x_all, [vals.index(getattr(s, a)) for s in every], len(vals)) for a, vals in attrs.items()}
    rng = np.random.default_rng(0)
    scenes = domain.sample_scenes(21, 160, "heldout_pairs")
    with torch.no_grad():
        cond = st.clip.encode_text([domain.full_caption(s, rng) for s in scenes])
        emb = sample_prior(st.prior, cond, st.empty, guidance=4.0, steps=25, generator=torch.Generator().manual_seed(0))
    print("2. prior samples for 160 held-out-pair captions (guidance 4, 25 steps), read by render-embedding probes:")
    for a, vals in attrs.items():
        acc = np.mean([vals[p] == getattr(s, a) for p, s in zip(readers[a](emb), scenes, strict=True)])
        print(f"   {a}: {acc:.3f}")

    n = args.n_decode
    scenes = domain.sample_scenes(31, n, "heldout_pairs")
    captions = [domain.full_caption(s, rng) for s in scenes]
    true_emb = embed(scenes)
    with torch.no_grad():
        caption_enc = [st.clip.encode_text(captions[i:i + 16]) for i in range(0, n, 16)]
    print(f"3. decoder given the true image embeddings of {n} held-out-pair renders (25 steps, guidance 1.5):")
    print(f"   with the caption: {decode_and_judge(true_emb, caption_enc, scenes)}")
    print(f"   with the empty prompt: {decode_and_judge(true_emb, [st.empty] * len(caption_enc), scenes)}")

    # 4. fit e(repainted) − e(original) ≈ Δrgb·A and rgb ≈ [e, 1]·R on training-split scenes
    from train import data as shapes_data

    fit_rng = np.random.default_rng(1)
    fit = domain.sample_scenes(14, 1500, "train")
    ims = np.stack([domain.render(s, 64) for s in fit])
    fg = np.array([s.fg_rgb for s in fit], np.float32)
    bg = np.array([s.bg_rgb for s in fit], np.float32)
    new = shapes_data.random_object_colors(fit_rng, np.array([domain.SHAPES.index(s.shape) for s in fit]), bg)
    e0, e1 = encode(ims), encode(shapes_data.recolor(ims, bg, fg, new))
    d_rgb = torch.from_numpy((new.astype(np.float32) - fg) / 255)
    color_map = torch.linalg.lstsq(d_rgb, e1 - e0).solution  # (3, D)
    explained = 1 - ((e1 - e0 - d_rgb @ color_map) ** 2).sum() / ((e1 - e0) ** 2).sum()
    both = torch.cat([e0, e1])
    read_rgb = torch.linalg.lstsq(torch.cat([both, torch.ones(len(both), 1)], 1),
                                  torch.from_numpy(np.concatenate([fg, new.astype(np.float32)]) / 255)).solution
    no_color = tuple(a for a in domain.ATTRIBUTES if a != "color")
    print(f"4. prior given the caption without its colour, then a linear colour edit (the map explains "
          f"{explained:.2f} of a repaint's embedding change), {n} held-out-pair prompts:")
    with torch.no_grad():
        e = torch.cat([sample_prior(st.prior, st.clip.encode_text([domain.caption(s, rng, include=no_color)
                                                                    for s in scenes[i:i + 16]]),
                                    st.empty, guidance=4.0, steps=25, generator=torch.Generator().manual_seed(100 + i))
                       for i in range(0, n, 16)])
        # the colour the prior gives the whole caption (its samples carry the colour, not the shape)
        e_full = torch.cat([sample_prior(st.prior, c, st.empty, guidance=4.0, steps=25,
                                         generator=torch.Generator().manual_seed(200 + 16 * k))
                            for k, c in enumerate(caption_enc)])

    def read(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.ones(len(x), 1)], 1) @ read_rgb

    palette_rgb = torch.tensor([domain.PALETTE[s.color] for s in scenes]).float() / 255
    print(f"   prior sample, no edit: {decode_and_judge(e, caption_enc, scenes)}")
    print(f"   + edit to the named colour's palette RGB: "
          f"{decode_and_judge(e + (palette_rgb - read(e)) @ color_map, caption_enc, scenes)}")
    print(f"   + edit to the RGB read from the prior's sample for the whole caption: "
          f"{decode_and_judge(e + (read(e_full) - read(e)) @ color_map, caption_enc, scenes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
