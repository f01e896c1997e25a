"""The editor, driven as a user drives it: palette, mouse drags, keyboard, panels, drag-and-drop."""

from __future__ import annotations

import base64
import io
import json
import urllib.request
import uuid

from PIL import Image

from nodegraph.png import read_png_workflow, save_png


def rgb_at(editor, client_xy) -> list[int]:
    """The colour the canvas shows at a client position."""
    return editor.js(
        """([x, y]) => {
            const el = app.el.canvas, r = el.getBoundingClientRect(), dpr = Math.max(1, devicePixelRatio);
            app.canvas.draw(true, true);
            return [...el.getContext("2d").getImageData(Math.round((x - r.left) * dpr), Math.round((y - r.top) * dpr), 1, 1).data].slice(0, 3);
        }""",
        list(client_xy),
    )


def image_centre(editor, node_id) -> list[float]:
    """Client position of the centre of the image area drawn on a node."""
    return editor.js(
        """(id) => { const n = app.nodeById(id), a = n.ngImageArea();
                     return app.graphToClient([n.pos[0] + a[0] + a[2] / 2, n.pos[1] + a[1] + a[3] / 2]); }""",
        node_id,
    )


def close(rgb, expected, tol=12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, expected, strict=True))


def test_build_queue_and_see_the_image_on_the_canvas(editor, server):
    """Palette → drag links → edit a widget → Ctrl+Enter → progress events → the saved image on the node."""
    editor.new_workflow()
    color = editor.add_node("solid", "core.solid_color")
    grid = editor.add_node("grid", "core.image_grid")
    save = editor.add_node("save image", "core.save_image")
    editor.move_node(color, (0, 0))
    editor.move_node(grid, (330, 0))
    editor.move_node(save, (640, 0))
    editor.connect(color, "images", grid, "images")
    editor.connect(grid, "image", save, "images")
    assert editor.links() == 2
    # Edit widgets as a user does: the arrows of a number widget, the prompt dialog of a text widget.
    width_before = editor.workflow()["nodes"][color]["inputs"]["width"]
    arrow = editor.js(f"""(() => {{ const n = app.nodeById({json.dumps(color)}), w = n.ngWidgets.get("width");
        return app.graphToClient([n.pos[0] + n.size[0] - 22, n.pos[1] + w.y + 10]); }})()""")
    editor.page.mouse.click(*arrow)
    assert editor.workflow()["nodes"][color]["inputs"]["width"] == width_before + 1
    colour_widget = editor.js(f"""(() => {{ const n = app.nodeById({json.dumps(color)}), w = n.ngWidgets.get("color");
        return app.graphToClient([n.pos[0] + n.size[0] / 2, n.pos[1] + w.y + 10]); }})()""")
    editor.page.mouse.click(*colour_widget)
    editor.page.fill(".graphdialog input", "#dc1e1e")
    editor.page.keyboard.press("Enter")
    prefix = f"ui_{uuid.uuid4().hex[:8]}"
    editor.js(f"""app.nodeById({json.dumps(save)}).ngWidgets.get("filename_prefix").value = {json.dumps(prefix)}""")

    editor.page.locator("#graph-canvas").focus()
    editor.page.keyboard.press("Control+Enter")
    editor.wait("document.getElementById('status').dataset.state === 'success'")
    # The run's events reached the nodes, in order.
    log = editor.js("app.runState.eventLog.map(e => e.type + ':' + (e.node ?? ''))")
    assert log[0] == "job_started:" and log[-1] == "job_finished:"
    assert log.index(f"node_completed:{color}") < log.index(f"node_completed:{grid}") < log.index(f"node_completed:{save}")
    # The final image is drawn on the Save Image node.
    editor.page.click("#fit-button")
    editor.wait(f"app.nodeById({json.dumps(save)}).ngShownImages().some(i => i.complete && i.naturalWidth > 0)")
    assert close(rgb_at(editor, image_centre(editor, save)), [0xDC, 0x1E, 0x1E])
    editor.screenshot("build_queue_final_image")
    # The file on disk is the image, and carries the workflow the editor sent.
    (png,) = server.output_dir.glob(f"{prefix}_*.png")
    with Image.open(png) as img:
        assert img.getpixel((img.width // 2, img.height // 2))[:3] == (0xDC, 0x1E, 0x1E)
    embedded = read_png_workflow(png)
    assert embedded["nodes"][color]["inputs"]["color"] == "#dc1e1e"
    assert embedded["nodes"][save]["inputs"]["images"] == {"from": grid, "output": "image"}


def canvas_matches_file(editor, node_id, png, grid: int = 4) -> None:
    """The image drawn on a node is the file: sample the canvas at the centres of grid × grid of its pixels."""
    with Image.open(png) as img:
        img = img.convert("RGB")
        w, h = img.size
        samples = [((i + 0.5) * w / grid, (j + 0.5) * h / grid) for i in range(grid) for j in range(grid)]
        expected = [img.getpixel((int(x), int(y))) for x, y in samples]
    # drawImages (web/js/nodes.js): one image fitted in the area, centred, unsmoothed when enlarged.
    clients = editor.js(
        """([id, w, h, samples]) => {
            const n = app.nodeById(id), [ax, ay, aw, ah] = n.ngImageArea();
            const s = Math.min(aw / w, ah / h), x0 = ax + (aw - w * s) / 2, y0 = ay + (ah - h * s) / 2;
            return samples.map(([px, py]) => app.graphToClient([n.pos[0] + x0 + (Math.floor(px) + 0.5) * s,
                                                                 n.pos[1] + y0 + (Math.floor(py) + 0.5) * s]));
        }""",
        [node_id, w, h, samples],
    )
    shown = [tuple(rgb_at(editor, xy)) for xy in clients]
    assert all(close(a, b, tol=3) for a, b in zip(shown, expected, strict=True)), (shown, expected)


def test_text_to_image_built_by_hand_runs_shows_progress_and_image_and_survives_save_and_reload(editor, server,
                                                                                                 tiny_karlo):
    """The unCLIP text-to-image graph, built with the palette, the search box, socket drags and widget
    prompts, on a tiny random checkpoint: queue it, watch progress, see the image, save, reload, re-run."""
    page = editor.page
    editor.new_workflow()
    # Zoom out with the mouse wheel so that the whole graph fits, then lay it out from the top-left.
    r = editor.js("(() => { const r = app.el.canvas.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
    page.mouse.move(r[0] + r[2] / 2, r[1] + r[3] / 2)
    for _ in range(30):  # to a zoom of 70-85 %, whatever the view was
        scale = editor.js("app.canvas.ds.scale")
        if 0.7 <= scale <= 0.85:
            break
        page.mouse.wheel(0, 120 if scale > 0.85 else -120)
        editor.wait(f"app.canvas.ds.scale !== {scale}")
    assert 0.7 <= editor.js("app.canvas.ds.scale") <= 0.85
    ox, oy = editor.js("app.canvas.ds.convertCanvasToOffset([30, 70])")

    def place(node_id, dx, dy):
        editor.move_node(node_id, (ox + dx, oy + dy))

    clip = editor.add_node("load clip", "unclip.load_clip")
    place(clip, 0, 0)
    prior_loader = editor.add_node("load prior", "unclip.load_prior")
    place(prior_loader, 0, 130)
    decoder_loader = editor.add_node("load decoder", "unclip.load_decoder")
    place(decoder_loader, 0, 260)
    encode = editor.add_node("text encode", "unclip.text_encode")
    place(encode, 250, 0)
    prior = editor.add_node("prior", "unclip.prior")
    place(prior, 250, 210)
    decoder = editor.search_node(editor.js(f"app.graphToClient([{ox + 560}, {oy + 20}])"), "decoder", "unclip.decoder")
    place(decoder, 540, 0)
    save = editor.search_node(editor.js(f"app.graphToClient([{ox + 820}, {oy + 20}])"), "save image", "core.save_image")
    place(save, 800, 0)

    # A wrong-type drag is refused: CLIP into the prior's CONDITIONING input.
    editor.connect(clip, "clip", prior, "conditioning")
    assert editor.links() == 0
    editor.connect(clip, "clip", encode, "clip")
    editor.connect(prior_loader, "prior", prior, "prior")
    editor.connect(encode, "conditioning", prior, "conditioning")
    editor.connect(decoder_loader, "decoder", decoder, "decoder")
    editor.connect(prior, "embedding", decoder, "image_embedding")
    editor.connect(encode, "conditioning", decoder, "conditioning")
    editor.connect(decoder, "images", save, "images")
    assert editor.links() == 7
    # Sockets and links are coloured by type: the canvas shows the CLIP and IMAGE sockets in theirs.
    colours = editor.js("['unclip.CLIP', 'unclip.CONDITIONING', 'IMAGE'].map(t => app.canvas.default_connection_color_byType[t])")
    assert len(set(colours)) == 3 and None not in colours
    for node_id, port, colour in ((clip, "clip", colours[0]), (decoder, "images", colours[2])):
        x, y = editor.slot(node_id, "output", port)
        rgb = rgb_at(editor, (x, y))
        assert close(rgb, [int(colour[i:i + 2], 16) for i in (1, 3, 5)], tol=40), (port, rgb, colour)

    # Widgets: model names and a prefix through the Value prompt, the prompt in its text box, steps
    # typed as arithmetic (read without eval), seeds fixed from their randomize/fixed menu.
    for loader in (clip, prior_loader, decoder_loader):
        editor.type_in_widget(loader, "model", tiny_karlo)
    prefix = f"t2i_{uuid.uuid4().hex[:8]}"
    editor.type_in_widget(save, "filename_prefix", prefix)
    page.locator('.ng-textarea[data-port="text"]').click()
    page.keyboard.press("Control+a")
    page.keyboard.type("a blue square")
    editor.type_in_widget(prior, "steps", "2*2")
    editor.type_in_widget(decoder, "steps", "(10 - 4) / 2")
    editor.type_in_widget(decoder, "seed", "42")
    editor.choose_in_widget(prior, "seed mode", "fixed")
    editor.choose_in_widget(decoder, "seed mode", "fixed")
    wf = editor.workflow()["nodes"]
    assert [wf[n]["inputs"]["model"] for n in (clip, prior_loader, decoder_loader)] == [tiny_karlo] * 3
    assert wf[encode]["inputs"]["text"] == "a blue square"
    assert (wf[prior]["inputs"]["steps"], wf[decoder]["inputs"]["steps"], wf[decoder]["inputs"]["seed"]) == (4, 3, 42)
    assert wf[prior]["ui"]["seed_modes"] == wf[decoder]["ui"]["seed_modes"] == {"seed": "fixed"}
    assert wf[save]["inputs"]["images"] == {"from": decoder, "output": "images"}

    # Queue with Ctrl+Enter. Record every progress value the decoder node is given to draw.
    editor.js("""(id) => { const n = app.nodeById(id); let v = n.progress; window.__progress = [];
        Object.defineProperty(n, "progress", { configurable: true, get: () => v,
                                               set: (x) => { v = x; window.__progress.push(x ?? null); } }); }""", decoder)
    page.locator("#graph-canvas").focus()
    page.keyboard.press("Control+Enter")
    editor.wait("document.getElementById('status').dataset.state === 'success'")
    steps = editor.js(f"app.runState.eventLog.filter(e => e.type === 'progress' && e.node === {json.dumps(decoder)}).map(e => [e.step, e.total])")
    assert steps == [[1, 3], [2, 3], [3, 3]]
    assert [p for p in editor.js("window.__progress") if p is not None] == [1 / 3, 2 / 3, 1]
    # The decoder's in-progress preview arrived and stays drawn on it; the image is on Save Image.
    editor.wait(f"(() => {{ const p = app.nodeById({json.dumps(decoder)}).ngRun.preview; return p && p.complete && p.naturalWidth > 0; }})()")
    editor.wait(f"app.nodeById({json.dumps(save)}).ngShownImages().some(i => i.complete && i.naturalWidth > 0)")
    (png,) = server.output_dir.glob(f"{prefix}_*.png")
    canvas_matches_file(editor, save, png)
    assert read_png_workflow(png)["nodes"][encode]["inputs"]["text"] == "a blue square"
    shot = editor.screenshot("text_to_image")
    assert shot.stat().st_size > 10_000

    # Save it on the server, reload the page, open it from the server list: the same graph.
    page.locator("#graph-canvas").focus()
    page.keyboard.press("Control+s")
    name = f"t2i {uuid.uuid4().hex[:6]}"
    page.fill(".ng-modal-input", name)
    page.keyboard.press("Enter")
    editor.wait(f"document.getElementById('workflow-name').textContent === {json.dumps(name)}")
    saved = editor.workflow()
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert editor.workflow()["nodes"] == saved["nodes"]  # restored from the browser's storage
    editor.new_workflow()
    page.click("#open-button")
    page.click(f'.ng-workflow-list button[data-name="{name}"]')
    editor.wait(f"document.getElementById('workflow-name').textContent === {json.dumps(name)}")
    assert editor.workflow()["nodes"] == saved["nodes"]
    # Queued again (fixed seeds): the same graph, so its output comes from the cache and nothing runs.
    page.click("#queue-button")
    editor.wait("app.runState.lastJob && app.runState.lastJob.status === 'success'")
    log = editor.js("app.runState.eventLog.map(e => e.type + ':' + (e.node ?? ''))")  # a new page: this job only
    assert f"node_cached:{save}" in log and not any(e.startswith("node_started") for e in log)
    editor.wait(f"app.nodeById({json.dumps(save)}).ngShownImages().some(i => i.complete && i.naturalWidth > 0)")
    canvas_matches_file(editor, save, png)


def test_a_wrong_type_link_is_refused_and_compatible_ones_are_made(editor):
    editor.new_workflow()
    color = editor.add_node("solid", "core.solid_color")
    grid = editor.add_node("grid", "core.image_grid")
    num = editor.add_node("int", "core.int")
    math = editor.add_node("math", "core.math")
    editor.move_node(color, (0, 0))
    editor.move_node(grid, (360, 0))
    editor.move_node(num, (0, 260))
    editor.move_node(math, (360, 260))
    # IMAGE → an INT widget socket, IMAGE → a STRING widget socket: refused.
    editor.connect(color, "images", grid, "columns")
    editor.connect(color, "images", grid, "background")
    assert editor.links() == 0
    assert "columns" not in str(editor.workflow()["nodes"][grid]["inputs"].get("columns"))
    # INT → FLOAT widget socket (compatible): made, and the widget gives way to the link.
    editor.connect(num, "value", math, "a")
    assert editor.links() == 1
    assert editor.workflow()["nodes"][math]["inputs"]["a"] == {"from": num, "output": "value"}
    editor.js("app.canvas.draw(true, true)")
    assert editor.js(f"app.nodeById({json.dumps(math)}).ngWidgets.get('a').computedDisabled") is True
    # IMAGE → IMAGE: made.
    editor.connect(color, "images", grid, "images")
    assert editor.links() == 2


def test_progress_preview_running_highlight_and_queue_panel(editor, server):
    """A gated node: look at the editor while it runs, reorder and cancel queued jobs, then let it finish."""
    gate = f"g{uuid.uuid4().hex[:8]}"
    editor.new_workflow()
    steps = editor.add_node("gated", "browsertest.gated_steps")
    preview = editor.add_node("preview", "core.preview_image")
    editor.move_node(steps, (0, 0))
    editor.move_node(preview, (360, 0))
    editor.connect(steps, "images", preview, "images")
    editor.js(f"app.nodeById({json.dumps(steps)}).ngWidgets.get('gate').value = {json.dumps(gate)}")
    editor.page.click("#queue-button")
    # Running: progress 1/4 on the node, the running highlight, the in-progress preview, the status bar.
    editor.wait(f"app.nodeById({json.dumps(steps)}).progress === 0.25")
    assert editor.js(f"app.nodeById({json.dumps(steps)}).ngRun.state") == "running"
    assert editor.js(f"!!app.nodeById({json.dumps(steps)}).strokeStyles.running.call(app.nodeById({json.dumps(steps)}))")
    editor.wait(f"(() => {{ const p = app.nodeById({json.dumps(steps)}).ngRun.preview; return p && p.complete && p.naturalWidth > 0; }})()")
    # The preview is drawn on the node: its top quarter is the colour, the rest black.
    node_box = editor.js(f"(() => {{ const n = app.nodeById({json.dumps(steps)}), a = n.ngImageArea(); return [n.pos[0] + a[0], n.pos[1] + a[1], a[2], a[3]]; }})()")
    side = min(node_box[2], node_box[3])
    top = editor.js(f"app.graphToClient([{node_box[0] + node_box[2] / 2}, {node_box[1] + (node_box[3] - side) / 2 + side * 0.1}])")
    bottom = editor.js(f"app.graphToClient([{node_box[0] + node_box[2] / 2}, {node_box[1] + (node_box[3] - side) / 2 + side * 0.9}])")
    assert close(rgb_at(editor, top), [0x20, 0xA0, 0x40])
    assert close(rgb_at(editor, bottom), [0, 0, 0])
    assert "running" in editor.page.text_content("#status")
    editor.wait("document.querySelector('.ng-queue-running .ng-job') !== null")
    editor.screenshot("running_with_progress")

    # Two more jobs wait behind it: move the second up, cancel the first.
    editor.js(f"app.nodeById({json.dumps(steps)}).ngWidgets.get('gate').value = {json.dumps(gate + 'b')}")
    editor.page.click("#queue-button")
    editor.js(f"app.nodeById({json.dumps(steps)}).ngWidgets.get('gate').value = {json.dumps(gate + 'c')}")
    editor.page.click("#queue-button")
    editor.wait("document.querySelectorAll('.ng-queue-list .ng-job').length === 2")
    first, second = editor.js("[...document.querySelectorAll('.ng-queue-list .ng-job')].map(e => e.dataset.jobId)")
    editor.page.click(f'.ng-queue-list .ng-job[data-job-id="{second}"] button[title="Move up"]')
    editor.wait(f"document.querySelector('.ng-queue-list .ng-job').dataset.jobId === {json.dumps(second)}")
    editor.page.click(f'.ng-queue-list .ng-job[data-job-id="{first}"] button[title="Remove from the queue"]')
    editor.wait("document.querySelectorAll('.ng-queue-list .ng-job').length === 1")

    for name in (gate, gate + "b", gate + "c"):
        server.open_gate(name)
    editor.wait(f"document.querySelector('.ng-history-list .ng-job[data-job-id=\"{second}\"][data-status=\"success\"]') !== null")
    assert editor.js(f"app.nodeById({json.dumps(steps)}).ngRun.state") == "done"
    assert editor.js(f"app.nodeById({json.dumps(steps)}).progress") is None
    assert editor.page.locator(f'.ng-history-list .ng-job[data-job-id="{first}"]').count() == 0


def test_save_on_the_server_and_open_it_in_a_new_browser(open_editor, server):
    first = open_editor(server)
    first.new_workflow()
    a = first.add_node("solid", "core.solid_color")
    b = first.add_node("save image", "core.save_image")
    first.move_node(b, (400, 40))
    first.connect(a, "images", b, "images")
    name = f"saved {uuid.uuid4().hex[:6]}"
    first.page.locator("#graph-canvas").focus()
    first.page.keyboard.press("Control+s")
    first.page.fill(".ng-modal-input", name)
    first.page.keyboard.press("Enter")
    first.wait(f"document.getElementById('workflow-name').textContent === {json.dumps(name)}")
    saved = first.workflow()

    second = open_editor(server)  # a fresh context: nothing in its localStorage
    assert second.workflow()["nodes"] != saved["nodes"]
    second.page.click("#open-button")
    second.page.click(f'.ng-workflow-list button[data-name="{name}"]')
    second.wait(f"document.getElementById('workflow-name').textContent === {json.dumps(name)}")
    assert second.workflow()["nodes"] == saved["nodes"]
    assert server.get("/api/workflows/" + urllib_quote(name))["nodes"] == saved["nodes"]


def urllib_quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


ROUND_TRIP = {
    "format": "nodegraph/1",
    "nodes": {
        "prompt": {"type": "core.text", "version": 1, "inputs": {"value": "a red circle\nsecond line"},
                   "title": "The prompt", "ui": {"pos": [10, 20], "size": [300, 160], "note": "kept"}},
        "seed": {"type": "core.seed", "version": 1, "inputs": {"seed": 1234},
                 "ui": {"pos": [10, 240], "size": [260, 90], "seed_modes": {"seed": "randomize"}}},
        "n": {"type": "core.int", "version": 1, "inputs": {"value": 3}, "ui": {"pos": [10, 400], "size": [210, 60]}},
        "grid": {"type": "core.image_grid", "version": 1,
                 "inputs": {"images": {"from": "red", "output": "images"}, "columns": {"from": "n", "output": "value"}},
                 "ui": {"pos": [400, 20], "size": [240, 120], "collapsed": True}},
        "red": {"type": "core.solid_color", "version": 1, "inputs": {"color": "#ff0000", "width": 16}, "ui": {"pos": [400, 300], "size": [240, 130]}},
        "7": {"type": "core.save_image", "version": 1, "inputs": {"images": {"from": "grid", "output": "image"}, "filename_prefix": "rt"},
              "ui": {"pos": [700, 20], "size": [240, 80], "color": "#224422"}},
        "ghost": {"type": "otherpack.thing", "version": 3, "inputs": {"image": {"from": "red", "output": "images"}, "strength": 0.5},
                  "ui": {"pos": [700, 300], "size": [240, 100]}},
        "after": {"type": "core.preview_image", "version": 1, "inputs": {"images": {"from": "ghost", "output": "out"}},
                  "ui": {"pos": [1000, 300], "size": [240, 100]}},
    },
    "ui": {"canvas": {"offset": [12.5, -30], "scale": 0.8}, "groups": [{"title": "inputs", "bounding": [0, -40, 340, 560], "color": "#335"}],
           "mine": [1, 2]},
    "meta": {"title": "Round trip", "author": "tests"},
}


def drop_file(editor, name: str, data: bytes, mime: str, at=None) -> None:
    """Drop a file on the canvas, as the browser does when a file is dragged from the desktop."""
    editor.js(
        """async ([name, b64, mime, at]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: mime }));
            const r = app.el.canvas.getBoundingClientRect();
            const [x, y] = at ?? [r.left + r.width / 2, r.top + r.height / 2];
            app.el.canvas.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true, clientX: x, clientY: y }));
        }""",
        [name, base64.b64encode(data).decode(), mime, at],
    )


def test_workflow_round_trips_through_the_editor(editor):
    """Dropped JSON → graph → export: ids, types, versions, inputs, links, titles, ui and meta survive."""
    drop_file(editor, "rt.json", json.dumps(ROUND_TRIP).encode(), "application/json")
    editor.wait("document.getElementById('workflow-name').textContent === 'rt'")
    out = editor.workflow()
    assert out["nodes"] == ROUND_TRIP["nodes"]
    assert out["meta"] == ROUND_TRIP["meta"]
    assert out["ui"] == ROUND_TRIP["ui"]
    # The unknown node type is shown as missing, and its links are still there.
    assert editor.js("app.nodeById('ghost').ngMissing") is True
    assert editor.links() == 5
    # The loaded workflow is validated (never run): the missing type is marked on its node.
    editor.wait("app.nodeById('ghost') !== null && document.querySelector('.ng-issue[data-node=\"ghost\"]') !== null")


def test_dropping_a_png_restores_its_workflow_and_never_queues_it(editor, server, tmp_path):
    workflow = {"format": "nodegraph/1", "meta": {}, "ui": {},
                "nodes": {"c": {"type": "core.solid_color", "version": 1, "inputs": {"color": "#00ff00"}, "ui": {"pos": [0, 0]}},
                          "s": {"type": "core.save_image", "version": 1, "inputs": {"images": {"from": "c", "output": "images"}},
                                "ui": {"pos": [300, 0]}}}}
    path = save_png(Image.new("RGB", (8, 8), (0, 255, 0)), tmp_path / "made.png", workflow)
    history_before = server.get("/api/history")["total"]
    drop_file(editor, "made.png", path.read_bytes(), "image/png")
    editor.wait("document.getElementById('workflow-name').textContent === 'made'")
    assert {k: v["inputs"] for k, v in editor.workflow()["nodes"].items()} == {
        "c": {"color": "#00ff00"}, "s": {"images": {"from": "c", "output": "images"}}}
    jobs = server.get("/api/jobs")
    assert jobs["running"] is None and jobs["queued"] == []
    assert server.get("/api/history")["total"] == history_before
    # A PNG without a workflow is not loaded (the graph stays).
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    drop_file(editor, "plain.png", buf.getvalue(), "image/png")
    editor.wait("[...document.querySelectorAll('.toast')].some(t => t.textContent.includes('no nodegraph workflow'))")
    assert set(editor.workflow()["nodes"]) == {"c", "s"}


def test_undo_redo_copy_paste_delete_with_the_keyboard(editor):
    editor.new_workflow()
    a = editor.add_node("solid", "core.solid_color")
    b = editor.add_node("grid", "core.image_grid")
    editor.move_node(b, (420, 0))
    editor.connect(a, "images", b, "images")
    # Select both (click the canvas, Ctrl+A), copy, paste at the mouse: two new nodes, linked like the originals.
    editor.page.mouse.click(*editor.empty_spot())
    editor.page.keyboard.press("Control+a")
    editor.page.keyboard.press("Control+c")
    editor.page.mouse.move(*editor.js("app.graphToClient([100, 400])"))
    editor.page.keyboard.press("Control+v")
    editor.wait("app.graph.nodes.length === 4")
    new = [i for i in editor.node_ids() if i not in (a, b)]
    wf = editor.workflow()["nodes"]
    pasted_grid = next(i for i in new if wf[i]["type"] == "core.image_grid")
    pasted_color = next(i for i in new if wf[i]["type"] == "core.solid_color")
    assert wf[pasted_grid]["inputs"]["images"] == {"from": pasted_color, "output": "images"}
    assert editor.links() == 2
    # Delete the selection (the pasted nodes), then undo and redo it.
    editor.page.keyboard.press("Delete")
    editor.wait("app.graph.nodes.length === 2")
    editor.page.keyboard.press("Control+z")
    editor.wait("app.graph.nodes.length === 4")
    assert editor.links() == 2
    editor.page.keyboard.press("Control+y")
    editor.wait("app.graph.nodes.length === 2")
    # Undo back to the empty graph, step by step, then redo everything.
    for _ in range(10):
        if not editor.js("app.tracker.canUndo"):
            break
        editor.page.keyboard.press("Control+z")
    assert editor.node_ids() == []
    while editor.js("app.tracker.canRedo"):
        editor.page.keyboard.press("Control+Shift+z")
    assert len(editor.node_ids()) == 2


def test_text_from_workflows_is_never_inserted_as_html(editor, server, request):
    """Titles, file names and error messages with markup show as text; no script ever runs."""
    request.node.expected_console_errors = ()
    evil = '<img src=x onerror="window.__xss=1">'
    wf = {"format": "nodegraph/1", "meta": {"title": evil}, "ui": {},
          "nodes": {"c": {"type": "core.solid_color", "version": 1, "title": evil, "inputs": {}, "ui": {"pos": [0, 0]}},
                    "f": {"type": "browsertest.fail", "version": 1, "title": evil,
                          "inputs": {"images": {"from": "c", "output": "images"}, "message": evil}, "ui": {"pos": [320, 0]}},
                    "x": {"type": "core.save_image", "version": 1, "inputs": {"images": {"from": "f", "output": "images"}},
                          "ui": {"pos": [640, 0]}}}}
    editor.js("(wf) => app.loadWorkflow(wf, {name: '<b>bold</b>'})", wf)
    assert editor.page.text_content("#workflow-name") == "<b>bold</b>"
    # A node of an unknown type named with markup: litegraph's context menu (built from HTML strings)
    # shows the type as its title, escaped by the editor.
    editor.js("(evil) => app.clipboard.paste({workflow: {format: 'nodegraph/1', ui: {}, meta: {}, nodes: {"
              "g: {type: evil, version: 1, inputs: {}, ui: {pos: [0, 300]}}}}, at: [0, 300]})", evil)
    ghost = editor.js("String(app.graph.nodes.find(n => n.ngMissing).id)")
    editor.page.mouse.click(*editor.js(f"app.graphToClient([app.nodeById({json.dumps(ghost)}).pos[0] + 60, "
                                       f"app.nodeById({json.dumps(ghost)}).pos[1] - 15])"), button="right")
    assert editor.page.text_content(".litecontextmenu .litemenu-title") == evil
    editor.page.keyboard.press("Escape")
    assert editor.page.locator(".litecontextmenu").count() == 0
    editor.page.mouse.click(*editor.js(f"app.graphToClient([app.nodeById({json.dumps(ghost)}).pos[0] + 60, "
                                       f"app.nodeById({json.dumps(ghost)}).pos[1] - 15])"))
    assert editor.js("app.selectedNodes().map(n => String(n.id))") == [ghost]
    editor.page.keyboard.press("Delete")
    editor.wait("!app.graph.nodes.some(n => n.ngMissing)")
    # Run it: the node fails with the markup as its message, shown on the node and in the panels.
    editor.page.click("#queue-button")
    editor.wait("document.getElementById('status').dataset.state === 'failed'")
    editor.wait("document.querySelector('.ng-issue[data-node=\"f\"]') !== null")
    assert evil in editor.page.text_content(".ng-issue[data-node='f'] .ng-issue-message")
    assert editor.js("app.nodeById('f').has_errors") is True
    editor.wait("document.querySelector('.ng-history-list .ng-job[data-status=\"failed\"]') !== null")
    assert evil in editor.page.text_content(".ng-history-list .ng-job[data-status='failed'] .ng-error-text")
    # The palette, with a search for the markup (nothing found, nothing parsed).
    editor.page.fill(".ng-palette-search", evil)
    editor.screenshot("markup_as_text")
    assert editor.page.locator("img[src='x']").count() == 0
    assert editor.js("window.__xss === undefined")


def test_validation_issues_are_shown_on_the_nodes_that_caused_them(editor, request):
    request.node.expected_console_errors = ("400",)
    editor.new_workflow()
    editor.add_node("save image", "core.save_image")  # its images input is not connected
    crop = editor.add_node("crop", "core.image_crop")
    editor.move_node(crop, (400, 200))
    editor.page.click("#queue-button")
    editor.wait("document.querySelectorAll('.ng-issue').length >= 2")
    issues = editor.js("[...document.querySelectorAll('.ng-issue')].map(e => [e.dataset.node, e.dataset.code])")
    nodes = {n for n, _ in issues}
    assert crop in nodes and {c for _, c in issues} == {"missing_input"}
    assert editor.js(f"app.nodeById({json.dumps(crop)}).has_errors") is True
    assert editor.js(f"app.nodeById({json.dumps(crop)}).ngErrors[0].port") == "images"
    # Fixing the node (a change on it) clears its marks.
    src = editor.add_node("solid", "core.solid_color")
    editor.move_node(src, (0, 200))
    editor.connect(src, "images", crop, "images")
    assert editor.js(f"app.nodeById({json.dumps(crop)}).has_errors") is False


def test_pack_extension_is_loaded_and_its_hooks_run(editor, server):
    assert editor.js("window.__browsertest && window.__browsertest.setup") is True
    assert editor.page.locator("#toolbar-extra button", has_text="Ext").count() == 1
    editor.add_node("gated", "browsertest.gated_steps")
    assert editor.js("window.__browsertest.created") == ["browsertest.gated_steps"]
    assert editor.js("app.graph.nodes.some(n => n.ngFromExtension)") is True
    editor.page.click("#toolbar-extra button")
    editor.wait("[...document.querySelectorAll('.toast')].some(t => t.textContent === 'hello from browsertest')")
    # Run hooks: queued, every WebSocket message, executed per node of this editor's job.
    editor.js("app.graph.remove(app.graph.nodes.find(n => n.type === 'browsertest.gated_steps')); app.changed()")
    editor.js("""app.loadWorkflow({format: "nodegraph/1", ui: {}, meta: {}, nodes: {
        c: {type: "core.solid_color", version: 1, inputs: {}, ui: {pos: [0, 0]}},
        p: {type: "core.preview_image", version: 1, inputs: {images: {from: "c", output: "images"}}, ui: {pos: [300, 0]}}}})""")
    assert editor.js("window.__browsertest.loaded") >= 1
    editor.page.click("#queue-button")
    editor.wait("document.getElementById('status').dataset.state === 'success'")
    assert editor.js("window.__browsertest.queued") == 1
    assert editor.js("window.__browsertest.messages") >= 4
    assert sorted(editor.js("window.__browsertest.executed")) == sorted(editor.node_ids())


def test_seed_randomize_gives_a_new_seed_per_queue_and_fixed_keeps_it(editor, server):
    editor.new_workflow()
    seed = editor.add_node("seed", "core.seed")
    show = editor.add_node("show", "core.show")
    editor.move_node(show, (400, 0))
    editor.connect(seed, "seed", show, "value")
    assert editor.workflow()["nodes"][seed]["ui"]["seed_modes"] == {"seed": "randomize"}
    finished = "app.runState.eventLog.filter(e => e.type === 'job_finished').length"
    seen = []
    for k in (1, 2):
        editor.page.click("#queue-button")
        editor.wait(f"{finished} === {k}")
        assert editor.js("app.runState.lastJob.status") == "success"
        seen.append(editor.workflow()["nodes"][seed]["inputs"]["seed"])
    assert seen[0] != seen[1]
    # The value shown on the Show node is the seed that ran.
    editor.wait(f"(app.nodeById({json.dumps(show)}).ngRun.text || [])[0] === String({seen[1]})")
    editor.js(f"app.nodeById({json.dumps(seed)}).widgets.find(w => w.ngControlFor).value = 'fixed'")
    editor.page.click("#queue-button")
    editor.wait(f"{finished} === 3")
    assert editor.workflow()["nodes"][seed]["inputs"]["seed"] == seen[1]


def test_image_upload_widget_uploads_and_shows_a_thumbnail(editor, server):
    editor.new_workflow()
    load = editor.add_node("load image", "core.load_image")
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (0, 0, 255)).save(buf, "PNG")
    name = f"up_{uuid.uuid4().hex[:6]}.png"
    with editor.page.expect_file_chooser() as chooser:
        editor.page.mouse.click(*editor.js(f"""(() => {{ const n = app.nodeById({json.dumps(load)});
            const w = n.widgets.find(w => w.type === "button");
            return app.graphToClient([n.pos[0] + n.size[0] / 2, n.pos[1] + w.y + 10]); }})()"""))
    chooser.value.set_files([{"name": name, "mimeType": "image/png", "buffer": buf.getvalue()}])
    editor.wait(f"app.exportWorkflow().nodes[{json.dumps(load)}].inputs.image === {json.dumps(name)}")
    assert (server.input_dir / name).is_file()
    editor.wait(f"(() => {{ const t = app.nodeById({json.dumps(load)}).ngRun.thumb; return t && t.complete && t.naturalWidth === 20; }})()")
    assert close(rgb_at(editor, image_centre(editor, load)), [0, 0, 255])


def test_a_token_from_the_page_url_authenticates_fetches_the_websocket_and_images(open_editor, tmp_path):
    from .harness import start_server, stop_server

    token = uuid.uuid4().hex
    srv = start_server(tmp_path / "tokenserver", token=token)
    try:
        editor = open_editor(srv, f"?token={token}")
        editor.wait("document.getElementById('connection').dataset.state === 'connected'")
        assert editor.js("Object.keys(app.schemas).length") > 10
        editor.js("""app.loadWorkflow({format: "nodegraph/1", ui: {}, meta: {}, nodes: {
            c: {type: "core.solid_color", version: 1, inputs: {}, ui: {pos: [0, 0]}},
            save: {type: "core.save_image", version: 1, inputs: {images: {from: "c", output: "images"}}, ui: {pos: [300, 0]}}}})""")
        editor.page.click("#queue-button")
        editor.wait("document.getElementById('status').dataset.state === 'success'")
        save = editor.js("String(app.graph.nodes.find(n => n.type === 'core.save_image').id)")
        editor.wait(f"app.nodeById({json.dumps(save)}).ngShownImages().some(i => i.complete && i.naturalWidth > 0)")
        src = editor.js(f"app.nodeById({json.dumps(save)}).ngShownImages()[0].src")
        assert f"token={token}" in src
        editor.page.close()  # before the server goes: no reconnect attempt to log
    finally:
        stop_server(srv)


def test_dropping_a_link_on_empty_canvas_offers_fitting_nodes_and_connects_the_choice(editor):
    editor.new_workflow()
    color = editor.add_node("solid", "core.solid_color")
    editor.move_node(color, (0, 0))
    editor.drag(editor.slot(color, "output", "images"), editor.js("app.graphToClient([420, 60])"))
    editor.page.wait_for_selector(".ng-search-dialog")
    offered = editor.js("[...document.querySelectorAll('.ng-search-results li')].map(li => li.dataset.type)")
    assert "core.image_grid" in offered and "core.math" not in offered  # only nodes with an IMAGE input
    editor.page.fill(".ng-search-input", "grid")
    editor.page.keyboard.press("Enter")
    grid = next(i for i in editor.node_ids() if i != color)
    assert editor.workflow()["nodes"][grid]["inputs"]["images"] == {"from": color, "output": "images"}
    assert editor.js(f"app.nodeById({json.dumps(grid)}).pos.map(Math.round)") == [420, 60]


def test_prompt_textarea_follows_its_node_and_typing_is_one_undo_step(editor):
    editor.new_workflow()
    text = editor.add_node("text", "core.text")
    area = editor.page.locator('.ng-textarea[data-port="value"]')
    editor.wait("[...document.querySelectorAll('.ng-textarea')].some(t => !t.hidden)")
    node_rect = editor.js(f"""(() => {{ const n = app.nodeById({json.dumps(text)});
        const [x0, y0] = app.graphToClient(n.pos), [x1, y1] = app.graphToClient([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
        return [x0, y0, x1, y1]; }})()""")
    box = area.bounding_box()
    assert node_rect[0] <= box["x"] and box["x"] + box["width"] <= node_rect[2]
    assert node_rect[1] <= box["y"] and box["y"] + box["height"] <= node_rect[3] + 1
    area.click()
    editor.page.keyboard.type("a red circle")
    editor.page.keyboard.press("Enter")
    editor.page.keyboard.type("on white")
    assert editor.workflow()["nodes"][text]["inputs"]["value"] == "a red circle\non white"
    editor.page.locator("#graph-canvas").focus()  # blur: the typing is recorded as one step
    editor.wait("app.tracker.undoStack.length >= 2")
    editor.page.keyboard.press("Control+z")
    editor.wait(f"app.exportWorkflow().nodes[{json.dumps(text)}]?.inputs.value === ''")
    # Moving the node moves its text box.
    x, y = editor.js(f"[...app.nodeById({json.dumps(text)}).pos]")
    editor.move_node(text, (x + 200, y + 150))
    editor.js("app.canvas.draw(true, true)")
    moved = editor.page.locator('.ng-textarea[data-port="value"]').bounding_box()
    assert moved["x"] > box["x"] + 50 or moved["y"] > box["y"] + 50
    # Hovering a widget shows its port's description.
    editor.page.mouse.move(*editor.js(f"""(() => {{ const n = app.nodeById({json.dumps(text)}); return app.graphToClient([n.pos[0] + 40, n.pos[1] - 15]); }})()"""))
    editor.wait("!document.querySelector('.ng-tooltip').hidden")
    assert "core.text" in editor.page.text_content(".ng-tooltip")


def test_download_and_open_a_workflow_file(editor, tmp_path):
    editor.new_workflow()
    a = editor.add_node("solid", "core.solid_color")
    b = editor.add_node("preview", "core.preview_image")
    editor.move_node(b, (400, 0))
    editor.connect(a, "images", b, "images")
    with editor.page.expect_download() as download:
        editor.page.click("#download-button")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == "workflow.json"
    saved = json.loads(path.read_text())
    assert saved == editor.workflow()
    editor.new_workflow()
    with editor.page.expect_file_chooser() as chooser:
        editor.page.click("#upload-button")
    chooser.value.set_files(str(path))
    editor.wait("app.graph.nodes.length === 2")
    assert editor.workflow()["nodes"] == saved["nodes"]
    assert editor.page.text_content("#workflow-name") == "workflow"


def test_the_editors_link_rule_is_the_engines(editor):
    """The rule the editor applies (from GET /api/nodes) == nodegraph.types.compatible() for every pair of types in use."""
    from nodegraph.types import compatible

    types = sorted({p["type"] for s in editor.js("Object.values(app.schemas)") for p in s["inputs"] + s["outputs"]}
                   | {"INT", "FLOAT", "SEED", "STRING", "ENUM", "BOOLEAN", "JSON", "ANY", "IMAGE", "MASK", "x.OTHER"})
    # app.linkRules, and what litegraph asks while a link is dragged.
    js = editor.js("""(types) => types.map((o) => types.map((i) =>
        [app.linkRules.compatible(o, i), app.LiteGraph.isValidConnection(o, i)]))""", types)
    for a, row in zip(types, js, strict=True):
        for b, value in zip(types, row, strict=True):
            assert value == [compatible(a, b)] * 2, (a, b)


def serve_link_rules(change):
    """A before_load for open_editor: GET /api/nodes answers with its link_rules changed by `change(rules)`."""
    def handle(route):
        catalogue = route.fetch().json()
        change(catalogue.setdefault("link_rules", {}))
        route.fulfill(json=catalogue)

    return lambda page: page.route("**/api/nodes", handle)


def test_links_are_allowed_and_refused_by_the_rule_the_server_serves(open_editor, server):
    """Served rules in which INT no longer goes into FLOAT but goes into STRING: the editor follows them."""
    def change(rules):
        del rules["accepts"]["FLOAT"]
        rules["accepts"]["STRING"] = ["INT"]

    editor = open_editor(server, before_load=serve_link_rules(change))
    num, math, grid = "num", "math", "grid"
    editor.js("async (wf) => { await app.loadWorkflow(wf); }", {"format": "nodegraph/1", "ui": {}, "meta": {}, "nodes": {
        num: {"type": "core.int", "version": 1, "inputs": {}, "ui": {"pos": [0, 0]}},
        math: {"type": "core.math", "version": 1, "inputs": {}, "ui": {"pos": [360, 0]}},
        grid: {"type": "core.image_grid", "version": 1, "inputs": {}, "ui": {"pos": [360, 260]}}}})
    editor.connect(num, "value", math, "a")  # INT → FLOAT: refused by these rules
    assert editor.links() == 0
    editor.connect(num, "value", grid, "background")  # INT → STRING: allowed by these rules
    assert editor.links() == 1
    assert editor.workflow()["nodes"][grid]["inputs"]["background"] == {"from": num, "output": "value"}


def test_a_server_without_link_rules_stops_the_editor_with_a_message(open_editor, server, request):
    request.node.expected_console_errors = ("link_rules",)
    editor = open_editor(server, before_load=serve_link_rules(lambda rules: rules.clear()), ready="error")
    assert "link_rules" in editor.page.text_content("#status")


V0_WORKFLOW = {
    "format": "nodegraph/0", "meta": {"title": "from an old release"}, "ui": {},
    "nodes": [
        {"id": "c", "type": "core.solid_color", "version": 1, "inputs": {"color": "#ff0000"}, "ui": {"pos": [0, 0]}},
        {"id": "s", "type": "core.save_image", "version": 1, "linked": ["images"],
         "inputs": {"images": ["c", "images"], "prefix": "old"}, "ui": {"pos": [320, 0]}},
    ],
}


def test_an_older_workflow_is_upgraded_by_the_server_and_the_current_format_loads_without_it(editor, request):
    """nodegraph/0 (file drop, pasted text) goes through POST /api/upgrade; nodegraph/1 never does."""
    from nodegraph.workflow import migrate

    request.node.expected_console_errors = ("400",)
    upgrades = []

    def count(route):
        upgrades.append(route.request.post_data_json)
        route.continue_()

    editor.page.route("**/api/upgrade", count)
    drop_file(editor, "old.json", json.dumps(V0_WORKFLOW).encode(), "application/json")
    editor.wait("document.getElementById('workflow-name').textContent === 'old'")
    assert upgrades == [V0_WORKFLOW]
    wf = editor.workflow()
    expected = migrate(json.loads(json.dumps(V0_WORKFLOW)))
    assert {k: v["inputs"] for k, v in wf["nodes"].items()} == {k: v["inputs"] for k, v in expected["nodes"].items()}
    assert wf["nodes"]["s"]["inputs"]["images"] == {"from": "c", "output": "images"}
    assert wf["meta"] == V0_WORKFLOW["meta"] and editor.links() == 1
    # The current format loads at once, with no round trip.
    drop_file(editor, "current.json", json.dumps(wf).encode(), "application/json")
    editor.wait("document.getElementById('workflow-name').textContent === 'current'")
    assert len(upgrades) == 1 and editor.workflow()["nodes"] == wf["nodes"]
    # nodegraph/0 text pasted from the system clipboard: upgraded, then its nodes are added with new ids.
    editor.page.mouse.move(*editor.js("app.graphToClient([0, 300])"))
    editor.js("""(text) => { const dt = new DataTransfer(); dt.setData("text/plain", text);
        document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true })); }""",
              json.dumps(V0_WORKFLOW))
    editor.wait("app.graph.nodes.length === 4")
    assert len(upgrades) == 2 and editor.links() == 2
    # A format the server cannot read: its message, and the graph stays as it was.
    drop_file(editor, "future.json", json.dumps({"format": "nodegraph/99", "nodes": {}}).encode(), "application/json")
    editor.wait("[...document.querySelectorAll('.toast')].some(t => t.textContent.includes('nodegraph/99'))")
    assert len(upgrades) == 3 and len(editor.node_ids()) == 4
    assert editor.page.text_content("#workflow-name") == "current"


def test_a_workflow_with_renamed_node_types_loads_under_their_new_ids(editor):
    """A current-format file naming a node by its old id goes through the server's upgrade once."""
    upgrades = []

    def count(route):
        upgrades.append(route.request.post_data_json)
        route.continue_()

    aliases = editor.js("app.catalogue.aliases")
    assert aliases["unclip.clip_loader"] == "unclip.load_clip"
    # The old id is not offered in the palette or its search; its new id is.
    titles = editor.js("""async () => { const { searchSchemas } = await import("/js/palette.js");
        return searchSchemas(Object.values(app.schemas), "load clip").map((s) => s.type); }""")
    assert "unclip.load_clip" in titles and "unclip.clip_loader" not in titles
    editor.page.route("**/api/upgrade", count)
    old = {"format": "nodegraph/1", "meta": {}, "ui": {},
           "nodes": {"clip": {"type": "unclip.clip_loader", "version": 1, "inputs": {"model": "shapes-unclip"}}}}
    drop_file(editor, "renamed.json", json.dumps(old).encode(), "application/json")
    editor.wait("document.getElementById('workflow-name').textContent === 'renamed'")
    assert len(upgrades) == 1
    node = editor.workflow()["nodes"]["clip"]
    assert node["type"] == "unclip.load_clip" and node["inputs"]["model"] == "shapes-unclip"
    assert not editor.js("app.graph.nodes.some(n => n.title.includes('deprecated'))")


def test_png_text_chunks_are_read_like_the_engine_reads_them(editor, tmp_path):
    """tEXt (what save_image writes) and compressed iTXt (non-Latin-1 text) both give the workflow."""
    from PIL.PngImagePlugin import PngInfo

    wf = {"format": "nodegraph/1", "ui": {}, "meta": {"title": "café ✓"},
          "nodes": {"t": {"type": "core.text", "version": 1, "inputs": {"value": "un chat — 猫"}}}}
    plain = save_png(Image.new("RGB", (2, 2)), tmp_path / "a.png", wf)
    info = PngInfo()
    info.add_itxt("nodegraph.workflow", json.dumps(wf, ensure_ascii=False), zip=True)
    Image.new("RGB", (2, 2)).save(tmp_path / "b.png", pnginfo=info)
    for path in (plain, tmp_path / "b.png"):
        assert read_png_workflow(path) == wf
        got = editor.js("""async (b64) => {
            const { readPngWorkflow } = await import("/js/png.js");
            return readPngWorkflow(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer);
        }""", base64.b64encode(path.read_bytes()).decode())
        assert got == wf


def test_the_page_runs_without_eval_and_number_prompts_still_read_arithmetic(editor, server, request):
    """The editor's CSP has no 'unsafe-eval'; litegraph's eval-based number prompt is replaced by a parser."""
    request.node.expected_console_errors = ("unsafe-eval", "Content Security Policy")
    with urllib.request.urlopen(server.url, timeout=30) as res:
        csp = res.headers["Content-Security-Policy"]
    script_src = csp.split("script-src")[1].split(";")[0]
    assert "'self'" in script_src and "unsafe-eval" not in script_src and "unsafe-inline" not in script_src
    # (From a timer: code evaluated by the test itself runs with DevTools' exemption from the policy.)
    assert editor.js("""() => new Promise((resolve) => setTimeout(() => {
        try { resolve(String(eval("1 + 1"))); } catch (e) { resolve(e.name); } }))""") == "EvalError"
    got = editor.js("""async (texts) => {
        const { parseArithmetic } = await import("/js/arith.js");
        return texts.map((t) => { const v = parseArithmetic(t); return Number.isNaN(v) ? "NaN" : v; });
    }""", ["512", " 2 * 256 ", "(1+2)/4", "-3", "1e3", ".5", "2*(3+4)-1", "1/0", "alert(1)", "1+", "(1", "", "0x10", "2**3"])
    assert got == [512, 512, 0.75, -3, 1000, 0.5, 13, "NaN", "NaN", "NaN", "NaN", "NaN", "NaN", "NaN"]
    # Through the widget: the middle of a number widget opens the Value prompt.
    editor.new_workflow()
    node = editor.add_node("int", "core.int")
    editor.type_in_widget(node, "value", "6*7")
    assert editor.workflow()["nodes"][node]["inputs"]["value"] == 42
    editor.type_in_widget(node, "value", "fetch('/x')")  # not arithmetic: the value stays
    assert editor.workflow()["nodes"][node]["inputs"]["value"] == 42


def test_a_first_visit_opens_the_text_to_image_graph(editor):
    """With the unCLIP pack installed, a browser with nothing saved starts from the linked cascade."""
    wf = editor.workflow()["nodes"]
    assert sorted(n["type"] for n in wf.values()) == sorted([
        "unclip.load_clip", "unclip.text_encode", "unclip.load_prior", "unclip.prior",
        "unclip.load_decoder", "unclip.decoder", "core.save_image"])
    assert editor.links() == 7 and not editor.js("app.graph.nodes.some(n => n.ngMissing)")
    assert wf["decoder"]["inputs"]["image_embedding"] == {"from": "prior", "output": "embedding"}
    assert wf["prior"]["ui"]["seed_modes"] == wf["decoder"]["ui"]["seed_modes"] == {"seed": "randomize"}
    # Nothing overlaps: every node has its own place on the canvas.
    boxes = editor.js("app.graph.nodes.map(n => [n.pos[0], n.pos[1] - 30, n.pos[0] + n.size[0], n.pos[1] + n.size[1]])")
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
