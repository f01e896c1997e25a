"""Link types of the SAM pack: a loaded model and the image embeddings computed with it.

Their examples (a tiny seeded random ``Sam`` and its embedding of the 8×8 example image) let the
contract test run every node of the pack without weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nodegraph

KIND = "sam.SAM"


def example_sam() -> Any:
    from .model import TINY, tiny_sam

    return nodegraph.ModelHandle(tiny_sam(0), "tiny-random", KIND, {"config": dict(TINY), "type": "tiny"})


@dataclass(frozen=True, eq=False)
class SamEmbedding:
    """SAM image features of an image batch, with what a prompt needs to map back to pixels.

    ``features`` (B, C, h, w) torch float; ``original_size`` (H, W) of the images; ``input_size``
    the size the longest side was resized to before padding (segment-anything's convention);
    ``images`` (B, H, W, 3) float in [0, 1], the guide of the masks' edge refinement (None: not kept).
    """

    sam: Any  # nodegraph.ModelHandle of the Sam that made the features
    features: Any
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    images: Any = None

    def __nodegraph_nbytes__(self) -> int:
        return int(self.features.numel() * self.features.element_size()) + int(getattr(self.images, "nbytes", 0))


def example_embedding() -> Any:
    import numpy as np

    from .encode import encode

    return encode(example_sam(), np.full((1, 8, 8, 3), 0.5, dtype=np.float32))


SAM = nodegraph.link_type(KIND, "A loaded segment-anything model (Sam).", example_sam)
EMBEDDING = nodegraph.link_type("sam.EMBEDDING", "SAM image embeddings of an image batch, with the image size.",
                                example_embedding)
