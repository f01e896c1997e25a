"""The ComfyUI-compatible door, driven the way ComfyUI's example API scripts drive ComfyUI: urllib for
``POST /prompt``, ``GET /history/{id}`` and ``GET /view``, a WebSocket on ``/ws?clientId=`` read until
``executing`` says ``node: null`` for the prompt. The server is the real app on a real port."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

import aiohttp
import pytest
from PIL import Image
from test_server_helpers import gate

from nodegraph.server.comfy import prompt_to_workflow, ui_to_workflow, workflow_to_prompt

pytest_plugins = ["test_server_helpers"]  # its fixtures: server, start, web_dir


class ComfyClient:
    """A client as ComfyUI's websocket_api_example.py is written (its HTTP calls run in a thread)."""

    def __init__(self, server: Any, headers: dict[str, str] | None = None) -> None:
        self.base = str(server.client.make_url("")).rstrip("/")
        self.session = server.client.session
        self.server = server
        self.client_id = str(uuid.uuid4())
        self.headers = headers or {}

    def _open(self, path: str, data: bytes | None = None) -> bytes:
        req = urllib.request.Request(f"{self.base}{path}", data=data, headers=self.headers)
        with urllib.request.urlopen(req) as res:  # urllib's default content type, as the example sends
            return res.read()

    async def queue_prompt(self, prompt: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body = json.dumps({"prompt": prompt, "client_id": self.client_id, **extra}).encode()
        return json.loads(await asyncio.to_thread(self._open, "/prompt", body))

    async def get(self, path: str) -> Any:
        return json.loads(await asyncio.to_thread(self._open, path))

    async def get_image(self, filename: str, subfolder: str, folder_type: str) -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": folder_type})
        return await asyncio.to_thread(self._open, f"/view?{query}")

    async def connect(self) -> aiohttp.ClientWebSocketResponse:
        ws = await self.server.client.ws_connect(f"/ws?clientId={self.client_id}")
        hello = await ws.receive_json(timeout=10)
        assert hello == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                    "sid": self.client_id}}
        return ws


async def messages_until_done(ws: aiohttp.ClientWebSocketResponse, prompt_id: str) -> tuple[list[dict], list[bytes]]:
    """The example's loop: read until ``executing`` with ``node: null`` for our prompt."""
    texts, frames = [], []
    async with asyncio.timeout(20):
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                frames.append(msg.data)
                continue
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data = json.loads(msg.data)
            texts.append(data)
            if data["type"] == "executing" and data["data"]["node"] is None \
                    and data["data"]["prompt_id"] == prompt_id:
                return texts, frames


def pictures_prompt(steps: int = 2) -> dict[str, Any]:
    """Our node types by their ids and by the ComfyUI class a node stands in for (SaveImage)."""
    return {
        "3": {"class_type": "srvtest.pictures", "inputs": {"steps": steps, "red": 1.0, "size": 16}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ComfyUI"},
              "_meta": {"title": "Save Image"}},
    }


def gated_prompt(name: str) -> dict[str, Any]:
    """A prompt whose node "1" runs until the test opens the gate ``name``."""
    return {"1": {"class_type": "srvtest.gate", "inputs": {"name": name, "value": 1.0}},
            "2": {"class_type": "toy.sink", "inputs": {"value": ["1", 0]}}}


