"""Link types of the Kandinsky pack.

The prior side flows on the unclip pack's types (a Kandinsky prior is an `unclip.PRIOR`, its CLIP an
`unclip.CLIP`, its samples `unclip.EMBEDDING`s), so the CLIP-space nodes compose with it. The
decoders differ: they denoise MoVQ *latents* from image embeddings alone (no text), so they are not
`unclip.DECODER`s (pixel decoders), and each folder variant is its own type.
"""

from __future__ import annotations

import nodegraph


def _tiny(what: str):
    def build():
        from .models import tiny  # tiny random folders, for tests

        return tiny.handle(what)

    return build


DECODER = nodegraph.link_type(
    "kandinsky.DECODER", "A loaded Kandinsky 2.2 latent decoder (UNet on MoVQ latents + MoVQ image decoder), "
    "for Kandinsky Decoder and Kandinsky Image to Image; not an unclip.DECODER (a pixel decoder).",
    _tiny("text2image"))
INPAINT_DECODER = nodegraph.link_type(
    "kandinsky.INPAINT_DECODER", "A loaded Kandinsky 2.2 inpainting decoder (kandinsky-2-2-decoder-inpaint), "
    "for Kandinsky Inpaint.", _tiny("inpaint"))
CONTROLNET_DECODER = nodegraph.link_type(
    "kandinsky.CONTROLNET_DECODER", "A loaded Kandinsky 2.2 ControlNet decoder (kandinsky-2-2-controlnet-depth), "
    "for Kandinsky ControlNet.", _tiny("controlnet"))
