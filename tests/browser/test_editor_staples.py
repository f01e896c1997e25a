"""The editor habits a ComfyUI user has in their fingers: modes, groups, collapse, reroutes, settings, the
minimap, a readable Fit, templates, model pickers, search by the field's words, ComfyUI workflows."""

from __future__ import annotations

import json
import uuid

from PIL import Image

from .harness import ROOT


def select(editor, *node_ids: str) -> None:
    """Select exactly these nodes (litegraph's own selection, as a click or Ctrl+click makes)."""
    editor.js("(ids) => { app.canvas.deselectAll(); for (const id of ids) app.canvas.select(app.nodeById(id)); }",
              list(node_ids))


def menu_entries(editor) -> list[str]:
    """The entries of the context menu that is open."""
    editor.page.wait_for_selector(".litecontextmenu .litemenu-entry")
    return editor.js("[...document.querySelectorAll('.litecontextmenu .litemenu-entry')].map(e => e.textContent)")


def two_linked_nodes(editor) -> tuple[str, str]:
    editor.new_workflow()
    a = editor.add_node("solid", "core.solid_color")
    b = editor.add_node("preview", "core.preview_image")
    editor.move_node(a, (0, 0))
    editor.move_node(b, (420, 60))
    editor.connect(a, "images", b, "images")
    return a, b


def test_ctrl_b_and_ctrl_m_set_the_mode_and_the_node_menu_lists_each_entry_once(editor):
    a, b = two_linked_nodes(editor)
    editor.page.mouse.click(*editor.js(f"app.graphToClient([app.nodeById('{a}').pos[0] + 60, app.nodeById('{a}').pos[1] - 12])"))
    editor.page.keyboard.press("Control+b")
    assert editor.workflow()["nodes"][a]["mode"] == "bypass"
    editor.screenshot("bypassed_node")
    editor.page.keyboard.press("Control+b")
    assert "mode" not in editor.workflow()["nodes"][a]
    editor.page.keyboard.press("Control+m")
    assert editor.workflow()["nodes"][a]["mode"] == "mute"
    editor.page.keyboard.press("Control+z")
    assert "mode" not in editor.workflow()["nodes"][a]
    # The node's context menu: every entry once, and its Bypass entry acts like Ctrl+B.
    editor.page.mouse.click(*editor.js(f"app.graphToClient([app.nodeById('{b}').pos[0] + 60, app.nodeById('{b}').pos[1] - 12])"),
                            button="right")
    entries = [e for e in menu_entries(editor) if e.strip()]
    assert len(entries) == len(set(entries)), entries
    assert "Bypass (Ctrl+B)" in entries and "Mute (Ctrl+M)" in entries
    editor.page.locator(".litecontextmenu .litemenu-entry", has_text="Bypass (Ctrl+B)").first.click()
    assert editor.workflow()["nodes"][b]["mode"] == "bypass"


def test_ctrl_g_groups_alt_c_collapses_and_alt_click_reroutes_a_link_and_all_survive_a_reload(editor):
    a, b = two_linked_nodes(editor)
    # Alt+click the middle of the link: a reroute on it. The canvas finds links by the paths it last
    # drew, so wait until the link was drawn where its nodes are now (its centre between its ends).
    ends = [editor.slot(a, "output", "images"), editor.slot(b, "input", "images")]
    middle = [(ends[0][0] + ends[1][0]) / 2, (ends[0][1] + ends[1][1]) / 2]
    editor.wait("""(() => { const l = [...app.graph.links.values()][0], c = l._pos && app.graphToClient(l._pos);
        return c && Math.abs(c[0] - arg[0]) < 2 && Math.abs(c[1] - arg[1]) < 2; })()""", middle)
    editor.page.keyboard.down("Alt")
    editor.page.mouse.click(*middle)
    editor.page.keyboard.up("Alt")
    editor.wait("app.graph.reroutes.size === 1")
    select(editor, a, b)
    editor.page.keyboard.press("Control+g")
    editor.wait("app.graph.groups.length === 1")
    editor.screenshot("group_and_reroute")
    editor.page.keyboard.press("Alt+c")
    wf = editor.workflow()
    assert wf["nodes"][a]["ui"]["collapsed"] and wf["nodes"][b]["ui"]["collapsed"]
    (group,) = wf["ui"]["groups"]
    assert group["title"] == "Group"
    (reroute,) = wf["ui"]["reroutes"]
    assert reroute["links"] == [[b, "images"]]
    assert wf["nodes"][b]["inputs"]["images"] == {"from": a, "output": "images"}  # the link itself is unchanged
    # The workflow as saved comes back as it was.
    editor.new_workflow()
    editor.js("(wf) => app.loadWorkflow(wf)", wf)
    editor.wait("app.graph.nodes.length === 2")
    again = editor.workflow()
    assert again["ui"]["groups"] == wf["ui"]["groups"] and again["ui"]["reroutes"] == wf["ui"]["reroutes"]
    assert again["nodes"][a]["ui"]["collapsed"] and again["nodes"][b]["ui"]["collapsed"]


