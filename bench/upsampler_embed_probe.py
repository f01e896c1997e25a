"""Does an upsampler with an embedding path (`super_res_embed/`) use the embedding? Its denoising loss on
held-out training-generator scenes with each scene's own CLIP image embedding, another scene's, and none.

    .venv/bin/python bench/upsampler_embed_probe.py models/shapes-unclip-upemb --n 256

Scenes of data seed `--seed` (not the training split's 0), their 64 px renders' CLIP image embeddings (the
bundle's CLIP), 32 px conditioning as rendered and blurred (Gaussian σ 1 px, as soft as the decoder's),
noise at t uniform in [100, 900) of 1,000, the same draws for every row; the shipped upsampler as a reference.
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
from train.common import SHIPPED, image_embeddings, load_clip_frozen  # noqa: E402
from train.upsampler import scheduler  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("upsampler", type=Path, help="a folder with super_res_first/ and super_res_embed/")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--seed", type=int, default=4242)
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
    for blur in (0.0, 1.0):
        torch.manual_seed(1)
        low = shapes_data.to_tensor(ds.images32) * 2 - 1
        if blur:
            from torchvision.transforms.functional import gaussian_blur

            low = gaussian_blur(low, 7, blur)
        t = torch.randint(100, 900, (args.n,))
        a = abar[t].view(-1, 1, 1, 1)
        noise = torch.randn_like(hr)
        x = torch.cat([a.sqrt() * hr + (1 - a).sqrt() * noise, upscale_condition(low, 64)], 1)
        with torch.inference_mode():
            row = {"shipped": F.mse_loss(base.first(x, t).sample, noise).item()}
            for name, e in (("own", emb), ("another scene's", emb.roll(1, 0)), ("none", None)):
                row[name] = F.mse_loss(model.first(x, t, class_labels=model.class_labels(e, args.n)).sample,
                                       noise).item()
        print(f"32 px blur σ {blur}: " + "  ".join(f"{k} {v:.5f}" for k, v in row.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
