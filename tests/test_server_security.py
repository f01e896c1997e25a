"""Safe by default: binding, token, cross-site refusal, confinement, uploads, limits, safe weights."""

from __future__ import annotations

import asyncio
import hmac
import io
import os
import pickle
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from PIL import Image
from test_server_helpers import (
    TESTS,
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

import nodegraph
from nodegraph.png import save_png
from nodegraph.server import ServerConfig, security
from nodegraph.server import app as server_app
from nodegraph.server.routes import api

ROOT = TESTS.parent
TOKEN = "s3cret-token"

pytest_plugins = ["test_server_helpers"]  # its fixtures: server, start, web_dir


def png_bytes(color=(255, 0, 0), size=(8, 8), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


async def raw_get(client, target: str, extra: str = "") -> tuple[int, bytes]:
    """A GET with the request target sent byte for byte (no client-side normalisation or quoting)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n{extra}Connection: close\r\n\r\n"
                 .encode("latin-1"))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(data.split(b" ", 2)[1]), data


def upload_form(data: bytes, filename: str = "x.png", ctype: str = "image/png") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=filename, content_type=ctype)
    return form


# --- binding ----------------------------------------------------------------------------------------


def test_the_command_line_binds_loopback_by_default():
    from nodegraph.cli import _parser

    args = _parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.token is None


def test_any_other_address_without_a_token_refuses_to_start(monkeypatch, caplog, tmp_path):
    monkeypatch.delenv("NODEGRAPH_TOKEN", raising=False)
    ran = []
    monkeypatch.setattr(server_app, "_run", lambda app, config: ran.append(config))
    engine = make_engine(tmp_path)
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.com"):
        assert server_app.serve(engine, ServerConfig(host=host, data_dir=tmp_path / "d")) == 2
        assert f"refusing to listen on {host} without a token" in caplog.text
    assert ran == [] and not (tmp_path / "d").exists()
    # Through the command line too.
    assert nodegraph.cli.main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "d")]) == 2


def test_other_addresses_start_with_a_token_and_loopback_without(monkeypatch, tmp_path):
    monkeypatch.delenv("NODEGRAPH_TOKEN", raising=False)
    monkeypatch.setenv("NODEGRAPH_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("NODEGRAPH_INPUT_DIR", str(tmp_path / "in"))
    ran = []

    async def fake_run(app, config):
        ran.append((config.host, config.token, app[server_app.ENGINE].models.allow_paths))

    monkeypatch.setattr(server_app, "_run", fake_run)

    def serve(*flags: str) -> int:
        return nodegraph.cli.main(["serve", "--port", "0", "--data-dir", str(tmp_path / "d"), *flags])

    assert serve("--host", "0.0.0.0", "--token", TOKEN) == 0
    assert serve("--host", "::1") == 0
    monkeypatch.setenv("NODEGRAPH_TOKEN", "from-env")
    assert serve("--host", "10.0.0.1") == 0
    # The command line's engine loads models by name only.
    assert ran == [("0.0.0.0", TOKEN, False), ("::1", None, False), ("10.0.0.1", "from-env", False)]


def test_create_app_refuses_an_engine_that_loads_model_paths_and_changes_nothing_it_is_given(tmp_path):
    engine = make_engine(tmp_path, allow_model_paths=True)
    config = ServerConfig(data_dir=tmp_path / "d")
    before = (engine.settings.model_dump(), config.model_dump())
    with pytest.raises(ValueError, match="allow_model_paths"):
        server_app.create_app(engine, config)
    assert engine.settings.allow_model_paths is True and engine.models.allow_paths is True
    restricted = make_engine(tmp_path)
    server_app.create_app(restricted, config)
    assert (engine.settings.model_dump(), config.model_dump()) == before
    assert restricted.settings.allow_model_paths is False


@pytest.mark.asyncio
async def test_nodegraph_serve_listens_on_loopback_without_torch_and_stops_cleanly(tmp_path):
    env = dict(os.environ, NODEGRAPH_OUTPUT_DIR=str(tmp_path / "out"), NODEGRAPH_INPUT_DIR=str(tmp_path / "in"))
    env.pop("NODEGRAPH_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodegraph", "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
        "--nodes-dir", str(TESTS / "packs"), cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE)
    try:
        url = None
        async with asyncio.timeout(60):
            while url is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "the server exited before listening"
                m = re.search(r"serving the editor and API on (http://\S+/)", line)
                url = m.group(1) if m else None
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(url + "ws")
            async with session.post(url + "api/jobs", json={"workflow": trivial(3.0)}) as res:
                assert res.status == 201
            async with session.get(url + "api/system") as res:
                assert (await res.json())["versions"]["api"] == 1
            maps = Path(f"/proc/{proc.pid}/maps")
            if maps.exists():
                assert "libtorch" not in maps.read_text()  # the server never imported torch
            proc.send_signal(signal.SIGTERM)  # with a WebSocket open: it is told, not waited for
            async with asyncio.timeout(10):
                while not ws.closed:
                    await ws.receive()
            assert ws.close_code == 1001  # "going away"
            async with asyncio.timeout(10):
                assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --- token ------------------------------------------------------------------------------------------


def _concrete(path: str) -> str:
    return (path.replace("{id}", "abc").replace("{name}", "w").replace("{pack}", "sample")
            .replace("{tail:.+}", "sample.js"))


@pytest.mark.asyncio
async def test_with_a_token_every_route_and_the_websocket_need_it(start, monkeypatch):
    srv = await start(token=TOKEN)
    c = srv.client
    routes = [(d.method, _concrete(d.path)) for d in api.routes] + [("GET", "/js/main.js"), ("GET", "/x")]
    for method, path in routes:
        res = await c.request(method, path, json={} if method in ("POST", "PUT") else None)
        assert res.status == 401, (method, path, res.status)
        if path.startswith("/api"):
            assert (await res.json())["error"] == "unauthorized"
            assert res.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await c.ws_connect("/ws")
    assert err.value.status == 401
    wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    assert (await c.get("/api/nodes", headers=wrong)).status == 401
    assert (await c.get("/api/nodes", params={"token": ""})).status == 401
    # The token as a header, a query parameter, or the cookie set by the editor page.
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    assert (await c.get("/api/nodes", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200
    assert calls, "the token must be compared with hmac.compare_digest"
    assert (await c.get("/api/system", params={"token": TOKEN})).status == 200
    ws = await c.ws_connect(f"/ws?token={TOKEN}")
    assert (await ws.receive_json(timeout=10))["type"] == "status"
    await ws.close()
    page = await c.get("/", params={"token": TOKEN})
    assert page.status == 200
    cookie = page.cookies["nodegraph_token"]
    assert cookie.value == TOKEN and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert (await c.get("/js/main.js")).status == 200  # the cookie jar sends it now
    assert (await c.get("/api/nodes")).status == 200
    c.session.cookie_jar.clear()
    assert (await c.get("/js/main.js")).status == 401


# --- cross-site ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cross_site_requests_are_refused(server):
    c = server.client
    own = f"http://{c.host}:{c.port}"
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": f"http://{c.host}:{c.port + 1}"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"},
                    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}):  # navigation, but to the API
        for method, path in (("POST", "/api/jobs"), ("GET", "/api/nodes"), ("POST", "/api/upload"),
                             ("GET", "/api/view?filename=x.png")):
            res = await c.request(method, path, headers=headers, json={"workflow": trivial()})
            assert res.status == 403, (headers, path)
            assert (await res.json())["error"] == "cross_site"
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await c.ws_connect("/ws", headers=headers)
        assert err.value.status == 403
    assert (await server.json("GET", "/api/history"))["total"] == 0  # nothing was queued
    # The server's own origin, same-origin fetches and plain navigations to the editor are fine.
    assert (await c.post("/api/validate", json={"workflow": trivial()}, headers={"Origin": own})).status == 200
    assert (await c.get("/api/nodes", headers={"Sec-Fetch-Site": "same-origin"})).status == 200
    nav = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert (await c.get("/", headers=nav)).status == 200
    ws = await c.ws_connect("/ws", headers={"Origin": own})
    await ws.close()


@pytest.mark.asyncio
async def test_without_a_token_only_loopback_host_names_are_answered(start):
    srv = await start()
    for host in ("evil.example", "evil.example:8188", "10.0.0.5"):  # a DNS-rebinding page says its own name
        res = await srv.client.get("/api/nodes", headers={"Host": host})
        assert res.status == 403 and (await res.json())["error"] == "forbidden_host"
    for host in ("localhost:8188", "127.0.0.1", "[::1]:8188"):
        assert (await srv.client.get("/api/nodes", headers={"Host": host})).status == 200
    tokened = await start(token=TOKEN, data_dir=srv.tmp / "data2")
    res = await tokened.client.get("/api/nodes", headers={"Host": "gpu-box.lan", "Authorization": f"Bearer {TOKEN}"})
    assert res.status == 200


@pytest.mark.asyncio
async def test_json_endpoints_accept_only_application_json(server):
    c = server.client
    body = '{"workflow": {"format": "nodegraph/1", "nodes": {}}}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": ctype} if ctype else {}
        for method, path in (("POST", "/api/jobs"), ("POST", "/api/validate"), ("POST", "/api/interrupt"),
                             ("PUT", "/api/workflows/w"), ("POST", "/api/jobs/abc/requeue")):
            res = await c.request(method, path, data=body.encode(), headers=headers)
            assert res.status == 415, (ctype, path, res.status)
            assert (await res.json())["error"] == "unsupported_media_type"
    res = await c.post("/api/upload", json={"image": "x"})
    assert res.status == 415
    assert (await server.json("GET", "/api/workflows"))["workflows"] == []


# --- confinement ------------------------------------------------------------------------------------------


TRAVERSALS = ["../secret.png", "..%2fsecret.png", "%2e%2e%2fsecret.png", "%2e%2e/secret.png",
              "%252e%252e%252fsecret.png", "..%252fsecret.png", "/tmp/secret.png", "%2ftmp%2fsecret.png",
              "..%5csecret.png", "..\\secret.png", "sub%00.png", "....//secret.png", "link.png", "linkdir/secret.png",
              ".hidden.png"]


@pytest.fixture
def traps(tmp_path: Path) -> Path:
    """A secret PNG outside every served folder, and symlinks to it inside them."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes((1, 2, 3)))
    for folder in ("output", "input", "temp", "web", "data/workflows"):
        d = tmp_path / folder
        d.mkdir(parents=True, exist_ok=True)
        (d / "link.png").symlink_to(secret)
        (d / "linkdir").symlink_to(tmp_path)
        (d / ".hidden.png").write_bytes(png_bytes())
        (d / "secret.png.json").symlink_to(secret)
    return secret


def _leaked(data: bytes) -> bool:
    return b"\x89PNG" in data


@pytest.mark.asyncio
async def test_file_routes_are_confined_to_their_folder(server, traps, web_dir):
    c = server.client
    for name in TRAVERSALS:
        targets = [f"/api/view?filename={name}&type={t}" for t in ("output", "input", "temp")]
        targets += [f"/api/view?filename=x.png&subfolder={name.rsplit('/', 1)[0] if '/' in name else name}",
                    f"/{name}", f"/js/{name}", f"/extensions/sample/{name}", f"/api/workflows/{name}"]
        for target in targets:
            status, data = await raw_get(c, target)
            assert status in (400, 404, 415), (target, status)
            assert not _leaked(data), target
    # Percent-decoding never gets a second round, and nothing outside was touched.
    res = await c.delete("/api/workflows/..%2F..%2Fsecret.png")
    assert res.status in (400, 404)
    assert traps.exists()
    res = await c.put("/api/workflows/..%2Fescaped", json=trivial())
    assert res.status in (400, 404) and not (server.tmp / "data" / "escaped.json").exists()
    res = await c.put("/api/workflows/a%5Cb", json=trivial())
    assert res.status == 400
    # A legitimate name in a subfolder still works.
    (server.tmp / "output" / "sub").mkdir()
    (server.tmp / "output" / "sub" / "ok.png").write_bytes(png_bytes())
    status, data = await raw_get(c, "/api/view?filename=ok.png&subfolder=sub&type=output")
    assert status == 200 and _leaked(data)


@pytest.mark.asyncio
async def test_node_inputs_naming_files_are_confined(server, traps):
    ws = await server.ws()
    for name in ("../secret.png", "/tmp/secret.png", "..\\secret.png", "a\x00.png", "link.png", "linkdir/secret.png"):
        body = await server.queue(wf(l=node("core.load_image", image=name), s=node("toy.sink", value=link("l", "width"))),
                                  status=400)
        assert [i["code"] for i in body["issues"]] == ["unsafe_path"], name
        assert body["issues"][0]["node"] == "l" and body["issues"][0]["port"] == "image"
        res = await server.json("POST", "/api/validate", json={"workflow": wf(l=node("core.load_image", image=name))})
        assert "unsafe_path" in {i["code"] for i in res["issues"]}
    # A name that arrives on a link is checked when the node runs.
    job_id = await server.queue(wf(n=node("core.string", value="../secret.png"),
                                   l=node("core.load_image", image=link("n")),
                                   s=node("toy.sink", value=link("l", "width"))))
    end = (await until(ws, finished(job_id)))[-1]["data"]
    assert end["status"] == "failed" and end["error"]["error_type"] == "UnsafePath"


@pytest.mark.asyncio
async def test_model_loaders_accept_only_names_inside_the_model_folders(server, tmp_path):
    engine = server.app[server_app.ENGINE]
    assert engine.settings.allow_model_paths is False and engine.models.allow_paths is False
    (tmp_path / "models" / "unclip").mkdir(parents=True)
    (tmp_path / "models" / "unclip" / "tiny").mkdir()
    assert engine.models.resolve("tiny", "unclip") == (tmp_path / "models" / "unclip" / "tiny").resolve()
    for name in (str(tmp_path / "secret"), "../secret", "./models/x", "~/x", "unclip/../../secret"):
        with pytest.raises(nodegraph.UnsafePath):
            engine.models.resolve(name, "unclip")


# --- uploads ------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_uploads_must_decode_as_accepted_images(start, tmp_path):
    srv = await start(max_upload_bytes=64 * 1024, max_image_pixels=300 * 300)
    c = srv.client
    html = b"<html><script>alert(1)</script></html>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, "GIF")
    truncated = png_bytes(size=(64, 64))[:-40]
    for data, filename, ctype in ((html, "x.png", "image/png"), (svg, "x.svg", "image/svg+xml"),
                                  (gif.getvalue(), "x.gif", "image/gif"), (truncated, "t.png", "image/png"),
                                  (b"GIF89a" + html, "poly.png", "image/png")):
        res = await c.post("/api/upload", data=upload_form(data, filename, ctype))
        assert res.status == 415, filename
        assert (await res.json())["error"] == "unsupported_media_type"
    res = await c.post("/api/upload", data=upload_form(png_bytes(size=(400, 400)), "big.png"))
    assert res.status == 413  # too many pixels (a decompression bomb is this, smaller)
    noise = Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3))
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    res = await c.post("/api/upload", data=upload_form(buf.getvalue(), "noise.png"))
    assert res.status == 413 and (await res.json())["error"] == "payload_too_large"  # bytes over the limit
    assert list((tmp_path / "input").iterdir()) == []
    # The extension follows the decoded format; the client's path is dropped.
    res = await c.post("/api/upload", data=upload_form(png_bytes(fmt="JPEG"), "../../evil.png", "image/png"))
    assert res.status == 200 and (await res.json())["name"] == "evil.jpg"
    assert (tmp_path / "input" / "evil.jpg").is_file() and not (tmp_path / "evil.png").exists()
    res = await c.get("/api/view", params={"filename": "evil.jpg", "type": "input"})
    assert res.headers["Content-Type"] == "image/jpeg" and res.headers["X-Content-Type-Options"] == "nosniff"
    res = await c.post("/api/upload", data=upload_form(png_bytes(), "..hidden.png"))
    assert (await res.json())["name"] == "hidden.png"


