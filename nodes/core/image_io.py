"""Loading images from the input folder, saving them to the output folder, previews."""

import hashlib
from typing import Any

import nodegraph
from nodegraph import IMAGE, MASK, Node, NodeContext, NodeExecutionError, Port


class LoadImage(Node):
    """Load an image from the input folder (uploads land there). Transparent pixels become the mask."""

    name = "load_image"
    category = "image"
    volatile = True  # the file can change on disk; the fingerprint notices

    class Inputs(nodegraph.Inputs):
        image: nodegraph.ImageFile = Port(description="File name in the input folder.", examples=["example.png"])

    class Outputs(nodegraph.Outputs):
        image: IMAGE = Port(description="The image, (1, H, W, 3).")
        mask: MASK = Port(description="1 where the image is transparent, (1, H, W); zeros if opaque.")
        width: int = Port(description="Width in pixels.")
        height: int = Port(description="Height in pixels.")

    def fingerprint(self, inputs: dict[str, Any], ctx: nodegraph.FingerprintContext) -> str | None:
        try:
            return hashlib.sha256(ctx.resolve_input(inputs["image"]).read_bytes()).hexdigest()
        except (OSError, nodegraph.UnsafePath):
            return None  # run() reports the problem

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np
        from PIL import Image, ImageOps, UnidentifiedImageError

        path = ctx.resolve_file("input", inputs.image)
        if not path.is_file():
            available = sorted(p.name for p in ctx.input_dir.glob("*") if p.is_file())[:20]
            raise NodeExecutionError(f"image {inputs.image!r} not found in the input folder {ctx.input_dir}; "
                                     f"available: {', '.join(available) or 'none (upload one)'}")
        try:
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img)
                rgba = img.convert("RGBA")
        except (UnidentifiedImageError, OSError) as exc:
            raise NodeExecutionError(f"{inputs.image!r} is not a readable image: {exc}") from None
        arr = np.asarray(rgba, dtype=np.float32) / 255.0
        image = np.ascontiguousarray(arr[None, :, :, :3])
        mask = np.ascontiguousarray(1.0 - arr[None, :, :, 3])
        return self.Outputs(image=image, mask=mask, width=rgba.width, height=rgba.height)


class SaveImage(Node):
    """Save images as PNG files in the output folder, with the workflow embedded in each file."""

    name = "save_image"
    category = "image"
    output_node = True

    class Inputs(nodegraph.Inputs):
        images: IMAGE = Port(description="Images to save, one file each.")
        filename_prefix: str = Port("nodegraph", min_length=1, max_length=200,
                                    description="File name prefix; '/' makes subfolders. Files are "
                                    "numbered prefix_00001.png, never overwritten.")

    class Outputs(nodegraph.Outputs):
        pass

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        nodegraph.save_images(ctx, inputs.images, inputs.filename_prefix)
        return self.Outputs()


class PreviewImage(Node):
    """Show images on the node without keeping them (written to the temporary folder)."""

    name = "preview_image"
    category = "image"
    output_node = True

    class Inputs(nodegraph.Inputs):
        images: IMAGE = Port(description="Images to preview.")

    class Outputs(nodegraph.Outputs):
        pass

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        nodegraph.preview_images(ctx, inputs.images)
        return self.Outputs()
