"""A small SAM for Shapes: segment-anything's own modules, a 128-px image encoder, trained on exact masks.

The model is ``segment_anything.modeling.Sam`` assembled by ``nodes.sam.model.build_sam``: an
``ImageEncoderViT`` (128-px input, 8-px patches → a 16×16 embedding, global attention with
relative positions), the stock ``PromptEncoder`` and a ``MaskDecoder`` with a ``TwoWayTransformer``.
Its low-resolution mask is 64×64, upsampled to the input like every SAM.

Data: scenes of the domain's *training* split (seeded), rendered at 128 px from their exact
coverage; half the images get a second object pasted over the first (so the prompt, not "the
thing that is not background", decides the mask; a fraction `p_apart` of them is kept clear of the
first: two whole objects), some get random RGB colours instead of the
palette, some are blurred by a 64-px round trip (what a 64-px image looks like after SAM's resize).
Targets are the visible object's mask (coverage ≥ 0.5) or, for a prompt on the background, the
background. Prompts per image, as in SAM's training: a single positive point (the three multimask
outputs, loss on the best one, plus the single-mask output), a box, a box plus a point, or a
positive plus a negative point (single-mask output). Loss: 20·focal + dice on the masks upsampled
to 128 px, plus MSE between the predicted IoU and the actual IoU of each output.

    python -m train.sam                    # into models/sam-shapes (22 min wall at most, 1 thread)
    python -m train.sam --smoke            # a few steps of a tiny model into /tmp
    python -m train.sam --threads 1 --time-limit 1320 --out models/sam-shapes
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nodes.sam.model import CONFIG_NAME, TINY, WEIGHTS_NAME, build_sam
from nodes.shapes import domain
from train.common import ROOT, record_time, start

log = logging.getLogger("train.sam")


@dataclass
class Config:
    out: str = str(ROOT / "models" / "sam-shapes")
    steps: int = 2000
    batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 60
    n_scenes: int = 6000
    data_seed: int = 0
    seed: int = 0
    threads: int = 1
    init: str = ""  # a model folder to continue training from (same architecture), "" = from scratch
    log_every: int = 25
    prompts: int = 3  # prompt sets per image and step (the decoder is cheap next to the image encoder)
    time_limit: float = 1320.0  # seconds of wall time: the schedule anneals and training stops by then
    # augmentations
    p_second: float = 0.5  # paste a second object
    p_apart: float = 0.0  # of those, the fraction kept clear of the first (a two-object scene, nothing hidden)
    p_rgb: float = 0.25  # random RGB object / background colours instead of the palette ones
    p_blur: float = 0.3  # 64-px round trip
    # architecture
    img_size: int = 128
    patch_size: int = 8
    encoder_embed_dim: int = 96
    encoder_depth: int = 3
    encoder_num_heads: int = 3
    prompt_embed_dim: int = 96
    decoder_depth: int = 2
    decoder_mlp_dim: int = 384
    decoder_heads: int = 4
    # evaluation at the end (held-out scenes, another seed)
    eval_n: int = 100
    eval_seed: int = 1001


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke-sam", steps=3, batch=4, n_scenes=32, log_every=1, eval_n=4,
                  img_size=32, encoder_embed_dim=16, encoder_depth=1, encoder_num_heads=2, prompt_embed_dim=16,
                  decoder_depth=1, decoder_mlp_dim=32, decoder_heads=2)


def model_config(cfg: Config) -> dict:
    return dict(TINY, img_size=cfg.img_size, patch_size=cfg.patch_size, window_size=0, use_rel_pos=True,
                encoder_embed_dim=cfg.encoder_embed_dim, encoder_depth=cfg.encoder_depth,
                encoder_num_heads=cfg.encoder_num_heads, encoder_global_attn_indexes=list(range(cfg.encoder_depth)),
                prompt_embed_dim=cfg.prompt_embed_dim, decoder_depth=cfg.decoder_depth,
                decoder_mlp_dim=cfg.decoder_mlp_dim, decoder_heads=cfg.decoder_heads,
                iou_head_hidden_dim=cfg.prompt_embed_dim, iou_head_depth=3, mask_in_chans=16,
                num_multimask_outputs=3)


# --- data -------------------------------------------------------------------------------------

def make_pool(cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coverage (N, S, S) uint8 and palette colours (N, 3) fg / bg of training-split scenes.

    Cached under data/ (git-ignored): the same seed, count and size always give the same pool."""
    cache = ROOT / "data" / f"sam_pool_seed{cfg.data_seed}_n{cfg.n_scenes}_{cfg.img_size}px.npz"
    if cache.exists():
        with np.load(cache) as f:
            return f["coverage"], f["fg"], f["bg"]
    scenes = domain.sample_scenes(cfg.data_seed, cfg.n_scenes, "train")
    cov = np.stack([np.rint(domain.coverage(s, cfg.img_size) * 255).astype(np.uint8) for s in scenes])
    fg = np.array([s.fg_rgb for s in scenes], np.float32)
    bg = np.array([s.bg_rgb for s in scenes], np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, coverage=cov, fg=fg, bg=bg)
    return cov, fg, bg


