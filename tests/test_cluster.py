"""The Ray executor on a local instance (two workers on this machine): the events, files and exit
codes of the local executor, cancel, lost workers, model affinity, a batch, one workflow's branches
spread over both workers, refused workers, and the server running a job per worker."""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cluster_helpers import (
    MIB,
    PACKS,
    head_engine,
    placements,
    png_files,
    ray_env,
    shape,
    wait_idle,
    worker_settings,
)
from conftest import ROOT
from helpers import Recorder, link, node, workflow

from nodegraph import CancelToken, apply_overrides
from nodegraph.cli import main
from nodegraph.cluster import ClusterOptions, ClusterUnavailable, connect

__all__ = ["ray_env"]  # a fixture


@pytest.fixture(scope="module")
def cluster(ray_env, tmp_path_factory):
    """A head engine whose executor is a local Ray instance (2 CPUs) with two workers of half a CPU (the
    other CPU is left for the pools the CLI tests start)."""
    head = head_engine(tmp_path_factory.mktemp("head"))
    options = ClusterOptions(num_cpus=2, workers=2, worker_cpus=0.5, object_store_bytes=100 * MIB,
                             worker_settings=worker_settings())
    head.executor = connect(options, head)
    wait_idle(head.executor)
    yield head
    head.executor.close()


def steps(value: float, n: int = 3, delay: float = 0.0) -> dict:
    return workflow(a=node("toy.steps", value=value, steps=n, delay=delay), s=node("toy.sink", value=link("a")))


def test_the_local_instance_listens_on_loopback_only_with_token_authentication(cluster, monkeypatch):
    import ray
    from ray._raylet import AuthenticationMode, get_authentication_mode

    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert get_authentication_mode() == AuthenticationMode.TOKEN
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(ClusterUnavailable, match="keeps Ray's token authentication on"):
        connect(ClusterOptions(), cluster)


def test_a_run_sends_the_local_events_in_the_local_order_and_names_its_worker(cluster, engine, tmp_path):
    wf = workflow(a=node("toy.const", value=2.0), b=node("toy.steps", value=link("a"), steps=3),
                  s=node("toy.sink", value=link("b")))
    local, remote = Recorder(), Recorder()
    assert engine.run(wf, sink=local, output_dir=tmp_path / "local").ok
    result = cluster.run(wf, sink=remote, output_dir=tmp_path / "remote")
    assert result.ok and result.ui == {"s": {"value": ["2.0"]}} and sorted(result.executed) == ["a", "b", "s"]
    assert shape(remote) == shape(local)
    assert remote.kinds()[:2] == ["run_started", "run_placed"] and placements(remote)[0][0] in {"w1", "w2"}
    # The same workflow again goes to the worker that holds its outputs: nothing runs, as locally.
    again = Recorder()
    assert cluster.run(wf, sink=again, output_dir=tmp_path / "remote").ok
    assert again.ran == set() and again.cached == {"s"} and placements(again) == placements(remote)


def test_saved_images_land_in_the_head_folder_byte_for_byte_as_a_local_run_writes_them(cluster, engine, tmp_path):
    wf = workflow(c=node("core.solid_color", width=8, height=8, color="#336699", batch=2),
                  s=node("core.save_image", images=link("c", "images"), filename_prefix="sub/img"),
                  p=node("core.preview_image", images=link("c", "images")))
    local, remote = tmp_path / "local", tmp_path / "remote"
    for folder in (local, remote):  # a folder with an earlier image: numbering continues after it
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "img_00001.png").write_bytes(b"earlier")
    expected = engine.run(wf, output_dir=local)
    result = cluster.run(wf, output_dir=remote)
    assert result.ok and result.ui["s"] == expected.ui["s"]
    assert png_files(remote) == png_files(local)
    assert sorted(png_files(remote)) == ["sub/img_00001.png", "sub/img_00002.png", "sub/img_00003.png"]
    previews = result.ui["p"]["images"]
    temp = Path(cluster.settings.temp_dir)
    assert len(previews) == 2 and all((temp / p["filename"]).is_file() and p["type"] == "temp" for p in previews)


