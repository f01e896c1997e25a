"""Every route of docs/api.md against the real app, answers checked against the OpenAPI models."""

from __future__ import annotations

import asyncio
import io
import json
import threading

import pytest
from conftest import ROOT
from PIL import Image
from test_server_helpers import (
    finished,
    gate,
    gated,
    link,
    node,
    started_node,
    trivial,
    until,
    wf,
)

import nodegraph.types
from nodegraph.server import schemas
from nodegraph.server.comfy import comfy_api
from nodegraph.server.keys import ENGINE
from nodegraph.server.routes import api

pytest_plugins = ["test_server_helpers"]  # its fixtures: server, start, web_dir
pytestmark = pytest.mark.asyncio


def png_bytes(color=(255, 0, 0), size=(8, 6), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


async def test_node_catalogue_lists_every_pack_and_fits_its_model(server):
    data = await server.json("GET", "/api/nodes")
    schemas.NodeCatalogue.model_validate(data)
    assert {"core.save_image", "toy.const", "sample.invert", "srvtest.gate"} <= set(data["nodes"])
    assert {p["name"] for p in data["packs"]} >= {"core", "toy", "sample", "srvtest"}
    assert data["failed_packs"] == []
    add = data["nodes"]["toy.add"]
    assert [p["name"] for p in add["inputs"]] == ["a", "b"] and add["inputs"][1]["maximum"] == 1e9


async def test_the_catalogue_link_rules_decide_every_link_as_validation_does(server):
    data = await server.json("GET", "/api/nodes")
    rules = data["link_rules"]
    assert rules["any"] == "ANY"

    def allowed(out_type: str, in_type: str) -> bool:  # what the editor does with the served rules
        return rules["any"] in (out_type, in_type) or out_type == in_type or out_type in rules["accepts"].get(in_type, [])

    types = {p["type"] for n in data["nodes"].values() for p in n["inputs"] + n["outputs"]}
    assert {"IMAGE", "INT", "FLOAT", "SEED", "ENUM", "STRING"} <= types
    types |= {"JSON", "BOOLEAN", "ANY", *rules["accepts"]}
    for out_type in types:
        for in_type in types:
            assert allowed(out_type, in_type) == nodegraph.types.compatible(out_type, in_type), (out_type, in_type)


async def test_upgrade_brings_any_readable_workflow_to_the_current_format_and_versions(server):
    old = {"format": "nodegraph/0", "ui": {"canvas": {"scale": 2}}, "meta": {"author": "me"},
           "nodes": [{"id": "c", "type": "toy.const", "inputs": {"value": 3}, "ui": {"pos": [1, 2]}},
                     {"id": "k", "type": "srvtest.scale", "version": 1, "inputs": {"x": ["c", "value"]},
                      "linked": ["x"], "title": "Triple", "color": "#123"},
                     {"id": "gone", "type": "nopack.thing", "inputs": {"a": 1}},
                     {"id": "v7", "type": "toy.const", "version": 7, "inputs": {"value": 1}},
                     {"id": "s", "type": "toy.sink", "inputs": {"value": ["k", "value"]}, "linked": ["value"]}]}
    body = await server.json("POST", "/api/upgrade", json=old)
    schemas.UpgradeResponse.model_validate(body)
    new = body["workflow"]
    assert new["format"] == "nodegraph/1" and new["ui"] == old["ui"] and new["meta"] == old["meta"]
    assert new["nodes"]["k"] == {"type": "srvtest.scale", "version": 2, "inputs": {"value": {"from": "c", "output": "value"}},
                                 "title": "Triple", "color": "#123"}
    assert new["nodes"]["c"] == {"type": "toy.const", "inputs": {"value": 3}, "ui": {"pos": [1, 2]}}
    assert new["nodes"]["gone"] == {"type": "nopack.thing", "inputs": {"a": 1}}  # kept as it was
    assert new["nodes"]["v7"]["version"] == 7
    assert [(i["code"], i["node"]) for i in body["issues"]] == [("unknown_node_type", "gone"),
                                                               ("version_mismatch", "v7")]
    again = await server.json("POST", "/api/upgrade", json=new)
    assert again == body  # upgrading is idempotent
    del new["nodes"]["gone"], new["nodes"]["v7"]
    assert (await server.json("POST", "/api/validate", json={"workflow": new}))["valid"]


@pytest.mark.parametrize(("body", "code"), [
    ("{not json", "invalid_json"), ("[1, 2]", "unsupported_format"), ('{"format": "nodegraph/9"}', "unsupported_format"),
    ('{"nodes": {}}', "unsupported_format"), ('{"format": "nodegraph/1", "nodes": {"a": {"inputs": {}}}}', "invalid_workflow"),
])
async def test_upgrade_answers_400_with_the_reason_when_the_body_is_no_workflow(server, body, code):
    res = await server.json("POST", "/api/upgrade", 400, data=body, headers={"Content-Type": "application/json"})
    assert res["error"] == code and res["message"]
    if code != "invalid_json":  # a body that is not JSON at all is refused before it is read as a workflow
        schemas.UnreadableWorkflowBody.model_validate(res)
        assert res["issues"][0]["code"] == code
    assert (await server.json("POST", "/api/upgrade", 415, data="{}"))["error"] == "unsupported_media_type"


async def test_validate_reports_every_issue_and_runs_nothing(server):
    ok = await server.json("POST", "/api/validate", json={"workflow": trivial()})
    assert ok == {"valid": True, "issues": []}
    bad = wf(a=node("toy.nope"), b=node("toy.add", a=link("missing"), b="x"))
    res = await server.json("POST", "/api/validate", json={"workflow": bad})
    schemas.ValidationResult.model_validate(res)
    assert not res["valid"]
    assert {i["code"] for i in res["issues"]} >= {"unknown_node_type", "dangling_link", "invalid_value"}
    # Not even a workflow: structured issues, not a 500.
    res = await server.json("POST", "/api/validate", json={"workflow": [1, 2]})
    assert res["issues"][0]["code"] == "unsupported_format"
    history = await server.json("GET", "/api/history")
    assert history["total"] == 0


async def test_a_check_that_calls_sys_exit_is_skipped_and_the_server_goes_on(server):
    exits = wf(x=node("toy.exit", at="check", code=3))
    assert (await server.json("POST", "/api/validate", json={"workflow": exits}))["valid"]
    interrupts = wf(x=node("toy.exit", at="check", interrupt=True))  # not a Ctrl-C: off the main thread
    assert (await server.json("POST", "/api/validate", json={"workflow": interrupts}))["valid"]
    assert (await server.json("POST", "/api/validate", json={"workflow": trivial()}))["valid"]


async def test_queue_a_job_and_read_it_back_from_jobs_and_history(server):
    ws = await server.ws()
    job_id = await server.queue(trivial(7.0), client_id="tester")
    await until(ws, finished(job_id))
    job = await server.json("GET", f"/api/jobs/{job_id}")
    schemas.Job.model_validate(job)
    assert job["status"] == "success" and job["client_id"] == "tester" and job["position"] is None
    assert job["created"] <= job["started"] <= job["finished"]
    assert job["outputs"] == {"s": {"value": ["7.0"]}}
    assert job["workflow"]["nodes"]["c"]["inputs"]["value"] == 7.0
    history = await server.json("GET", "/api/history?limit=10&offset=0")
    schemas.HistoryPage.model_validate(history)
    assert history["total"] == 1 and history["jobs"][0]["id"] == job_id
    jobs = await server.json("GET", "/api/jobs")
    schemas.JobList.model_validate(jobs)
    assert jobs == {"running": None, "running_jobs": [], "queued": []}


async def test_invalid_workflow_is_refused_with_issues_and_never_queued(server):
    ws = await server.ws("editor1")
    bad = wf(a=node("toy.add", a="not a number"))
    body = await server.queue(bad, status=400, client_id="editor1")
    schemas.InvalidWorkflowBody.model_validate(body)
    assert body["error"] == "invalid_workflow" and body["issues"][0]["code"] == "invalid_value"
    msg = (await until(ws, lambda m: m["type"] == "validation_failed"))[-1]
    assert msg["data"]["job_id"] is None and msg["data"]["issues"] == body["issues"]
    # Only the client that queued gets it; and the queue is untouched: a good job still runs.
    job_id = await server.queue(trivial())
    seen = await until(ws, finished(job_id))
    assert [m for m in seen if m["type"] == "validation_failed"] == []
    assert (await server.json("GET", "/api/history"))["total"] == 1


async def test_queue_order_front_move_delete_and_positions(server):
    ws = await server.ws()
    blocker = await server.queue(gated("order"))
    await until(ws, started_node(blocker, "g"))
    a = await server.queue(trivial(1))
    b = await server.queue(trivial(2))
    c = (await server.json("POST", "/api/jobs", 201, json={"workflow": trivial(3), "front": True}))
    assert c["position"] == 0
    c = c["job_id"]
    jobs = await server.json("GET", "/api/jobs")
    assert jobs["running"]["id"] == blocker and jobs["running"]["status"] == "running"
    assert [j["id"] for j in jobs["queued"]] == [c, a, b]
    assert [j["position"] for j in jobs["queued"]] == [0, 1, 2]
    assert (await server.json("POST", f"/api/jobs/{b}/move", json={"position": 0})) == {"position": 0}
    assert (await server.json("POST", f"/api/jobs/{c}/move", json={"position": 99})) == {"position": 2}
    assert [j["id"] for j in (await server.json("GET", "/api/jobs"))["queued"]] == [b, a, c]
    assert (await server.json("GET", f"/api/jobs/{c}"))["position"] == 2
    assert (await server.json("DELETE", f"/api/jobs/{a}", 204)) is None
    assert (await server.json("DELETE", f"/api/jobs/{a}", 404))["error"] == "not_found"
    assert (await server.json("DELETE", f"/api/jobs/{blocker}", 409))["error"] == "conflict"
    assert (await server.json("POST", f"/api/jobs/{blocker}/move", 409, json={"position": 0}))["error"] == "conflict"
    gate("order").set()
    order = [m["data"]["job_id"] for m in await until(ws, finished(c)) if m["type"] == "job_finished"]
    assert order == [blocker, b, c]
    history = await server.json("GET", "/api/history")
    assert a not in [j["id"] for j in history["jobs"]]  # removed from the queue: not history
    assert (await server.json("DELETE", f"/api/jobs/{b}", 409))["message"].endswith(f"/api/history/{b}")


async def test_status_messages_follow_the_queue(server):
    ws = await server.ws()
    blocker = await server.queue(gated("status"))
    await until(ws, started_node(blocker, "g"))
    queued = await server.queue(trivial(5))
    msg = (await until(ws, lambda m: m["type"] == "status" and m["data"]["queue_remaining"] == 1))[-1]
    assert msg["data"]["running"] == blocker
    await server.json("DELETE", f"/api/jobs/{queued}", 204)
    msg = (await until(ws, lambda m: m["type"] == "status"))[-1]
    assert msg["data"] == {"queue_remaining": 0, "running": blocker, "running_jobs": [blocker]}
    gate("status").set()
    await until(ws, lambda m: m["type"] == "status" and m["data"]["running"] is None)


async def test_interrupt_cancels_the_running_job_only(server):
    ws = await server.ws()
    job_id = await server.queue(gated("int"))
    await until(ws, started_node(job_id, "g"))
    assert (await server.json("POST", "/api/interrupt", json={"job_id": "someone-else"})) == {"interrupted": None}
    assert (await server.json("POST", "/api/interrupt", json={})) == {"interrupted": job_id}
    msg = (await until(ws, finished(job_id)))[-1]
    assert msg["data"]["status"] == "cancelled"
    job = await server.json("GET", f"/api/jobs/{job_id}")
    assert job["status"] == "cancelled" and job["error"]["error_type"] == "Cancelled"
    assert (await server.json("POST", "/api/interrupt")) == {"interrupted": None}  # nothing running, no body


async def test_requeue_runs_a_copy_and_history_delete_forgets(server):
    ws = await server.ws()
    first = await server.queue(trivial(4), targets=["s"])
    await until(ws, finished(first))
    again = await server.json("POST", f"/api/jobs/{first}/requeue", 201, json={})
    schemas.QueueResponse.model_validate(again)
    msg = (await until(ws, finished(again["job_id"])))[-1]
    assert msg["data"]["status"] == "success" and (msg["data"]["executed"], msg["data"]["cached"]) == (0, 1)  # same engine: the sink comes from the cache
    copy = await server.json("GET", f"/api/jobs/{again['job_id']}")
    assert copy["requeued_from"] == first and copy["targets"] == ["s"] and copy["workflow"] == trivial(4)
    assert (await server.json("POST", "/api/jobs/nope/requeue", 404, json={}))["error"] == "not_found"
    assert (await server.json("DELETE", f"/api/history/{first}", 204)) is None
    assert (await server.json("GET", f"/api/jobs/{first}", 404))["error"] == "not_found"
    assert (await server.json("DELETE", f"/api/history/{first}", 404))["error"] == "not_found"
    assert (await server.json("GET", "/api/history"))["total"] == 1


async def test_history_is_newest_first_and_paged(server):
    ws = await server.ws()
    ids = []
    for i in range(3):
        ids.append(await server.queue(trivial(100 + i)))
    await until(ws, finished(ids[-1]))
    page = await server.json("GET", "/api/history?limit=2")
    assert page["total"] == 3 and [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    page = await server.json("GET", "/api/history?limit=2&offset=2")
    assert [j["id"] for j in page["jobs"]] == ids[:1]
    assert (await server.json("GET", "/api/history?limit=0", 400))["error"] == "invalid_request"
    assert (await server.json("GET", "/api/history?limit=abc", 400))["error"] == "invalid_request"


async def test_lists_carry_summaries_and_the_job_route_its_workflow(server):
    ws = await server.ws()
    big = wf(**{f"n{i}": node("toy.const", value=float(i)) for i in range(20_000)},
             s=node("toy.sink", value=link("n1")))
    big["meta"] = {"title": "a big one " + "x" * 500}
    blocker = await server.queue(gated("summaries"))
    await until(ws, started_node(blocker, "g"))
    job_id = await server.queue(big, targets=["s"])
    res = await server.client.get("/api/jobs")
    listed = await res.json()
    assert len(await res.read()) < 10_000  # the 20,000-node workflow is not in the list
    summary = listed["queued"][0]
    schemas.JobList.model_validate(listed)
    assert "workflow" not in summary and "workflow" not in listed["running"]
    assert summary["node_count"] == 20_001 and summary["title"] == ("a big one " + "x" * 500)[:200]
    gate("summaries").set()
    await until(ws, finished(job_id))
    res = await server.client.get("/api/history?limit=50")
    assert len(await res.read()) < 10_000
    history = await res.json()
    assert [j["id"] for j in history["jobs"]] == [job_id, blocker]
    assert all("workflow" not in j for j in history["jobs"]) and history["jobs"][0]["node_count"] == 20_001
    full = await server.json("GET", f"/api/jobs/{job_id}")
    assert len(full["workflow"]["nodes"]) == 20_001 and full["title"] == summary["title"]


async def test_output_images_are_viewable_by_the_url_the_job_reports(server):
    ws = await server.ws()
    workflow = wf(c=node("core.solid_color", color="#00ff00", width=8, height=8),
                  s=node("core.save_image", images=link("c", "images"), filename_prefix="sub/green"))
    job_id = await server.queue(workflow)
    seen = await until(ws, finished(job_id))
    completed = [m for m in seen if m["type"] == "node_completed" and m["data"]["node"] == "s"][0]
    image = completed["data"]["ui"]["images"][0]
    assert image["subfolder"] == "sub" and image["type"] == "output"
    assert image["url"] == f"/api/view?filename={image['filename']}&subfolder=sub&type=output"
    job = await server.json("GET", f"/api/jobs/{job_id}")
    assert job["outputs"]["s"]["images"][0] == image
    res = await server.client.get(image["url"])
    assert res.status == 200 and res.headers["Content-Type"] == "image/png"
    assert res.headers["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(await res.read())).getpixel((0, 0)) == (0, 255, 0)
    assert (await server.json("GET", "/api/view?filename=nope.png", 404))["error"] == "not_found"
    assert (await server.json("GET", "/api/view?filename=x.png&type=secrets", 400))["error"] == "invalid_request"


async def test_upload_then_list_view_and_load_it_in_a_job(server):
    ws = await server.ws()
    res = await server.client.post("/api/upload", data={"image": io.BytesIO(png_bytes()), "overwrite": "false"})
    assert res.status == 200, await res.text()
    body = await res.json()
    schemas.UploadResponse.model_validate(body)
    assert body == {"name": "image.png", "subfolder": "", "type": "input"}  # aiohttp names a BytesIO "image"
    # Same name again: a new name, the first file is kept; overwrite=true replaces it.
    form = {"image": ("red.png", png_bytes(), "image/png")}
    first = await (await server.client.post("/api/upload", data=_form(form))).json()
    second = await (await server.client.post("/api/upload", data=_form(form))).json()
    assert (first["name"], second["name"]) == ("red.png", "red (1).png")
    third = await (await server.client.post("/api/upload", data=_form(form, overwrite="true"))).json()
    assert third["name"] == "red.png"
    files = await server.json("GET", "/api/files/input")
    schemas.FileList.model_validate(files)
    assert files["files"] == ["image.png", "red (1).png", "red.png"]
    res = await server.client.get("/api/view", params={"filename": "red.png", "type": "input"})
    assert res.status == 200 and res.headers["Content-Type"] == "image/png"
    job_id = await server.queue(wf(l=node("core.load_image", image="red (1).png"),
                                   s=node("toy.sink", value=link("l", "width"))))
    msg = (await until(ws, finished(job_id)))[-1]
    assert msg["data"]["status"] == "success"
    assert (await server.json("GET", f"/api/jobs/{job_id}"))["outputs"]["s"]["value"] == ["8"]


def _form(files: dict, **fields: str):
    import aiohttp

    form = aiohttp.FormData()
    for name, (filename, data, ctype) in files.items():
        form.add_field(name, data, filename=filename, content_type=ctype)
    for k, v in fields.items():
        form.add_field(k, v)
    return form


async def test_models_lists_names_in_the_model_folders(server):
    models = server.tmp / "models"
    (models / "unclip" / "tiny").mkdir(parents=True)
    (models / "top.safetensors").write_bytes(b"")
    (models / ".hidden").write_bytes(b"")
    assert (await server.json("GET", "/api/models"))["models"] == ["top.safetensors", "unclip"]
    assert (await server.json("GET", "/api/models?kind=unclip"))["models"] == ["tiny"]
    schemas.ModelList.model_validate(await server.json("GET", "/api/models?kind=unclip"))
    assert (await server.json("GET", "/api/models?kind=../..", 400))["error"] == "invalid_request"


async def test_models_of_a_loaders_kind_are_the_ones_it_loads_and_nothing_else(server):
    models = server.tmp / "models"
    for path in ("karlo/prior/config.json", "karlo/decoder/config.json", "karlo/training_log.json",
                 "ours/prior/config.json", "sam-small/model.safetensors", "loras/pink.safetensors", "loras/notes.txt",
                 "training_log.json"):
        (models / path).parent.mkdir(parents=True, exist_ok=True)
        (models / path).write_bytes(b"")
    catalogue = await server.json("GET", "/api/nodes")
    kinds = {p["name"]: p["model_kind"] for p in catalogue["nodes"]["unclip.load_prior"]["inputs"] if "model_kind" in p}
    assert kinds == {"model": "unclip.prior"}
    assert (await server.json("GET", "/api/models?kind=unclip.prior"))["models"] == ["karlo", "ours"]
    assert (await server.json("GET", "/api/models?kind=unclip.decoder"))["models"] == ["karlo"]
    assert (await server.json("GET", "/api/models?kind=lora"))["models"] == ["pink.safetensors"]
    assert (await server.json("GET", "/api/models?kind=sam"))["models"] == ["sam-small"]
    missing = await server.json("GET", "/api/models?kind=unclip", 404)
    assert missing["error"] == "not_found" and "unclip.prior" in missing["message"]


async def test_templates_are_the_shipped_workflows_with_their_meta(server):
    listing = await server.json("GET", "/api/templates")
    schemas.TemplateList.model_validate(listing)
    shipped = sorted(p.stem for p in (ROOT / "workflows").glob("*.json"))
    assert [t["name"] for t in listing["templates"]] == shipped and listing["default"] == "text2image"
    t2i = next(t for t in listing["templates"] if t["name"] == "text2image")
    meta = json.loads((ROOT / "workflows" / "text2image.json").read_text())["meta"]
    assert (t2i["title"], t2i["description"]) == (meta["title"], meta["description"])
    assert await server.json("GET", "/api/templates/text2image") == json.loads((ROOT / "workflows" / "text2image.json").read_text())
    assert (await server.json("GET", "/api/templates/nope", 404))["error"] == "not_found"
    assert (await server.json("GET", "/api/templates/..%2Fsecret", 400))["error"] == "unsafe_path"


async def test_saved_workflows_put_list_get_delete(server):
    flow = trivial(3.5)
    flow["ui"] = {"canvas": {"scale": 0.8}}
    assert (await server.json("PUT", "/api/workflows/my flow (2)", json=flow)) == {"name": "my flow (2)"}
    assert (await server.json("PUT", "/api/workflows/other", json=trivial())) == {"name": "other"}
    assert (await server.json("GET", "/api/workflows")) == {"workflows": ["my flow (2)", "other"]}
    assert (await server.json("GET", "/api/workflows/my%20flow%20(2)")) == flow
    # Not runnable is fine; not a workflow is not.
    assert (await server.json("PUT", "/api/workflows/ghost", json=wf(x=node("nopack.nothing"))))["name"] == "ghost"
    bad = await server.json("PUT", "/api/workflows/bad", 400, json={"nodes": []})
    assert bad["error"] == "unsupported_format"
    bad = await server.json("PUT", "/api/workflows/bad", 400, json={"format": "nodegraph/1", "nodes": {"a": {}}})
    assert bad["error"] == "invalid_workflow"
    assert (await server.json("DELETE", "/api/workflows/other", 204)) is None
    assert (await server.json("DELETE", "/api/workflows/other", 404))["error"] == "not_found"
    assert (await server.json("GET", "/api/workflows/other", 404))["error"] == "not_found"
    assert (await server.json("GET", "/api/workflows"))["workflows"] == ["ghost", "my flow (2)"]


async def test_system_info(server):
    info = await server.json("GET", "/api/system")
    schemas.SystemInfo.model_validate(info)
    assert info["versions"]["api"] == 1 and info["versions"]["ws"] == 1 and info["versions"]["nodegraph"]
    assert info["device"] == "cpu" and info["cache"]["max_bytes"] == 64 * 1024 * 1024
    assert info["queue"] == {"queued": 0, "running": 0, "finished": 0, "max_queue": 1000}
    assert "sample" in {p["name"] for p in info["packs"]}


async def test_extensions_list_and_serve_the_sample_packs_front_end(server):
    ext = await server.json("GET", "/api/extensions")
    schemas.ExtensionList.model_validate(ext)
    assert ext == {"scripts": ["/extensions/sample/sample.js"]}
    res = await server.client.get("/extensions/sample/sample.js")
    assert res.status == 200 and res.headers["Content-Type"].startswith("text/javascript")
    assert "export" in await res.text()
    assert (await server.client.get("/extensions/sample/nope.js")).status == 404
    assert (await server.client.get("/extensions/toy/x.js")).status == 404  # no front-end folder


async def test_editor_is_served_with_csp_and_caching_headers(server, web_dir):
    res = await server.client.get("/")
    assert res.status == 200 and res.headers["Content-Type"].startswith("text/html")
    csp = res.headers["Content-Security-Policy"]
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(b'{"imports": {}}').digest()).decode()
    assert f"'sha256-{digest}'" in csp and "script-src 'self'" in csp and "object-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert res.headers["Cache-Control"] == "no-cache"
    res = await server.client.get("/js/main.js")
    assert res.status == 200 and res.headers["Content-Type"].startswith("text/javascript")
    res = await server.client.get("/node_modules/@comfyorg/litegraph/dist/litegraph.es.js")
    assert res.status == 200 and "max-age=86400" in res.headers["Cache-Control"]
    again = await server.client.get("/js/main.js", headers={"If-Modified-Since": res.headers["Last-Modified"]})
    assert again.status == 304
    assert (await server.client.get("/node_modules/leftpad/index.js")).status == 404
    assert (await server.client.get("/.env")).status == 400
    res = await server.client.get("/api/nope")
    assert res.status == 404 and (await res.json())["error"] == "not_found"


async def test_the_real_editor_page_is_served_with_its_import_map_allowed(start, tmp_path):
    from nodegraph.server.config import default_web_dir

    index = default_web_dir() / "index.html"
    if not index.is_file():
        pytest.skip("web/index.html is not there")
    srv = await start(web_dir=default_web_dir())
    res = await srv.client.get("/")
    assert res.status == 200
    import base64
    import hashlib
    import re

    html = index.read_text()
    for body in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S):
        if body.strip():
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in res.headers["Content-Security-Policy"]


async def test_openapi_document_describes_every_route(server):
    doc = await server.json("GET", "/api/openapi.json")
    assert doc["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    import re

    declared = {(d.method, re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", d.path)) for d in (*api.routes, *comfy_api.routes)}
    assert declared == documented
    for method, path in [("GET", "/api/nodes"), ("POST", "/api/validate"), ("POST", "/api/upgrade"), ("POST", "/api/jobs"),
                         ("GET", "/api/jobs"), ("GET", "/api/jobs/{id}"), ("DELETE", "/api/jobs/{id}"),
                         ("POST", "/api/jobs/{id}/move"), ("POST", "/api/jobs/{id}/requeue"),
                         ("POST", "/api/interrupt"), ("GET", "/api/history"), ("DELETE", "/api/history/{id}"),
                         ("GET", "/api/view"), ("POST", "/api/upload"), ("GET", "/api/files/input"),
                         ("GET", "/api/models"), ("GET", "/api/templates"), ("GET", "/api/templates/{name}"),
                         ("GET", "/api/workflows"), ("GET", "/api/workflows/{name}"),
                         ("PUT", "/api/workflows/{name}"), ("DELETE", "/api/workflows/{name}"),
                         ("GET", "/api/system"), ("GET", "/api/extensions"), ("GET", "/api/openapi.json"),
                         ("GET", "/extensions/{pack}/{tail}"), ("GET", "/ws"), ("POST", "/prompt"),
                         ("GET", "/history/{prompt_id}"), ("GET", "/object_info"), ("POST", "/upload/image")]:
        assert (method, path) in documented, (method, path)
    post = doc["paths"]["/api/jobs"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/QueueRequest"}
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/QueueResponse")
    # Every $ref resolves, the workflow format and every WebSocket message are described.
    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref
    comps = doc["components"]["schemas"]
    assert "nodes" in comps["Workflow"]["properties"]
    assert comps["QueueRequest"]["properties"]["workflow"] == {"$ref": "#/components/schemas/Workflow"}
    upgrade = doc["paths"]["/api/upgrade"]["post"]
    assert upgrade["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/WorkflowBody"}
    assert comps["WorkflowBody"] == {"$ref": "#/components/schemas/Workflow"}
    assert "link_rules" in comps["NodeCatalogue"]["required"]
    assert len(comps["WsMessage"]["oneOf"]) == 11
    assert doc["paths"]["/api/history"]["get"]["parameters"][0]["name"] == "limit"


async def test_unknown_json_fields_and_wrong_types_are_400(server):
    res = await server.json("POST", "/api/jobs", 400, json={"workflow": trivial(), "extra": 1})
    assert res["error"] == "invalid_request" and "extra" in res["message"]
    res = await server.json("POST", "/api/jobs", 400, json={"workflow": trivial(), "front": "maybe"})
    assert res["error"] == "invalid_request"
    res = await server.json("POST", "/api/jobs", 400, data=b"{not json", headers={"Content-Type": "application/json"})
    assert res["error"] == "invalid_json"
    res = await server.json("POST", "/api/jobs", 400)
    assert res["error"] == "invalid_request"


async def test_a_huge_graph_is_parsed_and_validated_off_the_event_loop(server, monkeypatch):
    parsing, parsed, validating, validated = (threading.Event() for _ in range(4))
    engine = server.app[ENGINE]
    real_validate = engine.validate

    class HeldJson:  # json as the server module uses it; a large body waits until the test lets it go
        JSONDecodeError = json.JSONDecodeError

        @staticmethod
        def loads(data):
            if len(data) > 256 * 1024:
                parsing.set()
                assert parsed.wait(20)
            return json.loads(data)

    def held_validate(*args, **kwargs):
        validating.set()
        assert validated.wait(20)
        return real_validate(*args, **kwargs)

    monkeypatch.setattr("nodegraph.server.openapi.json", HeldJson)
    monkeypatch.setattr(engine, "validate", held_validate)
    big = wf(**{f"n{i}": node("toy.const", value="x") for i in range(20_000)})  # 20,000 invalid values
    post = asyncio.ensure_future(server.client.post("/api/validate", json={"workflow": big}))
    for stage, release in ((parsing, parsed), (validating, validated)):
        assert await asyncio.to_thread(stage.wait, 20)
        res = await server.client.get("/api/system")  # answered while the big request is held
        assert res.status == 200 and not post.done()
        release.set()
    res = await post
    answer = await res.json()
    assert res.status == 200 and not answer["valid"]
    assert sum(i["code"] == "invalid_value" for i in answer["issues"]) == 20_000
