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
    """Mean over (2r + 1)² windows of x (B, C, H, W), edges replicated; summed-area table, O(1) in r."""
    import torch.nn.functional as F

    k = 2 * r + 1
    padded = F.pad(x.double(), (r + 1, r, r + 1, r), mode="replicate")  # double: no drift in the running sums
    table = padded.cumsum(-1).cumsum(-2)
    out = table[..., k:, k:] - table[..., :-k, k:] - table[..., k:, :-k] + table[..., :-k, :-k]
    return (out / (k * k)).to(x.dtype)


def guided_filter(guide: Any, src: Any, radius: int, eps: float) -> Any:
    """The colour guided filter of src (B, 1, H, W) guided by guide (B, 3, H, W) in [0, 1]: (B, 1, H, W)."""
    mean_i, mean_p = _box(guide, radius), _box(src, radius)
    cov = _box(guide * src, radius) - mean_i * mean_p  # (B, 3, H, W)

    def var(i: int, j: int) -> Any:  # (B, 1, H, W) covariance of guide channels i and j (+ eps on the diagonal)
        v = _box(guide[:, i:i + 1] * guide[:, j:j + 1], radius) - mean_i[:, i:i + 1] * mean_i[:, j:j + 1]
        return v + eps if i == j else v

    # the 3 × 3 solve per pixel in closed form (adjugate of the symmetric matrix): elementwise, no batched LAPACK
    a, b, c, d, e, f = var(0, 0), var(0, 1), var(0, 2), var(1, 1), var(1, 2), var(2, 2)
    adj = ((d * f - e * e, c * e - b * f, b * e - c * d),
           (c * e - b * f, a * f - c * c, b * c - a * e),
           (b * e - c * d, b * c - a * e, a * d - b * b))
    det = a * adj[0][0] + b * adj[0][1] + c * adj[0][2]
    coef = [sum(adj[i][j] * cov[:, j:j + 1] for j in range(3)) / det for i in range(3)]  # 3 × (B, 1, H, W)
    bias = mean_p - sum(coef[i] * mean_i[:, i:i + 1] for i in range(3))
    return sum(_box(coef[i], radius) * guide[:, i:i + 1] for i in range(3)) + _box(bias, radius)


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