def test_a_job_goes_to_the_worker_that_holds_its_models(cluster, tmp_path):
    wait_idle(cluster.executor)
    pool = cluster.executor.pool

    def job(loader: str, value: float) -> dict:
        return workflow(m=node(f"unclip.{loader}", model="shapes-unclip"), s=node("toy.sink", value=link("m", loader[5:])),
                        c=node("toy.const", value=value), t=node("toy.sink", value=link("c")))

    def worker_of(wf: dict) -> tuple[str, bool]:
        rec = Recorder()
        assert cluster.run(wf, sink=rec, output_dir=tmp_path).ok
        return placements(rec)[0][0], "m" in rec.ran

    # One job of each model at once (their first loads overlap): one on each worker. The values are new:
    # no worker caches these jobs.
    with ThreadPoolExecutor(2) as threads:
        (prior, loaded_prior), (clip, loaded_clip) = threads.map(worker_of, [job("load_prior", 101.0),
                                                                            job("load_clip", 102.0)])
    assert clip != prior and loaded_prior and loaded_clip
    # Each model's jobs now go to its worker, though the other one has been idle longer each time.
    before = dict(pool.stats)
    for value in (103.0, 104.0, 105.0):
        assert worker_of(job("load_prior", value)) == (prior, False)
        assert worker_of(job("load_clip", value)) == (clip, False)
    assert pool.stats["jobs"] - before["jobs"] == 6 and pool.stats["model_loads"] == before["model_loads"]
    assert pool.stats["affinity_choices"] - before["affinity_choices"] == 6


@pytest.mark.slow
def test_the_shipped_text2image_is_bit_exact_against_the_local_executor(cluster, engine, tmp_path):
    import torch

    source = json.loads((ROOT / "workflows" / "text2image.json").read_text())
    wf, issues = apply_overrides(source, {"prior.steps": 3, "decoder.steps": 3, "upsample.steps": 2,
                                          "prior.count": 2})
    assert not issues
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (one thread each): a sum's order depends on the threads
    try:
        assert engine.run(wf, output_dir=tmp_path / "local").ok
    finally:
        torch.set_num_threads(threads)
    result = cluster.run(wf, output_dir=tmp_path / "remote")
    assert result.ok, result.error
    files = png_files(tmp_path / "remote")
    assert sorted(files) == ["text2image_00001.png", "text2image_00002.png", "text2image_grid_00001.png"]
    assert files == png_files(tmp_path / "local")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_server_streams_a_remote_runs_previews(cluster, aiohttp_client, tmp_path):
    from test_server_helpers import Server, finished, until

    from nodegraph.server import ServerConfig, create_app

    source = json.loads((ROOT / "workflows" / "text2image.json").read_text())
    wf, _ = apply_overrides(source, {"prior.steps": 2, "decoder.steps": 3, "upsample.steps": 2, "prior.count": 1,
                                     "decoder.seed": 5, "prompt.value": "a small blue square"})  # not cached
    cluster.executor.preview_interval = 0.0
    try:
        server = Server(await aiohttp_client(create_app(cluster, ServerConfig(data_dir=tmp_path / "data",
                                                                              preview_interval=0.0))), tmp_path)
        ws = await server.ws()
        job_id = await server.queue(wf)
        seen = await until(ws, finished(job_id), timeout=120)
    finally:
        cluster.executor.preview_interval = None
    assert seen[-1]["data"]["status"] == "success"
    previews = [m for m in seen if m["type"] == "preview" and m["data"]["node"] == "decoder"]
    assert len(previews) == 3 and previews[0]["data"]["image"].startswith("data:image/png;base64,")
    kinds = [m["type"] for m in seen if m["data"].get("job_id") == job_id]
    assert kinds[:2] == ["job_started", "job_placed"]
    assert kinds.count("node_completed") + kinds.count("node_cached") == len(wf["nodes"])