@pytest.mark.asyncio
async def test_files_that_are_not_images_are_never_served_as_such(server):
    out = server.tmp / "output"
    out.mkdir(exist_ok=True)
    (out / "page.png").write_bytes(b"<html><script>alert(1)</script></html>")
    (out / "pic.svg").write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    for name in ("page.png", "pic.svg"):
        res = await server.client.get("/api/view", params={"filename": name})
        assert res.status == 415 and res.headers["Content-Type"].startswith("application/json")
        assert b"<script>" not in await res.read()
    (out / "real.html").write_bytes(png_bytes())  # an image under an HTML name is served as the image
    res = await server.client.get("/api/view", params={"filename": "real.html"})
    assert res.status == 200 and res.headers["Content-Type"] == "image/png"
    assert res.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert res.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.asyncio
async def test_a_workflow_in_an_uploaded_png_is_validated_like_any_input_and_never_runs(server, tmp_path):
    ws = await server.ws()
    embedded = wf(l=node("core.load_image", image="../secret.png"), s=node("core.save_image", images=link("l", "image")))
    path = save_png(Image.new("RGB", (8, 8)), tmp_path / "dropped.png", embedded)
    res = await server.client.post("/api/upload", data=upload_form(path.read_bytes(), "dropped.png"))
    assert res.status == 200
    stored = server.tmp / "input" / (await res.json())["name"]
    assert nodegraph.read_png_workflow(stored) == embedded  # kept in the file...
    jobs = await server.json("GET", "/api/jobs")
    assert jobs == {"running": None, "queued": []} and (await server.json("GET", "/api/history"))["total"] == 0
    # ...and when a client sends it, it is checked like any other workflow.
    res = await server.json("POST", "/api/validate", json={"workflow": nodegraph.read_png_workflow(stored)})
    assert not res["valid"] and res["issues"][0]["code"] == "unsafe_path"
    # The runner stayed idle: the next status says nothing ran.
    job_id = await server.queue(trivial())
    seen = await until(ws, finished(job_id))
    assert [m["data"]["job_id"] for m in seen if m["type"] == "job_started"] == [job_id]


