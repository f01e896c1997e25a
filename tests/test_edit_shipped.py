"""The edit nodes' measured effects on the shipped Shapes models, at a small sample size.

Judged by the pixel analyser. The full-size figures come from `python -m eval edit` (same cases,
more of them; see docs/editing.md). Skipped only when the shipped weights are not there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT

MODEL = ROOT / "models" / "shapes-unclip"
NEEDED = ("clip", "prior", "text_proj", "decoder", "decoder_scheduler")
missing = [d for d in NEEDED if not (MODEL / d).is_dir()]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"shipped weights absent: models/shapes-unclip/ lacks "
                                f"{', '.join(missing)} (run `python -m train all`)")
torch.set_num_threads(1)
STEPS = 15


@pytest.fixture(scope="module")
def stack():
    from eval.edit import Stack

    return Stack(MODEL, steps=STEPS, guidance=1.5, prior_steps=15)


def test_prompt_to_prompt_swaps_change_the_word_and_keep_the_layout(stack):
    """The target: the swapped attribute changes in >= 80 % of cases while the object keeps its
    place (layout IoU >= 0.7: the source's own mask for a colour swap; for a shape swap the target
    shape's template at the source object's centre and radius, as two shapes of one radius overlap
    only 0.52-0.61). Measured 85 % on 40 swaps (docs/editing.md)."""
    from eval.edit import P2P_DEFAULTS, eval_p2p

    report = eval_p2p(stack, n=8, seed=11, params=dict(P2P_DEFAULTS))
    summary = report["all"]
    assert summary["edited_and_layout_iou_ge_0.7"] >= 0.75, report["cases"]
    assert report["color"]["mean_iou"] >= 0.7, report["cases"]  # a colour swap keeps the very mask


def test_inpainting_keeps_outside_pixels_exactly(stack):
    from eval.edit import eval_inpaint

    report = eval_inpaint(stack, n=4, seed=12, strength=0.5)
    assert report["outside_mean_abs_diff_255_max"] == 0.0  # below 2/255 by construction: exactly the input


def test_inpainting_paints_the_new_object(stack):
    from eval.edit import eval_inpaint

    # the target (>= 80 %); measured 87.5 % on 40 cases at strength 0.7 (docs/editing.md)
    report = eval_inpaint(stack, n=6, seed=12, strength=0.7)
    assert report["color_and_shape"] >= 0.8, report["cases"]


def test_inpainting_node_on_a_rendered_scene(tmp_path, stack):
    """Through the node: a scene's own mask, grown, 'a green star' painted into it: the outside is the
    input, the object turns green (its shape stays a circle at strength 0.5: see docs/editing.md)."""
    from edit_helpers import run

    from nodegraph import ModelHandle
    from nodes.edit.inpaint import Inpaint
    from nodes.shapes import analyse, domain
    from nodes.unclip.encode import Conditioning

    scene = domain.make_scene(np.random.default_rng(0), "red", "white", "circle", "large", "center")
    image = (domain.render(scene, 64).astype(np.float32) / 255)[None]
    mask = domain.coverage(scene, 64).astype(np.float32)[None]
    prompt = "a large green star in the center on a white background"
    emb, cond = stack.embed(prompt, 1)
    out, _ = run(Inpaint, tmp_path, decoder=ModelHandle(stack.decoder, "shapes-unclip", "unclip.decoder"),
                 image=image, mask=mask, image_embedding=emb, conditioning=Conditioning(cond, stack.empty, (prompt,), ""),
                 steps=STEPS, seed=1, grow=4, strength=0.5)
    outside = out.mask[0] == 0
    assert np.abs(out.images[0][outside] - image[0][outside]).max() == 0
    a = analyse.analyse(out.images[0])
    assert a.color == "green" and a.position == "center", a.attributes()