def test_cancelling_stops_the_remote_run_at_its_next_step(cluster, tmp_path):
    token, rec = CancelToken(), Recorder()

    def sink(event):
        rec(event)
        if event.event == "progress" and event.step == 2:
            token.cancel("interrupted")

    started = time.monotonic()
    result = cluster.run(steps(11.0, n=200, delay=0.05), sink=sink, cancel=token, output_dir=tmp_path)
    assert result.status == "cancelled" and rec.finished.status == "cancelled"
    assert time.monotonic() - started < 8  # 10 s if it ran to the end
    assert max(e.step for e in rec if e.event == "progress") < 50
    wait_idle(cluster.executor)
    assert cluster.run(steps(12.0), output_dir=tmp_path).ok


def test_a_failing_node_fails_the_run_with_its_error_and_the_worker_goes_on(cluster, tmp_path):
    rec = Recorder()
    result = cluster.run(workflow(f=node("toy.fail"), s=node("toy.sink", value=link("f"))), sink=rec,
                         output_dir=tmp_path)
    assert result.status == "failed" and result.error.node == "f" and result.error.type == "toy.fail"
    assert "toy failure requested" in result.error.message and "Traceback" in result.error.traceback
    assert rec.kinds()[-2:] == ["node_failed", "run_finished"]
    assert cluster.run(steps(13.0), output_dir=tmp_path).ok


def _killer(cluster, rec: Recorder, kills: list[str], times: int):
    """A sink that kills the worker running the run at its first progress step, ``times`` times."""
    import ray

    def sink(event):
        rec(event)
        placed = placements(rec)
        if event.event == "progress" and len(kills) < times and len(kills) < len(placed):
            name = placed[-1][0]
            worker = next(w for w in cluster.executor.pool.workers if w.name == name)
            kills.append(name)
            ray.kill(worker.actor)

    return sink


def test_a_worker_killed_mid_run_is_replaced_and_the_run_finishes_elsewhere_writing_its_files_once(cluster,
                                                                                                   tmp_path):
    wait_idle(cluster.executor)
    wf = workflow(c=node("core.solid_color", width=8, height=8, color="#00ff00"),
                  save=node("core.save_image", images=link("c", "images"), filename_prefix="once"),
                  a=node("toy.steps", value=21.0, steps=20, delay=0.05), s=node("toy.sink", value=link("a")))
    rec, kills = Recorder(), []
    result = cluster.run(wf, sink=_killer(cluster, rec, kills, 1), output_dir=tmp_path / "out")
    assert result.ok and result.ui["s"] == {"value": ["21.0"]}
    (first, _), (second, attempt) = placements(rec)
    assert first == kills[0] and second != first and attempt == 2
    assert sorted(os.listdir(tmp_path / "out")) == ["once_00001.png"]  # written before the loss, not again
    assert rec.kinds().count("run_started") == 1 and rec.kinds().count("run_finished") == 1
    wait_idle(cluster.executor)
    states = {w["name"]: w["state"] for w in cluster.executor.describe()["workers"]}
    assert states[first] == "lost" and sorted(states.values()).count("idle") == 2  # a new worker took its place


def test_a_run_that_loses_its_worker_twice_fails_naming_both(cluster, tmp_path):
    wait_idle(cluster.executor)
    rec, kills = Recorder(), []
    result = cluster.run(steps(22.0, n=20, delay=0.05), sink=_killer(cluster, rec, kills, 2), output_dir=tmp_path)
    assert result.status == "failed" and result.error.error_type == "WorkerLost"
    assert f"worker {kills[0]} " in result.error.message and f"worker {kills[1]} " in result.error.message
    assert "lost its worker twice" in result.error.message
    wait_idle(cluster.executor)
    assert cluster.run(steps(23.0), output_dir=tmp_path).ok