def _random_rgb(rng: np.random.Generator, *others: np.ndarray) -> np.ndarray:
    while True:  # keep the object visible: at least 80 apart in RGB from the colours it meets
        c = rng.uniform(0, 255, 3).astype(np.float32)
        if all(np.linalg.norm(c - o) >= 80 for o in others):
            return c


def _second_index(pool, i: int, cfg: Config, rng: np.random.Generator) -> int:
    """A pool scene to paste over scene i: for a fraction `p_apart`, one whose object keeps clear of the
    first (a two-object scene); otherwise any (it may hide part of the first)."""
    cov = pool[0]
    apart = rng.random() < cfg.p_apart
    for _ in range(50):
        j = int(rng.integers(len(cov)))
        if not apart or not ((cov[i] > 0) & (cov[j] > 0)).any():
            return j
    return j


def make_batch(pool, cfg: Config, rng: np.random.Generator):
    """Images (B, S, S, 3) float 0..255 and per-image object masks: list of (K_i, S, S) bool (visible)."""
    cov, fg, bg = pool
    images, objects = [], []
    for _ in range(cfg.batch):
        i = int(rng.integers(len(cov)))
        a1 = cov[i].astype(np.float32)[..., None] / 255
        f1, b = fg[i], bg[i]
        if rng.random() < cfg.p_rgb:
            b = _random_rgb(rng, f1)
        if rng.random() < cfg.p_rgb:
            f1 = _random_rgb(rng, b)
        img = a1 * f1 + (1 - a1) * b
        masks = [a1[..., 0] >= 0.5]
        if rng.random() < cfg.p_second:
            j = _second_index(pool, i, cfg, rng)
            a2 = cov[j].astype(np.float32)[..., None] / 255
            f2 = fg[j]
            if min(np.linalg.norm(f2 - b), np.linalg.norm(f2 - f1)) < 80:
                f2 = _random_rgb(rng, b, f1)
            img = a2 * f2 + (1 - a2) * img
            m2 = a2[..., 0] >= 0.5
            masks = [masks[0] & ~m2, m2]
        masks = [m for m in masks if m.sum() >= 4]
        images.append(img)
        objects.append(np.stack(masks))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # (B, 3, S, S)
    if cfg.p_blur > 0:
        blur = torch.from_numpy(rng.random(len(x)) < cfg.p_blur)
        if blur.any():
            s = x.shape[-1]
            low = F.interpolate(F.avg_pool2d(x[blur], 2), size=(s, s), mode="bilinear", align_corners=False)
            x[blur] = low
    return x, objects


