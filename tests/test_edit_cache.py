"""The edit nodes in a real engine run on a tiny checkpoint: cached re-runs, one widget re-runs only
its descendants, and the shared decoder is left as it was."""

from __future__ import annotations

import torch
from helpers import Recorder, link, node, workflow

from nodegraph import Engine, Settings
from nodes.unclip.models import tiny

torch.set_num_threads(1)


def edit_workflow(target: str = "a blue circle", grow: int = 1) -> dict:
    m = "tiny-karlo"
    return workflow(
        clip=node("unclip.load_clip", model=m),
        dec=node("unclip.load_decoder", model=m),
        src=node("unclip.text_encode", clip=link("clip", "clip"), text="a red circle"),
        tgt=node("unclip.text_encode", clip=link("clip", "clip"), text=target),
        p2p=node("edit.prompt_to_prompt", decoder=link("dec", "decoder"), clip=link("clip", "clip"),
                 image_embedding=link("src", "embedding"), source="a red circle", target=target, steps=3),
        scene=node("shapes.scene", resolution=24),
        paint=node("edit.inpaint", decoder=link("dec", "decoder"), image=link("scene", "image"),
                   mask=link("scene", "mask"), image_embedding=link("tgt", "embedding"),
                   conditioning=link("tgt", "conditioning"), steps=3, grow=grow),
        strip=node("edit.interpolation_strip", decoder=link("dec", "decoder"), a=link("src", "embedding"),
                   b=link("tgt", "embedding"), conditioning=link("src", "conditioning"), frames=3, steps=3),
        save_p2p=node("core.save_image", images=link("p2p", "edited_images"), filename_prefix="p2p"),
        save_paint=node("core.save_image", images=link("paint", "images"), filename_prefix="paint"),
        save_strip=node("core.save_image", images=link("strip", "strip"), filename_prefix="strip"),
    )


def test_rerun_is_cached_and_a_widget_reruns_only_its_descendants(tmp_path):
    root = tiny.cached_root()
    settings = Settings(model_dirs=[root.parent], input_dir=tmp_path / "in", output_dir=tmp_path / "out",
                        temp_dir=tmp_path / "tmp", entry_point_packs=False)
    engine = Engine.from_settings(settings)
    unet = tiny.decoder().model.unet
    before = dict(unet.attn_processors)

    first = Recorder()
    assert engine.run(edit_workflow(), sink=first).ok
    assert {"p2p", "paint", "strip"} <= first.ran
    again = Recorder()
    assert engine.run(edit_workflow(), sink=again).ok
    assert again.ran == set() and again.cached == {"save_p2p", "save_paint", "save_strip"}

    grown = Recorder()
    assert engine.run(edit_workflow(grow=2), sink=grown).ok
    assert "paint" in grown.ran and not grown.ran & {"p2p", "strip", "src", "tgt"}
    changed = Recorder()
    assert engine.run(edit_workflow(target="a green circle", grow=2), sink=changed).ok
    assert {"tgt", "p2p", "paint"} <= changed.ran and "src" not in changed.ran
    assert unet.attn_processors == before  # the cached decoder is the one the loader made, unmodified