def wide_graph(n: int = 12) -> dict:
    """n nodes in a row, far apart: too wide to fit at a readable zoom."""
    nodes = {f"n{i}": {"type": "core.solid_color", "inputs": {}, "ui": {"pos": [i * 420.0, (i % 3) * 260.0]}}
             for i in range(n)}
    return {"format": "nodegraph/1", "nodes": nodes, "ui": {}, "meta": {}}


def test_settings_apply_at_once_persist_and_fit_never_zooms_below_readable(editor):
    editor.js("(wf) => app.loadWorkflow(wf)", wide_graph())
    editor.wait("app.graph.nodes.length === 12")
    editor.page.click("#fit-button")
    assert editor.js("app.canvas.ds.scale") >= 0.5
    assert not editor.js("app.canvas.low_quality")
    assert editor.page.locator(".ng-minimap").is_visible()
    editor.screenshot("fit_wide_graph_readable_with_minimap")

    editor.page.click("#settings-button")
    editor.page.select_option(".ng-settings select[name=linkStyle]", "straight")
    assert editor.js("app.canvas.links_render_mode === app.LiteGraph.STRAIGHT_LINK")
    editor.page.fill(".ng-settings input[name=lowQualityZoom]", "0.7")
    editor.page.dispatch_event(".ng-settings input[name=lowQualityZoom]", "change")
    editor.page.uncheck(".ng-settings input[name=minimap]")
    editor.page.check(".ng-settings input[name=snapToGrid]")
    editor.screenshot("settings_dialog")
    editor.page.click(".ng-settings .ng-modal-buttons button")
    assert editor.js("app.canvas.low_quality_zoom_threshold") == 0.7
    assert not editor.page.locator(".ng-minimap").is_visible()
    editor.page.click("#fit-button")
    assert editor.js("app.canvas.ds.scale") >= 0.7
    # Kept in this browser: a reload starts with them.
    editor.page.reload()
    editor.page.wait_for_selector("body[data-ready=true]")
    assert editor.js("[app.settings.get('linkStyle'), app.settings.get('lowQualityZoom'), app.settings.get('snapToGrid')]") \
        == ["straight", 0.7, True]
    assert editor.js("app.canvas.links_render_mode === app.LiteGraph.STRAIGHT_LINK")
    assert not editor.page.locator(".ng-minimap").is_visible()


def test_the_templates_dialog_lists_the_shipped_workflows_with_a_line_each_and_opens_one(editor):
    shipped = sorted(p.stem for p in (ROOT / "workflows").glob("*.json"))
    editor.page.click("#templates-button")
    editor.page.wait_for_selector(".ng-template-list li button")
    names = editor.js("[...document.querySelectorAll('.ng-template-list button')].map(b => b.dataset.name)")
    assert sorted(names) == shipped
    lines = editor.js("[...document.querySelectorAll('.ng-template-desc')].map(e => e.textContent)")
    assert all(line.strip() and "\n" not in line for line in lines)
    editor.screenshot("templates_dialog")
    editor.page.click('.ng-template-list button[data-name="palette_grid"]')
    want = json.loads((ROOT / "workflows" / "palette_grid.json").read_text())
    editor.wait("app.graph.nodes.length === arg.length && arg.every((id) => app.nodeById(id))", list(want["nodes"]))
    got = editor.workflow()["nodes"]
    assert {nid: n["type"] for nid, n in got.items()} == {nid: n["type"] for nid, n in want["nodes"].items()}


def test_model_inputs_list_their_kind_and_load_image_starts_on_the_first_input_image(editor, server, tiny_karlo):
    folder = server.input_dir / "examples"
    folder.mkdir(exist_ok=True)
    for name in ("b_second.png", "a_first.png"):
        Image.new("RGB", (8, 8), (200, 30, 30)).save(folder / name)
    editor.new_workflow()
    prior = editor.add_node("prior loader", "unclip.load_prior")
    editor.page.mouse.click(*editor.widget_pos(prior, "model"))
    choices = menu_entries(editor)
    assert tiny_karlo in choices
    assert not [c for c in choices if c.endswith((".json", ".txt", ".log"))], choices
    assert choices == sorted(set(choices), key=choices.index)  # each once
    editor.screenshot("model_picker")
    editor.page.locator(".litecontextmenu .litemenu-entry", has_text=tiny_karlo).first.click()
    assert editor.workflow()["nodes"][prior]["inputs"]["model"] == tiny_karlo

    first = server.get("/api/files/input")["files"][0]
    load = editor.add_node("load image", "core.load_image")
    editor.wait("app.nodeById(arg[0]).ngWidgets.get('image').value === arg[1]", [load, first])
    editor.move_node(load, (0, 300))
    editor.screenshot("load_image_first_input")
    editor.page.mouse.click(*editor.widget_pos(load, "image"))
    assert {"examples/a_first.png", "examples/b_second.png"} <= set(menu_entries(editor))


