"""Image utilities: resize, sharpen, crop, blend, grid, batch, select, solid colour."""

import math
from typing import Literal

import nodegraph
from nodegraph import IMAGE, Node, NodeContext, NodeExecutionError, Port

_HEX = r"^#[0-9a-fA-F]{6}$"


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    return tuple(int(hex_colour[i:i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]


def _same_size(a, b):
    """Inputs `a` and `b` as IMAGE batches of one image size, or the error that says how to fix it."""
    a, b = nodegraph.as_image_batch(a, "a"), nodegraph.as_image_batch(b, "b")
    if a.shape[1:] != b.shape[1:]:
        raise NodeExecutionError(f"a is {a.shape[2]}x{a.shape[1]} but b is {b.shape[2]}x{b.shape[1]}; "
                                 "resize one with core.image_resize first")
    return a, b


class ImageResize(Node):
    """Resize images to a width and/or height (0 keeps the aspect ratio), or by a scale factor."""

    name = "image_resize"
    search_aliases = ("scale", "image scale", "upscale image")
    category = "image"

    class Inputs(nodegraph.Inputs):
        images: IMAGE = Port(description="Images to resize.")
        width: int = Port(0, ge=0, le=8192, description="Target width (0: from height, keeping aspect).")
        height: int = Port(0, ge=0, le=8192, description="Target height (0: from width, keeping aspect).")
        scale: float = Port(2.0, gt=0.0, le=16.0, step=0.25,
                            description="Scale factor, used when width and height are both 0.")
        method: Literal["nearest", "bilinear", "bicubic", "lanczos"] = Port("bicubic",
                                                                            description="Resampling filter.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="Resized images.", shape=(None, "height", "width", 3))

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        from PIL import Image

        images = nodegraph.as_image_batch(inputs.images)
        h, w = images.shape[1:3]
        if inputs.width == 0 and inputs.height == 0:
            tw, th = max(1, round(w * inputs.scale)), max(1, round(h * inputs.scale))
        else:
            tw = inputs.width or max(1, round(w * inputs.height / h))
            th = inputs.height or max(1, round(h * inputs.width / w))
        if tw * th > 8192 * 8192:
            raise NodeExecutionError(f"{tw}x{th} is too large; the limit is 8192x8192")
        resample = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                    "lanczos": Image.LANCZOS}[inputs.method]
        frames = [img.resize((tw, th), resample) for img in nodegraph.to_pil(images)]
        return self.Outputs(images=nodegraph.from_pil(frames))


class ImageSharpen(Node):
    """Sharpen images with an unsharp mask: the image plus `amount` times its difference from a Gaussian blur."""

    name = "image_sharpen"
    search_aliases = ("unsharp mask", "sharpen", "image sharpen")
    category = "image"

    class Inputs(nodegraph.Inputs):
        images: IMAGE = Port(description="Images to sharpen.")
        sigma: float = Port(1.0, ge=0.1, le=10.0, step=0.1, description="Gaussian blur's standard deviation, "
                            "in pixels (the size of the detail that is sharpened).")
        amount: float = Port(1.0, ge=0.0, le=5.0, step=0.1, description="Strength (0: unchanged).")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="Sharpened images, clipped to [0, 1].")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np

        images = nodegraph.as_image_batch(inputs.images).astype(np.float32)
        radius = max(1, math.ceil(3 * inputs.sigma))
        x = np.arange(-radius, radius + 1, dtype=np.float32)
        k = np.exp(-0.5 * (x / inputs.sigma) ** 2)
        k /= k.sum()
        pad = np.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
        h, w = images.shape[1:3]
        rows = sum(k[i] * pad[:, i:i + h, :, :] for i in range(len(k)))  # blur along y
        blur = sum(k[i] * rows[:, :, i:i + w, :] for i in range(len(k)))  # then along x
        out = np.clip(images + inputs.amount * (images - blur), 0.0, 1.0)
        return self.Outputs(images=out.astype(np.float32))


class ImageCrop(Node):
    """Crop a rectangle out of images (clipped to the image where it reaches past an edge)."""

    name = "image_crop"
    search_aliases = ("cut",)
    category = "image"

    class Inputs(nodegraph.Inputs):
        images: IMAGE = Port(description="Images to crop.")
        x: int = Port(0, ge=0, description="Left edge.")
        y: int = Port(0, ge=0, description="Top edge.")
        width: int = Port(64, ge=1, description="Width of the crop.")
        height: int = Port(64, ge=1, description="Height of the crop.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="Cropped images.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        images = nodegraph.as_image_batch(inputs.images)
        h, w = images.shape[1:3]
        if inputs.x >= w or inputs.y >= h:
            raise NodeExecutionError(f"the crop corner ({inputs.x}, {inputs.y}) is outside the {w}x{h} image; "
                                     "move it inside")
        # A rectangle reaching past the edge is clipped to the image, as in other editors.
        crop = images[:, inputs.y:inputs.y + inputs.height, inputs.x:inputs.x + inputs.width]
        return self.Outputs(images=crop.copy())


class ImageBlend(Node):
    """Blend two images: normal (mix), multiply, screen, difference or add."""

    name = "image_blend"
    search_aliases = ("mix", "composite", "overlay")
    category = "image"

    class Inputs(nodegraph.Inputs):
        a: IMAGE = Port(description="Base images.")
        b: IMAGE = Port(description="Images blended over a (same size; a batch of 1 is broadcast).")
        factor: float = Port(0.5, ge=0.0, le=1.0, step=0.01, display="slider",
                             description="0 keeps a, 1 gives the blend result.")
        mode: Literal["normal", "multiply", "screen", "difference", "add"] = Port("normal",
                                                                                  description="Blend mode.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="Blended images.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np

        a, b = _same_size(inputs.a, inputs.b)
        if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
            raise NodeExecutionError(f"batch sizes {a.shape[0]} and {b.shape[0]} differ; use batches of equal "
                                     "size or a single image")
        top = {"normal": lambda: b, "multiply": lambda: a * b, "screen": lambda: 1 - (1 - a) * (1 - b),
               "difference": lambda: np.abs(a - b), "add": lambda: np.minimum(a + b, 1.0)}[inputs.mode]()
        out = a * (1.0 - inputs.factor) + top * inputs.factor
        return self.Outputs(images=np.clip(out, 0.0, 1.0).astype(np.float32))


class ImageGrid(Node):
    """Arrange a batch of images in a grid (one image)."""

    name = "image_grid"
    search_aliases = ("contact sheet", "tile")
    category = "image"

    class Inputs(nodegraph.Inputs):
        images: IMAGE = Port(description="Images of one size.")
        columns: int = Port(0, ge=0, le=64, description="Columns (0: as square as possible).")
        padding: int = Port(2, ge=0, le=64, description="Pixels between cells.")
        background: str = Port("#ffffff", pattern=_HEX, description="Colour between cells, #rrggbb.")

    class Outputs(nodegraph.Outputs):
        image: IMAGE = Port(description="The grid, (1, H, W, 3).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np

        images = nodegraph.as_image_batch(inputs.images)
        n, h, w = images.shape[:3]
        cols = inputs.columns or math.ceil(math.sqrt(n))
        cols = min(cols, n)
        rows = math.ceil(n / cols)
        pad = inputs.padding
        grid = np.empty((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, 3), dtype=np.float32)
        grid[:] = _rgb(inputs.background)
        for i in range(n):
            r, c = divmod(i, cols)
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            grid[y:y + h, x:x + w] = images[i]
        return self.Outputs(image=grid[None])


class ImageBatch(Node):
    """Join two batches of images of the same size into one batch."""

    name = "image_batch"
    search_aliases = ("concat images", "append images")
    category = "image"

    class Inputs(nodegraph.Inputs):
        a: IMAGE = Port(description="First images.")
        b: IMAGE = Port(description="Images appended after a (same size).")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="a followed by b.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np

        a, b = _same_size(inputs.a, inputs.b)
        return self.Outputs(images=np.concatenate([a, b]))


class ImageSelect(Node):
    """Pick one image out of a batch."""

    name = "image_select"
    search_aliases = ("pick image", "index")
    category = "image"

    class Inputs(nodegraph.Inputs):
        images: IMAGE = Port(description="A batch of images.")
        index: int = Port(0, description="Which one (negative counts from the end).")

    class Outputs(nodegraph.Outputs):
        image: IMAGE = Port(description="The selected image, (1, H, W, 3).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        images = nodegraph.as_image_batch(inputs.images)
        n = images.shape[0]
        if not -n <= inputs.index < n:
            raise NodeExecutionError(f"index {inputs.index} is out of range for a batch of {n}")
        return self.Outputs(image=images[inputs.index][None].copy())


class SolidColor(Node):
    """An image of one colour."""

    name = "solid_color"
    search_aliases = ("empty image", "blank", "fill colour", "fill color")
    category = "image"

    class Inputs(nodegraph.Inputs):
        width: int = Port(64, ge=1, le=8192, description="Width in pixels.")
        height: int = Port(64, ge=1, le=8192, description="Height in pixels.")
        color: str = Port("#808080", pattern=_HEX, description="Colour, #rrggbb.")
        batch: int = Port(1, ge=1, le=256, description="Number of images.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="The images, (batch, height, width, 3).",
                             shape=("batch", "height", "width", 3))

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np

        arr = np.empty((inputs.batch, inputs.height, inputs.width, 3), dtype=np.float32)
        arr[:] = _rgb(inputs.color)
        return self.Outputs(images=arr)
