"""Does an upsampler with an embedding path (`super_res_embed/`) use the embedding? Its denoising loss on
held-out training-generator scenes with each scene's own CLIP image embedding, another scene's, and none.

    .venv/bin/python bench/upsampler_embed_probe.py models/shapes-unclip-upemb --n 256 --cache /tmp/pairs

Scenes of data seed `--seed` (not the training split's 0), their 64 px renders' CLIP image embeddings (the
bundle's CLIP), 32 px conditioning as rendered, blurred (Gaussian σ 1 px, as soft as the decoder's), and
decoder-made (the first `--n-decoded` scenes noised part of the way and denoised by the shipped decoder,
`upsampler_decoded`'s pairs, those still showing their scene; cached in `--cache`), noise at t uniform in
[100, 900) of 1,000, the same draws for every row; the shipped upsampler as a reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodes.unclip.models import load_upsampler  # noqa: E402
from nodes.unclip.models.upsampler import upscale_condition  # noqa: E402
from train import data as shapes_data  # noqa: E402
from train.common import SHIPPED, Timer, image_embeddings, load_clip_frozen  # noqa: E402
from train.upsampler import scheduler  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("upsampler", type=Path, help="a folder with super_res_first/ and super_res_embed/")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--n-decoded", type=int, default=256, help="scenes decoded for the decoder-made row (0: none)")
    p.add_argument("--cache", default="", help="folder of the decoded pairs (default: a temporary folder)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, base = load_upsampler(args.upsampler), load_upsampler(SHIPPED)
    if model.embed is None:
        raise SystemExit(f"{args.upsampler} has no super_res_embed/: nothing to probe")
    ds = shapes_data.generate(args.seed, args.n)
    emb = image_embeddings(load_clip_frozen(SHIPPED), ds.images64)
    abar = scheduler().alphas_cumprod
    hr = shapes_data.to_tensor(ds.images64) * 2 - 1
    conds = {"32 px blur σ 0.0": (torch.arange(args.n), shapes_data.to_tensor(ds.images32) * 2 - 1)}
    from torchvision.transforms.functional import gaussian_blur

    conds["32 px blur σ 1.0"] = (torch.arange(args.n), gaussian_blur(conds["32 px blur σ 0.0"][1], 7, 1.0))
    if args.n_decoded > 0:
        from train import upsampler_decoded

        rows, images, _ = upsampler_decoded.decoded_pairs(upsampler_decoded.Config(
            out=str(SHIPPED), n_decoded=args.n_decoded, data_seed=args.seed, n_data=args.n, cache=args.cache,
            threads=args.threads), ds, Timer())
        conds[f"decoder-made ({len(rows)} of {min(args.n, args.n_decoded)})"] = (
            torch.from_numpy(rows), shapes_data.to_tensor(images) * 2 - 1)
    for label, (rows, low) in conds.items():
        torch.manual_seed(1)  # the same t and noise per scene for every row
        t = torch.randint(100, 900, (args.n,))[rows]
        noise = torch.randn_like(hr)[rows]
        a = abar[t].view(-1, 1, 1, 1)
        x = torch.cat([a.sqrt() * hr[rows] + (1 - a).sqrt() * noise, upscale_condition(low, 64)], 1)
        e_own = emb[rows]
        with torch.inference_mode():
            row = {"shipped": F.mse_loss(base.first(x, t).sample, noise).item()}
            for name, e in (("own", e_own), ("another scene's", e_own.roll(1, 0)), ("none", None)):
                row[name] = F.mse_loss(model.first(x, t, class_labels=model.class_labels(e, len(rows))).sample,
                                       noise).item()
        print(f"{label}: " + "  ".join(f"{k} {v:.5f}" for k, v in row.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
