"""The long decoder phase: `decoder_tune`'s last phase, and `decoder_long`, its whole schedule on a copy."""

from __future__ import annotations

import json
import shutil

import torch

from train.common import SHIPPED
from train.decoder import LONG, LONG_STOP, TUNE_PHASES


def test_the_last_tune_phase_is_the_one_before_longer_at_a_lower_lr_stopped_early():
    assert TUNE_PHASES[-1] == [*LONG, "--stop-at", str(LONG_STOP)]
    assert 0 < LONG_STOP < int(LONG[LONG.index("--steps") + 1])
    assert LONG_STOP % int(LONG[LONG.index("--save-every") + 1]) == 0  # a save of the full run
    args = dict(zip(LONG[::2], LONG[1::2], strict=True))
    last = dict(zip(TUNE_PHASES[-2][::2], TUNE_PHASES[-2][1::2], strict=True))
    assert int(args["--steps"]) >= 2 * int(last["--steps"]) and float(args["--lr"]) < float(last["--lr"])
    for key in ("--batch", "--snr-floor", "--p-recolor", "--min-snr", "--fg-weight"):
        assert args[key] == last[key], key
    assert "--p-drop-text" not in args and "--p-drop-image" not in args  # the base run's dropout stays


def test_smoke_run_continues_a_copy_and_leaves_the_shipped_decoder(tmp_path):
    from train.__main__ import main

    out = _copy(tmp_path, "shapes-unclip-dlong")
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


def _copy(tmp_path, name):
    out = tmp_path / name
    out.mkdir()
    for sub in ("clip", "text_proj", "decoder", "decoder_scheduler"):
        shutil.copytree(SHIPPED / sub, out / sub)
    return out


def test_stop_at_writes_the_full_runs_checkpoint_of_that_step_again(tmp_path, monkeypatch):
    import pytest

    from train import decoder

    saves: list[dict[str, torch.Tensor]] = []
    real = decoder.save

    def snapshot(out, text_proj, unet):
        saves.append({k: v.clone() for k, v in unet.state_dict().items()})
        real(out, text_proj, unet)

    monkeypatch.setattr(decoder, "save", snapshot)
    threads = torch.get_num_threads()
    try:
        runs = {}
        for name, extra in (("full", []), ("stopped", ["--stop-at", "2"])):
            out = _copy(tmp_path, name)
            saves.clear()
            assert decoder.main(["--smoke", "--init", str(out), "--out", str(out), "--steps", "4",
                                 "--save-every", "2", *extra]) == 0
            runs[name] = list(saves)
            record = json.loads((out / "training_log.json").read_text())["decoder"]
            assert record["steps"] == 4 and record.get("stop_at") == (2 if extra else None)
        with pytest.raises(SystemExit, match="--stop-at 5"):
            decoder.main(["--smoke", "--out", str(tmp_path / "bad"), "--steps", "4", "--stop-at", "5"])
    finally:
        torch.set_num_threads(threads)
    (step2, step4), (stopped,) = runs["full"], runs["stopped"]
    assert all(torch.equal(stopped[k], step2[k]) for k in step2)  # the full run's step-2 checkpoint, bit for bit
    assert not all(torch.equal(step4[k], step2[k]) for k in step2)


def test_the_shipped_decoder_is_the_fourth_phase_on_the_third():
    record = json.loads((SHIPPED / "training_log.json").read_text())["decoder"]
    args = dict(zip(LONG[::2], LONG[1::2], strict=True))
    assert record["steps"] == int(args["--steps"]) and record["stop_at"] == LONG_STOP
    assert record["lr"] == float(args["--lr"]) and record["batch"] == int(args["--batch"])
    assert record["fg_weight"] == float(args["--fg-weight"]) and record["min_snr"] == float(args["--min-snr"])
    third = dict(zip(TUNE_PHASES[-2][::2], TUNE_PHASES[-2][1::2], strict=True))
    before = record["continued_from"]
    assert before["steps"] == int(third["--steps"]) and before["lr"] == float(third["--lr"]) and "stop_at" not in before
    assert before["fg_weight"] == float(third["--fg-weight"])