@pytest.mark.asyncio
async def test_a_comfyui_style_client_queues_listens_reads_the_history_and_fetches_the_images(server):
    client = ComfyClient(server)
    ws = await client.connect()
    answer = await client.queue_prompt(pictures_prompt())
    prompt_id = answer["prompt_id"]
    assert answer["node_errors"] == {} and isinstance(answer["number"], int)
    texts, frames = await messages_until_done(ws, prompt_id)

    kinds = [m["type"] for m in texts if m["type"] != "status"]
    assert kinds == ["execution_start", "executing", "progress", "progress", "executing", "executed",
                     "execution_success", "executing"]
    by_kind = {m["type"]: m["data"] for m in texts}
    assert by_kind["execution_start"]["prompt_id"] == prompt_id
    running = [m["data"]["node"] for m in texts if m["type"] == "executing"]
    assert running == ["3", "9", None]
    assert [(m["data"]["value"], m["data"]["max"], m["data"]["node"]) for m in texts if m["type"] == "progress"] \
        == [(1, 2, "3"), (2, 2, "3")]
    # Previews are binary frames: event type 1 (preview image), image type 2 (PNG), the PNG (the runner
    # sends at most a few a second, so fewer than the steps may arrive).
    assert frames
    for frame in frames:
        assert struct.unpack(">II", frame[:8]) == (1, 2)
        assert Image.open(io.BytesIO(frame[8:])).format == "PNG"

    executed = by_kind["executed"]
    assert executed["node"] == "9" and executed["prompt_id"] == prompt_id
    images = executed["output"]["images"]
    assert len(images) == 2 and all(set(i) == {"filename", "subfolder", "type"} and i["type"] == "output"
                                    for i in images)

    history = (await client.get(f"/history/{prompt_id}"))[prompt_id]
    assert history["status"]["status_str"] == "success" and history["status"]["completed"] is True
    assert [m[0] for m in history["status"]["messages"]] == ["execution_start", "execution_success"]
    number, pid, prompt, extra, outputs = history["prompt"]
    assert (pid, prompt, extra["client_id"], outputs) == (prompt_id, pictures_prompt(), client.client_id, ["9"])
    assert history["outputs"]["9"]["images"] == images
    for image in history["outputs"]["9"]["images"]:
        data = await client.get_image(image["filename"], image["subfolder"], image["type"])
        picture = Image.open(io.BytesIO(data))
        assert picture.size == (16, 16) and picture.convert("RGB").getpixel((4, 4)) == (255, 0, 0)
    assert prompt_id in await client.get("/history")
    assert await client.get("/history/no-such-prompt") == {}
    await ws.close()


@pytest.mark.asyncio
async def test_the_native_api_sees_a_prompt_as_a_job_and_the_same_queue(server):
    client = ComfyClient(server)
    answer = await client.queue_prompt(pictures_prompt(), prompt_id="my-own-id")
    assert answer["prompt_id"] == "my-own-id"
    native = await server.json("GET", "/api/jobs/my-own-id")
    assert native["workflow"]["nodes"]["9"]["type"] == "core.save_image"
    assert native["workflow"]["nodes"]["9"]["inputs"]["images"] == {"from": "3", "output": "images"}
    res = await server.client.post("/prompt", json={"prompt": pictures_prompt(), "prompt_id": "my-own-id"})
    assert res.status == 409


@pytest.mark.asyncio
async def test_an_invalid_prompt_is_answered_with_comfyuis_node_errors(server):
    client = ComfyClient(server)
    prompt = {"1": {"class_type": "toy.const", "inputs": {"value": "not a number"}},
              "2": {"class_type": "toy.sink", "inputs": {"value": ["1", 0]}}}
    res = await server.client.post("/prompt", json={"prompt": prompt, "client_id": client.client_id})
    assert res.status == 400
    body = await res.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"]["1"]["class_type"] == "toy.const"
    assert body["node_errors"]["1"]["errors"][0]["extra_info"] == {"input_name": "value"}

    unknown = {"1": {"class_type": "KSamplerAdvanced", "inputs": {}}}
    body = await (await server.client.post("/prompt", json={"prompt": unknown})).json()
    assert body["error"]["type"] == "invalid_prompt" and "KSamplerAdvanced" in body["error"]["message"]
    assert "no nodegraph equivalent" in body["node_errors"]["1"]["errors"][0]["message"]

    body = await (await server.client.post("/prompt", json={"no": "prompt"})).json()
    assert body["error"]["type"] == "no_prompt"


@pytest.mark.asyncio
async def test_queue_lists_running_and_pending_and_interrupt_stops_the_running_prompt(server):
    client = ComfyClient(server)
    ws = await client.connect()
    blocked = gated_prompt("comfy-queue")
    first = (await client.queue_prompt(blocked))["prompt_id"]
    async with asyncio.timeout(20):  # wait until the gate node runs
        while True:
            msg = await ws.receive_json()
            if msg["type"] == "executing" and msg["data"]["node"] == "1":
                break
    second = (await client.queue_prompt(pictures_prompt()))["prompt_id"]
    queue = await client.get("/queue")
    assert [item[1] for item in queue["queue_running"]] == [first]
    assert [item[1] for item in queue["queue_pending"]] == [second]
    assert queue["queue_running"][0][2] == blocked
    assert (await client.get("/prompt"))["exec_info"]["queue_remaining"] == 2

    # Interrupting another prompt id does nothing; interrupting ours stops it.
    await server.client.post("/interrupt", json={"prompt_id": second})
    await server.client.post("/interrupt", json={"prompt_id": first})
    texts, _ = await messages_until_done(ws, first)
    stop = [m["data"] for m in texts if m["type"] == "execution_interrupted"]
    assert stop and stop[0]["prompt_id"] == first and stop[0]["node_id"] == "1"
    history = (await client.get(f"/history/{first}"))[first]
    assert history["status"]["status_str"] == "error" and not history["status"]["completed"]
    assert history["status"]["messages"][-1][0] == "execution_interrupted"
    await messages_until_done(ws, second)  # the next prompt then runs
    gate("comfy-queue").set()
    await ws.close()


