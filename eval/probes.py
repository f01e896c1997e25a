"""Linear probes on embeddings: the one read-out the evaluations and the benchmark probes share."""

from __future__ import annotations


def fit_linear_probe(x, y, k: int, steps: int = 400, lr: float = 0.05, scale: float = 10.0):
    """Softmax regression of class indices `y` (N,) on unit embeddings `x` (N, D) into `k` classes.

    Returns weights (D, K) and bias (K,), detached; a row z is read as `(z @ w * scale + b).argmax(-1)`.
    Full-batch Adam from zero, deterministic.
    """
    import torch
    import torch.nn.functional as F

    y = torch.as_tensor(y)
    w = torch.zeros(x.shape[1], k, requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(x @ w * scale + b, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach(), b.detach()