def sample_prompts(objects, kind: str, rng: np.random.Generator, side: int):
    """Prompts of one kind for every image: (coords (B, n, 2) | None, labels (B, n) | None, boxes (B, 4) | None,
    targets (B, S, S) float)."""
    coords, labels, boxes, targets = [], [], [], []
    for masks in objects:
        union = masks.any(0)
        if kind == "background":
            target = ~union
        else:
            target = masks[int(rng.integers(len(masks)))]

        def point_in(m: np.ndarray) -> list[float]:
            ys, xs = np.nonzero(m)
            k = int(rng.integers(len(xs)))
            # SAM's point coordinates are pixel indices (the prompt encoder adds 0.5); users give fractions
            return [float(xs[k] + rng.uniform(-0.5, 0.5)), float(ys[k] + rng.uniform(-0.5, 0.5))]

        pts, lab = [], []
        if kind in ("point", "background", "point_negative", "box_point"):
            pts.append(point_in(target))
            lab.append(1)
        if kind == "point_negative":
            pts.append(point_in(~target))
            lab.append(0)
        if kind in ("box", "box_point"):
            ys, xs = np.nonzero(target)
            x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
            w, h = x1 - x0 + 1, y1 - y0 + 1
            jit = rng.normal(0, 0.05, 4) * np.array([w, h, w, h])
            boxes.append(np.clip(np.array([x0, y0, x1, y1], np.float32) + jit, 0, side - 1))
        coords.append(pts)
        labels.append(lab)
        targets.append(target)
    t = torch.from_numpy(np.stack(targets).astype(np.float32))
    c = torch.tensor(coords, dtype=torch.float32) if coords[0] else None
    lab_t = torch.tensor(labels, dtype=torch.int64) if labels[0] else None
    b = torch.from_numpy(np.stack(boxes)) if boxes else None
    return c, lab_t, b, t


# --- model pieces -------------------------------------------------------------------------------