@pytest.mark.asyncio
async def test_a_failing_node_sends_execution_error_with_the_traceback(server):
    client = ComfyClient(server)
    ws = await client.connect()
    prompt = {"1": {"class_type": "toy.fail", "inputs": {}},
              "2": {"class_type": "toy.sink", "inputs": {"value": ["1", 0]}}}
    prompt_id = (await client.queue_prompt(prompt))["prompt_id"]
    texts, _ = await messages_until_done(ws, prompt_id)
    error = next(m["data"] for m in texts if m["type"] == "execution_error")
    assert error["node_id"] == "1" and error["node_type"] == "toy.fail" and error["exception_message"]
    assert isinstance(error["traceback"], list) and error["traceback"]
    history = (await client.get(f"/history/{prompt_id}"))[prompt_id]
    assert history["status"]["messages"][-1][0] == "execution_error"


@pytest.mark.asyncio
async def test_object_info_describes_our_nodes_as_comfyui_does(server):
    client = ComfyClient(server)
    info = await client.get("/object_info")
    save = info["core.save_image"]
    assert save["input"]["required"]["images"][0] == "IMAGE"
    assert save["input"]["required"]["filename_prefix"][0] == "STRING"
    assert save["output_node"] is True and save["output"] == [] and save["display_name"]
    add = info["toy.add"]
    assert add["output"] == ["FLOAT"] and add["output_name"] == ["value"]
    assert list(await client.get("/object_info/toy.add")) == ["toy.add"]
    assert await client.get("/object_info/NoSuchNode") == {}


@pytest.mark.asyncio
async def test_an_uploaded_image_is_used_by_name_in_a_prompt(server):
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 255)).save(png, "PNG")
    form = aiohttp.FormData()
    form.add_field("image", png.getvalue(), filename="blue.png", content_type="image/png")
    form.add_field("subfolder", "uploads")
    res = await server.client.post("/upload/image", data=form)
    assert res.status == 200
    uploaded = await res.json()
    assert uploaded == {"name": "blue.png", "subfolder": "uploads", "type": "input"}
    data = await ComfyClient(server).get_image("blue.png", "uploads", "input")
    assert Image.open(io.BytesIO(data)).size == (8, 8)
    form = aiohttp.FormData()
    form.add_field("image", png.getvalue(), filename="x.png", content_type="image/png")
    form.add_field("subfolder", "../outside")
    assert (await server.client.post("/upload/image", data=form)).status == 400


@pytest.mark.asyncio
async def test_the_door_has_the_native_apis_guard(start):
    server = await start(token="s3cret")
    res = await server.client.post("/prompt", json={"prompt": pictures_prompt()})
    assert res.status == 401
    assert (await server.client.get("/history")).status == 401
    res = await server.client.post("/prompt", json={"prompt": pictures_prompt()},
                                   headers={"Authorization": "Bearer s3cret", "Origin": "https://evil.example"})
    assert res.status == 403
    client = ComfyClient(server, headers={"Authorization": "Bearer s3cret"})
    assert (await client.queue_prompt(pictures_prompt()))["prompt_id"]
    with pytest.raises(urllib.error.HTTPError):
        await ComfyClient(server).get("/queue")


def test_a_prompt_and_our_workflow_convert_both_ways(engine_registry):
    workflow, issues = prompt_to_workflow(pictures_prompt(), engine_registry)
    assert not issues
    assert workflow_to_prompt(workflow, engine_registry)["9"]["inputs"]["images"] == ["3", 0]


