"""The core pack's nodes do what they say (run through the engine)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import Recorder, link, node, workflow
from PIL import Image

import nodegraph


def run(engine, wf, **kw):
    rec = Recorder()
    result = engine.run(wf, sink=rec, **kw)
    return result, rec


def outputs(engine, nodes: dict, target: str):
    result, _ = run(engine, workflow(**nodes), targets=[target])
    assert result.ok, result.error
    return result.outputs[target]


def test_math_and_text(engine):
    out = outputs(engine, {"m": node("core.math", a=7, b=2, op="modulo")}, "m")
    assert out == {"value": 1.0, "integer": 1}
    out = outputs(engine, {"f": node("core.format", template="a {a} {b}", a="red", b="circle")}, "f")
    assert out["value"] == "a red circle"


def test_divide_by_zero_is_a_clear_node_error(engine):
    result, _ = run(engine, workflow(m=node("core.math", a=1, b=0, op="divide")), targets=["m"])
    assert result.status == "failed" and "by zero" in result.error.message


def test_resize_crop_blend_grid(engine):
    nodes = {
        "red": node("core.solid_color", width=8, height=4, color="#ff0000", batch=3),
        "blue": node("core.solid_color", width=8, height=4, color="#0000ff"),
        "big": node("core.image_resize", images=link("red", "images"), width=16),
        "crop": node("core.image_crop", images=link("big", "images"), x=4, y=2, width=100, height=3),
        "mix": node("core.image_blend", a=link("red", "images"), b=link("blue", "images"), factor=0.5),
        "grid": node("core.image_grid", images=link("red", "images"), columns=2, padding=1),
    }
    assert outputs(engine, nodes, "big")["images"].shape == (3, 8, 16, 3)
    assert outputs(engine, nodes, "crop")["images"].shape == (3, 3, 12, 3)  # clipped at the edge
    mix = outputs(engine, nodes, "mix")["images"]
    assert mix.shape == (3, 4, 8, 3) and np.allclose(mix[0, 0, 0], [0.5, 0, 0.5])
    grid = outputs(engine, nodes, "grid")["image"]
    assert grid.shape == (1, 2 * 4 + 3, 2 * 8 + 3, 3)
    assert np.allclose(grid[0, 0, 0], 1.0)  # white padding


def test_image_sharpen_is_an_unsharp_mask(engine, settings):
    flat = {"red": node("core.solid_color", width=8, height=8, color="#804020"),
            "s": node("core.image_sharpen", images=link("red", "images"), sigma=1.0, amount=2.0)}
    assert np.allclose(outputs(engine, flat, "s")["images"], outputs(engine, flat, "red")["images"], atol=1e-6)
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, 4:] = 128
    Image.fromarray(img).save(settings.input_dir / "edge.png")
    nodes = {"l": node("core.load_image", image="edge.png"),
             "s": node("core.image_sharpen", images=link("l", "image"), sigma=1.0, amount=1.0)}
    out = outputs(engine, nodes, "s")["images"][0, 0, :, 0]
    assert out[3] == 0.0 and out[4] > 128 / 255 + 0.05  # the bright side of the edge overshoots
    assert np.isclose(out[0], 0.0) and np.isclose(out[7], 128 / 255, atol=1e-3)  # far from it: unchanged


def test_blend_of_different_sizes_names_the_fix(engine):
    nodes = {"a": node("core.solid_color", width=8, height=8), "b": node("core.solid_color", width=4, height=4),
             "m": node("core.image_blend", a=link("a", "images"), b=link("b", "images"))}
    result, _ = run(engine, workflow(**nodes), targets=["m"])
    assert "core.image_resize" in result.error.message


def test_load_image_reads_rgb_and_alpha_mask(engine, settings):
    img = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    img.putpixel((0, 0), (0, 0, 0, 0))
    img.save(settings.input_dir / "a.png")
    out = outputs(engine, {"l": node("core.load_image", image="a.png")}, "l")
    assert out["image"].shape == (1, 2, 4, 3) and out["width"] == 4 and out["height"] == 2
    assert out["mask"][0, 0, 0] == 1.0 and out["mask"][0, 1, 1] == 0.0


def test_load_image_notices_a_changed_file(engine, settings):
    path = settings.input_dir / "a.png"
    Image.new("RGB", (2, 2), (255, 0, 0)).save(path)
    wf = workflow(l=node("core.load_image", image="a.png"), s=node("toy.sink", value=link("l", "width")))
    run(engine, wf)
    _, rec = run(engine, wf)
    assert rec.ran == set()  # same file content: cached
    Image.new("RGB", (3, 2), (255, 0, 0)).save(path)
    result, rec = run(engine, wf)
    assert "l" in rec.ran and result.outputs["s"]["value"] == 3


def invalid_issues(engine, wf, **kw) -> list[nodegraph.Issue]:
    with pytest.raises(nodegraph.WorkflowInvalid) as err:
        engine.run(wf, **kw)
    return err.value.issues


@pytest.mark.parametrize("name", ["../secret.png", "/etc/passwd", "a/../../x.png", "..\\x.png", "a\x00.png"])
def test_load_image_refuses_names_outside_the_input_folder(engine, name):
    # A literal name is checked by validation; the same name arriving on a link, by the node.
    issues = invalid_issues(engine, workflow(l=node("core.load_image", image=name)), targets=["l"])
    assert [(i.code, i.node, i.port) for i in issues] == [("unsafe_path", "l", "image")]
    linked = workflow(n=node("core.string", value=name), l=node("core.load_image", image=link("n")))
    result, _ = run(engine, linked, targets=["l"])
    assert result.status == "failed" and result.error.error_type == "UnsafePath"


def test_load_image_refuses_symlinks_out_of_the_folder(engine, settings, tmp_path):
    outside = tmp_path / "outside.png"
    Image.new("RGB", (2, 2)).save(outside)
    (settings.input_dir / "link.png").symlink_to(outside)
    issues = invalid_issues(engine, workflow(l=node("core.load_image", image="link.png")), targets=["l"])
    assert [i.code for i in issues] == ["unsafe_path"]
    linked = workflow(n=node("core.string", value="link.png"), l=node("core.load_image", image=link("n")))
    result, _ = run(engine, linked, targets=["l"])
    assert result.error.error_type == "UnsafePath"


def test_a_missing_image_is_a_validation_issue_listing_files_in_subfolders_too(engine, settings):
    (settings.input_dir / "examples").mkdir()
    Image.new("RGB", (2, 2)).save(settings.input_dir / "examples" / "there.png")
    (settings.input_dir / "notes.txt").write_text("not an image")
    issues = invalid_issues(engine, workflow(l=node("core.load_image", image="there.png")), targets=["l"])
    assert [(i.code, i.node, i.port) for i in issues] == [("file_not_found", "l", "image")]
    message = issues[0].message
    assert "did you mean 'examples/there.png'?" in message and "files there: examples/there.png" in message
    assert "notes.txt" not in message  # only files the port takes (its extensions)


def test_save_never_overwrites_and_supports_subfolders(engine, settings):
    def wf(colour):
        return workflow(c=node("core.solid_color", width=2, height=2, color=colour),
                        s=node("core.save_image", images=link("c", "images"), filename_prefix="sub/pic"))

    run(engine, wf("#ff0000"))
    result, _ = run(engine, wf("#00ff00"))
    files = sorted(p.name for p in (settings.output_dir / "sub").iterdir())
    assert files == ["pic_00001.png", "pic_00002.png"]
    assert result.ui["s"]["images"] == [{"filename": "pic_00002.png", "subfolder": "sub", "type": "output"}]


@pytest.mark.parametrize("prefix", ["../up", "/abs", "a/../../b", "sp ace"])
def test_save_refuses_bad_prefixes(engine, prefix):
    wf = workflow(c=node("core.solid_color", width=2, height=2),
                  s=node("core.save_image", images=link("c", "images"), filename_prefix=prefix))
    result, _ = run(engine, wf)
    assert result.status == "failed"


def test_preview_goes_to_the_temp_folder(engine, settings):
    wf = workflow(c=node("core.solid_color", width=2, height=2),
                  p=node("core.preview_image", images=link("c", "images")))
    result, _ = run(engine, wf)
    item = result.ui["p"]["images"][0]
    assert item["type"] == "temp" and (settings.temp_dir / item["filename"]).exists()