def decode(sam, emb: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor):
    """``MaskDecoder.predict_masks`` for one prompt set per image (the stock one repeats each image
    embedding for every prompt of one image). Returns all mask logits (B, 1+M, h, w) and IoU (B, 1+M)."""
    dec = sam.mask_decoder
    out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    tokens = torch.cat((out_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse), dim=1)
    src = emb + dense
    pos = sam.prompt_encoder.get_dense_pe().expand(src.size(0), -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = dec.transformer(src, pos, tokens)
    iou_out, mask_out = hs[:, 0, :], hs[:, 1:1 + dec.num_mask_tokens, :]
    up = dec.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper = torch.stack([mlp(mask_out[:, i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1)
    b, c, h, w = up.shape
    return (hyper @ up.view(b, c, h * w)).view(b, -1, h, w), dec.iou_prediction_head(iou_out)


def mask_losses(logits: torch.Tensor, target: torch.Tensor):
    """Per-sample 20·focal + dice (B,) and the actual IoU (B,) of logits (B, S, S) vs target (B, S, S)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    alpha = 0.25 * target + 0.75 * (1 - target)
    focal = (alpha * ce * (1 - pt) ** 2).mean((1, 2))
    dice = 1 - (2 * (p * target).sum((1, 2)) + 1) / (p.sum((1, 2)) + target.sum((1, 2)) + 1)
    with torch.no_grad():
        hard = (logits > 0).float()
        inter = (hard * target).sum((1, 2))
        iou = inter / ((hard + target).clamp(max=1).sum((1, 2))).clamp(min=1)
    return 20 * focal + dice, iou


PROMPT_KINDS = ("point", "point", "box", "point_negative", "box_point", "background")


def prompt_loss(sam, emb, objects, kind, rng, side):
    coords, labels, boxes, target = sample_prompts(objects, kind, rng, side)
    points = (coords, labels) if coords is not None else None
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
    low, iou_pred = decode(sam, emb, sparse, dense)
    up = F.interpolate(low, size=(side, side), mode="bilinear", align_corners=False)
    outs = [0] + ([1, 2, 3] if kind in ("point", "background") else [])
    losses, ious = zip(*(mask_losses(up[:, i], target) for i in outs), strict=True)
    losses, ious = torch.stack(losses, 1), torch.stack(ious, 1)  # (B, len(outs))
    iou_loss = F.mse_loss(iou_pred[:, outs], ious)
    if len(outs) > 1:  # SAM: only the best of the three multimask outputs is trained on the mask
        mask_loss = losses[:, 0].mean() + losses[:, 1:].min(1).values.mean()
    else:
        mask_loss = losses[:, 0].mean()
    return mask_loss + iou_loss, ious[:, -1].mean().item() if len(outs) == 1 else ious[:, 1:].max(1).values.mean().item()


def finer_patches(state: dict[str, torch.Tensor], old: int, new: int) -> dict[str, torch.Tensor]:
    """A warm start for a smaller patch size (same image size): the state dict of a SAM with `old`-px
    patches, for `new`-px ones (old = k · new).

    The new patch embedding is exactly the old one applied to the image enlarged k× (nearest): each
    new kernel tap sums a k×k block of the old kernel. The absolute position embedding and the
    relative-position tables (the image grid grows k×) are interpolated, as segment-anything itself
    does for relative positions of other lengths.
    """
    k = old // new
    if k * new != old or k < 2:
        raise SystemExit(f"cannot go from {old}-px patches to {new}-px ones: the old size must be a multiple")
    out = dict(state)
    w = state["image_encoder.patch_embed.proj.weight"]  # (C, 3, old, old)
    out["image_encoder.patch_embed.proj.weight"] = w.reshape(*w.shape[:2], new, k, new, k).sum((3, 5))
    pos = state["image_encoder.pos_embed"]  # (1, g, g, C)
    grid = pos.shape[1] * k
    out["image_encoder.pos_embed"] = F.interpolate(pos.permute(0, 3, 1, 2), size=(grid, grid), mode="bicubic",
                                                   align_corners=False).permute(0, 2, 3, 1)
    for key, table in state.items():
        if key.endswith(("attn.rel_pos_h", "attn.rel_pos_w")):  # (2g − 1, head_dim)
            out[key] = F.interpolate(table.T[None], size=2 * grid - 1, mode="linear")[0].T
    return out


# --- evaluation ---------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(sam, n: int, seed: int, size: int, sizes: tuple[int, ...] = (64, 128, 256)) -> dict[str, float]:
    """Mean IoU on held-out scenes (another seed; held-out attribute combinations and colour–shape
    pairs) from one positive point at a random pixel of the object, via segment-anything's SamPredictor:
    one-object scenes at `size`, and two-object scenes (`domain.two_object_scenes`, a point per object)
    at each of `sizes`."""
    from segment_anything import SamPredictor

    rng = np.random.default_rng(seed)
    half = n // 2
    single = [(s,) for s in domain.sample_scenes(seed, half, "heldout_combos")
              + domain.sample_scenes(seed + 1, n - half, "heldout_pairs")]
    pairs = domain.two_object_scenes(seed, half, "heldout_combos") + domain.two_object_scenes(seed + 1, n - half,
                                                                                            "heldout_pairs")
    predictor = SamPredictor(sam)

    def point_iou(images, side: int) -> float:
        ious = []
        for scenes in images:
            image, truths = domain.render_layers(list(scenes), side)
            predictor.set_image(image)
            for truth in truths:
                ys, xs = np.nonzero(truth)
                k = int(rng.integers(len(xs)))
                masks, scores, _ = predictor.predict(point_coords=np.array([[xs[k], ys[k]]], np.float32),
                                                     point_labels=np.array([1]), multimask_output=True)
                m = masks[int(np.argmax(scores))]
                ious.append((m & truth).sum() / max(1, (m | truth).sum()))
        return float(np.mean(ious))

    out = {"point_iou": point_iou(single, size), "n": n, "size": size}
    for side in sizes:
        out[f"two_object_point_iou_{side}"] = point_iou(pairs, side)
    return out


def save(sam, mcfg: dict, out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in sam.state_dict().items()}
    save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt", "layout": "segment_anything.Sam"})
    (out / CONFIG_NAME).write_text(json.dumps(mcfg, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    cfg, out, timer = start(Config, argv, smoke)
    cpu0 = time.process_time()
    rng = np.random.default_rng(cfg.seed)
    pool = make_pool(cfg)
    log.info("pool of %d training scenes at %d px in %.0f s", len(pool[0]), cfg.img_size, timer())

    mcfg = model_config(cfg)
    sam = build_sam(mcfg)
    if cfg.init:
        from nodes.sam.model import load_sam

        init_sam, init_cfg = load_sam(cfg.init)
        if init_cfg == mcfg:
            sam = init_sam
        elif {k for k in mcfg if mcfg[k] != init_cfg.get(k)} == {"patch_size"}:
            sam.load_state_dict(finer_patches(init_sam.state_dict(), init_cfg["patch_size"], cfg.patch_size))
            log.info("patch size %d → %d: weights adapted", init_cfg["patch_size"], cfg.patch_size)
        else:
            raise SystemExit(f"--init {cfg.init}: its architecture differs from the config's (beyond the patch size)")
        log.info("continuing from %s", cfg.init)
    sam.train()
    log.info("Sam with %.2f M parameters: %s", sum(p.numel() for p in sam.parameters()) / 1e6, json.dumps(mcfg))
    opt = torch.optim.AdamW(sam.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_factor(s: int) -> float:
        # warm-up, then cosine over the run, measured in steps or in wall time, whichever runs out first
        # (the machine is shared: the schedule still anneals when steps are slower than planned)
        progress = min(1.0, max(s / cfg.steps, timer() / cfg.time_limit))
        return min(1.0, (s + 1) / cfg.warmup) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * progress)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    side = cfg.img_size
    mean, std = sam.pixel_mean, sam.pixel_std
    step = 0
    for step in range(1, cfg.steps + 1):
        x, objects = make_batch(pool, cfg, rng)
        emb = sam.image_encoder((x - mean) / std)
        kinds = [PROMPT_KINDS[int(k)] for k in rng.integers(len(PROMPT_KINDS), size=cfg.prompts)]
        results = [prompt_loss(sam, emb, objects, kind, rng, side) for kind in kinds]
        loss = sum(r[0] for r in results) / len(results)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sam.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step == 1:
            log.info("step %d/%d loss %.4f train IoU %s lr %.2e (%.0f s)", step, cfg.steps, loss.item(),
                     " ".join(f"{k}={r[1]:.3f}" for k, r in zip(kinds, results, strict=True)), sched.get_last_lr()[0], timer())
        if timer() > cfg.time_limit:
            log.warning("time limit %.0f s reached at step %d; saving", cfg.time_limit, step)
            break
    train_seconds, cpu_seconds = timer(), time.process_time() - cpu0
    sam.eval()
    save(sam, mcfg, out)
    # evaluate what was saved (fp16 storage), through the loader the nodes use
    from nodes.sam.model import load_sam

    saved, _ = load_sam(out)
    metrics = evaluate(saved, cfg.eval_n, cfg.eval_seed, cfg.img_size)
    log.info("held-out point IoU on %d scenes: %s", metrics["n"], metrics)
    previous = json.loads((out / "training_log.json").read_text()) if (out / "training_log.json").exists() else {}
    stage = "sam" if not cfg.init else f"sam+{sum(k.startswith('sam') for k in previous)}"  # a continuation
    record_time(out, stage, train_seconds, {"steps": step, "batch": cfg.batch, "cpu_seconds": round(cpu_seconds, 1),
                                           "config": asdict(cfg),
                                            "heldout_point_iou": round(metrics["point_iou"], 4),
                                            "heldout": {k: round(v, 4) for k, v in metrics.items()}})
    print(f"saved {out / WEIGHTS_NAME} ({(out / WEIGHTS_NAME).stat().st_size / 1e6:.1f} MB); "
          f"held-out point IoU {metrics['point_iou']:.3f}; {train_seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
