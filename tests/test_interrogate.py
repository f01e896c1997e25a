"""CLIP Interrogator: vocabulary parsing, the ranking search, the node on the tiny CLIP, the shipped CLIP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from edit_helpers import run

from nodegraph import NodeExecutionError
from nodes.interrogate.nodes import Interrogate
from nodes.interrogate.rank import cache_logits, fill, full_template, interrogate, parse_vocabulary
from nodes.shapes import domain
from nodes.shapes.nodes import ShapesVocabulary
from nodes.unclip.models import tiny

torch.set_num_threads(1)


def test_vocabulary_lines_become_ordered_slots_and_repeated_slots_extend():
    vocab = parse_vocabulary("color: red, blue\nshape: circle\ncolor: green, red\n")
    assert vocab == {"color": ["red", "blue", "green"], "shape": ["circle"]}


@pytest.mark.parametrize("text", ["color red, blue", "my color: red", "color:"])
def test_a_bad_vocabulary_line_names_the_expected_format(text):
    with pytest.raises(ValueError, match="expected 'slot: phrase, phrase"):
        parse_vocabulary(text)


def test_slots_left_out_take_their_default_word_or_vanish():
    template = "a {color} {shape|object} on {bg}"
    assert fill(template, {"color": "red"}) == "a red object on"
    assert fill(template, {"shape": "star", "bg": "white"}) == "a star on white"


def test_lists_the_template_does_not_name_are_appended_and_unknown_slots_are_refused():
    assert full_template("a {color}", {"color": ["red"], "mood": ["calm"]}) == "a {color} {mood}"
    with pytest.raises(ValueError, match="no such list"):
        full_template("a {color} {shape}", {"color": ["red"]})


def bag_of_words(texts: list[str]) -> torch.Tensor:
    words = sorted({w for phrase in ("red blue green circle square star small large top left right bottom",)
                    for w in phrase.split()})
    return torch.tensor([[float(w in t.split()) for w in words] for t in texts]) + 0.01


def test_the_search_recovers_the_caption_an_image_embedding_was_made_from():
    vocab = {"size": ["small", "large"], "color": ["red", "blue", "green"], "shape": ["circle", "square", "star"],
             "where": ["top left", "bottom right", "top right"]}
    target = "a large green star bottom right"
    caps = interrogate(bag_of_words, bag_of_words([target]), "a {size} {color} {shape}", vocab)
    assert caps[0].text == target
    assert caps[0].choices == {"size": "large", "color": "green", "shape": "star", "where": "bottom right"}


def test_calibration_against_reference_images_takes_out_a_bias_every_domain_image_shares():
    # text towers: "red" and "blue" share a text-only direction; every image of the domain leans towards
    # "blue" and has an image-only direction (the modality gap), so a red image's plain cosine says blue
    def encode_text(texts: list[str]) -> torch.Tensor:
        return torch.tensor([[float("red" in t), float("blue" in t), 1.0, 0.0] for t in texts])

    common = torch.tensor([0.0, 0.5, 0.0, 2.0])
    red_image = (common + torch.tensor([0.3, 0.0, 0.0, 0.0]))[None]
    reference = torch.stack([common + torch.tensor([0.3, 0.0, 0.0, 0.0]), common + torch.tensor([0.0, 0.3, 0.0, 0.0])])
    vocab = {"color": ["red", "blue"]}
    assert interrogate(encode_text, red_image, "a {color}", vocab)[0].choices == {"color": "blue"}
    calibrated = interrogate(encode_text, red_image, "a {color}", vocab, reference=reference, text_samples=64)[0]
    assert calibrated.choices == {"color": "red"}
    assert calibrated.score == pytest.approx(float(torch.nn.functional.cosine_similarity(
        encode_text(["a red"]), red_image)[0]))  # the reported score stays the plain cosine
    # only the slots named are calibrated: the colour left to plain cosine says blue again
    vocab["mood"] = ["calm"]
    only_mood = interrogate(encode_text, red_image, "a {color}", vocab, reference=reference, calibrated=("mood",))
    assert only_mood[0].choices["color"] == "blue"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        interrogate(encode_text, red_image, "a {color}", vocab, reference=reference, calibrated=("shape",))


def _colour_domain():
    """A text tower that leans to "blue", a red image, and labelled references of both colours."""
    def encode_text(texts: list[str]) -> torch.Tensor:
        return torch.tensor([[float("red" in t), float("blue" in t), 0.0, 0.0, 1.0] for t in texts])

    red, blue = torch.tensor([0.45, 0.55, 1.0, 0.0, 0.0]), torch.tensor([0.1, 0.9, 0.0, 1.0, 0.0])
    reference = torch.stack([red, blue, red + 0.01, blue + 0.01])
    labels = [{"color": "red"}, {"color": "blue"}, {"color": "red"}, {"color": "blue"}]
    return encode_text, red[None], reference, labels


def test_labelled_references_correct_a_colour_the_zero_shot_ranking_gets_wrong():
    encode_text, red_image, reference, labels = _colour_domain()
    vocab = {"color": ["red", "blue"]}
    kw = dict(reference=reference, calibrated=(), reference_labels=labels)
    assert interrogate(encode_text, red_image, "a {color}", vocab, **kw)[0].choices == {"color": "blue"}
    assert interrogate(encode_text, red_image, "a {color}", vocab, cache_weight=0.0, **kw)[0].choices["color"] == "blue"
    cached = interrogate(encode_text, red_image, "a {color}", vocab, cache_weight=30.0, **kw)[0]
    assert cached.choices == {"color": "red"}
    assert cached.score == pytest.approx(float(torch.nn.functional.cosine_similarity(
        encode_text(["a red"]), red_image)[0]))  # the reported score stays the plain cosine


def test_unlabelled_slots_stay_zero_shot_and_unreferenced_phrases_take_the_slots_mean():
    encode_text, red_image, reference, labels = _colour_domain()
    vocab = {"color": ["red", "blue", "green"], "mood": ["calm", "busy"]}
    logits = cache_logits(torch.nn.functional.normalize(red_image, dim=-1), reference, labels, vocab, 5.0)
    assert set(logits) == {"color"}
    assert logits["color"][0, 0] > logits["color"][0, 1]
    assert logits["color"][0, 2] == pytest.approx(float(logits["color"][0, :2].mean()))


def test_reference_labels_that_do_not_fit_the_references_are_refused():
    encode_text, red_image, reference, labels = _colour_domain()
    vocab = {"color": ["red", "blue"]}
    with pytest.raises(ValueError, match="3 reference labels for 4 reference images"):
        interrogate(encode_text, red_image, "a {color}", vocab, reference=reference, reference_labels=labels[:3],
                    cache_weight=1.0)


def test_references_labelled_with_a_phrase_the_trimmed_list_lacks_count_as_unlabelled_for_that_slot():
    encode_text, red_image, reference, labels = _colour_domain()
    labels = [{**label, "mood": "calm"} for label in labels]
    trimmed = {"color": ["red", "green"], "mood": ["calm", "busy"]}  # "blue" removed from the lists
    logits = cache_logits(torch.nn.functional.normalize(red_image, dim=-1), reference, labels, trimmed, 5.0)
    unlabelled = [{"mood": "calm"} if label["color"] == "blue" else label for label in labels]
    expected = cache_logits(torch.nn.functional.normalize(red_image, dim=-1), reference, unlabelled, trimmed, 5.0)
    assert set(logits) == {"color", "mood"}
    for slot in logits:
        assert torch.allclose(logits[slot], expected[slot])
    caption = interrogate(encode_text, red_image, "a {color}", trimmed, reference=reference, calibrated=(),
                          reference_labels=labels, cache_weight=30.0)[0]
    assert caption.choices["color"] == "red"


def test_reference_embeddings_of_another_width_are_refused():
    with pytest.raises(ValueError, match="reference embeddings must be"):
        interrogate(bag_of_words, bag_of_words(["red"]), "a {color}", {"color": ["red"]}, reference=torch.ones(2, 3))


def test_the_node_captions_every_image_and_appends_user_word_lists(tmp_path):
    images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    out, _ = run(Interrogate, tmp_path, clip=tiny.clip(), images=images, vocabulary="color: red, blue\nshape: "
                 "circle, star", template="a {color} {shape}", extra="mood: calm, busy", passes=2)
    lines = out.caption.splitlines()
    choices = json.loads(out.choices)
    assert len(lines) == 2 and len(choices) == 2
    for line, c in zip(lines, choices, strict=True):
        assert line == f"a {c['color']} {c['shape']} {c['mood']}"
    assert -1.0 <= out.score <= 1.0


def test_the_node_calibrates_against_reference_images_when_given(tmp_path):
    rng = np.random.default_rng(0)
    images, reference = rng.random((2, 32, 32, 3), dtype=np.float32), rng.random((4, 32, 32, 3), dtype=np.float32)
    kw = dict(clip=tiny.clip(), images=images, vocabulary="color: red, blue, green\nshape: circle, star",
              template="a {color} {shape}", extra="", passes=2)
    plain, _ = run(Interrogate, tmp_path, **kw)
    calibrated, _ = run(Interrogate, tmp_path, reference=reference, calibrated="color", **kw)
    assert len(calibrated.caption.splitlines()) == 2 and -1.0 <= calibrated.score <= 1.0
    assert len(plain.caption.splitlines()) == 2


def test_the_node_blends_in_labelled_references_and_refuses_bad_labels(tmp_path):
    rng = np.random.default_rng(0)
    images, reference = rng.random((2, 32, 32, 3), dtype=np.float32), rng.random((3, 32, 32, 3), dtype=np.float32)
    labels = [{"color": "red"}, {"color": "blue"}, {"color": "green"}]
    kw = dict(clip=tiny.clip(), images=images, vocabulary="color: red, blue, green\nshape: circle, star",
              template="a {color} {shape}", extra="mood: calm", passes=2, calibrated="color")
    out, _ = run(Interrogate, tmp_path, reference=reference, reference_labels=json.dumps(labels), cache_weight=30.0,
                 **kw)
    assert len(json.loads(out.choices)) == 2 and -1.0 <= out.score <= 1.0
    for bad, match in (("[{", "not JSON"), ('{"color": "red"}', "JSON list"), (json.dumps(labels[:2]),
                                                                                 "2 reference labels for 3")):
        with pytest.raises(NodeExecutionError, match=match):
            run(Interrogate, tmp_path, reference=reference, reference_labels=bad, cache_weight=30.0, **kw)
    with pytest.raises(NodeExecutionError, match="no reference images"):
        run(Interrogate, tmp_path, reference_labels=json.dumps(labels), cache_weight=30.0, **kw)


def test_calibrating_a_slot_no_list_has_is_refused_with_the_slots_there_are(tmp_path):
    with pytest.raises(NodeExecutionError, match=r"calibrated names \['colour'\].*\(color, shape\)"):
        run(Interrogate, tmp_path, clip=tiny.clip(), images=np.zeros((1, 32, 32, 3), np.float32),
            vocabulary="color: red\nshape: star", template="a {color} {shape}", extra="", passes=1,
            reference=np.zeros((2, 32, 32, 3), np.float32), calibrated="colour")


def test_an_empty_vocabulary_is_refused(tmp_path):
    with pytest.raises(NodeExecutionError, match="vocabulary is empty"):
        run(Interrogate, tmp_path, clip=tiny.clip(), images=np.zeros((1, 32, 32, 3), np.float32), vocabulary="",
            template="a {color}", extra="", passes=1)


def test_the_shapes_vocabulary_names_every_attribute_and_reads_back(tmp_path):
    out, _ = run(ShapesVocabulary, tmp_path)
    vocab = parse_vocabulary(out.vocabulary)
    assert set(vocab) == set(domain.ATTRIBUTES) and len(vocab["position"]) == 9
    scene = domain.sample_scenes(0, 1)[0]
    choices = {"color": scene.color, "shape": scene.shape, "size": scene.size, "background": scene.background,
               "position": domain.POSITION_PHRASES[scene.position][0]}
    assert domain.attributes_of(choices) == scene.attributes()
    assert full_template(out.template, vocab) == out.template
    assert out.reference.shape == (64, 64, 64, 3) and out.reference.dtype == np.float32
    assert 0.0 <= out.reference.min() and out.reference.max() <= 1.0
    labels = json.loads(out.labels)
    assert [domain.attributes_of(c) for c in labels] == [s.attributes() for s in domain.sample_scenes(0, 64, "train")]
    assert all(c[slot] in vocab[slot] for c in labels for slot in vocab)


def test_the_shipped_clip_captions_unseen_combination_renders_right():
    from conftest import ROOT

    from nodes.unclip.api import load_clip

    clip = load_clip(ROOT / "models" / "shapes-unclip")
    scenes = domain.sample_scenes(123, 8, "heldout_combos")
    x = torch.stack([torch.from_numpy(domain.render(s, 64).astype(np.float32) / 255).permute(2, 0, 1)
                     for s in scenes])
    with torch.inference_mode():
        plain = interrogate(lambda t: clip.encode_text(t).embeds, clip.encode_image(x), domain.VOCABULARY_TEMPLATE,
                            domain.vocabulary())
        ref = torch.stack([torch.from_numpy(domain.render(s, 64).astype(np.float32) / 255).permute(2, 0, 1)
                           for s in domain.sample_scenes(0, 64, "train")])
        calibrated = interrogate(lambda t: clip.encode_text(t).embeds, clip.encode_image(x),
                                 domain.VOCABULARY_TEMPLATE, domain.vocabulary(), reference=clip.encode_image(ref))
        cached = interrogate(lambda t: clip.encode_text(t).embeds, clip.encode_image(x), domain.VOCABULARY_TEMPLATE,
                             domain.vocabulary(), reference=clip.encode_image(ref), calibrated=("color", "background"),
                             reference_labels=[domain.choices_of(s.attributes())
                                               for s in domain.sample_scenes(0, 64, "train")], cache_weight=30.0)
    for caps in (plain, calibrated, cached):
        right = [all(domain.attributes_of(c.choices)[a] == s.attributes()[a]
                     for a in ("color", "shape", "position", "background")) for c, s in zip(caps, scenes, strict=True)]
        assert sum(right) >= 7, [c.text for c in caps]
