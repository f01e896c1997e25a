"""The ControlNet pack: steer the unCLIP decoder with a control image (an object silhouette).

`Load ControlNet` loads a ControlNet (diffusers `save_pretrained` layout) trained on our decoder;
`Control Image` turns any image into a silhouette (or edge) control image with the pixel analyser;
`Apply ControlNet` attaches ControlNet + control image + strength to a decoder handle. The
standard `unclip.decoder` node then samples the controlled decoder — the sampler stays the same.
Several Apply nodes stack; strength 0 returns the decoder unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

import nodegraph
from nodegraph import IMAGE, MASK, ModelHandle, Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import DECODER

DEFAULT = "controlnet-shapes"
KIND = "controlnet"
MODELS = nodegraph.ModelKind(KIND, folder=KIND, markers=("diffusion_pytorch_model.safetensors",))


def _example_controlnet():
    from .tiny import tiny_controlnet  # a seeded ControlNet for the tiny test decoder

    return tiny_controlnet()


CONTROL_NET = nodegraph.link_type("controlnet.CONTROL_NET", "A loaded ControlNet for the unCLIP decoder.",
                                  _example_controlnet)


class LoadControlNet(Node):
    """Load a ControlNet made for the unCLIP decoder (diffusers save_pretrained folder, safetensors)."""

    name = "load_controlnet"
    search_aliases = ("controlnet loader", "model loader")
    title = "Load ControlNet"
    category = "unclip/loaders"
    volatile = True  # reads files; the fingerprint notices changes

    class Inputs(nodegraph.Inputs):
        controlnet: nodegraph.ModelName(MODELS) = Port(DEFAULT, description="ControlNet name in the model folders (a folder with "
                               "config.json and diffusion_pytorch_model.safetensors), or a local path.")

    class Outputs(nodegraph.Outputs):
        controlnet: CONTROL_NET = Port(description="The ControlNet.")

    def fingerprint(self, inputs: dict[str, Any], ctx: nodegraph.FingerprintContext) -> str | None:
        try:
            return nodegraph.file_signature(ctx.resolve_model(inputs.get("controlnet", DEFAULT), KIND))
        except (nodegraph.NodegraphError, OSError):
            return None

    def check(self, inputs: dict[str, Any], ctx: nodegraph.CheckContext) -> list[tuple[str | None, str]]:
        return ctx.missing_model("controlnet", inputs.get("controlnet"), KIND)

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .model import load_controlnet

        path = ctx.models.resolve(inputs.controlnet, KIND)
        try:
            key = f"controlnet:{path.resolve()}:{nodegraph.file_signature(path)}"
            model = ctx.models.load(key, lambda: load_controlnet(path))
        except (ValueError, FileNotFoundError) as exc:
            raise NodeExecutionError(str(exc)) from None
        return self.Outputs(controlnet=ModelHandle(model, inputs.controlnet, "controlnet.controlnet"))


class ControlImage(Node):
    """Make a control image from any image: the object's silhouette (or its outline) in white on black.

    The object is found by the pixel analyser (the region that differs from the border's background
    colour, largest connected part). The ControlNet was trained on silhouettes at the decoder's size.
    """

    name = "control_image"
    search_aliases = ("silhouette", "preprocessor", "control map")
    title = "Control Image (Silhouette)"
    category = "controlnet"

    class Inputs(nodegraph.Inputs):
        images: IMAGE = Port(description="Images whose object gives the silhouette.")
        mode: Literal["silhouette", "edges"] = Port("silhouette", description="Filled silhouette (what the "
                                                    "shipped ControlNet was trained on), or its one-pixel outline.")
        size: int = Port(32, ge=8, le=1024, description="Side of the control image; the decoder's resolution "
                         "(32 for the shipped one).")

    class Outputs(nodegraph.Outputs):
        control: IMAGE = Port(description="Control images, white object on black, (B, size, size, 3).",
                              shape=(None, "size", "size", 3))
        mask: MASK = Port(description="The same silhouettes (or outlines) as masks, (B, size, size).",
                          shape=(None, "size", "size"))

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from .preprocess import control_masks

        images = nodegraph.as_image_batch(inputs.images)
        masks, empty = control_masks(images, inputs.size, inputs.mode)
        if empty:
            note = f"no object found in image(s) {', '.join(str(i) for i in empty)}: their control image is empty"
            ctx.log.warning(note)
            ctx.show(text=[note])
        import numpy as np

        control = np.repeat(masks[..., None], 3, axis=-1)
        return self.Outputs(control=control, mask=masks)


class ApplyControlNet(Node):
    """Attach a ControlNet and its control image to a decoder; sample it with the usual Decoder node.

    Strength scales the ControlNet's residuals (0 = no effect: the decoder is returned unchanged);
    start / end limit it to a part of the denoising. Chain several to combine ControlNets.
    """

    name = "apply"
    search_aliases = ("controlnet apply", "control")
    title = "Apply ControlNet"
    category = "controlnet"

    class Inputs(nodegraph.Inputs):
        decoder: DECODER = Port(description="The decoder to control (a LoRA-patched one works too).")
        controlnet: CONTROL_NET = Port(description="A ControlNet made for this decoder.")
        image: IMAGE = Port(description="Control image(s): one for all generated images, or one per image "
                            "(resized to the decoder's resolution).")
        strength: float = Port(1.0, ge=0.0, le=10.0, step=0.05, description="Scale of the ControlNet's "
                               "residuals; 0 leaves the decoder unchanged.")
        start: float = Port(0.0, ge=0.0, le=1.0, step=0.05, description="Fraction of the denoising at which the "
                            "control starts.")
        end: float = Port(1.0, ge=0.0, le=1.0, step=0.05, description="Fraction of the denoising at which the "
                          "control ends.")

    class Outputs(nodegraph.Outputs):
        decoder: DECODER = Port(description="The controlled decoder, for the Decoder node.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import dataclasses

        from .model import Control, ControlledUNet, check_compatible

        decoder: ModelHandle = inputs.decoder
        if inputs.start > inputs.end:
            raise NodeExecutionError(f"start ({inputs.start}) is after end ({inputs.end}); set start ≤ end")
        if inputs.strength == 0:
            return self.Outputs(decoder=decoder)
        model = decoder.model
        unet = model.unet
        cn = inputs.controlnet.model
        try:
            check_compatible(cn, unet.base if isinstance(unet, ControlledUNet) else unet)
        except ValueError as exc:
            raise NodeExecutionError(str(exc)) from None
        image = nodegraph.to_tensor(inputs.image)
        n_train = int(getattr(model.scheduler, "config", {}).get("num_train_timesteps", 1000))
        control = Control(cn, image, float(inputs.strength), float(inputs.start), float(inputs.end), n_train)
        new_unet = unet.with_control(control) if isinstance(unet, ControlledUNet) else ControlledUNet(unet, (control,))
        controls = [*decoder.info.get("controls", []), [inputs.controlnet.name, inputs.strength]]
        return self.Outputs(decoder=ModelHandle(dataclasses.replace(model, unet=new_unet),
                                                f"{decoder.name}+control", decoder.kind,
                                                {**decoder.info, "controls": controls}))


PACK = nodegraph.Pack(
    name="controlnet",
    version="1.0.0",
    description="ControlNet for the unCLIP decoder: load, make silhouette control images, apply with a "
    "strength; the standard Decoder node samples the controlled decoder.",
    nodes=[LoadControlNet, ControlImage, ApplyControlNet],
    aliases={"controlnet.loader": "load_controlnet"},
)
