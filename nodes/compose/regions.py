"""The MultiDiffusion decoder node: region prompts in boxes or masks, and canvases wider than the decoder."""

from __future__ import annotations

from typing import Any

import nodegraph
from nodegraph import IMAGE, MASK, Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CONDITIONING, DECODER, EMBEDDING, Scheduler


def parse_boxes(text: str, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """'x0 y0 x1 y1' per line (fractions of the canvas, 0–1; commas allowed) → pixel boxes (x0, y0, x1, y1)."""
    boxes = []
    for n, line in enumerate((ln for ln in text.splitlines() if ln.strip()), start=1):
        parts = line.replace(",", " ").split()
        try:
            x0, y0, x1, y1 = (float(v) for v in parts)
        except ValueError:
            raise NodeExecutionError(f"regions line {n} is {line.strip()!r}; expected four numbers 'x0 y0 x1 y1', "
                                     "fractions of the canvas from 0 to 1 (e.g. '0 0 0.5 0.5')") from None
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise NodeExecutionError(f"regions line {n} ({line.strip()}) is not a box inside the canvas; need "
                                     "0 ≤ x0 < x1 ≤ 1 and 0 ≤ y0 < y1 ≤ 1")
        px = (round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height))
        boxes.append((px[0], px[1], max(px[2], px[0] + 1), max(px[3], px[1] + 1)))
    return boxes


