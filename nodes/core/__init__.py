"""The core pack: constants, math, text, logic, and image load/save/preview/resize/crop/blend/grid.

Everything here works without a model. Images are numpy float32 arrays (B, H, W, 3) in [0, 1];
numpy and PIL are imported inside ``run`` so that loading the pack stays cheap.
"""

import nodegraph

from .constants import Bool, Float, Int, Seed, String, Text
from .image_io import LoadImage, PreviewImage, SaveImage
from .image_ops import (
    ImageBatch,
    ImageBlend,
    ImageCrop,
    ImageGrid,
    ImageResize,
    ImageSelect,
    ImageSharpen,
    SolidColor,
)
from .logic import Compare, ShowValue, Switch
from .math_ops import Math
from .text import Concat, FormatText, Replace

PACK = nodegraph.Pack(
    name="core",
    version="1.0.0",
    description="Constants, math, text, logic and image utilities that need no model.",
    nodes=[
        Int, Float, String, Text, Bool, Seed,
        Math, Compare, Switch, ShowValue,
        Concat, FormatText, Replace,
        LoadImage, SaveImage, PreviewImage,
        ImageResize, ImageSharpen, ImageCrop, ImageBlend, ImageGrid, ImageBatch, ImageSelect, SolidColor,
    ],
)
