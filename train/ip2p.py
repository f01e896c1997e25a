"""InstructPix2Pix on the Shapes decoder: edit a rendered scene by an English instruction.

Data: `n_data` instruction edits of training-split scenes (`nodes.shapes.edits`, kinds in turn:
colour, shape, size, position, background; training phrasings only; edited scenes stay in the
training split), rendered before and after at 64 px and downsampled to the decoder's 32 px. The
instructions are encoded once by the bundle's frozen CLIP.

Model: `nodes.instruct.model.from_decoder` — the shipped decoder (text_proj + UNet) with three
zero-initialised input channels for the input image, as the paper starts from a pretrained model, and
(`image_embedding`, default on) the input image's CLIP embedding in the decoder's image-embedding slot,
so that training starts from a model that redraws its input and only has to learn the edit.
With `slot="target"` the slot holds the edited scene's CLIP embedding instead (slerped towards the
input's by up to `slot_mix`, as an edit prior's prediction errs), which `Instruct: Edit Embedding`
supplies at sampling time; `p_null_slot` of the rows get the null embedding with the pixels kept.
Both train (but for the UNet layers in `FROZEN`, kept at the decoder's weights so the file stays
small) with the decoder's loss (v-prediction, min-SNR-5) on the edited image, conditioned on
the input image and the instruction. Conditioning dropout as in diffusers'
`train_instruct_pix2pix.py`: with u ~ U(0, 1), the instruction is the empty prompt for
u < 2 p_drop and the input image is zeros (its embedding the null one) for p_drop ≤ u < 3 p_drop (so p_drop of the rows lose
the text only, p_drop both, p_drop the image only), which makes both guidance scales work.

Output: `<out>/shapes-ip2p/` (see `nodes/instruct/model.py`; fp16 safetensors) and its
`training_log.json` (wall time), written every `save_every` steps and at the end. Training stops at
`steps` or after `time_limit` seconds, whichever comes first.

    python -m train.ip2p [--smoke] [--steps N] [--time-limit S] [--threads T] [--out MODELS_DIR] [--bundle DIR]
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

from nodes.instruct.model import base_matches, from_decoder, load_instruct, save_instruct, trainable
from nodes.shapes import edits
from nodes.unclip.embeddings import slerp
from nodes.unclip.models.clip import TextEncoding
from train import data as shapes_data
from train.common import cosine_lr, image_embeddings
from train.finetune import MODELS, alphas_cumprod, decoder_loss, render, start

log = logging.getLogger("train.ip2p")


@dataclass
class Config:
    out: str = str(MODELS)  # a models folder: writes <out>/<name>/
    bundle: str = ""  # the base bundle (default: <out>/shapes-unclip)
    name: str = "shapes-ip2p"
    steps: int = 1500
    time_limit: float = 3000.0  # seconds of training, then save and stop
    batch: int = 16
    lr: float = 3e-4
    conv_in_lr: float = 3e-3  # the input convolution, whose zero-initialised image channels must grow from 0
    warmup: int = 30
    p_drop: float = 0.05
    n_data: int = 6000
    min_snr: float = 0.0  # 0: plain v-loss (see train.finetune.decoder_loss)
    init: str = ""  # continue from this InstructPix2Pix folder
    image_embedding: bool = True  # the image-embedding slot holds the input's CLIP embedding (else: null)
    slot: str = "input"  # what the slot holds in rows that see the image: "input" or "target" (see below)
    slot_mix: float = 0.25  # slot "target": the edited scene's embedding slerped towards the input's by U(0, slot_mix)
    p_null_slot: float = 0.0  # rows whose slot is the null embedding while the pixels are kept
    keep_every: int = 0  # also keep a copy of every keep_every-th step's weights as <out>/<name>-stepN (0: none)
    seed: int = 11
    threads: int = 1
    log_every: int = 25
    save_every: int = 50


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=2, batch=8, n_data=20, log_every=1, save_every=1000)


def encode_all(clip, texts: list[str], batch: int = 256) -> TextEncoding:
    with torch.no_grad():
        return TextEncoding.cat([clip.encode_text(texts[i:i + batch]) for i in range(0, len(texts), batch)])


def main(argv: list[str] | None = None) -> int:
    cfg, out, timer, bundle, (clip, dec) = start(Config, argv, smoke)

    pairs = edits.sample_edits(cfg.seed, cfg.n_data)
    src64, src32 = render([e.source for e in pairs])
    tgt64, tgt32 = render([e.target for e in pairs])
    texts = sorted({e.instruction for e in pairs} | {""})
    row = {t: i for i, t in enumerate(texts)}
    enc = encode_all(clip, texts)
    text_idx = torch.tensor([row[e.instruction] for e in pairs])
    if cfg.slot not in ("input", "target"):
        raise ValueError(f"slot must be 'input' or 'target', got {cfg.slot!r}")
    src_emb = image_embeddings(clip, src64) if cfg.image_embedding else None
    tgt_emb = image_embeddings(clip, tgt64) if cfg.image_embedding and cfg.slot == "target" else None
    src = shapes_data.to_tensor(src32) * 2 - 1
    tgt = shapes_data.to_tensor(tgt32) * 2 - 1
    log.info("data: %d edits, %d distinct instructions, rendered and encoded in %.0f s", len(pairs), len(texts),
             timer())

    model = load_instruct(cfg.init, check_base=False) if cfg.init else from_decoder(dec.text_proj, dec.unet,
                                                                                     dec.scheduler)
    if cfg.init:
        from safetensors.torch import load_file

        index = json.loads((Path(cfg.init) / "model_index.json").read_text())
        base = (Path(cfg.init) / index.get("base", "../shapes-unclip")).resolve()
        if not base_matches(index, load_file(str(base / "decoder" / "diffusion_pytorch_model.safetensors"))):
            log.warning("%s was trained on another decoder than %s's: continuing it on this decoder's frozen layers "
                        "(the saved model records them)", cfg.init, base)
    model.clip = clip if cfg.image_embedding else None
    init_log = Path(cfg.init) / "training_log.json" if cfg.init else None
    continued = json.loads(init_log.read_text()) if init_log and init_log.is_file() else None
    model.unet.train()
    model.text_proj.train()
    params = [p for n, p in model.unet.named_parameters() if trainable(n)] + list(model.text_proj.parameters())
    for n, p in model.unet.named_parameters():
        p.requires_grad_(trainable(n))
    for p in model.text_proj.parameters():
        p.requires_grad_(True)
    n_params = sum(p.numel() for p in params)
    conv_in = list(model.unet.conv_in.parameters())
    rest = [p for p in params if all(p is not q for q in conv_in)]
    opt = torch.optim.AdamW([{"params": rest}, {"params": conv_in, "lr": cfg.conv_in_lr}], lr=cfg.lr,
                            weight_decay=0.0)
    sched = cosine_lr(opt, cfg.warmup, cfg.steps)
    abar = alphas_cumprod(dec)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    path = out / cfg.name
    empty = row[""]

    def save(step: int) -> None:
        save_instruct(model, path, bundle)
        if cfg.keep_every and step % cfg.keep_every == 0:
            save_instruct(model, out / f"{cfg.name}-step{step}", bundle)
        info = {"config": asdict(cfg), "steps_done": step, "wall_seconds": round(timer(), 1),
                "cpu_seconds": round(time.process_time(), 1), "threads": torch.get_num_threads(),
                "params_M": round(n_params / 1e6, 3), "bundle": str(bundle), "n_instructions": len(texts)}
        if continued is not None:  # the run this one continued, so the record keeps the whole cost
            info["continued_from"] = continued
        (path / "training_log.json").write_text(json.dumps(info, indent=2) + "\n")

    run_loss = None
    step = 0
    while step < cfg.steps and timer() < cfg.time_limit:
        idx = torch.from_numpy(rng.choice(len(pairs), size=cfg.batch, replace=False))
        u = torch.from_numpy(rng.random(cfg.batch))
        rows = torch.where(u < 2 * cfg.p_drop, empty, text_idx[idx])
        keep_image = ~((u >= cfg.p_drop) & (u < 3 * cfg.p_drop))
        text = TextEncoding(enc.embeds[rows], enc.hidden[rows], enc.mask[rows])
        cond_img = src[idx] * keep_image[:, None, None, None].float()
        null = model.null_embedding(cfg.batch)
        if src_emb is not None:  # a dropped image drops its embedding too
            slot = src_emb[idx]
            if tgt_emb is not None:  # the edited scene's embedding, a little towards the input's (prior errors)
                mix = rng.uniform(0, cfg.slot_mix, cfg.batch)
                slot = torch.cat([slerp(tgt_emb[i][None], slot[k][None], float(mix[k])) for k, i in enumerate(idx)])
            keep_slot = keep_image & torch.from_numpy(rng.random(cfg.batch) >= cfg.p_null_slot)
            null = torch.where(keep_slot[:, None], slot, null)

        def unet(xt, t, cond_img=cond_img, **kw):
            return model.unet(torch.cat([xt, cond_img], dim=1), t, **kw)

        loss = decoder_loss(model, tgt[idx], null, text, abar, gen, cfg.min_snr, unet=unet)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        run_loss = loss.item() if run_loss is None else 0.95 * run_loss + 0.05 * loss.item()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("step %d loss %.4f (avg %.4f)  %.0f s", step, loss.item(), run_loss, timer())
        step += 1
        if step % cfg.save_every == 0 and step < cfg.steps:
            save(step)
    model.unet.eval()
    model.text_proj.eval()
    save(step)
    size_kb = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1024
    log.info("saved %s (%.0f KB) after %d steps in %.0f s", path, size_kb, step, timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
