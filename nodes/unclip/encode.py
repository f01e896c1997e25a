"""CLIP encoders: prompts → conditioning for the prior and decoder; images → CLIP image embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nodegraph
from nodegraph import IMAGE, Node, NodeContext, Port

from .convert import library_errors
from .types import CLIP, CONDITIONING, EMBEDDING


@dataclass(frozen=True)
class Conditioning:
    """An encoded prompt and its negative (unconditional) prompt, as the prior and decoder need them."""

    cond: Any  # TextEncoding: embeds (B, D), hidden (B, L, W), mask (B, L)
    uncond: Any  # TextEncoding of the negative prompt, batch 1
    texts: tuple[str, ...]
    negative: str

    @property
    def embeds(self):
        return self.cond.embeds

    def __len__(self) -> int:
        return len(self.texts)


class TextEncode(Node):
    """Encode a prompt with CLIP: the pooled text embedding and the token states.

    One prompt per line makes a batch. The negative prompt (empty by default, as in DALL·E 2) is
    what classifier-free guidance steers away from.
    """

    name = "text_encode"
    title = "CLIP Text Encode"
    category = "unclip"

    class Inputs(nodegraph.Inputs):
        clip: CLIP = Port(description="A loaded CLIP model.")
        text: nodegraph.Text = Port("a red circle", description="The prompt; one prompt per line for a batch.")
        negative: str = Port("", description="Negative prompt for guidance (empty: unconditional).")

    class Outputs(nodegraph.Outputs):
        conditioning: CONDITIONING = Port(description="Prompt encoding for the prior and the decoder.")
        embedding: EMBEDDING = Port(description="CLIP text embeddings, (B, D).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        texts = [line.strip() for line in inputs.text.splitlines() if line.strip()] or [""]
        clip = inputs.clip.model
        with torch.inference_mode():
            cond = clip.encode_text(texts)
            uncond = clip.encode_text([inputs.negative])
        cond_obj = Conditioning(cond, uncond, tuple(texts), inputs.negative)
        return self.Outputs(conditioning=cond_obj, embedding=cond.embeds)


class ImageEncode(Node):
    """Encode images with CLIP's image tower: the embedding a decoder turns back into images."""

    name = "image_encode"
    title = "CLIP Image Encode"
    category = "unclip"

    class Inputs(nodegraph.Inputs):
        clip: CLIP = Port(description="A loaded CLIP model with an image encoder.")
        images: IMAGE = Port(description="Images to encode (any size; resized as CLIP expects).")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="CLIP image embeddings, (B, D).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        clip = inputs.clip.model
        with torch.inference_mode(), library_errors():
            emb = clip.encode_image(nodegraph.to_tensor(inputs.images))
        return self.Outputs(embedding=emb)


class CLIPScore(Node):
    """CLIP score of images against a text: 100 × max(cosine similarity, 0), per image and mean."""

    name = "clip_score"
    title = "CLIP Score"
    category = "unclip"

    class Inputs(nodegraph.Inputs):
        clip: CLIP = Port(description="A loaded CLIP model.")
        images: IMAGE = Port(description="Images to score.")
        text: str = Port("a red circle", description="The text to compare with (one for all images).")

    class Outputs(nodegraph.Outputs):
        score: float = Port(description="Mean CLIP score over the images.")
        scores: str = Port(description="Per-image scores, comma-separated.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        clip = inputs.clip.model
        with torch.inference_mode(), library_errors():
            img = clip.encode_image(nodegraph.to_tensor(inputs.images)).float()
            txt = clip.encode_text([inputs.text]).embeds.float()
        cos = torch.nn.functional.cosine_similarity(img, txt.expand_as(img), dim=-1)
        per = (100.0 * cos.clamp_min(0)).tolist()
        return self.Outputs(score=float(sum(per) / len(per)), scores=", ".join(f"{s:.2f}" for s in per))
