"""Prompt-to-Prompt node on the tiny seeded models: identity, determinism, effect, restore, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT
from edit_helpers import run

from nodegraph import Cancelled, NodeExecutionError
from nodes.edit.attention import AttentionEdit, align, installed, prompt_tokens, word_positions
from nodes.edit.prompt2prompt import PromptToPrompt
from nodes.unclip.models import sample_decoder, tiny

torch.set_num_threads(1)
SHIPPED_CLIP = ROOT / "models" / "shapes-unclip" / "clip"


@pytest.fixture(scope="module")
def models():
    return {"decoder": tiny.decoder(), "clip": tiny.clip(),
            "image_embedding": torch.randn(1, tiny.TEXT_DIM, generator=torch.Generator().manual_seed(3))}


def p2p(tmp_path, models, **kw):
    kw.setdefault("steps", 6)
    kw.setdefault("guidance", 4.0)
    out, ctx = run(PromptToPrompt, tmp_path, **{**models, **kw})
    return out.source_images, out.edited_images, ctx


def test_target_equal_to_source_gives_identical_images(tmp_path, models):
    src, edit, _ = p2p(tmp_path, models, source="a red circle", target="a red circle", self_replace=0.5)
    assert src.shape == edit.shape == (1, tiny.DECODER_SIZE, tiny.DECODER_SIZE, 3)
    assert np.array_equal(src, edit)


def test_source_images_are_plain_decoding_and_runs_are_deterministic(tmp_path, models):
    src, edit, ctx = p2p(tmp_path, models, source="a red circle", target="a blue square", seed=5)
    src2, edit2, _ = p2p(tmp_path, models, source="a red circle", target="a blue square", seed=5)
    assert np.array_equal(src, src2) and np.array_equal(edit, edit2)
    clip, dec = models["clip"].model, models["decoder"].model
    with torch.inference_mode():
        plain = sample_decoder(dec, models["image_embedding"], clip.encode_text(["a red circle"]),
                               clip.encode_text([""]), guidance=4.0, steps=6,
                               generator=torch.Generator().manual_seed(5))
    np.testing.assert_allclose(src[0], plain[0].permute(1, 2, 0).numpy(), atol=1e-5)
    assert ctx.steps[-1] == (12, 12) and len(ctx.steps) == 12  # both runs report progress


def test_injection_changes_the_edit_and_zero_fraction_is_plain_target_decoding(tmp_path, models):
    kw = dict(source="a red circle", target="a blue circle", seed=1)
    _, injected, _ = p2p(tmp_path, models, cross_replace=1.0, self_replace=1.0, **kw)
    _, free, _ = p2p(tmp_path, models, cross_replace=0.0, self_replace=0.0, **kw)
    assert np.abs(injected - free).mean() > 1e-4
    clip, dec = models["clip"].model, models["decoder"].model
    with torch.inference_mode():
        plain = sample_decoder(dec, models["image_embedding"], clip.encode_text(["a blue circle"]),
                               clip.encode_text([""]), guidance=4.0, steps=6,
                               generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(free[0], plain[0].permute(1, 2, 0).numpy(), atol=1e-5)


def test_reweight_scales_only_the_chosen_word(tmp_path, models):
    kw = dict(source="a red circle", target="a red circle", mode="reweight", word="red", self_replace=0.0)
    src, same, _ = p2p(tmp_path, models, weight=1.0, **kw)
    _, strong, _ = p2p(tmp_path, models, weight=4.0, **kw)
    assert np.array_equal(src, same)
    assert np.abs(strong - src).mean() > 1e-4


def test_unknown_reweight_word_and_empty_prompt_are_clear_errors(tmp_path, models):
    with pytest.raises(NodeExecutionError, match="not in the target prompt"):
        p2p(tmp_path, models, mode="reweight", word="green", source="a red circle", target="a red circle")
    with pytest.raises(NodeExecutionError, match="needs `word`"):
        p2p(tmp_path, models, mode="reweight", word=" ")
    with pytest.raises(NodeExecutionError, match="must not be empty"):
        p2p(tmp_path, models, source="  ")
    with pytest.raises(NodeExecutionError, match="width"):
        p2p(tmp_path, models, image_embedding=torch.zeros(1, 7))


def test_processors_are_restored_after_runs_errors_and_cancellation(tmp_path, models):
    unet = models["decoder"].model.unet
    before = dict(unet.attn_processors)
    p2p(tmp_path, models)
    assert unet.attn_processors == before
    with pytest.raises(Cancelled):
        run(PromptToPrompt, tmp_path, cancel_at=3, steps=6, **models)
    assert unet.attn_processors == before
    ctrl = AttentionEdit(4, True, 1, 1)
    with pytest.raises(RuntimeError), installed(unet, ctrl):
        assert unet.attn_processors != before
        raise RuntimeError("boom")
    assert unet.attn_processors == before


@pytest.mark.skipif(not SHIPPED_CLIP.is_dir(), reason="shipped CLIP (models/shapes-unclip/clip) absent")
def test_alignment_uses_the_models_tokenizer():
    from nodes.unclip.models import load_clip

    clip = load_clip(SHIPPED_CLIP)
    src = prompt_tokens(clip, "a red circle on a white background")
    tgt = prompt_tokens(clip, "a blue circle on a white background")
    assert len(src) == len(tgt) == 7
    a = align(src, tgt, clip.context_length, "swap")
    assert torch.equal(a.mapper[: 9, : 9], torch.eye(9))  # SOT, 7 tokens (red ↦ blue), EOT
    assert a.alpha[:9].tolist() == [1.0] * 9 and a.alpha[9:].sum() == 0
    r = align(src, tgt, clip.context_length, "refine")
    assert r.alpha[2] == 0 and r.alpha[3] == 1  # the new word keeps its own maps
    longer = prompt_tokens(clip, "a big red circle on a white background")
    ins = align(src, longer, clip.context_length, "refine")
    assert ins.mapper[1, 1] == 1 and ins.alpha[2] == 0 and ins.mapper[3, 2] == 1  # 'big' inserted
    assert ins.mapper[1 + len(longer), 1 + len(src)] == 1  # EOT to EOT
    assert word_positions(clip, tgt, "blue") == [2]
    with pytest.raises(ValueError, match="not in the target prompt"):
        word_positions(clip, tgt, "green")