def test_a_comfyui_editor_workflow_imports_with_reroutes_primitives_and_unmapped_nodes_named(engine_registry):
    ui = {
        "nodes": [
            {"id": 1, "type": "PrimitiveNode", "widgets_values": [7.0], "outputs": [{"name": "FLOAT", "links": [1]}]},
            {"id": 2, "type": "toy.add", "pos": [10, 20], "size": [200, 80], "mode": 4,
             "inputs": [{"name": "a", "link": 1}, {"name": "b", "link": 3}], "widgets_values": []},
            {"id": 3, "type": "Reroute", "inputs": [{"name": "", "link": 2}], "outputs": [{"links": [3]}]},
            {"id": 4, "type": "toy.const", "widgets_values": [5.0], "outputs": [{"name": "value", "links": [2]}]},
            {"id": 5, "type": "CheckpointLoaderSimple", "widgets_values": ["sd15.safetensors"]},
            {"id": 6, "type": "Note", "widgets_values": ["remember"]},
        ],
        "links": [[1, 1, 0, 2, 0, "FLOAT"], [2, 4, 0, 3, 0, "*"], [3, 3, 0, 2, 1, "FLOAT"]],
        "groups": [{"title": "Maths", "bounding": [0, 0, 300, 200]}],
    }
    workflow, issues = ui_to_workflow(ui, engine_registry)
    add = workflow["nodes"]["2"]
    assert add["inputs"] == {"a": 7.0, "b": {"from": "4", "output": "value"}}
    assert add["mode"] == "bypass" and add["ui"]["pos"] == [10.0, 20.0]
    assert workflow["nodes"]["4"]["inputs"] == {"value": 5.0}
    assert sorted(workflow["nodes"]) == ["2", "4", "5"]
    assert [i.node for i in issues] == ["5"] and "CheckpointLoaderSimple" in issues[0].message
    assert workflow["ui"]["groups"] == [{"title": "Maths", "bounding": [0.0, 0.0, 300.0, 200.0]}]
    assert workflow["meta"]["dropped_notes"] == ["remember"]


@pytest.fixture
def engine_registry(tmp_path):
    from test_server_helpers import make_engine

    return make_engine(tmp_path).registry


@pytest.mark.asyncio
async def test_the_editors_upgrade_route_reads_a_comfyui_workflow_and_names_what_it_cannot_map(server):
    ui = {"nodes": [{"id": 4, "type": "toy.const", "widgets_values": [5.0], "outputs": [{"name": "value", "links": [1]}]},
                    {"id": 7, "type": "toy.sink", "inputs": [{"name": "value", "link": 1}]},
                    {"id": 8, "type": "KSampler", "widgets_values": [1, "fixed", 20]}],
          "links": [[1, 4, 0, 7, 0, "FLOAT"]], "groups": [], "version": 0.4}
    answer = await server.json("POST", "/api/upgrade", json=ui)
    assert answer["workflow"]["format"] == "nodegraph/1"
    assert answer["workflow"]["nodes"]["7"]["inputs"] == {"value": {"from": "4", "output": "value"}}
    assert [(i["code"], i["node"]) for i in answer["issues"]] == [("unknown_node_type", "8")]
    assert "'KSampler' has no nodegraph equivalent" in answer["issues"][0]["message"]


@pytest.mark.asyncio
async def test_post_queue_and_post_history_delete_and_clear(server):
    client = ComfyClient(server)
    ws = await client.connect()
    blocked = gated_prompt("comfy-clear")
    running = (await client.queue_prompt(blocked))["prompt_id"]
    waiting = [(await client.queue_prompt(pictures_prompt(steps=n)))["prompt_id"] for n in (1, 2, 3)]
    assert (await server.client.post("/queue", json={"delete": [waiting[0], running]})).status == 200
    assert [item[1] for item in (await client.get("/queue"))["queue_pending"]] == waiting[1:]
    assert (await server.client.post("/queue", json={"clear": True})).status == 200
    assert (await client.get("/queue"))["queue_pending"] == []
    gate("comfy-clear").set()
    await messages_until_done(ws, running)
    assert list(await client.get("/history")) == [running]
    assert (await server.client.post("/history", json={"delete": ["nope"]})).status == 200
    assert (await server.client.post("/history", json={"clear": True})).status == 200
    assert await client.get("/history") == {}
    res = await server.client.post("/queue", json={"delete": "not a list"})
    assert res.status == 400 and "delete" in (await res.json())["message"]
    await ws.close()