# --- limits -----------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_request_body_limit_answers_413(start):
    srv = await start(max_body_bytes=4096)
    big = {"workflow": trivial(), "targets": ["x" * 5000]}
    res = await srv.client.post("/api/jobs", json=big)
    assert res.status == 413 and (await res.json())["error"] == "payload_too_large"

    async def chunks():
        yield b'{"workflow": {"format": "nodegraph/1", "nodes": {}}, "targets": ["'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"]}'

    res = await srv.client.post("/api/validate", data=chunks(), headers={"Content-Type": "application/json"})
    assert res.status == 413  # chunked, no Content-Length: counted as it arrives
    res = await srv.client.put("/api/workflows/big", json={**trivial(), "meta": {"x": "z" * 5000}})
    assert res.status == 413


@pytest.mark.asyncio
async def test_a_full_queue_answers_429(start):
    srv = await start(max_queue=2)
    ws = await srv.ws()
    blocker = await srv.queue(gated("full"))
    await until(ws, started_node(blocker, "g"))
    a = await srv.queue(trivial(1))
    await srv.queue(trivial(2))
    res = await srv.json("POST", "/api/jobs", 429, json={"workflow": trivial(3)})
    assert res["error"] == "queue_full"
    gate("full").set()
    await until(ws, finished(a))
    assert (await srv.json("POST", f"/api/jobs/{blocker}/requeue", 201))["job_id"]


