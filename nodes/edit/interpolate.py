"""Interpolation strip: decode images along a slerp path in CLIP space, one per step, same seed for all."""

from __future__ import annotations

import nodegraph
from nodegraph import IMAGE, Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CONDITIONING, DECODER, EMBEDDING, Scheduler
from .common import check_embedding

CHUNK = 16  # frames decoded per batch


def path_embeddings(a, b, frames: int):
    """Embeddings along the slerp path: with `b`, (R·frames, D) grouped by row r of a/b (broadcast);
    without, a (K ≥ 2, D) is a chain of keyframes and the path through them has `frames` points."""
    import torch

    from ..unclip.api import slerp

    ts = [i / (frames - 1) for i in range(frames)]
    if b is not None:
        if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
            raise NodeExecutionError(f"a has {a.shape[0]} embeddings and b {b.shape[0]}; give one each, or "
                                     "batches of the same size")
        rows = max(a.shape[0], b.shape[0])
        a, b = a.expand(rows, -1), b.expand(rows, -1)
        return torch.stack([slerp(a, b, t) for t in ts], dim=1).reshape(rows * frames, -1), rows
    if a.shape[0] < 2:
        raise NodeExecutionError("give two embeddings (a and b), or a batch of at least 2 keyframe embeddings "
                                 "in a (e.g. Embedding Batch)")
    segments = a.shape[0] - 1
    out = []
    for t in ts:
        pos = t * segments
        k = min(int(pos), segments - 1)
        out.append(slerp(a[k:k + 1], a[k + 1:k + 2], pos - k))
    return torch.cat(out), 1


def decode_frames(model, embs, cond, uncond, guidance: float, steps: int, seed: int, scheduler: str | None = None,
                  progress=None):
    """Decode embeddings (N, D) → (N, 3, S, S) in [0, 1], every frame from the same initial noise.

    The noise is (1, C, S, S) drawn from generator(seed), as the Decoder node draws it; frames are
    decoded in batches of CHUNK (a stochastic sampler's step noise comes from the same seeded stream
    per batch; DDIM, the shipped decoder's sampler, has none). `progress(done, total)` per step.
    """
    import torch

    from ..unclip.api import generator, sample_decoder

    n = embs.shape[0]
    size, channels = model.sample_size, model.unet.config.in_channels
    chunks = [(k, min(n, k + CHUNK)) for k in range(0, n, CHUNK)]
    total = len(chunks) * steps
    out = []
    for c, (k0, k1) in enumerate(chunks):
        gen = generator(seed)
        noise = torch.randn((1, channels, size, size), generator=gen, dtype=model.unet.dtype)
        callback = None if progress is None else (lambda i, _n, _p, c=c: progress(c * steps + i, total))
        out.append(sample_decoder(model, embs[k0:k1], cond, uncond, guidance=guidance, steps=steps, generator=gen,
                                  scheduler=scheduler, latents=noise.expand(k1 - k0, -1, -1, -1),
                                  callback=callback))
    return torch.cat(out)


def strip(frames, rows: int, padding: int):
    """(rows·n, H, W, 3) frames → one (1, rows·H + pads, n·W + pads, 3) image, white between frames."""
    import numpy as np

    total, h, w, _ = frames.shape
    n = total // rows
    out = np.ones((rows * h + (rows - 1) * padding, n * w + (n - 1) * padding, 3), np.float32)
    for r in range(rows):
        for c in range(n):
            y, x = r * (h + padding), c * (w + padding)
            out[y:y + h, x:x + w] = frames[r * n + c]
    return out[None]


class InterpolationStrip(Node):
    """Decode images along a slerp path between CLIP embeddings and show them as a strip.

    One image per step from `a` to `b` (or through a batch of keyframes in `a`), every frame decoded
    from the same initial noise (the seed's), so what changes between frames is the embedding only
    (DALL·E 2's interpolations). The strip is shown on the node in the editor.
    """

    name = "interpolation_strip"
    title = "Interpolation Strip"
    category = "edit"

    class Inputs(nodegraph.Inputs):
        decoder: DECODER = Port(description="A loaded decoder.")
        a: EMBEDDING = Port(description="Start embeddings (1 or R rows), or ≥ 2 keyframes when b is not given.")
        b: EMBEDDING = Port(None, description="End embeddings (1 or R rows); optional.")
        conditioning: CONDITIONING = Port(description="Encoded prompt the decoder attends to for every frame "
                                          "(an empty prompt for pure image interpolation).")
        frames: int = Port(6, ge=2, le=64, description="Images along the path, ends included.")
        guidance: float = Port(1.5, ge=0.0, le=30.0, step=0.5, description="Classifier-free guidance scale.")
        steps: int = Port(25, ge=2, le=1000, description="Denoising steps per frame.")
        scheduler: Scheduler = Port("default", description="Sampler: the checkpoint's own ('default'), or "
                                    "another diffusers scheduler built from its config.")
        seed: nodegraph.Seed = Port(0, description="Random seed: the same initial noise "
                                    "for every frame.")
        padding: int = Port(2, ge=0, le=64, description="White pixels between frames in the strip.")

    class Outputs(nodegraph.Outputs):
        frames: IMAGE = Port(description="The frames, (R × frames, S, S, 3), grouped by row.")
        strip: IMAGE = Port(description="The frames side by side, one row per start/end pair, (1, H, W, 3).")
        embedding: EMBEDDING = Port(description="The interpolated embeddings, one per frame.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from ..unclip.api import library_errors

        model = inputs.decoder.model
        a = check_embedding(inputs.a, model, "a")
        b = None if inputs.b is None else check_embedding(inputs.b, model, "b")
        cond = inputs.conditioning
        if len(cond.cond) != 1:
            raise NodeExecutionError(f"conditioning has {len(cond.cond)} prompts; give one prompt for all frames")
        embs, rows = path_embeddings(a, b, inputs.frames)
        with torch.inference_mode(), library_errors():
            frames = nodegraph.from_tensor(decode_frames(
                model, embs, cond.cond, cond.uncond, guidance=inputs.guidance, steps=inputs.steps,
                seed=inputs.seed, scheduler=None if inputs.scheduler == "default" else inputs.scheduler,
                progress=lambda done, total: ctx.progress(done, total)))
        strip_image = strip(frames, rows, inputs.padding)
        nodegraph.preview_images(ctx, strip_image, "interpolation_strip")
        return self.Outputs(frames=frames, strip=strip_image, embedding=embs)