def palette_order(editor, query: str) -> list[str]:
    editor.page.fill(".ng-palette-search", query)
    editor.page.wait_for_selector(".ng-palette-item")
    return editor.js("[...document.querySelectorAll('.ng-palette-item')].map(e => e.dataset.type)")


def test_the_palette_knows_the_fields_words_and_ranks_exact_titles_first(editor):
    found = palette_order(editor, "ksampler")
    assert {"unclip.prior", "unclip.decoder"} <= set(found)
    assert palette_order(editor, "upscale")[0] == "unclip.upsample"
    assert palette_order(editor, "vae decode")[0] == "unclip.decoder"
    assert {"unclip.load_clip", "unclip.load_prior", "unclip.load_decoder"} <= set(palette_order(editor, "checkpoint"))
    assert palette_order(editor, "Decoder")[0] == "unclip.decoder"  # the exact title, before Load Decoder
    assert palette_order(editor, "prior")[0] == "unclip.prior"
    editor.screenshot("palette_search_alias")


def test_a_cancelled_job_shows_its_message_without_a_stray_colon(editor, server):
    gate = f"g{uuid.uuid4().hex[:8]}"
    editor.new_workflow()
    steps = editor.add_node("gated", "browsertest.gated_steps")
    preview = editor.add_node("preview", "core.preview_image")
    editor.move_node(preview, (360, 0))
    editor.connect(steps, "images", preview, "images")
    editor.js(f"app.nodeById({json.dumps(steps)}).ngWidgets.get('gate').value = {json.dumps(gate)}")
    editor.page.click("#queue-button")
    editor.wait("document.querySelector('.ng-queue-running .ng-job') !== null")
    editor.page.click('button[title="Cancel the running job"]')
    editor.wait("document.querySelector('.ng-history-list .ng-job[data-status=\"cancelled\"] .ng-error-text') !== null")
    text = editor.js("document.querySelector('.ng-history-list .ng-job[data-status=\"cancelled\"] .ng-error-text').textContent")
    assert text and not text.startswith(":") and "interrupted" in text
    server.open_gate(gate)


def test_a_comfyui_workflow_opens_and_the_editor_names_the_nodes_it_cannot_map(editor, tmp_path):
    comfy = {
        "last_node_id": 9, "last_link_id": 1, "version": 0.4,
        "nodes": [
            {"id": 4, "type": "core.solid_color", "pos": [0, 0], "size": [300, 160], "mode": 0,
             "widgets_values": [16, 16, "#00ff00", 1], "outputs": [{"name": "images", "type": "IMAGE", "links": [1]}]},
            {"id": 9, "type": "SaveImage", "pos": [420, 0], "size": [300, 260], "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 1}], "widgets_values": ["ComfyUI"]},
            {"id": 3, "type": "KSampler", "pos": [0, 300], "size": [300, 260], "mode": 0,
             "widgets_values": [1, "randomize", 20, 8, "euler", "normal", 1]},
        ],
        "links": [[1, 4, 0, 9, 0, "IMAGE"]],
        "groups": [{"title": "Output", "bounding": [400, -60, 360, 360]}],
    }
    path = tmp_path / "comfy_workflow.json"
    path.write_text(json.dumps(comfy))
    editor.new_workflow()
    with editor.page.expect_file_chooser() as chooser:
        editor.page.click("#upload-button")
    chooser.value.set_files(str(path))
    editor.wait("app.graph.nodes.length === 3")
    editor.wait("[...document.querySelectorAll('.toast')].some(t => t.textContent.includes(\"'KSampler' has no nodegraph equivalent\"))")
    wf = editor.workflow()["nodes"]
    assert wf["9"]["type"] == "core.save_image" and wf["9"]["inputs"]["images"] == {"from": "4", "output": "images"}
    assert wf["9"]["inputs"]["filename_prefix"] == "ComfyUI"
    assert editor.js("app.nodeById('3').ngMissing") and not editor.js("app.nodeById('9').ngMissing")
    assert editor.js("app.graph.groups.length") == 1
    editor.screenshot("comfyui_workflow_imported")


def test_a_png_comfyui_wrote_opens_from_its_prompt_chunk(editor, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    prompt = {"4": {"class_type": "core.solid_color", "inputs": {"width": 16, "height": 16, "color": "#0000ff", "batch": 1}},
              "9": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}}}
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    path = tmp_path / "ComfyUI_00001_.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    editor.new_workflow()
    with editor.page.expect_file_chooser() as chooser:
        editor.page.click("#upload-button")
    chooser.value.set_files(str(path))
    editor.wait("app.graph.nodes.length === 2")
    wf = editor.workflow()["nodes"]
    assert wf["9"]["type"] == "core.preview_image" and wf["9"]["inputs"]["images"] == {"from": "4", "output": "images"}
    assert wf["4"]["inputs"]["color"] == "#0000ff"
