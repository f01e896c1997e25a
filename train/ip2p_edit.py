"""The edit prior for InstructPix2Pix: (input's CLIP image embedding, instruction) → edited scene's embedding.

Data: `n_data` instruction edits of training-split scenes (`nodes.shapes.edits`, kinds in turn,
training phrasings only, edited scenes in the training split — the same pairs `train/ip2p.py`
draws), rendered before and after at 64 px; inputs are the source render's CLIP image embedding and
the instruction's CLIP text encoding (pooled + token states), the target is the edited render's CLIP
image embedding, all by the base bundle's frozen CLIP. A share `p_drop` of rows gets the empty
instruction and the source embedding as target (an empty instruction edits nothing); a share
`p_caption` gets, instead of the instruction, a domain caption of the edited scene that names only the
changed attribute ("a huge object", "shape on a black background"; `domain.caption`, or with
probability `caption_mix` the wider second writer `nodes.shapes.captions`), so that the prior reads the caption vocabulary and not only the instruction templates. Size edits
are drawn `size_rate` times as often as each other kind (their change is the smallest in CLIP space).

Model: `nodes.instruct.edit_prior.EditPrior` (a 2-layer transformer; output head zero-initialised, so
training starts from the identity). Loss: mean squared error of the predicted and true embedding,
both divided by the input embedding's norm, plus (1 − cosine), plus `probe_weight` × the
cross-entropy of frozen linear attribute probes (fitted on the training renders' embeddings) read on
the prediction, against the edited scene's five attributes. AdamW, warm-up then cosine decay.

Output: `<out>/<ip2p>/edit_prior/` (config.json + fp16 safetensors) and `edit_prior/training_log.json`
(wall and CPU time, the final loss and the cosine on `n_check` held-aside pairs).

    python -m train ip2p_edit [--smoke] [--steps N] [--threads T] [--out MODELS_DIR] [--bundle DIR]
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

from nodes.instruct.edit_prior import SUBFOLDER, EditPrior, load_edit_prior, save_edit_prior
from nodes.shapes import captions as shape_captions
from nodes.shapes import domain, edits
from train.common import cosine_lr, image_embeddings
from train.finetune import MODELS, render, start
from train.ip2p import encode_all

log = logging.getLogger("train.ip2p_edit")


@dataclass
class Config:
    out: str = str(MODELS)  # a models folder: writes <out>/<ip2p>/edit_prior/
    bundle: str = ""  # the base bundle (default: <out>/shapes-unclip)
    ip2p: str = "shapes-ip2p"  # the InstructPix2Pix folder the edit prior goes into
    steps: int = 3000
    time_limit: float = 3000.0
    batch: int = 128
    lr: float = 5e-4
    warmup: int = 100
    weight_decay: float = 0.01
    p_drop: float = 0.05  # rows with the empty instruction (target: the input embedding)
    p_caption: float = 0.2  # rows with a caption of the edited scene's changed attribute as the instruction
    probe_weight: float = 0.0  # weight of the attribute-probe loss (frozen linear probes on the prediction)
    caption_mix: float = 0.5  # share of the caption rows written by the second, wider caption writer
    size_rate: float = 3.0  # size edits are drawn this many times as often as an edit of another kind
    init: str = ""  # continue from this InstructPix2Pix folder's edit_prior/
    n_data: int = 20000
    n_check: int = 500  # pairs held aside to report the cosine on
    width: int = 128
    layers: int = 2
    heads: int = 4
    seed: int = 21
    threads: int = 1
    log_every: int = 100


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=3, batch=8, n_data=40, n_check=8, width=32, layers=1,
                  log_every=1, warmup=1)


def edit_data(clip, pairs: list[edits.Edit], seed: int = 0, caption_mix: float = 0.0) -> dict[str, torch.Tensor]:
    """Source and target CLIP image embeddings (N, D), the instructions' text encodings by row, and a row per
    pair for a caption of its edited scene that names the changed attribute only (by `nodes.shapes.captions`,
    the wider writer, with probability `caption_mix`, else by `domain.caption`)."""
    src64, _ = render([e.source for e in pairs])
    tgt64, _ = render([e.target for e in pairs])
    rng = np.random.default_rng(seed)
    if caption_mix > 0:
        captions = [shape_captions.mixed_caption(e.target.attributes(), rng, caption_mix, include=(e.kind,))
                    for e in pairs]
    else:  # the first writer alone (the earlier edit prior's data, drawn as it drew it)
        captions = [domain.caption(e.target, rng, include=(e.kind,)) for e in pairs]
    texts = sorted({e.instruction for e in pairs} | set(captions) | {""})
    row = {t: i for i, t in enumerate(texts)}
    with torch.no_grad():
        enc = encode_all(clip, texts)
        src, tgt = image_embeddings(clip, src64), image_embeddings(clip, tgt64)
    return {"src": src, "tgt": tgt, "text": torch.tensor([row[e.instruction] for e in pairs]),
            "caption": torch.tensor([row[c] for c in captions]),
            "embeds": enc.embeds, "hidden": enc.hidden, "mask": enc.mask, "empty": torch.tensor(row[""])}


def fit_probes(emb: torch.Tensor, labels: torch.Tensor, sizes: list[int], steps: int = 400) -> list:
    """Per attribute a linear probe (weights (D, K), bias (K,)) on unit CLIP image embeddings (N, D) with
    labels (N, A) — logistic regression, as `eval/instruct.py`'s probes (logits = 10 · x @ w + b)."""
    from eval.probes import fit_linear_probe

    x = emb / emb.norm(dim=-1, keepdim=True)
    return [fit_linear_probe(x, labels[:, a], k, steps=steps) for a, k in enumerate(sizes)]


