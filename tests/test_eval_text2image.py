"""The text→image evaluation: its validation prompts are written apart from training, and its judge
reads ground-truth renders as right and clean and a muddy background as not clean."""

from __future__ import annotations

import numpy as np

from eval import _judge as judge
from eval import _tuning_prompts as tuning_prompts
from eval import _validation_prompts as validation_prompts
from eval import text2image
from nodes.shapes import domain


def test_validation_full_prompts_are_no_training_caption():
    """(Short prompts may coincide with a training caption: "green square, yellow background".)"""
    rng = np.random.default_rng(0)
    for p in validation_prompts.full_prompts("heldout_combos", 60):
        scene = p.scene
        # every caption the training writer can give this scene for the attributes the prompt names
        training = {domain.caption(scene, rng, include=tuple(p.named)) for _ in range(200)}
        assert p.text not in training, p.text


def test_the_validation_and_tuning_sets_do_not_share_a_prompt():
    tuning = {p.text for p in tuning_prompts.full_prompts("heldout_pairs", 100)}
    validation = {p.text for p in validation_prompts.full_prompts("heldout_pairs", 100)}
    assert not tuning & validation


def test_held_out_splits_give_scenes_of_their_split():
    for p in validation_prompts.full_prompts("heldout_pairs", 20):
        assert (p.named["color"], p.named["shape"]) in domain.HELDOUT_PAIRS
    for p in validation_prompts.short_prompts(8, heldout_pairs=True):
        assert set(p.named) == {"color", "shape"} and (p.named["color"], p.named["shape"]) in domain.HELDOUT_PAIRS


def test_the_judge_reads_ground_truth_renders_right_and_clean():
    prompts = validation_prompts.full_prompts("heldout_combos", 24)
    verdicts = []
    for i, p in enumerate(prompts):
        s = p.scene
        scene = domain.make_scene(np.random.default_rng(i), s["color"], s["background"], s["shape"], s["size"],
                                  s["position"])
        verdicts.append(judge.judge(domain.render(scene, 64), p.named))
    summary = judge.summarise(verdicts)
    assert summary["clean"] >= 0.95 and summary["all_named"] >= 0.9


def test_a_background_off_the_palette_is_not_clean():
    scene = domain.make_scene(np.random.default_rng(1), "red", "white", "circle", "large", "center")
    img = domain.render(scene, 64).astype(np.int16)
    bg = np.all(img == img[0, 0], axis=-1)
    img[bg] = (120, 100, 60)  # a muddy brown, far from every palette colour
    assert not judge.judge(img.astype(np.uint8), {"color": "red", "shape": "circle"}).clean


def test_distinct_backgrounds_count_per_prompt_when_the_prompt_leaves_it_open():
    rng = np.random.default_rng(2)
    verdicts = []
    for bg in ("white", "black", "blue", "blue"):
        scene = domain.make_scene(rng, "red", bg, "circle", "large", "center")
        verdicts.append(judge.judge(domain.render(scene, 64), {"color": "red", "shape": "circle"}))
    assert judge.summarise(verdicts, group=4)["distinct_backgrounds"] == 3.0


def test_the_report_names_the_missed_validation_targets():
    row = {"n": 4.0, "color": 1.0, "shape": 0.5, "size": 1.0, "position": 1.0, "background": 1.0,
           "all_named": 0.5, "clean": 1.0}
    out = text2image.table({"validation": {"unseen": row}})
    assert "unseen.shape 0.50 < 0.95" in out and "| unseen | validation | 4 |" in out


def test_the_readme_table_quotes_the_validation_rows_against_their_targets():
    rows = {"heldout_pairs": {"n": 16.0, "color": 0.75, "shape": 0.5, "size": 1.0},
            "variations": {"n": 12.0, "color": 1.0, "shape": 0.92}}
    out = text2image.readme_table(rows).splitlines()
    assert out[2] == "| held-out (colour, shape) pairs: colour / shape (16) | 0.75 / 0.50 | ≥ 0.85 each |"
    assert out[3].endswith("| 1.00 / 0.92 | ≥ 0.95 each |") and len(out) == 4


