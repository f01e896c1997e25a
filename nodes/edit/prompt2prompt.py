"""Prompt-to-Prompt: edit a decoded image by editing its prompt, keeping its layout (word swap,
refinement, attention re-weighting), by injecting the source run's attention maps into the edited run."""

from __future__ import annotations

from typing import Literal

import nodegraph
from nodegraph import IMAGE, Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CLIP, DECODER, EMBEDDING
from .common import batch_size, check_embedding, expand_rows

Mode = Literal["swap", "refine", "reweight"]


def prompt_to_prompt(model, clip, emb_s, emb_t, source: str, target: str, negative: str = "",
                     mode: Mode = "swap", word: str = "", weight: float = 2.0, cross_replace: float = 0.4,
                     self_replace: float = 0.0, image_tokens: bool = True, guidance: float = 1.5,
                     steps: int = 25, seed: int = 0, scheduler: str | None = None, callbacks=(None, None)):
    """Decode `source` from emb_s (B, D), then `target` from emb_t with the source's attention maps
    injected; both with generator(seed). Returns (source images, edited images), (B, 3, S, S) in [0, 1].
    Library errors (unknown word, prompts too long) are ValueErrors saying the fix."""
    import torch

    from ..unclip.api import generator, sample_decoder
    from .attention import AttentionEdit, align, installed, prompt_tokens, word_positions

    cond_s, cond_t = clip.encode_text([source]), clip.encode_text([target])
    uncond = clip.encode_text([negative])
    context = int(cond_t.hidden.shape[1])
    alignment = align(prompt_tokens(clip, source), prompt_tokens(clip, target), context, mode)
    equalizer = None
    if mode == "reweight":
        equalizer = torch.ones(context)
        equalizer[word_positions(clip, alignment.target_tokens, word)] = weight
    ctrl = AttentionEdit(n_extra=int(model.text_proj.clip_extra_context_tokens), cfg=guidance != 1.0,
                         cross_steps=round(cross_replace * steps), self_steps=round(self_replace * steps),
                         alignment=alignment, equalizer=equalizer, image_tokens=image_tokens)

    def hook(i, *_):
        return ctrl.set_step(i)

    common = dict(guidance=guidance, steps=steps, scheduler=scheduler, extra_unet_kwargs=hook)
    with installed(model.unet, ctrl):
        ctrl.mode = "record"
        src = sample_decoder(model, emb_s, cond_s, uncond, generator=generator(seed), callback=callbacks[0],
                             **common)
        ctrl.mode = "inject"
        edit = sample_decoder(model, emb_t, cond_t, uncond, generator=generator(seed), callback=callbacks[1],
                              **common)
    return src, edit


