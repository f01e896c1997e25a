"""The WebSocket: message order for a run, previews, subscriptions, failures, slow clients."""

from __future__ import annotations

import base64
import io
import sys
import time

import aiohttp
import pytest
from PIL import Image
from test_server_helpers import (
    finished,
    gate,
    gated,
    link,
    node,
    receive,
    started_node,
    trivial,
    until,
    wf,
)

from nodegraph.server.keys import HUB, RUNNER

pytest_plugins = ["test_server_helpers"]  # its fixtures: server, start, web_dir
pytestmark = pytest.mark.asyncio


def run_events(messages: list[dict], job_id: str) -> list[tuple]:
    """(type, node) of a job's run messages, in order."""
    return [(m["type"], m["data"].get("node")) for m in messages
            if m["type"] != "status" and m["data"].get("job_id") == job_id]


async def test_event_order_for_a_run_then_the_same_run_from_the_cache(server):
    ws = await server.ws()
    workflow = wf(c=node("toy.const", value=2.0), st=node("toy.steps", value=link("c"), steps=3),
                  s=node("toy.sink", value=link("st")))
    t0 = time.time()
    job_id = await server.queue(workflow)
    seen = await until(ws, finished(job_id))
    assert run_events(seen, job_id) == [
        ("job_started", None),
        ("node_started", "c"), ("node_completed", "c"),
        ("node_started", "st"), ("progress", "st"), ("progress", "st"), ("progress", "st"), ("node_completed", "st"),
        ("node_started", "s"), ("node_completed", "s"),
        ("job_finished", None),
    ]
    by_type = {m["type"]: m for m in seen}
    assert by_type["job_started"]["data"]["nodes"] == ["c", "st", "s"]
    steps = [(m["data"]["step"], m["data"]["total"]) for m in seen if m["type"] == "progress"]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    done = by_type["job_finished"]["data"]
    assert done == {"job_id": job_id, "status": "success", "duration": done["duration"], "executed": 3,
                    "cached": 0, "error": None}
    sink = [m for m in seen if m["type"] == "node_completed" and m["data"]["node"] == "s"][0]
    assert sink["data"]["ui"] == {"value": ["2.0"]} and sink["data"]["type"] == "toy.sink"
    # Every engine message carries the executor's clock; they are in order and after queueing.
    times = [m["t"] for m in seen if m["type"] != "status"]
    assert times == sorted(times) and t0 <= times[0] <= time.time()
    # The queue status: running this job, then nothing.
    statuses = [m["data"] for m in seen if m["type"] == "status"]
    assert {"queue_remaining": 0, "running": job_id, "running_jobs": [job_id]} in statuses
    last = (await until(ws, lambda m: m["type"] == "status"))[-1]["data"]
    assert last == {"queue_remaining": 0, "running": None, "running_jobs": []}

    again = await server.queue(workflow)
    seen = await until(ws, finished(again))
    assert run_events(seen, again) == [("job_started", None), ("node_cached", "s"), ("job_finished", None)]
    cached = [m for m in seen if m["type"] == "node_cached"][0]["data"]
    assert cached["ui"] == {"value": ["2.0"]}
    assert seen[-1]["data"]["cached"] == 1 and seen[-1]["data"]["executed"] == 0


async def test_previews_are_small_pngs_throttled_per_node(start):
    srv = await start(preview_interval=3600, preview_size=64)
    ws = await srv.ws()
    job_id = await srv.queue(wf(p=node("srvtest.pictures", steps=40, red=1.0, size=600),
                                s=node("core.preview_image", images=link("p", "images"))))
    seen = await until(ws, finished(job_id))
    kinds = run_events(seen, job_id)
    assert kinds.count(("progress", "p")) == 40
    previews = [m["data"] for m in seen if m["type"] == "preview"]
    assert len(previews) == 1  # the first one; the next would be an hour later
    assert previews[0]["step"] == 1 and previews[0]["node"] == "p"
    # The preview follows its progress message, inside the node's run.
    assert kinds.index(("preview", "p")) == kinds.index(("progress", "p")) + 1
    assert kinds.index(("preview", "p")) < kinds.index(("node_completed", "p"))
    prefix = "data:image/png;base64,"
    assert previews[0]["image"].startswith(prefix)
    img = Image.open(io.BytesIO(base64.b64decode(previews[0]["image"][len(prefix):])))
    assert img.format == "PNG" and img.size == (64, 64) and img.getpixel((5, 5)) == (255, 0, 0)
    # The final images of the preview node come with their URLs.
    done = [m for m in seen if m["type"] == "node_completed" and m["data"]["node"] == "s"][0]["data"]
    images = done["ui"]["images"]
    assert len(images) == 2 and all(i["type"] == "temp" and i["url"].startswith("/api/view?") for i in images)
    res = await srv.client.get(images[0]["url"])
    assert res.status == 200 and res.headers["Content-Type"] == "image/png"