def test_a_target_the_run_did_not_measure_is_left_out_of_the_misses():
    row = {"n": 4.0, "all_named": 1.0, "clean": 1.0}  # one image a prompt: no distinct backgrounds
    assert text2image.table({"validation": {"short": row}}).endswith("validation targets met (of those measured)")


# --- the hard tuning set (eval/_tuning_hard_prompts.py) -------------------------------------------

def _words_of(text: str) -> str:
    import re

    return " " + " ".join(re.findall(r"[a-z-]+", text.lower())) + " "


def _hard_phrases() -> list[str]:
    """The hard tuning writer's own phrases: its templates' fixed runs of three or more words, and its
    position phrases."""
    import re

    from eval import _tuning_hard_prompts as hard

    templates = hard.FULL + tuple(t for kind in hard.SHORT.values() for t in kind)
    runs = [_words_of(f).strip() for t in templates for f in re.split(r"\{[a-z]+\}", t)]
    positions = [_words_of(p).strip() for ps in hard.POSITION_WORDS.values() for p in ps]
    return sorted({r for r in runs if len(r.split()) >= 3} | set(positions))


def _hard_synonyms() -> set[str]:
    from eval import _tuning_hard_prompts as hard

    return {w for table in (hard.COLOR_WORDS, hard.SIZE_WORDS, hard.SHAPE_WORDS) for ws in table.values() for w in ws}


def test_the_hard_tuning_set_is_deterministic_and_plugs_into_the_evaluation():
    from eval import _tuning_hard_prompts as hard

    assert text2image.SETS["tuning_hard"] is hard
    a, b = hard.full_prompts("heldout_pairs", 40), hard.full_prompts("heldout_pairs", 40)
    assert [p.text for p in a] == [p.text for p in b]
    assert [p.text for p in hard.full_prompts("heldout_pairs", 40, seed=hard.SEED + 100)] != [p.text for p in a]
    for p in a:
        assert (p.named["color"], p.named["shape"]) in domain.HELDOUT_PAIRS and p.named == p.scene
    for p in hard.full_prompts("heldout_combos", 40):
        assert domain.split_of(**{k: p.scene[k] for k in ("color", "background", "shape", "size", "position")}) \
            == "heldout_combos"
    short = hard.short_prompts(16)
    assert {tuple(p.named) for p in short} == set(hard.SHORT)
    assert all(set(p.named) == {"color", "shape"} for p in hard.short_prompts(4, heldout_pairs=True))
    assert len(hard.variation_scenes(3)) == 3
    # its seeds are neither the tuning set's nor the validation set's
    assert hard.SEED not in (tuning_prompts.SEED, validation_prompts.SEED)


def test_the_hard_tuning_writer_shares_no_phrase_or_synonym_with_the_validation_and_training_writers():
    """Checked on generated text (the validation generator is only run, not read): no fixed phrase of
    three or more words of the hard writer's templates, none of its position phrases and none of its
    synonyms occurs in the validation prompts or in either training writer's captions."""
    from nodes.shapes import captions

    texts = [p.text for split in ("heldout_combos", "heldout_pairs") for p in validation_prompts.full_prompts(split, 300)]
    texts += [p.text for p in validation_prompts.short_prompts(300)]
    texts += [p.text for p in validation_prompts.short_prompts(40, heldout_pairs=True)]
    rng = np.random.default_rng(0)
    for s in domain.sample_scenes(3, 1500, "any"):
        texts += [domain.caption(s, rng), captions.caption(s.attributes(), rng)]
    corpus = [_words_of(t) for t in texts]
    shared = [p for p in _hard_phrases() + sorted(_hard_synonyms()) if any(f" {p} " in t for t in corpus)]
    assert not shared, f"phrases of the hard tuning writer found in other writers' text: {shared}"


def test_the_hard_tuning_writers_synonyms_are_words_the_text_tower_was_taught():
    """Every synonym is in the lexicon `clip_vocab` trained the token rows of (train/lexicon.json)."""
    from train import lexicon

    taught = {w for words in lexicon.load().values() for syns in words.values() for w in syns}
    assert _hard_synonyms() <= taught, sorted(_hard_synonyms() - taught)
