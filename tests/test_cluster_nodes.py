"""The Ray executor joining a two-node cluster (``ray.cluster_utils.Cluster``: two Ray nodes on this
machine, one CPU each, a worker on each): jobs run on both nodes, and a node removed mid-run loses
nothing (its job runs again on the other node, in the events of a local run, its files written once)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from cluster_helpers import head_engine, placements, png_files, ray_env, shape, worker_settings
from helpers import Recorder, link, node, workflow

from nodegraph.cluster import ClusterOptions, connect

__all__ = ["ray_env"]  # a fixture


@pytest.fixture(scope="module")
def nodes(ray_env, tmp_path_factory):
    """A head engine joined (by address, as ``--ray-address``) to a cluster of two nodes, a worker on each."""
    from ray._raylet import Config
    from ray.cluster_utils import Cluster

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")  # ray may have read its configuration before the line above, in an earlier module
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 * 2**20})
    second = cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
    head = head_engine(tmp_path_factory.mktemp("head"))
    try:
        head.executor = connect(ClusterOptions(address=cluster.address, workers=2, worker_cpus=1,
                                               worker_settings=worker_settings()), head)
        yield head, cluster, second
    finally:
        if head.executor is not None and hasattr(head.executor, "close"):
            head.executor.close()
        cluster.shutdown()


def _job(value: float, n: int) -> dict:
    return workflow(c=node("core.solid_color", width=8, height=8, color=f"#2040{int(value):02x}"),
                    save=node("core.save_image", images=link("c", "images"), filename_prefix="once"),
                    a=node("toy.steps", value=value, steps=n, delay=0.05), s=node("toy.sink", value=link("a")))


def test_a_worker_starts_on_each_node_and_a_removed_nodes_job_runs_again_on_the_other(nodes, engine, tmp_path):
    head, cluster, second = nodes
    pool = head.executor.pool
    on_node = {w.name: w.hello.node for w in pool.workers}
    assert len(set(on_node.values())) == 2  # one worker per node
    lost_worker = next(name for name, n in on_node.items() if n == second.node_id)

    # Two jobs at once: one on each node. The second node goes away while its job runs.
    results: dict[str, object] = {}
    running = threading.Event()
    jobs = {}

    def run(key: str, value: float) -> None:
        rec = Recorder()
        jobs[key] = rec

        def sink(event):
            rec(event)
            if event.event == "progress" and placements(rec)[-1][0] == lost_worker:
                running.set()

        results[key] = head.run(_job(value, 40), sink=sink, output_dir=tmp_path / key)

    threads = [threading.Thread(target=run, args=(key, v)) for key, v in (("j1", 1.0), ("j2", 2.0))]
    for t in threads:
        t.start()
    assert running.wait(60)
    started = time.monotonic()
    cluster.remove_node(second)
    for t in threads:
        t.join(120)
    assert all(r.ok for r in results.values()), {k: r.error for k, r in results.items()}
    placed = {key: placements(rec) for key, rec in jobs.items()}
    assert sorted(w for p in placed.values() for w, _ in p[:1]) == sorted(on_node)  # at first, one per node
    rerun = next(p for p in placed.values() if p[0][0] == lost_worker)
    assert rerun[1][0] != lost_worker and rerun[1][1] == 2
    assert time.monotonic() - started < 60
    for key, rec in jobs.items():
        local = Recorder()
        assert engine.run(_job(float(key[1]), 40), sink=local, output_dir=tmp_path / "local" / key).ok
        # a re-run reports its nodes again, after its second placement, as a local run reports them
        again = max(i for i, e in enumerate(rec) if e.event == "run_placed")
        assert shape(rec[again:]) == shape(local)[1:], key
        assert rec.kinds().count("run_started") == rec.kinds().count("run_finished") == 1
        assert png_files(tmp_path / key) == png_files(tmp_path / "local" / key)  # one file, written once
    states = {w["name"]: w["state"] for w in head.executor.describe()["workers"]}
    assert states[lost_worker] == "lost"
    assert "lost" not in {states[name] for name in on_node if name != lost_worker}