async def test_previews_without_throttle_come_with_every_step(start):
    srv = await start(preview_interval=0, preview_size=16)
    ws = await srv.ws()
    job_id = await srv.queue(wf(p=node("srvtest.pictures", steps=4, size=32),
                                s=node("toy.sink", value=link("p", "images"))))
    seen = await until(ws, finished(job_id))
    assert [m["data"]["step"] for m in seen if m["type"] == "preview"] == [1, 2, 3, 4]


async def test_a_failing_node_fails_its_job_only_and_the_server_keeps_serving(server):
    ws = await server.ws()
    bad = await server.queue(wf(c=node("toy.const", value=1.0), f=node("toy.fail", value=link("c")),
                                s=node("toy.sink", value=link("f"))))
    good = await server.queue(trivial(9.0))
    seen = await until(ws, finished(good))
    assert run_events(seen, bad)[-2:] == [("node_failed", "f"), ("job_finished", None)]
    failed = [m for m in seen if m["type"] == "node_failed"][0]["data"]
    assert failed["error_type"] == "NodeExecutionError" and failed["message"] == "toy failure requested"
    assert failed["type"] == "toy.fail" and "Traceback" in failed["traceback"]
    end = [m for m in seen if m["type"] == "job_finished" and m["data"]["job_id"] == bad][0]["data"]
    assert end["status"] == "failed" and end["error"]["node"] == "f"
    assert seen[-1]["data"]["status"] == "success"
    job = await server.json("GET", f"/api/jobs/{bad}")
    assert job["status"] == "failed" and job["error"]["message"] == "toy failure requested"
    assert (await server.json("GET", "/api/system"))["queue"]["finished"] == 2


async def test_an_engine_error_fails_the_job_with_its_traceback_and_the_runner_goes_on(server):
    ws = await server.ws()
    engine = server.app[RUNNER].engine
    original = engine.run

    def broken(*args, **kwargs):
        engine.run = original  # only the first job hits the bug
        raise RuntimeError("engine bug")

    engine.run = broken
    bad = await server.queue(trivial(1.0))
    good = await server.queue(trivial(2.0))
    seen = await until(ws, finished(good))
    end = [m for m in seen if m["type"] == "job_finished" and m["data"]["job_id"] == bad][0]["data"]
    assert end["status"] == "failed" and end["error"]["error_type"] == "RuntimeError"
    assert "engine bug" in end["error"]["traceback"]
    assert seen[-1]["data"]["status"] == "success"


async def test_a_node_or_engine_that_calls_sys_exit_fails_its_job_only_and_the_server_keeps_serving(server):
    ws = await server.ws()
    engine = server.app[RUNNER].engine
    in_node = await server.queue(wf(x=node("toy.exit", code=3)))
    good = await server.queue(trivial(4.0))
    seen = await until(ws, finished(good))
    end = [m for m in seen if m["type"] == "job_finished" and m["data"]["job_id"] == in_node][0]["data"]
    assert end["status"] == "failed" and end["error"]["node"] == "x" and "sys.exit(3)" in end["error"]["message"]
    assert seen[-1]["data"]["status"] == "success"
    original = engine.run

    def exits(*args, **kwargs):  # e.g. a node's fingerprint exiting while the job is planned
        engine.run = original
        sys.exit()

    engine.run = exits
    planning = await server.queue(trivial(1.0))
    good = await server.queue(trivial(2.0))
    seen = await until(ws, finished(good))
    end = [m for m in seen if m["type"] == "job_finished" and m["data"]["job_id"] == planning][0]["data"]
    assert end["status"] == "failed" and end["error"]["error_type"] == "SystemExit"
    assert end["error"]["message"].startswith("the job was planned and a node called sys.exit()")
    assert seen[-1]["data"]["status"] == "success"
    assert (await server.json("GET", "/api/system"))["queue"]["finished"] == 4


async def test_a_node_that_raises_keyboard_interrupt_fails_its_job_only(server):
    # no Ctrl-C reaches the server's worker threads (the server takes SIGINT itself): code raised it
    ws = await server.ws()
    at_run = await server.queue(wf(x=node("toy.exit", interrupt=True)))
    at_plan = await server.queue(wf(x=node("toy.exit", at="fingerprint", interrupt=True)))
    good = await server.queue(trivial(4.0))
    seen = await until(ws, finished(good))
    ends = {m["data"]["job_id"]: m["data"] for m in seen if m["type"] == "job_finished"}
    assert ends[at_run]["status"] == "failed" and ends[at_run]["error"]["node"] == "x"
    assert ends[at_run]["error"]["error_type"] == "KeyboardInterrupt"
    assert "the node raised KeyboardInterrupt; a node reports" in ends[at_run]["error"]["message"]
    assert ends[at_plan]["status"] == "success"  # a fingerprint that raises it: the node re-runs every time
    assert ends[good]["status"] == "success"


