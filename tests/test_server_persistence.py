"""Nothing is lost on restart: queue and history in SQLite, schema migrations, interrupted jobs."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from test_server_helpers import (
    finished,
    gate,
    gated,
    link,
    make_engine,
    node,
    started_node,
    trivial,
    until,
    wf,
)

from nodegraph.server.keys import STORE
from nodegraph.server.store import (
    MIGRATIONS,
    JobStore,
    Migration,
    SchemaTooNew,
    StoreLocked,
    is_disk_full,
    migrate,
    schema_version,
)

pytest_plugins = ["test_server_helpers"]  # its fixtures: server, start, web_dir


def connect(path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_a_new_database_gets_every_migration(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    assert store.version == MIGRATIONS[-1].version == 4
    cols = {r[1] for r in store.conn.execute("PRAGMA table_info(jobs)")}
    assert {"id", "status", "qpos", "workflow", "outputs", "requeued_from", "title", "node_count", "worker"} <= cols
    store.close()


def test_a_version_1_database_is_migrated_and_keeps_its_jobs(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    conn = connect(path)
    assert migrate(conn, MIGRATIONS[:1]) == 1
    conn.execute("INSERT INTO jobs (id, status, qpos, created, workflow) VALUES ('old', 'queued', 0, 1.0, ?)",
                 ('{"format": "nodegraph/1", "nodes": {}}',))
    conn.execute("INSERT INTO jobs (id, status, created, finished, workflow, outputs) "
                 "VALUES ('done', 'success', 1.0, 2.0, ?, '{\"s\": {\"value\": [\"1\"]}}')",
                 ('{"format": "nodegraph/1", "meta": {"title": 7, "name": "kept"}, "nodes": {"a": {}, "b": {}}}',))
    conn.close()
    store = JobStore(path)
    assert store.version == 4 and schema_version(store.conn) == 4
    old = store.get("old")
    assert old["status"] == "queued" and old["position"] == 0 and old["requeued_from"] is None
    assert (old["title"], old["node_count"], old["worker"]) == (None, 0, None)
    done = store.history()[0][0]  # the summary the migration wrote, without the workflow
    assert done["outputs"] == {"s": {"value": ["1"]}} and (done["title"], done["node_count"]) == ("kept", 2)
    assert "workflow" not in done and store.get("done")["workflow"]["meta"]["name"] == "kept"
    store.close()


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    conn = connect(path)
    migrate(conn)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(SchemaTooNew, match="version 99.*newer nodegraph"):
        JobStore(path)
    # The lock was released: a store with a matching migration list opens it.
    future = (*MIGRATIONS, *(Migration(v, "future", ()) for v in range(len(MIGRATIONS) + 1, 100)))
    JobStore(path, migrations=future).close()


def test_a_failing_migration_changes_nothing(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    broken = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "broken", ("CREATE TABLE extra (x INTEGER)", "NOT SQL AT ALL")))
    with pytest.raises(sqlite3.OperationalError):
        JobStore(path, migrations=broken)
    conn = connect(path)
    assert schema_version(conn) == MIGRATIONS[-1].version
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone() is None
    conn.close()


def test_a_job_left_running_by_a_crash_is_marked_interrupted(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    store.add("a", {"format": "nodegraph/1", "nodes": {}})
    store.add("b", {"format": "nodegraph/1", "nodes": {}})
    assert store.claim_next()["id"] == "a"
    store.close()  # no finish(): the process died
    store = JobStore(path)
    assert store.interrupted == ["a"]
    a = store.get("a")
    assert a["status"] == "interrupted" and a["error"]["error_type"] == "Interrupted" and a["finished"]
    assert store.get("b")["status"] == "queued"
    assert [j["id"] for j in store.history()[0]] == ["a"]
    store.close()


def test_two_servers_cannot_share_a_data_folder(tmp_path):
    first = JobStore(tmp_path / "jobs.sqlite3")
    with pytest.raises(StoreLocked, match="another nodegraph server"):
        JobStore(tmp_path / "jobs.sqlite3")
    first.close()
    JobStore(tmp_path / "jobs.sqlite3").close()


@pytest.mark.asyncio
async def test_restart_queued_jobs_run_and_the_running_one_is_interrupted_then_requeued(start, tmp_path):
    data = tmp_path / "data"
    first = await start(data_dir=data)
    ws = await first.ws()
    running = await first.queue(gated("restart", value=5.0))
    await until(ws, started_node(running, "g"))
    queued = [await first.queue(trivial(1.0)), await first.queue(trivial(2.0), front=True)]
    await first.client.close()  # stop the server: the gated job is asked to stop

    second = await start(make_engine(tmp_path), data_dir=data)  # a new process would have a new engine
    ws = await second.ws()
    job = await second.json("GET", f"/api/jobs/{running}")
    assert job["status"] == "interrupted" and job["error"]["error_type"] == "Interrupted"
    # The queued jobs run in their order, without anyone asking.
    seen = await until(ws, finished(queued[0]))
    order = [m["data"]["job_id"] for m in seen if m["type"] == "job_finished"]
    assert order == [queued[1], queued[0]] and seen[-1]["data"]["status"] == "success"
    assert (await second.json("GET", f"/api/jobs/{queued[1]}"))["outputs"] == {"s": {"value": ["2.0"]}}
    # The interrupted one can be re-queued and completes.
    gate("restart").set()
    again = (await second.json("POST", f"/api/jobs/{running}/requeue", 201))["job_id"]
    end = (await until(ws, finished(again)))[-1]["data"]
    assert end["status"] == "success"
    job = await second.json("GET", f"/api/jobs/{again}")
    assert job["requeued_from"] == running and job["outputs"] == {"s": {"value": ["5.0"]}}
    history = await second.json("GET", "/api/history")
    assert history["total"] == 4


@pytest.mark.asyncio
async def test_history_and_output_files_survive_a_restart(start, tmp_path):
    data = tmp_path / "data"
    first = await start(data_dir=data)
    ws = await first.ws()
    job_id = await first.queue(wf(c=node("core.solid_color", color="#0000ff", width=4, height=4),
                                  s=node("core.save_image", images=link("c", "images"))))
    await until(ws, finished(job_id))
    url = (await first.json("GET", f"/api/jobs/{job_id}"))["outputs"]["s"]["images"][0]["url"]
    await first.json("PUT", "/api/workflows/kept", json=trivial())
    await first.client.close()

    second = await start(make_engine(tmp_path), data_dir=data)
    history = await second.json("GET", "/api/history")
    assert [j["id"] for j in history["jobs"]] == [job_id] and history["jobs"][0]["status"] == "success"
    res = await second.client.get(url)
    assert res.status == 200 and res.headers["Content-Type"] == "image/png"
    assert (await second.json("GET", "/api/workflows")) == {"workflows": ["kept"]}


@pytest.mark.asyncio
async def test_a_bad_workflow_does_not_corrupt_the_queue(start, tmp_path):
    data = tmp_path / "data"
    srv = await start(data_dir=data)
    ws = await srv.ws()
    blocker = await srv.queue(gated("corrupt"))
    await until(ws, started_node(blocker, "g"))
    good = await srv.queue(trivial(8.0))
    for bad in ({"format": "nodegraph/1", "nodes": {"x": {"type": 5}}}, "{not json", 42, {"nodes": "x"},
                wf(a=node("toy.add", a={"from": "a", "output": "value"}))):
        await srv.queue(bad, status=400)
    res = await srv.client.post("/api/jobs", data=b'{"workflow": ', headers={"Content-Type": "application/json"})
    assert res.status == 400
    jobs = await srv.json("GET", "/api/jobs")
    assert [j["id"] for j in jobs["queued"]] == [good]
    gate("corrupt").set()
    assert (await until(ws, finished(good)))[-1]["data"]["status"] == "success"
    await srv.client.close()
    conn = connect(data / "jobs.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 2
    conn.close()


def test_a_write_sqlite_has_no_room_for_changes_nothing_and_the_store_goes_on(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.add("a", trivial())
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    big = wf(**{f"n{i}": node("toy.const", value=float(i)) for i in range(5000)})
    with pytest.raises(sqlite3.OperationalError) as caught:
        store.add("b", big)
    assert is_disk_full(caught.value)
    assert [j["id"] for j in store.queued()] == ["a"] and not store.conn.in_transaction
    store.conn.execute("PRAGMA max_page_count = 1073741823")  # room again
    store.add("b", big)
    assert [j["id"] for j in store.queued()] == ["a", "b"]
    store.close()


class FullDisk:
    """A job database connection whose disk is full while ``full``: every write fails as SQLite's does."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn, self.full, self.refused = conn, True, 0

    def execute(self, sql: str, *args):
        if self.full and sql.split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.refused += 1
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self.conn, name)


