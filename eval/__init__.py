"""Evaluation of the shipped Shapes models through the shipped workflows, outside the runtime packs.

- `validation_prompts`: the validation caption generator (its own templates, word orders and
  synonyms, short prompts as people type them, its own seeds). Used only to report, never to train
  or tune.
- `tuning_prompts`: the tuning set (training-style captions on another seed plus tuning phrasings);
  what choices are made on.
- `judge`: per-image verdicts from the pixel analyser (attributes, a clean scene, distinct backgrounds).
- `text2image`: runs `workflows/text2image.json` and `workflows/variation.json` through the engine on
  both sets and prints them side by side (`python -m eval.text2image`).
"""