async def test_a_workflow_that_became_invalid_fails_when_it_runs(server):
    ws = await server.ws()
    blocker = await server.queue(gated("inv"))
    await until(ws, started_node(blocker, "g"))
    job_id = await server.queue(trivial(3.0))
    server.app[RUNNER].engine.registry._specs.pop("toy.sink")  # its pack went away while the job waited
    gate("inv").set()
    end = (await until(ws, finished(job_id)))[-1]["data"]
    assert end["status"] == "failed" and end["error"]["error_type"] == "WorkflowInvalid"
    assert "unknown_node_type" in end["error"]["message"]


async def test_subscribe_limits_run_events_to_the_named_jobs(server):
    everything = await server.ws("all")
    picky = await server.ws("picky")
    blocker = await server.queue(gated("sub"))
    await until(everything, started_node(blocker, "g"))
    a = await server.queue(trivial(11))
    b = await server.queue(trivial(12))
    await picky.send_str("not json")  # ignored, no reply
    await picky.send_json({"type": "subscribe", "job_id": "x" * 65})  # too long: ignored, no reply
    await picky.send_json({"type": "subscribe", "job_id": b})
    # Two statuses saying 2 queued: the broadcast when b was queued, then the reply to the subscription.
    statuses = []
    await until(picky, lambda m: m["type"] == "status" and m["data"]["queue_remaining"] == 2
                and statuses.append(m) is None and len(statuses) == 2)
    assert statuses[-1]["data"]["running"] == blocker
    gate("sub").set()
    seen = await until(picky, finished(b))
    assert {m["data"].get("job_id") for m in seen if m["type"] != "status"} == {b}
    seen = await until(everything, finished(b))
    assert a in {m["data"].get("job_id") for m in seen if m["type"] == "job_finished"}
    # Back to every job.
    await picky.send_json({"type": "subscribe", "job_id": None})
    await until(picky, lambda m: m["type"] == "status")
    c = await server.queue(trivial(14))
    await until(picky, finished(c))


async def test_validation_failed_goes_only_to_the_client_that_queued(server):
    mine = await server.ws("mine")
    other = await server.ws("other")
    await server.queue(wf(a=node("toy.nope")), status=400, client_id="mine")
    msg = (await until(mine, lambda m: m["type"] == "validation_failed"))[-1]
    assert msg["data"]["issues"][0]["code"] == "unknown_node_type"
    job_id = await server.queue(trivial(21))
    seen = await until(other, finished(job_id))
    assert "validation_failed" not in [m["type"] for m in seen]


async def test_clients_that_fall_behind_are_disconnected_and_can_reconnect(start):
    srv = await start(ws_queue=10)
    slow = await srv.ws("slow")
    fine = await srv.ws("fine")
    hub = srv.app[HUB]
    for i in range(11):  # one event-loop turn: neither writer has sent anything yet
        hub.publish(f'{{"v": 1, "type": "status", "data": {{"queue_remaining": {i}, "running": null}}}}')
    # Both fell behind by the same amount here: both are dropped, and told why.
    for ws in (slow, fine):
        msg = await ws.receive(timeout=10)
        while msg.type == aiohttp.WSMsgType.TEXT:
            msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1013
    assert hub.clients == set()
    # A new client connects and gets the current status at once.
    again = await srv.ws("again")
    job_id = await srv.queue(trivial(31))
    assert (await until(again, finished(job_id)))[-1]["data"]["status"] == "success"


async def test_ws_refuses_a_bad_client_id(server):
    res = await server.client.get("/ws?client_id=a%20b")
    assert res.status == 400 and (await res.json())["error"] == "invalid_request"


async def test_status_on_connect_reflects_a_running_job(server):
    ws = await server.ws()
    blocker = await server.queue(gated("connect"))
    await until(ws, started_node(blocker, "g"))
    late = await server.client.ws_connect("/ws")
    first = await receive(late)
    assert first["type"] == "status" and first["data"]["running"] == blocker
    gate("connect").set()
    await until(late, finished(blocker))


async def test_every_run_event_has_its_message_with_the_event_fields():
    """Messages are derived from the event models: each event kind of a run is sent (run_finished as
    job_finished, after the record is written) with the event's fields after job_id."""
    from typing import get_args

    from nodegraph.events import Event, RunFinished
    from nodegraph.server.messages import EVENT_MESSAGES, JobFinishedData

    kinds = set(get_args(get_args(Event)[0]))
    assert kinds == set(EVENT_MESSAGES) | {RunFinished}
    for event, message in EVENT_MESSAGES.items():
        data = message.model_fields["data"].annotation
        sent = [f for f, info in event.model_fields.items() if f not in ("run_id", "t", "event") and not info.exclude]
        assert list(data.model_fields)[0] == "job_id"
        assert set(sent) - set(data.model_fields) <= {"targets"}, event  # job_started lists the planned nodes only
    assert list(JobFinishedData.model_fields) == ["job_id", "status", "duration", "executed", "cached", "error"]