def attribute_labels(scenes: list[domain.Scene]) -> tuple[torch.Tensor, list[int]]:
    """Each scene's attribute values as indices (N, A) into the domain's values, and the number of values."""
    values = {"color": domain.COLORS, "shape": domain.SHAPES, "size": domain.SIZES,
              "position": domain.POSITION_NAMES, "background": domain.COLORS}
    idx = [[values[a].index(s.attributes()[a]) for a in domain.ATTRIBUTES] for s in scenes]
    return torch.tensor(idx), [len(values[a]) for a in domain.ATTRIBUTES]


def probe_loss(pred: torch.Tensor, probes: list, labels: torch.Tensor) -> torch.Tensor:
    """Mean over attributes of the probes' cross-entropy on the predicted embeddings (B, D) against the
    target scenes' attributes (B, A): every attribute of the edited scene, the changed one and the kept ones,
    counts as much as the others however small its share of the embedding's distance."""
    x = pred / pred.norm(dim=-1, keepdim=True)
    return torch.stack([F.cross_entropy(x @ w * 10 + b, labels[:, a]) for a, (w, b) in enumerate(probes)]).mean()


def draw_weights(pairs: list[edits.Edit], size_rate: float) -> np.ndarray | None:
    """Each pair's probability of being drawn (N,): size edits `size_rate` times as likely as the others;
    None (uniform draws, as the earlier edit prior drew them) at rate 1."""
    if size_rate == 1.0:
        return None
    w = np.array([size_rate if e.kind == "size" else 1.0 for e in pairs])
    return w / w.sum()