# --- model weights -----------------------------------------------------------------------------------------


class _Canary:
    """Unpickling this runs code that creates a file (what a malicious checkpoint does)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({str(self.path)!r}, 'w').write('pwned')",))


def test_a_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path):
    torch = pytest.importorskip("torch")
    canary = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _Canary(canary)}, evil)
    plain = tmp_path / "evil.bin"
    plain.write_bytes(pickle.dumps({"payload": _Canary(canary)}, protocol=2))
    for path in (evil, plain):
        with pytest.raises(nodegraph.NodeExecutionError, match="holds more than tensors"):
            nodegraph.load_state_dict(path)
        assert not canary.exists()
    # The canary is live: an ordinary unpickler runs it. (The test would catch a loader that does.)
    pickle.loads(plain.read_bytes())
    assert canary.read_text() == "pwned"


def test_weights_load_from_safetensors_and_plain_state_dicts(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    save_file(tensors, tmp_path / "m.safetensors")
    torch.save(tensors, tmp_path / "m.pth")
    for name in ("m.safetensors", "m.pth"):
        loaded = nodegraph.load_state_dict(tmp_path / name)
        assert torch.equal(loaded["w"], tensors["w"])
    (tmp_path / "m.pkl").write_bytes(b"")
    with pytest.raises(nodegraph.NodeExecutionError, match="unsupported weights file"):
        nodegraph.load_state_dict(tmp_path / "m.pkl")


# --- headers -----------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_answer_carries_the_security_headers(server):
    for path in ("/api/nodes", "/api/nope", "/", "/js/main.js"):
        res = await server.client.get(path)
        assert res.headers["X-Content-Type-Options"] == "nosniff", path
        assert res.headers["X-Frame-Options"] == "DENY" and res.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in res.headers["Content-Security-Policy"]