def test_independent_branches_of_one_workflow_spread_over_both_workers(cluster, engine, tmp_path):
    wait_idle(cluster.executor)
    nodes = {"base": node("core.solid_color", width=16, height=16, color="#808080", batch=1)}
    for i in range(4):
        nodes[f"tint{i}"] = node("core.solid_color", width=16, height=16, color=f"#{40 * i:02x}0000", batch=1)
        nodes[f"mix{i}"] = node("core.image_blend", a=link("base", "images"), b=link(f"tint{i}", "images"),
                                factor=0.25 * (i + 1))
        nodes[f"wait{i}"] = node("toy.steps", value=float(i), steps=2, delay=0.05)
        nodes[f"save{i}"] = node("core.save_image", images=link(f"mix{i}", "images"), filename_prefix=f"branch{i}")
        nodes[f"show{i}"] = node("toy.sink", value=link(f"wait{i}"))
    wf = workflow(**nodes)
    expected = engine.run(wf, output_dir=tmp_path / "local")
    cluster.executor.spread = True
    try:
        rec = Recorder()
        result = cluster.run(wf, sink=rec, output_dir=tmp_path / "remote")
    finally:
        cluster.executor.spread = False
    assert result.ok, result.error
    assert len({w for w, _ in placements(rec)}) == 2  # both workers ran a part
    assert png_files(tmp_path / "remote") == png_files(tmp_path / "local") and len(png_files(tmp_path / "local")) == 4
    assert sorted(rec.nodes("node_completed")) == sorted(expected.executed)  # each node reported once
    assert result.ui == expected.ui and sorted(result.executed) == sorted(expected.executed)


def _save_wf(colour: str) -> dict:
    return workflow(c=node("core.solid_color", width=8, height=8, color=colour, batch=2),
                    s=node("core.save_image", images=link("c", "images"), filename_prefix="img"))


def test_a_batch_on_the_cluster_writes_line_k_to_dir_k_on_both_workers(cluster, tmp_path, capsys):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(_save_wf("#ff0000")))
    batch = tmp_path / "batch.jsonl"
    colours = ["#0000ff", "#00ff00", "#ffff00", "#00ffff"]
    batch.write_text("\n".join([json.dumps({"c.color": c}) for c in colours[:2]] + ["not json"]
                               + [json.dumps({"c.color": c}) for c in colours[2:]]) + "\n")
    out = tmp_path / "out"
    code = main(["run", str(wf), "--batch", str(batch), "--output-dir", str(out), "--nodes-dir", str(PACKS),
                 "--executor", "ray", "--workers", "2", "--worker-cpus", "0.5"])
    err = capsys.readouterr().err
    assert code == 1 and "batch: 4/5 runs succeeded" in err and "not valid JSON" in err
    assert sorted(p.name for p in out.iterdir()) == ["0", "1", "3", "4"]
    assert {line.split()[2] for line in err.splitlines() if line.startswith("on    worker")} == {"w1", "w2"}
    local = tmp_path / "local"
    assert main(["run", str(wf), "--set", 'c.color="#00ffff"', "--output-dir", str(local), "--quiet"]) == 0
    assert png_files(out / "4") == png_files(local)


def test_a_single_run_on_the_cluster_exits_like_a_local_one(cluster, tmp_path, capsys):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(workflow(f=node("toy.fail"), s=node("toy.sink", value=link("f")))))
    code = main(["run", str(wf), "--output-dir", str(tmp_path), "--nodes-dir", str(PACKS), "--executor", "ray",
                 "--workers", "1", "--worker-cpus", "0.5"])
    assert code == 1 and "FAILED f (toy.fail)" in capsys.readouterr().err


def test_workers_whose_packs_differ_from_the_heads_are_refused_with_the_reason(cluster, tmp_path):
    pack = tmp_path / "packs" / "toy"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(
        "import nodegraph\n\n\nclass Const(nodegraph.Node):\n    '''A number.'''\n    name = 'const'\n\n"
        "    class Inputs(nodegraph.Inputs):\n        value: float = nodegraph.Port(0.0, description='n')\n\n"
        "    class Outputs(nodegraph.Outputs):\n        value: float = nodegraph.Port(description='n')\n\n"
        "    def run(self, inputs, ctx):\n        return self.Outputs(value=inputs.value)\n\n\n"
        "PACK = nodegraph.Pack('toy', nodes=[Const], version='9.9')\n")
    options = ClusterOptions(workers=1, worker_cpus=0.5,
                             worker_settings=worker_settings(nodes_dirs=[str(tmp_path / "packs")]))
    with pytest.raises(ClusterUnavailable, match=r"w\d+: refused: pack 'toy' is version 9.9 there, 0 here.*"
                                                 r"Install the same nodegraph and packs"):
        connect(options, cluster)
    missing = ClusterOptions(workers=1, worker_cpus=0.5, worker_settings=worker_settings(nodes_dirs=[]))
    with pytest.raises(ClusterUnavailable, match="pack 'toy' is missing"):
        connect(missing, cluster)