def loss_fn(pred: torch.Tensor, target: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    scale = src.norm(dim=-1, keepdim=True)
    mse = F.mse_loss(pred / scale, target / scale, reduction="none").sum(-1)
    return (mse + 1 - F.cosine_similarity(pred, target, dim=-1)).mean()


def predict(model: EditPrior, data: dict[str, torch.Tensor], idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return model(data["src"][idx], data["embeds"][rows], data["hidden"][rows], data["mask"][rows])


def main(argv: list[str] | None = None) -> int:
    cfg, out, timer, bundle, (clip, _dec) = start(Config, argv, smoke)
    pairs = edits.sample_edits(cfg.seed, cfg.n_data + cfg.n_check)
    data = edit_data(clip, pairs, cfg.seed, cfg.caption_mix)
    log.info("data: %d edits rendered and encoded in %.0f s", len(pairs), timer())
    n_train = cfg.n_data
    check = torch.arange(n_train, len(pairs))
    if cfg.init:
        model = load_edit_prior(cfg.init)
    else:
        model = EditPrior(embed_dim=data["src"].shape[1], text_width=data["hidden"].shape[2],
                          max_tokens=data["hidden"].shape[1], width=cfg.width, layers=cfg.layers, heads=cfg.heads)
    model.requires_grad_(True)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = cosine_lr(opt, cfg.warmup, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    probes = None
    if cfg.probe_weight > 0:  # fitted on the training pairs' own renders (sources and edited scenes)
        src_lab, sizes = attribute_labels([e.source for e in pairs[:n_train]])
        tgt_lab, _ = attribute_labels([e.target for e in pairs[:n_train]])
        probes = fit_probes(torch.cat([data["src"][:n_train], data["tgt"][:n_train]]), torch.cat([src_lab, tgt_lab]),
                            sizes)
        log.info("attribute probes fitted in %.0f s", timer())
    weights = draw_weights(pairs[:n_train], cfg.size_rate)
    run_loss, step = None, 0
    model.train()
    while step < cfg.steps and timer() < cfg.time_limit:
        idx = torch.from_numpy(rng.choice(n_train, size=cfg.batch, replace=False, p=weights))
        drop = torch.from_numpy(rng.random(cfg.batch) < cfg.p_drop)
        caption = torch.from_numpy(rng.random(cfg.batch) < cfg.p_caption)
        rows = torch.where(drop, data["empty"], torch.where(caption, data["caption"][idx], data["text"][idx]))
        target = torch.where(drop[:, None], data["src"][idx], data["tgt"][idx])
        pred = predict(model, data, idx, rows)
        loss = loss_fn(pred, target, data["src"][idx])
        if probes is not None:
            labels = torch.where(drop[:, None], src_lab[idx], tgt_lab[idx])
            loss = loss + cfg.probe_weight * probe_loss(pred, probes, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("step %d loss %.4f (avg %.4f)  %.0f s", step, loss.item(), run_loss, timer())
        step += 1
    model.eval()
    with torch.no_grad():
        pred = predict(model, data, check, data["text"][check])
        cos = F.cosine_similarity(pred, data["tgt"][check], dim=-1).mean().item()
        cos_in = F.cosine_similarity(data["src"][check], data["tgt"][check], dim=-1).mean().item()
    log.info("held-aside pairs: cosine to the edited embedding %.3f (the input's own: %.3f)", cos, cos_in)
    path = save_edit_prior(model, out / cfg.ip2p)
    info = {"config": asdict(cfg), "steps_done": step, "wall_seconds": round(timer(), 1),
            "cpu_seconds": round(time.process_time(), 1), "threads": torch.get_num_threads(),
            "params_M": round(n_params / 1e6, 3), "bundle": str(bundle), "final_loss_avg": run_loss,
            "check_cosine": round(cos, 4), "check_cosine_input": round(cos_in, 4)}
    init_log = Path(cfg.init) / SUBFOLDER / "training_log.json" if cfg.init else None
    if init_log is not None and init_log.is_file():  # the run this one continued, so the record keeps the whole cost
        info["continued_from"] = json.loads(init_log.read_text())
    (path / "training_log.json").write_text(json.dumps(info, indent=2) + "\n")
    size_kb = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1024
    log.info("saved %s (%.0f KB, %s) after %d steps in %.0f s", path, size_kb, SUBFOLDER, step, timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
