"""The `decoder_long` trial stage: the last `decoder_tune` phase's recipe, continued for longer on a copy."""

from __future__ import annotations

import json
import shutil

import torch

from train.common import SHIPPED
from train.decoder import LONG, TUNE_PHASES


def test_the_trial_is_the_last_tune_phase_longer_at_a_lower_lr():
    args = dict(zip(LONG[::2], LONG[1::2], strict=True))
    last = dict(zip(TUNE_PHASES[-1][::2], TUNE_PHASES[-1][1::2], strict=True))
    assert int(args["--steps"]) >= 2 * int(last["--steps"]) and float(args["--lr"]) < float(last["--lr"])
    for key in ("--batch", "--snr-floor", "--p-recolor", "--min-snr", "--fg-weight"):
        assert args[key] == last[key], key
    assert "--p-drop-text" not in args and "--p-drop-image" not in args  # the base run's dropout stays


def test_smoke_run_continues_a_copy_and_leaves_the_shipped_decoder(tmp_path):
    from train.__main__ import main

    out = tmp_path / "shapes-unclip-dlong"
    out.mkdir()
    for sub in ("clip", "text_proj", "decoder", "decoder_scheduler"):
        shutil.copytree(SHIPPED / sub, out / sub)
    shutil.copy(SHIPPED / "training_log.json", out / "training_log.json")
    shipped = (SHIPPED / "decoder" / "diffusion_pytorch_model.safetensors").read_bytes()
    threads = torch.get_num_threads()
    try:
        assert main(["decoder_long", "--smoke", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    record = json.loads((out / "training_log.json").read_text())["decoder"]
    assert record["steps"] == 2 and record["lr"] == 1.5e-4 and record["fg_weight"] == 4.0
    assert record["continued_from"] == json.loads((SHIPPED / "training_log.json").read_text())["decoder"]
    assert (SHIPPED / "decoder" / "diffusion_pytorch_model.safetensors").read_bytes() == shipped


def test_stop_at_ends_the_run_early_on_the_full_schedule(tmp_path):
    from train.__main__ import main

    out = tmp_path / "shapes-unclip-dlong"
    out.mkdir()
    for sub in ("clip", "text_proj", "decoder", "decoder_scheduler"):
        shutil.copytree(SHIPPED / sub, out / sub)
    threads = torch.get_num_threads()
    try:
        assert main(["decoder_long", "--smoke", "--out", str(out), "--stop-at", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    record = json.loads((out / "training_log.json").read_text())["decoder"]
    assert record["steps"] == 2 and record["stop_at"] == 1