def test_closing_the_pool_removes_each_workers_scratch_folder(cluster):
    import ray

    options = ClusterOptions(workers=1, worker_cpus=0.5, worker_settings=worker_settings())
    executor = connect(options, cluster)
    try:
        wait_idle(executor)
        (worker,) = executor.pool.workers
        scratch = Path(ray.get(worker.actor.status.options(concurrency_group="control").remote())["scratch"])
        assert scratch.is_dir() and scratch.name.startswith(f"nodegraph-{worker.name}-")
    finally:
        executor.close()
    assert not scratch.exists()


def test_a_closing_worker_waits_for_its_run_and_new_workers_remove_dead_ones_scratch(tmp_path, monkeypatch):
    """In-process (no Ray): ``close`` waits for a run still writing before it removes the folder, and a new
    worker removes the scratch folders of this host's dead workers, not live or foreign ones."""
    import socket
    import subprocess
    import tempfile
    import threading

    from nodegraph.cluster import worker as w

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    owners = {"dead": f"{socket.gethostname()} {gone.pid}", "live": f"{socket.gethostname()} {os.getpid()}",
              "foreign": f"another-host {gone.pid}"}
    for kind, owner in owners.items():
        (tmp_path / f"nodegraph-w9-{kind}").mkdir()
        (tmp_path / f"nodegraph-w9-{kind}" / w.OWNER).write_text(owner)
    (tmp_path / "nodegraph-w9-unowned").mkdir()
    worker = w.NodegraphWorker("w1", {"entry_point_packs": False, "nodes_dirs": [], "model_dirs": []})
    left = sorted(p.name for p in tmp_path.glob("nodegraph-w9-*"))
    assert left == ["nodegraph-w9-foreign", "nodegraph-w9-live", "nodegraph-w9-unowned"]
    assert worker.scratch.parent == tmp_path and (worker.scratch / w.OWNER).is_file()

    def run():  # a node that finishes its step after the stop
        time.sleep(0.5)
        (worker.scratch / "output").mkdir(parents=True, exist_ok=True)
        (worker.scratch / "output" / "late.png").write_bytes(b"x")

    thread = threading.Thread(target=run)
    worker._threads["run"] = thread
    thread.start()
    worker.close()
    assert not thread.is_alive() and not worker.scratch.exists()


def test_a_worker_whose_planning_calls_sys_exit_reports_the_failure_to_the_head(tmp_path, monkeypatch):
    """Without Ray: an exit while the worker plans (a pack's code) ends the run, not the worker's thread
    silently (the head would wait for the run forever)."""
    import tempfile
    import threading

    from nodegraph.cluster import worker as w
    from nodegraph.cluster.wire import JobSpec

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    worker = w.NodegraphWorker("w1", {"entry_point_packs": False, "nodes_dirs": [str(PACKS)], "model_dirs": []})
    monkeypatch.setattr(worker, "_plan", lambda spec: sys.exit())
    spec = JobSpec(run_id="r1", workflow=workflow(s=node("toy.sink", value=1.0)), targets=["s"], report=["s"],
                   key_dir=str(tmp_path / "out"), run_nonce="n")
    batches: list = []
    thread = threading.Thread(target=lambda: batches.extend(worker.execute(spec)), daemon=True)
    thread.start()
    thread.join(20)
    try:
        assert not thread.is_alive()
    finally:
        worker.close()
    done = batches[-1][-1]
    assert done.status == "failed" and done.error.error_type == "SystemExit"
    assert done.error.message == "on worker w1: the run was planned and a node called sys.exit()"


