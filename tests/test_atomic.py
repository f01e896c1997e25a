"""Output files appear complete or not at all: kill -9, a full disk and a second Ctrl-C during a save."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TESTS
from helpers import link, node, workflow

from nodegraph import atomic, png
from nodegraph.cli import main

PACKS = str(TESTS / "packs")
pytest_plugins = ["test_server_helpers"]  # its fixtures: start


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def save_wf(size: int = 8, batch: int = 1) -> dict:
    return workflow(n=node("toy.noise", size=size, batch=batch),
                    s=node("core.save_image", images=link("n", "images"), filename_prefix="img"))


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_write_new_takes_the_next_free_name_and_never_overwrites(tmp_path):
    (tmp_path / "a_1").write_bytes(b"old")
    candidates = iter([tmp_path / "a_1", tmp_path / "a_2"])
    path = atomic.write_new(tmp_path, lambda f: f.write(b"new"), lambda: next(candidates))
    assert path.name == "a_2" and (tmp_path / "a_1").read_bytes() == b"old" and path.read_bytes() == b"new"
    assert names(tmp_path) == ["a_1", "a_2"]  # no temporary file left


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_write_that_stops_half_way_leaves_nothing(tmp_path, failure):
    def write(f):
        f.write(b"x" * 10_000)
        raise failure

    with pytest.raises(type(failure)):
        atomic.write_new(tmp_path, write, lambda: tmp_path / "out.png")
    with pytest.raises(type(failure)):
        atomic.write_replace(tmp_path / "kept.png", write)
    assert names(tmp_path) == []


def test_a_full_output_disk_fails_the_save_node_naming_the_folder_and_leaves_no_file(engine, settings,
                                                                                    monkeypatch):
    real = png.write_png

    def full(image, f, *args, **kwargs):
        real(image, f, *args, **kwargs)  # the bytes are written, then the disk has no room for the end
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("nodegraph.saving.write_png", full)
    result = engine.run(save_wf())
    assert result.status == "failed" and result.error.node == "s"
    assert "disk is full" in result.error.message and str(settings.output_dir) in result.error.message
    assert names(settings.output_dir) == []


def test_a_full_output_disk_in_the_cli_exits_1_and_leaves_no_file(tmp_path, monkeypatch, capsys):
    def full(image, f, *args, **kwargs):
        f.write(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("nodegraph.saving.write_png", full)
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(save_wf()))
    out = tmp_path / "out"
    assert main(["run", str(path), "--nodes-dir", PACKS, "--output-dir", str(out)]) == 1
    assert "disk is full" in capsys.readouterr().err
    assert names(out) == []


def _wait_for_partial(folder, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [n for n in names(folder) if atomic.is_partial(n)]
        if found:
            return found
        assert proc.poll() is None, "the run ended before its save began"
        time.sleep(0.005)
    raise AssertionError("no save began")


def _start_run(tmp_path, wf) -> subprocess.Popen:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(wf))
    return subprocess.Popen([sys.executable, "-m", "nodegraph", "run", str(path), "--nodes-dir", PACKS,
                             "--output-dir", str(tmp_path / "out")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())


def test_kill_9_during_a_save_leaves_no_png_and_the_next_run_removes_the_leftover(tmp_path):
    out = tmp_path / "out"
    proc = _start_run(tmp_path, save_wf(size=1024, batch=8))  # random pixels: each PNG takes a while
    _wait_for_partial(out, proc)
    proc.kill()
    proc.wait(timeout=30)
    left = names(out)
    assert [n for n in left if n.endswith(".png")] == [n for n in left if not atomic.is_partial(n)]
    assert any(atomic.is_partial(n) for n in left)
    for name in left:  # whatever has a real name is a complete PNG
        if not atomic.is_partial(name):
            assert png.read_png_workflow(out / name) is not None
    path = tmp_path / "small.json"
    path.write_text(json.dumps(save_wf()))
    assert main(["run", str(path), "--nodes-dir", PACKS, "--output-dir", str(out)]) == 0
    assert not [n for n in names(out) if atomic.is_partial(n)]


def test_a_second_ctrl_c_during_a_save_leaves_no_truncated_png(tmp_path):
    out = tmp_path / "out"
    proc = _start_run(tmp_path, save_wf(size=1024, batch=8))
    _wait_for_partial(out, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    for name in names(out):
        assert not atomic.is_partial(name), "the interrupted write was not cleaned up"
        assert png.read_png_workflow(out / name) is not None  # complete, metadata (at the end) included


def test_leftovers_of_a_live_process_are_kept_and_of_a_dead_one_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    mine = tmp_path / f".abcdef.{atomic._HOST}.{os.getpid()}.0123abcd.ngpart"
    gone = tmp_path / "sub" / f".abcdef.{atomic._HOST}.{pid}.0123abcd.ngpart"
    gone.parent.mkdir()
    for p in (mine, gone):
        p.write_bytes(b"x")
    (tmp_path / "keep.png").write_bytes(b"x")
    assert atomic.remove_partial([tmp_path]) == [gone]
    assert mine.exists() and (tmp_path / "keep.png").exists()


@pytest.mark.asyncio
async def test_a_server_start_removes_leftovers_of_interrupted_writes(start, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    leftover = tmp_path / "output" / "run" / f".abcdef.{atomic._HOST}.{int(dead.stdout)}.0123abcd.ngpart"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"\x89PNG half")
    kept = tmp_path / "output" / "run" / "img_00001.png"
    kept.write_bytes(b"x")
    server = await start()
    await server.json("GET", "/api/system")
    assert not leftover.exists() and kept.exists()