class PromptToPrompt(Node):
    """Edit an image by editing its prompt while keeping its layout (Prompt-to-Prompt).

    The source prompt is decoded once while the decoder's attention maps over the prompt tokens are
    recorded; the target prompt is then decoded with the same seed while those maps (aligned token by
    token with the CLIP tokenizer) replace its own for the first `cross_replace` fraction of steps,
    so a swapped word ("red" → "blue") takes the place the old word had. `swap` replaces a word,
    `refine` adds words (new words keep their own maps), `reweight` scales one word's attention.
    Give `target_embedding` (e.g. the prior on the target prompt, same seed) when the image
    embedding should carry the edit too; otherwise the source embedding is used for both runs.
    """

    name = "prompt_to_prompt"
    title = "Prompt-to-Prompt Edit"
    category = "edit"

    class Inputs(nodegraph.Inputs):
        decoder: DECODER = Port(description="A loaded decoder with cross-attention to the prompt tokens.")
        clip: CLIP = Port(description="The CLIP of the decoder's bundle: encodes both prompts and aligns their "
                          "tokens with its tokenizer.")
        image_embedding: EMBEDDING = Port(description="CLIP image embeddings of the source image, (B, D) "
                                          "(e.g. the prior on the source prompt).")
        target_embedding: EMBEDDING = Port(None, description="Optional image embeddings for the edited run "
                                           "(e.g. the prior on the target prompt with the same seed); "
                                           "default: the source embeddings.")
        source: str = Port("a red circle", min_length=1, description="The prompt the source image is decoded with.")
        target: str = Port("a blue circle", min_length=1, description="The edited prompt (swap: one word "
                           "changed; refine: words added; reweight: usually the source prompt).")
        negative: str = Port("", description="Negative prompt for guidance (empty: unconditional).")
        mode: Literal["swap", "refine", "reweight"] = Port("swap", description="swap: replaced words take the "
                                                           "source word's maps; refine: new words keep their own; "
                                                           "reweight: scale the maps of `word` by `weight`.")
        word: str = Port("", description="reweight: the word of the target prompt whose attention is scaled.")
        weight: float = Port(2.0, ge=-5.0, le=10.0, step=0.1, description="reweight: the scale of `word`'s "
                             "attention (> 1 stronger, < 1 weaker, 0 removes it).")
        cross_replace: float = Port(0.4, ge=0.0, le=1.0, step=0.05, display="slider",
                                    description="Fraction of the steps (from the start) in which the source's "
                                    "prompt-token attention maps are injected.")
        self_replace: float = Port(0.0, ge=0.0, le=1.0, step=0.05, display="slider",
                                   description="Fraction of the steps in which the source's spatial "
                                   "(self-attention) maps are injected too: keeps the old outline (colour-only edits: 0.3).")
        image_tokens: bool = Port(True, description="Inject the maps over the 4 image-embedding tokens too "
                                  "(with the prompt-token maps).")
        guidance: float = Port(1.5, ge=0.0, le=30.0, step=0.5, description="Classifier-free guidance scale.")
        steps: int = Port(25, ge=2, le=1000, description="Denoising steps (each run).")
        seed: nodegraph.Seed = Port(0, description="Random seed, the same for both runs.")

    class Outputs(nodegraph.Outputs):
        source_images: IMAGE = Port(description="The source prompt's images, (B, S, S, 3).")
        edited_images: IMAGE = Port(description="The edited images, same noise and layout, (B, S, S, 3).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        from ..unclip.api import library_errors, progress

        model = inputs.decoder.model
        clip = inputs.clip.model
        emb_s = check_embedding(inputs.image_embedding, model, "image_embedding")
        emb_t = emb_s if inputs.target_embedding is None else \
            check_embedding(inputs.target_embedding, model, "target_embedding")
        batch = batch_size({"image_embedding": emb_s.shape[0], "target_embedding": emb_t.shape[0]})
        emb_s, emb_t = expand_rows(emb_s, batch), expand_rows(emb_t, batch)
        source, target = inputs.source.strip(), inputs.target.strip()
        if not source or not target:
            raise NodeExecutionError("the source and target prompts must not be empty; describe the image and "
                                     "its edit, e.g. 'a red circle' → 'a blue circle'")
        if inputs.mode == "reweight" and not inputs.word.strip():
            raise NodeExecutionError("reweight mode needs `word`: a word of the target prompt to re-weight")
        steps = inputs.steps
        with torch.inference_mode(), library_errors():
            src, edit = prompt_to_prompt(
                model, clip, emb_s, emb_t, source, target, negative=inputs.negative, mode=inputs.mode,
                word=inputs.word, weight=inputs.weight, cross_replace=inputs.cross_replace,
                self_replace=inputs.self_replace, image_tokens=inputs.image_tokens, guidance=inputs.guidance,
                steps=steps, seed=inputs.seed,
                callbacks=(progress(ctx, 0, 2 * steps), progress(ctx, steps, 2 * steps)))
        return self.Outputs(source_images=nodegraph.from_tensor(src), edited_images=nodegraph.from_tensor(edit))