@pytest.mark.asyncio
async def test_a_full_data_disk_answers_507_and_the_job_is_recorded_once_there_is_room(start, tmp_path):
    data = tmp_path / "data"
    srv = await start(data_dir=data, store_retry=0.05)
    ws = await srv.ws()
    job = await srv.queue(gated("full", value=3.0))
    await until(ws, started_node(job, "g"))

    def fill(store):
        store.conn = FullDisk(store.conn)
        return store.conn

    disk = await srv.app[STORE](fill)
    refused = await srv.json("POST", "/api/jobs", 507, json={"workflow": trivial()})
    assert refused["error"] == "disk_full" and str(data) in refused["message"]
    gate("full").set()
    async with asyncio.timeout(20):
        while disk.refused < 3:  # the job ended; its record was refused, then retried
            await asyncio.sleep(0.01)
    assert (await srv.json("GET", "/api/jobs"))["running"]["id"] == job
    disk.full = False  # space returns
    end = (await until(ws, finished(job)))[-1]["data"]
    assert end["status"] == "success"
    assert (await srv.json("GET", f"/api/jobs/{job}"))["outputs"] == {"s": {"value": ["3.0"]}}
    after = await srv.queue(trivial(4.0))  # the runner keeps going
    assert (await until(ws, finished(after)))[-1]["data"]["status"] == "success"
    assert (await srv.json("GET", "/api/jobs")) == {"running": None, "running_jobs": [], "queued": []}
