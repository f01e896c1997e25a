"""The personalisation pack: bend the unCLIP models to a user's images and words.

DreamBooth (`dreambooth.py`: a LoRA that binds an identifier word to a subject, with prior
preservation) and Imagic (`imagic.py`: optimise an embedding to reconstruct one image, fine-tune
the decoder on it, interpolate towards the target text's embedding nearest the image). `training.py` holds the LoRA fine-tuning
loop both use; `subject.py` the Shapes-domain subject rows. Torch and peft load when a node runs.
"""

import nodegraph

from .dreambooth import DreamBooth
from .imagic import ImagicEdit, ImagicEmbed, ImagicFinetune, ImagicInterpolate, ImagicTarget

PACK = nodegraph.Pack(
    name="personalise",
    version="1.0.0",
    description="DreamBooth (subject LoRA from a few images) and Imagic (text-guided edit of one image) "
    "on the unCLIP models.",
    nodes=[DreamBooth, ImagicTarget, ImagicEmbed, ImagicFinetune, ImagicInterpolate, ImagicEdit],
)
