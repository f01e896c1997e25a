"""The CLIP Interrogator node: images → captions from a template and word lists, ranked by CLIP."""

from __future__ import annotations

import json

import nodegraph
from nodegraph import IMAGE, Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CLIP


class Interrogate(Node):
    """Caption images by ranking candidate phrases with CLIP: each slot of the template gets the phrase
    whose caption is nearest the image in CLIP space (coordinate ascent over the slots).

    Any CLIP with an image tower works; the vocabulary says what can be named ('slot: phrase, ...' per
    line). Lists the template does not name are appended to the caption, so extra word lists need no
    template change. Given reference images of the domain, both embeddings are centred on their
    domain means before ranking (calibration: CLIP's modality gap and what all the domain's images
    share are taken out). The Shapes pack's Shapes Vocabulary node gives the domain's lists and
    reference renders.
    """

    name = "clip_interrogate"
    search_aliases = ("interrogate", "caption", "image to text", "describe image", "clip interrogator")
    title = "CLIP Interrogator"
    category = "interrogate"

    class Inputs(nodegraph.Inputs):
        clip: CLIP = Port(description="A loaded CLIP model with an image encoder.")
        images: IMAGE = Port(description="Images to caption, (B, H, W, 3).")
        vocabulary: nodegraph.Text = Port("color: red, green, blue\nshape: circle, square, triangle",
                                          description="Word lists, one per line: 'slot: phrase, phrase, ...'.")
        template: str = Port("a {color} {shape}", description="The caption, with {slot} where a list's phrase "
                             "goes; lists it does not name are appended.")
        extra: nodegraph.Text = Port("", description="More word lists in the vocabulary's format (user words), "
                                     "appended to the caption.")
        passes: int = Port(4, ge=0, le=20, description="Rounds of re-choosing each slot given the others (0: "
                           "every slot chosen on its own).")
        reference: IMAGE | None = Port(None, description="Images of the domain to calibrate against, (M, H, W, 3) "
                                       "(e.g. 64 typical images); unconnected: plain cosine ranking.")
        calibrated: str = Port("", description="Comma-separated slots ranked with the calibration (empty: all); "
                               "the others by plain cosine. Used only with reference images.")

        reference_labels: str = Port("", description="What each reference image shows: a JSON list with one "
                                     "{slot: phrase} object per reference image (e.g. the Shapes Vocabulary's "
                                     "`labels`); empty: none. Used with cache_weight > 0.")
        cache_weight: float = Port(0.0, ge=0.0, le=1000.0, description="Weight of the labelled references' cache "
                                   "(Tip-Adapter) beside the zero-shot logits, 100 × cosine; 0: off, plain "
                                   "interrogation. Slots no reference is labelled for stay zero-shot.")
        cache_sharpness: float = Port(5.0, ge=0.0, le=100.0, description="How fast a reference's weight falls "
                                      "with its distance from the image: exp(-sharpness × (1 - cosine)).")

    class Outputs(nodegraph.Outputs):
        caption: str = Port(description="One caption per image, one per line.")
        choices: str = Port(description="The chosen phrase per slot, a JSON list (one object per image).")
        score: float = Port(description="Mean cosine similarity of the images with their captions.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from ..unclip.api import library_errors
        from .rank import interrogate, parse_vocabulary

        try:
            vocab = parse_vocabulary(inputs.vocabulary)
            for slot, phrases in parse_vocabulary(inputs.extra).items():
                vocab[slot] = vocab.get(slot, []) + [p for p in phrases if p not in vocab.get(slot, [])]
        except ValueError as exc:
            raise NodeExecutionError(str(exc)) from None
        calibrated = [w.strip() for w in inputs.calibrated.split(",") if w.strip()] or None
        unknown = set(calibrated or ()) - set(vocab)
        if unknown:
            raise NodeExecutionError(f"calibrated names {sorted(unknown)}, which no word list has; use slots of the "
                                     f"vocabulary ({', '.join(vocab)}) or leave it empty for all")
        if not vocab:
            raise NodeExecutionError("the vocabulary is empty; give at least one 'slot: phrase, ...' line")
        labels = None
        if inputs.cache_weight > 0 and inputs.reference_labels.strip():
            if inputs.reference is None:
                raise NodeExecutionError("reference_labels are given but no reference images; connect the images "
                                         "they label to `reference` (e.g. the Shapes Vocabulary's `reference`)")
            labels = _labels(inputs.reference_labels)
        clip = inputs.clip.model
        with torch.inference_mode(), library_errors():
            emb = clip.encode_image(nodegraph.to_tensor(inputs.images))
            ref = None if inputs.reference is None else clip.encode_image(nodegraph.to_tensor(inputs.reference))
            caps = interrogate(lambda texts: clip.encode_text(texts).embeds, emb, inputs.template, vocab,
                               passes=inputs.passes, reference=ref, calibrated=calibrated,
                               reference_labels=labels, cache_weight=inputs.cache_weight,
                               cache_sharpness=inputs.cache_sharpness)
        return self.Outputs(caption="\n".join(c.text for c in caps), choices=json.dumps([c.choices for c in caps]),
                            score=sum(c.score for c in caps) / len(caps))


def _labels(text: str) -> list[dict[str, str]]:
    """reference_labels JSON → one {slot: phrase} dict per reference image, or a clear error."""
    try:
        labels = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NodeExecutionError(f"reference_labels is not JSON ({exc.msg}); give a list of {{slot: phrase}} "
                                 "objects, one per reference image") from None
    if not isinstance(labels, list) or not all(
            isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in d.items())
            for d in labels):
        raise NodeExecutionError("reference_labels must be a JSON list of {slot: phrase} objects (strings), one per "
                                 'reference image, e.g. [{"color": "red", "shape": "circle"}]')
    return labels
