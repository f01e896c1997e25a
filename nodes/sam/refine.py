"""Edge-aware refinement of SAM's masks: a guided filter of the mask probability, the image as guide.

SAM's mask decoder predicts at a quarter of its input size (64 × 64 for sam-shapes, 256 × 256 for
ViT-B/L/H) and its masks are those logits upsampled bilinearly, so outlines come out rounded:
corners cut, thin parts lost. The guided filter (He, Sun & Tang, "Guided Image Filtering", 2010;
its colour-guide form) fits, in every window, the mask as a linear function of the image's colours,
so the mask's edge moves onto the image's nearest edge within the window and stays put where the
image is flat. The window is a few low-resolution mask pixels wide (`radius`), the size of the error
it corrects.
"""

from __future__ import annotations

from typing import Any

RADIUS = 4.0  # window half-width in low-resolution mask pixels
EPS = 1e-3  # regularisation of the colour fit: edges of less contrast than about sqrt(EPS) are smoothed over


def _box(x: Any, r: int) -> Any:
    """Mean over (2r + 1)² windows of x (B, C, H, W), edges replicated."""
    import torch.nn.functional as F

    return F.avg_pool2d(F.pad(x, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)


def guided_filter(guide: Any, src: Any, radius: int, eps: float) -> Any:
    """The colour guided filter of src (B, 1, H, W) guided by guide (B, 3, H, W) in [0, 1]: (B, 1, H, W)."""
    import torch

    mean_i, mean_p = _box(guide, radius), _box(src, radius)
    cov_ip = _box(guide * src, radius) - mean_i * mean_p  # (B, 3, H, W)
    b, _, h, w = guide.shape
    var = torch.empty(b, h, w, 3, 3, dtype=guide.dtype)
    for i in range(3):
        for j in range(i, 3):
            v = (_box(guide[:, i:i + 1] * guide[:, j:j + 1], radius) - mean_i[:, i:i + 1] * mean_i[:, j:j + 1])[:, 0]
            var[..., i, j] = var[..., j, i] = v
    var = var + eps * torch.eye(3, dtype=guide.dtype)
    a = torch.linalg.solve(var, cov_ip.permute(0, 2, 3, 1)[..., None])[..., 0].permute(0, 3, 1, 2)  # (B, 3, H, W)
    bias = mean_p - (a * mean_i).sum(1, keepdim=True)
    return (_box(a, radius) * guide).sum(1, keepdim=True) + _box(bias, radius)


def refine_masks(logits: Any, image: Any, img_size: int, radius: float = RADIUS, eps: float = EPS) -> Any:
    """Masks (N, H, W) bool from SAM's upsampled mask logits (N, H, W) of one image (H, W, 3) in [0, 1].

    `img_size` is the model's input size: one low-resolution mask pixel spans 4·max(H, W)/img_size
    image pixels, and the window is `radius` of them.
    """
    import numpy as np
    import torch

    h, w = image.shape[:2]
    r = max(1, round(radius * 4 * max(h, w) / img_size))
    guide = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    probs = torch.sigmoid(torch.from_numpy(np.asarray(logits, dtype=np.float32)))[:, None]  # (N, 1, H, W)
    out = guided_filter(guide.expand(len(probs), -1, -1, -1), probs, r, eps)
    return out[:, 0].numpy() > 0.5


def predict(predictor: Any, image: Any | None, refine: bool, **prompts: Any) -> tuple[Any, Any]:
    """`SamPredictor.predict(**prompts)` → (masks (N, H, W) bool, predicted IoUs (N,)); with `refine` and the image
    (H, W, 3) in [0, 1], the masks are the guided-filter refinement of its logits."""
    if not refine or image is None:
        masks, scores, _ = predictor.predict(**prompts)
        return masks, scores
    logits, scores, _ = predictor.predict(**prompts, return_logits=True)
    return refine_masks(logits, image, predictor.model.image_encoder.img_size), scores
