"""The Kandinsky 2.2 model library: folder checks, loaders, the decoder's sampling loops.

No dependency on the engine beyond `nodegraph.to_pil` (8-bit images for the CLIP image processor);
the prior side reuses the unclip pack's model library (`PriorModel`, `sample_prior`,
`TransformersClipEncoder`).
"""

from .decoder import KandinskyDecoder, decode, encode, img2img, inpaint, load_decoder, text2image
from .layout import LayoutError, check_decoder_folder, check_prior_folder
from .prior import KandinskyClip, load_clip, load_prior, sample_with_negative, zero_embed
from .weights import resolve_dtype

__all__ = [
    "KandinskyClip", "KandinskyDecoder", "LayoutError", "check_decoder_folder", "check_prior_folder", "decode",
    "encode", "img2img", "inpaint", "load_clip", "load_decoder", "load_prior", "resolve_dtype",
    "sample_with_negative", "text2image", "zero_embed",
]
