"""The `decoder_sharp` trial stage: a short continuation of the decoder with more loss on the object's outline."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import torch

from nodes.personalise.common import share_weights
from train.common import SHIPPED
from train.decoder import SHARP, object_mask32


def _scene(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A (1, 32, 32, 3) black image with a white size × size square, and its background (1, 3)."""
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 8:8 + size, 8:8 + size] = 255
    return img, np.zeros((1, 3), np.uint8)


def test_object_and_rim_carry_the_same_share_of_the_loss_whatever_their_size():
    for size in (2, 6, 14):
        mask = object_mask32(*_scene(size))
        assert int(mask.sum()) == (size + 2) ** 2  # the object and its 1-px rim
        w = share_weights(mask, 0.55)
        share = float((w * mask).sum() / w.sum())
        assert abs(share - 0.55) < 1e-4, (size, share)


def test_the_trial_continues_gently_and_keeps_guidance_dropout():
    args = dict(zip(SHARP[::2], SHARP[1::2], strict=True))
    assert float(args["--lr"]) <= 1e-4 and int(args["--steps"]) <= 600
    assert float(args["--object-share"]) > 0 and float(args["--p-mid"]) > 0
    assert "--p-drop-text" not in args and "--p-drop-image" not in args  # the base run's dropout stays


def _digest(folder) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_smoke_run_continues_a_copy_of_the_shipped_decoder_and_records_it(tmp_path):
    from train.__main__ import main

    out = tmp_path / "shapes-unclip-sharp"
    out.mkdir()
    for sub in ("clip", "text_proj", "decoder", "decoder_scheduler"):
        shutil.copytree(SHIPPED / sub, out / sub)
    shutil.copy(SHIPPED / "training_log.json", out / "training_log.json")
    shipped = _digest(SHIPPED / "decoder")
    threads = torch.get_num_threads()
    try:
        assert main(["decoder_sharp", "--smoke", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    record = json.loads((out / "training_log.json").read_text())["decoder"]
    assert record["steps"] == 2 and record["object_share"] == 0.55 and record["p_mid"] == 0.5
    before = json.loads((SHIPPED / "training_log.json").read_text())["decoder"]
    assert record["continued_from"] == before  # the shipped decoder's whole history is kept
    assert _digest(out / "decoder") != shipped and _digest(SHIPPED / "decoder") == shipped

    from nodes.unclip.models import load_decoder

    assert list(load_decoder(out).unet.config.block_out_channels) == [48, 96, 144]  # the shipped shape, not smoke's