def test_without_ray_the_ray_executor_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(_save_wf("#ff0000")))
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when it is not installed
    assert main(["run", str(wf), "--output-dir", str(tmp_path), "--executor", "ray"]) == 1
    assert "pip install 'nodegraph[ray]'" in capsys.readouterr().err


# --- the server ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_server_runs_a_job_per_worker_at_once_and_shows_where(cluster, aiohttp_client, tmp_path):
    from test_server_helpers import Server, finished, until

    from nodegraph.server import ServerConfig, create_app

    wait_idle(cluster.executor)
    server = Server(await aiohttp_client(create_app(cluster, ServerConfig(data_dir=tmp_path / "data"))), tmp_path)
    ws = await server.ws()
    jobs = [await server.queue(steps(30.0 + i, n=100, delay=0.05)) for i in range(2)]
    seen = await until(ws, placed_jobs(2))
    placed = {m["data"]["job_id"]: m["data"]["worker"] for m in seen if m["type"] == "job_placed"}
    assert set(placed) == set(jobs) and len(set(placed.values())) == 2
    listing = await server.json("GET", "/api/jobs")
    assert sorted(j["id"] for j in listing["running_jobs"]) == sorted(jobs)
    assert {j["id"]: j["worker"] for j in listing["running_jobs"]} == placed
    system = await server.json("GET", "/api/system")
    assert system["executor"]["kind"] == "ray"
    busy = {w["job"]: w["name"] for w in system["executor"]["workers"] if w["state"] == "busy"}
    assert busy == placed
    # Interrupting one job cancels it on its worker; the other runs on.
    assert (await server.json("POST", "/api/interrupt", json={"job_id": jobs[0]}))["interrupted"] == jobs[0]
    end = (await until(ws, finished(jobs[0])))[-1]["data"]
    assert end["status"] == "cancelled"
    assert (await server.json("GET", f"/api/jobs/{jobs[1]}"))["status"] == "running"
    assert (await server.json("POST", "/api/interrupt", json={}))["interrupted"] == jobs[1]
    assert (await until(ws, finished(jobs[1])))[-1]["data"]["status"] == "cancelled"
    assert (await server.json("GET", f"/api/jobs/{jobs[1]}"))["worker"] == placed[jobs[1]]


def placed_jobs(n: int):
    """A predicate for ``until``: true once ``job_placed`` messages named ``n`` jobs."""
    seen: set[str] = set()

    def pred(message: dict) -> bool:
        if message["type"] == "job_placed":
            seen.add(message["data"]["job_id"])
        return len(seen) == n

    return pred


@pytest.mark.asyncio
async def test_a_head_that_stops_with_jobs_on_the_cluster_records_them_interrupted_and_keeps_the_queue(
        cluster, aiohttp_client, tmp_path):
    from test_server_helpers import Server, finished, until

    from nodegraph.server import ServerConfig, create_app

    wait_idle(cluster.executor)
    config = ServerConfig(data_dir=tmp_path / "data")
    first = Server(await aiohttp_client(create_app(cluster, config)), tmp_path)
    ws = await first.ws()
    running = [await first.queue(steps(40.0 + i, n=200, delay=0.05)) for i in range(2)]
    await until(ws, placed_jobs(2))
    queued = await first.queue(steps(42.0))
    await first.client.close()  # the head stops: its jobs out on the workers are stopped there
    second = Server(await aiohttp_client(create_app(cluster, config)), tmp_path)
    ws = await second.ws()
    for job_id in running:
        job = await second.json("GET", f"/api/jobs/{job_id}")
        assert job["status"] == "interrupted" and job["error"]["error_type"] == "Interrupted"
    assert (await until(ws, finished(queued)))[-1]["data"]["status"] == "success"
    again = (await second.json("POST", f"/api/jobs/{running[0]}/requeue", 201))["job_id"]
    assert again