def region_masks(boxes_text: str, masks: Any, width: int, height: int):
    """(R, H, W) float masks on the canvas from boxes or a MASK (resized), or None for a panorama."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if masks is not None:
        if boxes_text.strip():
            raise NodeExecutionError("both regions (boxes) and masks are given; connect masks or type boxes, not both")
        arr = np.asarray(masks, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or 0 in arr.shape or not np.isfinite(arr).all():
            raise NodeExecutionError(f"masks: expected a finite MASK of shape (R, H, W), got {arr.shape}")
        m = torch.from_numpy(np.clip(arr, 0, 1))[:, None]
        return F.interpolate(m, size=(height, width), mode="nearest")[:, 0]
    boxes = parse_boxes(boxes_text, width, height)
    if not boxes:
        return None
    out = torch.zeros(len(boxes), height, width)
    for r, (x0, y0, x1, y1) in enumerate(boxes):
        out[r, y0:y1, x0:x1] = 1
    return out


def _rows(encoding: Any, rows: list[int]):
    """The given rows of a TextEncoding."""
    from ..unclip.api import TextEncoding

    return TextEncoding(encoding.embeds[rows], encoding.hidden[rows], encoding.mask[rows])


class MultiDiffusion(Node):
    """Decode one canvas from several prompts with MultiDiffusion: fused denoising of overlapping windows.

    With regions (boxes or masks), prompt k paints region k: its window (the decoder's size, centred
    on the region) is denoised with prompt k's image embedding and text, weighted 1 inside the region,
    0 inside the others and `background` elsewhere, and all windows are averaged at every step;
    with `isolate`, each region's window shows the other regions as background. In
    the Shapes domain the image embedding says where the object is within the window, so name a
    position that falls in the box. Without regions: a panorama of windows slid by `stride`. The
    prior's `count` makes that many canvases.
    """

    name = "multidiffusion"
    search_aliases = ("regional prompt", "region prompts", "panorama", "multi diffusion", "tiled diffusion")
    title = "MultiDiffusion (regions, panorama)"
    category = "compose"

    class Inputs(nodegraph.Inputs):
        decoder: DECODER = Port(description="A loaded decoder.")
        image_embedding: EMBEDDING = Port(description="CLIP image embeddings, (P, D): one row per region (or "
                                          "per panorama window) for each canvas, prompt-major as the prior gives "
                                          "them; a panorama of one prompt makes one canvas per row.")
        conditioning: CONDITIONING = Port(description="Encoded prompts the decoder attends to: one per embedding "
                                          "row, or one for all.")
        width: int = Port(96, ge=8, le=1024, step=8, description="Canvas width in decoder pixels (the decoder "
                          "window is its training size, 32 for shapes-unclip).")
        height: int = Port(32, ge=8, le=1024, step=8, description="Canvas height in decoder pixels.")
        regions: nodegraph.Text = Port("", description="One box per line, 'x0 y0 x1 y1' as fractions of the "
                                       "canvas; line k is embedding row k's region. Empty: masks, or a panorama.")
        masks: MASK | None = Port(None, description="Region masks instead of boxes, (R, H, W), any size (resized "
                                  "to the canvas); mask k is embedding row k's region.")
        background: float = Port(1.0, ge=0.0, le=1.0, step=0.05, description="Weight of each region's prompt "
                                 "outside every region (the shared background); 0 leaves pixels no region covers "
                                 "without a prompt.")
        isolate: float = Port(1.0, ge=0.0, le=1.0, step=0.05, description="Regions: fraction of the steps "
                              "(from the first) in which each region's window shows the other regions as plain "
                              "background, so a decoder trained on one object per image paints its own; 0: off "
                              "(every window sees the whole canvas, as in the paper).")
        stride: int = Port(16, ge=1, le=1024, description="Panorama (and regions larger than a window): pixels "
                           "between window origins (smaller: more overlap, smoother, slower).")
        guidance: float = Port(1.5, ge=0.0, le=30.0, step=0.5, description="Classifier-free guidance scale.")
        steps: int = Port(25, ge=2, le=1000, description="Denoising steps.")
        scheduler: Scheduler = Port("default", description="Sampler (as the Decoder node's).")
        seed: nodegraph.Seed = Port(0, description="Random seed.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="The canvases at the decoder's scale, (B, H, W, 3).",
                             shape=(None, "height", "width", 3))
        masks: MASK = Port(description="The regions on the canvas, (R, H, W); for a panorama the windows' "
                           "coverage count, (1, H, W).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from ..unclip.api import generator, library_errors, progress
        from .multidiffusion import coverage, panorama_paths, region_paths, sample_multidiffusion

        model = inputs.decoder.model
        emb = inputs.image_embedding
        if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[0] == 0:
            raise NodeExecutionError("image_embedding: expected CLIP embeddings (P, D); connect a prior or CLIP "
                                     "Image Encode")
        cond = inputs.conditioning
        size, h, w = model.sample_size, inputs.height, inputs.width
        if h < size or w < size:
            raise NodeExecutionError(f"the canvas {w}×{h} is smaller than the decoder's {size}×{size} window; "
                                     f"make width and height at least {size}")
        masks = region_masks(inputs.regions, inputs.masks, w, h)
        with torch.inference_mode(), library_errors():
            if masks is None:
                windows = len(panorama_paths(h, w, size, inputs.stride, 1))
                group = windows if len(cond) == windows > 1 else 1  # one prompt per window, or one for all
                paths = panorama_paths(h, w, size, inputs.stride, group)
                used = coverage(paths, h, w)[None]
            else:
                group = masks.shape[0]
                paths = region_paths(masks, size, inputs.background, inputs.stride)
                used = masks
            if emb.shape[0] % group or len(cond) not in (1, group, emb.shape[0]):
                raise NodeExecutionError(f"{emb.shape[0]} image embeddings and {len(cond)} prompts for {group} "
                                         f"{'regions' if masks is not None else 'windows'}; give a multiple of "
                                         f"{group} embeddings (the prior on one prompt per line) and one prompt, one "
                                         "per region or one per embedding")
            canvases = emb.shape[0] // group  # rows are prompt-major: region r of canvas j is row r × canvases + j
            gen, images = generator(inputs.seed), []
            for j in range(canvases):
                rows = [r * canvases + j for r in range(group)]
                text = cond.cond if len(cond) == 1 else _rows(cond.cond, rows if len(cond) == emb.shape[0]
                                                              else list(range(group)))
                images.append(sample_multidiffusion(
                    model, emb[rows].float(), text, cond.uncond, paths, h, w, guidance=inputs.guidance,
                    steps=inputs.steps, generator=gen, scheduler=None if inputs.scheduler == "default"
                    else inputs.scheduler, callback=progress(ctx, j * inputs.steps, canvases * inputs.steps),
                    isolate=inputs.isolate))
            image = torch.cat(images)
        return self.Outputs(images=nodegraph.from_tensor(image), masks=used.numpy().astype("float32"))
