"""The `nodegraph` command: exit codes, --set, --batch, PNG metadata, validate, nodes, start-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TESTS
from helpers import link, node, workflow

from nodegraph import read_png_workflow
from nodegraph.cli import main

PACKS = str(TESTS / "packs")


def save_wf(colour: str = "#ff0000") -> dict:
    return workflow(
        c=node("core.solid_color", width=8, height=8, color=colour, batch=2),
        s=node("core.save_image", images=link("c", "images"), filename_prefix="img"),
    )


@pytest.fixture
def wf_file(tmp_path):
    def write(wf, name="wf.json"):
        path = tmp_path / name
        path.write_text(json.dumps(wf))
        return path

    return write


def cli(*args: str) -> int:
    return main([*args])


def test_run_success_writes_files_and_exits_0(tmp_path, wf_file, capsys):
    out = tmp_path / "out"
    assert cli("run", str(wf_file(save_wf())), "--output-dir", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["img_00001.png", "img_00002.png"]
    printed = capsys.readouterr().out.split()
    assert str(out / "img_00001.png") in printed


def test_node_failure_exits_1(tmp_path, wf_file, capsys):
    wf = workflow(f=node("toy.fail"), s=node("toy.sink", value=link("f")))
    assert cli("run", str(wf_file(wf)), "--nodes-dir", PACKS, "--output-dir", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "FAILED f (toy.fail)" in err and "toy failure requested" in err


def test_invalid_workflow_exits_2_and_prints_every_issue(tmp_path, wf_file, capsys):
    wf = workflow(a=node("core.nope"), s=node("core.save_image"))
    assert cli("run", str(wf_file(wf)), "--output-dir", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "[unknown_node_type]" in err and "[missing_input]" in err


def test_a_missing_input_image_exits_2_before_any_node_runs(tmp_path, wf_file, capsys):
    (tmp_path / "in" / "examples").mkdir(parents=True)
    (tmp_path / "in" / "examples" / "cat.png").write_bytes(b"")
    wf = workflow(clip=node("unclip.clip_loader"), img=node("core.load_image", image="cat.png"),
                  s=node("toy.sink", value=link("img", "width")), t=node("toy.sink", value=link("clip", "clip")))
    code = cli("run", str(wf_file(wf)), "--nodes-dir", PACKS, "--input-dir", str(tmp_path / "in"),
               "--output-dir", str(tmp_path / "out"), "--json-events")
    out, err = capsys.readouterr()
    assert code == 2 and out == ""  # no event at all: the model loader never started
    assert "1 issue(s)" in err and "[file_not_found]" in err and "did you mean 'examples/cat.png'?" in err
    assert cli("validate", str(wf_file(wf)), "--nodes-dir", PACKS, "--input-dir", str(tmp_path / "in")) == 2


def test_a_misspelt_model_name_is_a_validation_issue_with_the_close_name(tmp_path, wf_file, capsys):
    wf = workflow(clip=node("unclip.load_clip", model="shapes-unclp"), t=node("toy.sink", value=link("clip", "clip")))
    code = cli("run", str(wf_file(wf)), "--nodes-dir", PACKS, "--output-dir", str(tmp_path / "out"), "--json-events")
    out, err = capsys.readouterr()
    assert code == 2 and out == ""  # before anything runs
    assert "[invalid_model] clip: model 'shapes-unclp' not found" in err and "did you mean 'shapes-unclip'?" in err
    assert cli("validate", str(wf_file(wf)), "--nodes-dir", PACKS) == 2


def test_a_node_whose_check_or_fingerprint_calls_sys_exit_does_not_end_the_command(tmp_path, wf_file, caplog):
    # docs/packs.md: an exit is a failure of the node, never of the process (an exiting check is skipped,
    # like a broken one; an exiting fingerprint means "re-run"); Ctrl-C stays Ctrl-C
    run = ("--nodes-dir", PACKS, "--output-dir", str(tmp_path), "--quiet")
    for at in ("check", "fingerprint"):
        path = str(wf_file(workflow(x=node("toy.exit", at=at, code=3))))
        assert cli("validate", path, "--nodes-dir", PACKS) == 0
        assert cli("run", path, *run) == 0
        assert "called sys.exit(3); " in caplog.text and "never exits the process" in caplog.text
        caplog.clear()
    assert cli("run", str(wf_file(workflow(x=node("toy.exit", at="check", code=0)))), *run) == 0
    assert cli("run", str(wf_file(workflow(x=node("toy.exit", at="run", code=0)))), *run) == 1
    for at in ("check", "fingerprint"):
        assert cli("run", str(wf_file(workflow(x=node("toy.exit", at=at, interrupt=True)))), *run) == 130


def test_a_set_value_json_reads_as_a_number_says_how_to_quote_it_for_a_text_port(tmp_path, wf_file, capsys):
    wf = workflow(t=node("core.string", value="a red circle"), s=node("toy.sink", value=link("t")))
    assert cli("run", str(wf_file(wf)), "--nodes-dir", PACKS, "--output-dir", str(tmp_path), "--set", "t.value=42") == 2
    err = capsys.readouterr().err
    assert "[invalid_value] t.value = 42" in err and """quote it: --set t.value='"42"'""" in err
    assert cli("run", str(wf_file(wf)), "--nodes-dir", PACKS, "--output-dir", str(tmp_path),
               "--set", 't.value="42"') == 0  # quoted: the text 42
    # any value JSON reads as another type, shown as JSON (not only the small ints Python caches)
    for value, shown in (("1000", "1000"), ("3.5", "3.5"), ("[1,2]", "[1, 2]"), ("true", "true")):
        assert cli("run", str(wf_file(wf)), "--nodes-dir", PACKS, "--output-dir", str(tmp_path),
                   "--set", f"t.value={value}") == 2
        err = capsys.readouterr().err
        assert f"which made it {shown}; for the text, quote it: --set t.value='\"{shown}\"'" in err, err
    # a --batch line's own value is not the --set's: no hint about --set
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"t.value": 1000}\n')
    assert cli("run", str(wf_file(wf)), "--nodes-dir", PACKS, "--output-dir", str(tmp_path),
               "--set", "t.value=1000", "--batch", str(batch)) == 1
    err = capsys.readouterr().err
    assert "[invalid_value] t.value = 1000" in err and "--set reads VALUE" not in err


def test_unreadable_or_non_json_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli("run", str(bad)) == 2
    assert cli("run", str(tmp_path / "missing.json")) == 2
    assert "cannot read" in capsys.readouterr().err
    for name, code in (("bad.json", "invalid_json"), ("missing.json", "file_not_found")):
        assert cli("validate", str(tmp_path / name), "--json") == 2
        assert [i["code"] for i in json.loads(capsys.readouterr().out)["issues"]] == [code]


def test_set_overrides_are_json_when_they_parse_else_strings(tmp_path, wf_file, capsys):
    wf = workflow(t=node("core.string", value="x"), n=node("core.int", value=1),
                  a=node("toy.sink", value=link("t")), b=node("toy.sink", value=link("n")))
    path = wf_file(wf)
    assert cli("run", str(path), "--nodes-dir", PACKS, "--output-dir", str(tmp_path),
               "--set", "t.value=hello world", "--set", "n.value=41", "--json-events") == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    shown = {e["data"]["node"]: e["data"]["ui"]["value"][0] for e in events
             if e["type"] == "node_completed" and e["data"]["ui"]}
    assert shown == {"a": "'hello world'", "b": "41"}


def test_json_events_are_the_websockets_messages(tmp_path, wf_file, capsys):
    from pydantic import TypeAdapter

    from nodegraph.server.messages import WsMessage

    wf = workflow(f=node("toy.fail"), s=node("toy.sink", value=link("f")))
    assert cli("run", str(wf_file(wf)), "--nodes-dir", PACKS, "--output-dir", str(tmp_path), "--json-events") == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    messages = [TypeAdapter(WsMessage).validate_json(line).model_dump() for line in lines]
    assert [m["type"] for m in messages] == ["job_started", "node_started", "node_failed", "job_finished"]
    assert len({m["data"]["job_id"] for m in messages}) == 1
    end = messages[-1]["data"]
    assert end["status"] == "failed" and end["error"]["node"] == "f" and "toy failure" in end["error"]["message"]


def test_version_and_a_mistyped_node_id_in_set(tmp_path, wf_file, capsys):
    from nodegraph import __version__

    with pytest.raises(SystemExit) as exit_:
        cli("--version")
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"nodegraph {__version__}"
    wf = workflow(prompt=node("core.string", value="x"), s=node("toy.sink", value=link("prompt")))
    assert cli("run", str(wf_file(wf)), "--nodes-dir", PACKS, "--set", "prmpt.value=hi") == 2
    assert "there is no node 'prmpt'; did you mean 'prompt'?" in capsys.readouterr().err


def test_set_values_are_validated_like_any_input(tmp_path, wf_file, capsys):
    path = wf_file(save_wf())
    assert cli("run", str(path), "--set", "c.width=0", "--output-dir", str(tmp_path)) == 2
    assert "[invalid_value] c.width" in capsys.readouterr().err
    assert cli("run", str(path), "--set", "ghost.width=3") == 2
    assert "there is no node 'ghost'" in capsys.readouterr().err
    assert cli("run", str(path), "--set", "nonsense") == 2


def test_batch_runs_each_line_into_its_own_folder_and_reports_bad_lines(tmp_path, wf_file, capsys):
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join([
        json.dumps({"c.color": "#00ff00"}),
        "{broken json",
        json.dumps({"c.width": -5}),
        json.dumps({"c.color": "#0000ff", "c.batch": 1}),
    ]) + "\n")
    out = tmp_path / "out"
    code = cli("run", str(wf_file(save_wf())), "--batch", str(batch), "--output-dir", str(out))
    err = capsys.readouterr().err
    assert code == 1
    assert "batch: 2/4 runs succeeded" in err
    assert sorted(p.name for p in (out / "0").iterdir()) == ["img_00001.png", "img_00002.png"]
    assert not (out / "1").exists() and not (out / "2").exists()
    assert [p.name for p in (out / "3").iterdir()] == ["img_00001.png"]
    from PIL import Image

    assert Image.open(out / "3" / "img_00001.png").getpixel((0, 0)) == (0, 0, 255)


def test_batch_shares_one_process_cache(tmp_path, wf_file, capsys):
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{}\n{}\n')
    code = cli("run", str(wf_file(save_wf())), "--batch", str(batch), "--output-dir", str(tmp_path / "o"))
    assert code == 0
    err = capsys.readouterr().err
    assert "cached c (core.solid_color)" in err  # second line reuses the first line's image
    assert (tmp_path / "o" / "1" / "img_00001.png").exists()  # but still writes its own files


def test_png_metadata_round_trip(tmp_path, wf_file):
    out = tmp_path / "out"
    assert cli("run", str(wf_file(save_wf())), "--set", "c.color=#123456", "--output-dir", str(out)) == 0
    embedded = read_png_workflow(out / "img_00001.png")
    assert embedded["format"] == "nodegraph/1"
    assert embedded["nodes"]["c"]["inputs"]["color"] == "#123456"  # the workflow as run, overrides included
    # A PNG made by nodegraph runs again as a workflow.
    assert cli("run", str(out / "img_00001.png"), "--output-dir", str(tmp_path / "again")) == 0
    assert (tmp_path / "again" / "img_00001.png").exists()


def test_validate_json_output_and_exit_codes(tmp_path, wf_file, capsys):
    assert cli("validate", str(wf_file(save_wf())), "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"valid": True, "issues": []}
    assert cli("validate", str(wf_file(workflow(a=node("core.nope")))), "--json") == 2
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is False and result["issues"][0]["code"] == "unknown_node_type"
    assert set(result["issues"][0]) == {"code", "node", "port", "message"}


def test_nodes_lists_the_catalogue_and_failed_packs(tmp_path, capsys):
    broken = tmp_path / "packs" / "broken"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('nope')\n")
    assert cli("nodes", "--json", "--nodes-dir", str(tmp_path / "packs")) == 0
    cat = json.loads(capsys.readouterr().out)
    assert "core.math" in cat["nodes"]
    assert cat["failed_packs"][0]["message"] == "RuntimeError: nope"
    assert cli("nodes", "--nodes-dir", str(tmp_path / "packs")) == 0
    assert "FAILED pack" in capsys.readouterr().out


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_help_validate_and_nodes_do_not_import_torch(tmp_path, wf_file):
    path = wf_file(save_wf())
    code = (
        "import sys\nfrom nodegraph.cli import main\n"
        f"main(['validate', {str(path)!r}])\nmain(['nodes', '--json'])\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "NO-TORCH", proc.stderr


def test_interrupt_exits_130(tmp_path, wf_file):
    wf = workflow(s=node("toy.steps", steps=10_000, delay=0.01), o=node("toy.sink", value=link("s")))
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodegraph", "run", str(wf_file(wf)), "--nodes-dir", PACKS,
         "--output-dir", str(tmp_path)],
        stderr=subprocess.PIPE, text=True, env=_env())
    for line in proc.stderr:  # wait for the run to be inside the node
        if line.startswith("step"):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    assert "run cancelled" in rest


def test_ctrl_c_during_the_last_node_exits_130_not_success(tmp_path, wf_file):
    wf = workflow(n=node("toy.noise", size=1024, batch=8),
                  s=node("core.save_image", images=link("n", "images"), filename_prefix="img"))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodegraph", "run", str(wf_file(wf)), "--nodes-dir", PACKS, "--output-dir", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    while not (out.is_dir() and any(p.name.endswith(".ngpart") for p in out.iterdir())):  # inside the save
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, rest
    assert "run cancelled" in rest and "run success" not in rest


def test_plain_output_when_not_a_tty(tmp_path, wf_file):
    proc = subprocess.run([sys.executable, "-m", "nodegraph", "run", str(wf_file(save_wf())),
                           "--output-dir", str(tmp_path)], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    assert "run   c (core.solid_color)" in proc.stderr and "run success" in proc.stderr


def rendered_half_done(tty: bool) -> str:
    """What the console renderer writes for a node halfway through 10 steps (then done, on a TTY)."""
    import io

    from nodegraph.events import NodeCompleted, NodeStarted, Progress, RunStarted
    from nodegraph.render import ConsoleRenderer

    buf = io.StringIO()
    r = ConsoleRenderer(buf, tty=tty)
    r(RunStarted(run_id="r", nodes=["a"], targets=["a"]))
    r(NodeStarted(run_id="r", node="a", type="x.y"))
    r(Progress(run_id="r", node="a", step=5, total=10))
    if tty:
        r(NodeCompleted(run_id="r", node="a", type="x.y", duration=0.1))
    return buf.getvalue()


def test_tty_renderer_draws_tqdm_bars_with_eta_and_rate():
    text = rendered_half_done(tty=True)
    assert "5/10" in text and "\r" in text and "step/s" in text and "<" in text  # steps, ETA, rate
    assert " 50%|" in text


def test_plain_progress_lines_say_the_eta_and_the_rate():
    line = rendered_half_done(tty=False).splitlines()[-1]
    assert line.startswith("step  a 5/10 [00:00<") and line.endswith("step/s]"), line


def test_example_workflows_validate():
    from nodes.kandinsky.models.tiny import cached_models_dir

    # the Kandinsky workflows name the published folders (not shipped): tiny ones stand in for them
    for path in sorted((ROOT / "workflows").glob("*.json")):
        assert cli("validate", str(path), "--input-dir", str(ROOT / "input"), "--models-dir",
                   str(cached_models_dir())) == 0, path


def test_default_output_dir_is_relative_to_cwd(tmp_path, wf_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("run", str(wf_file(save_wf()))) == 0
    assert (Path(tmp_path) / "output" / "img_00001.png").exists()


def test_nodes_lists_current_ids_and_the_old_ones_as_renames(capsys):
    assert cli("nodes") == 0
    out = capsys.readouterr().out
    assert "  unclip.load_clip v1" in out and "  unclip.clip_loader v1" not in out
    assert "unclip.clip_loader → unclip.load_clip" in out and "edit.factor_color → shapes.factor_color" in out


def test_eval_finds_the_source_checkouts_evaluations_from_any_folder(tmp_path):
    # the checkout's root is not on sys.path here (as for the installed `nodegraph` command)
    proc = subprocess.run([sys.executable, "-m", "nodegraph", "eval", "shapes", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: nodegraph eval shapes" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "nodegraph", "eval", "nope"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    available = proc.stderr.split("available: ", 1)[1].split(" (", 1)[0].split(", ")
    assert {"edit", "shapes", "text2image"} <= set(available) and available == sorted(available), proc.stderr


def test_eval_progress_lines_reach_the_terminal(tmp_path):
    # an evaluation configures logging itself (as under `python -m eval NAME`); the command must not
    # have configured it first, or its basicConfig does nothing and its progress lines vanish
    script = ("import logging, sys\n"
              "from nodegraph import cli\n"
              "def fake(args):\n"
              "    logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
              "    logging.getLogger('eval.fake').info('progress 1 of 2')\n"
              "    return 0\n"
              "cli.cmd_eval = fake\n"
              "sys.exit(cli.main(['eval', 'fake']))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "progress 1 of 2" in proc.stderr
