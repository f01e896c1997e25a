"""Operations in CLIP space: slerp interpolation, text diffs, PCA reconstruction, batching."""

from __future__ import annotations

import re

import nodegraph
from nodegraph import Node, NodeContext, NodeExecutionError, Port

from .types import CONDITIONING, EMBEDDING

_LIST = r"^\s*\d+(\s*,\s*\d+)*\s*$"


def slerp(a, b, t: float):
    """Spherical interpolation of directions, linear interpolation of norms. a, b: (B, D)."""
    import torch

    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-8), b / nb.clamp_min(1e-8)
    dot = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(dot)
    so = torch.sin(omega)
    small = so.abs() < 1e-6  # (nearly) parallel directions: slerp degenerates to lerp
    so_safe = torch.where(small, torch.ones_like(so), so)
    wa = torch.where(small, torch.full_like(so, 1 - t), torch.sin((1 - t) * omega) / so_safe)
    wb = torch.where(small, torch.full_like(so, t), torch.sin(t * omega) / so_safe)
    direction = wa * ua + wb * ub
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return direction * ((1 - t) * na + t * nb)


def text_diff(z_i, source, target, theta: float):
    """DALL·E 2's text diff: slerp image embeddings z_i (B, D) by θ towards z_d = normalise(target −
    source) of two text embeddings (1 or B rows, D), z_d scaled to z_i's mean norm. None when the two
    texts embed identically (there is no direction)."""
    diff = target - source
    norm = diff.norm(dim=-1, keepdim=True)
    if float(norm.min()) < 1e-6:
        return None
    z_d = diff / norm * z_i.norm(dim=-1, keepdim=True).mean()
    z_i, z_d = _broadcast(z_i, z_d, "text diff")
    return slerp(z_i, z_d, theta)


def _broadcast(a, b, what: str):
    if a.shape[-1] != b.shape[-1]:
        raise NodeExecutionError(f"{what}: embeddings of width {a.shape[-1]} and {b.shape[-1]} come from "
                                 "different CLIP models; use embeddings of the same model")
    if a.shape[0] != b.shape[0]:
        if a.shape[0] == 1:
            a = a.expand(b.shape[0], -1)
        elif b.shape[0] == 1:
            b = b.expand(a.shape[0], -1)
        else:
            raise NodeExecutionError(f"{what}: batch sizes {a.shape[0]} and {b.shape[0]} differ; give one "
                                     "embedding or batches of equal size")
    return a, b


def _ts(t: float, steps: int, start: float = 0.0, end: float = 1.0) -> list[float]:
    if steps <= 1:
        return [t]
    return [start + (end - start) * i / (steps - 1) for i in range(steps)]


class EmbeddingInterpolate(Node):
    """Slerp between two CLIP embeddings (two images, two prompts), at one t or at `steps` evenly spaced t."""

    name = "embedding_interpolate"
    search_aliases = ("slerp", "interpolate", "lerp", "mix embeddings")
    category = "unclip/embeddings"

    class Inputs(nodegraph.Inputs):
        a: EMBEDDING = Port(description="Start embeddings, (B, D) or (1, D).")
        b: EMBEDDING = Port(description="End embeddings, (B, D) or (1, D).")
        t: float = Port(0.5, ge=0.0, le=1.0, step=0.05, display="slider",
                        description="Position between a (0) and b (1); used when steps < 2.")
        steps: int = Port(0, ge=0, le=64, description="If ≥ 2: output that many embeddings from a to b.")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="Interpolated embeddings, (len(t) × B, D), grouped by t.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        a, b = _broadcast(inputs.a, inputs.b, "interpolate")
        out = [slerp(a, b, t) for t in _ts(inputs.t, inputs.steps)]
        return self.Outputs(embedding=torch.cat(out))


class TextDiff(Node):
    """Move an image embedding towards a text edit (DALL·E 2 "text diffs").

    z_d = normalise(text(to) − text(from)); the image embedding z_i is slerped towards z_d by θ,
    keeping its norm. θ around 0.25–0.5 changes the attribute while keeping the rest.
    """

    name = "text_diff"
    search_aliases = ("text diff", "embedding arithmetic", "direction")
    category = "unclip/embeddings"

    class Inputs(nodegraph.Inputs):
        image_embedding: EMBEDDING = Port(description="CLIP image embeddings to edit, (B, D).")
        source: CONDITIONING = Port(description="Encoded text describing the image now (e.g. 'a red circle').")
        target: CONDITIONING = Port(description="Encoded text describing the edit (e.g. 'a blue circle').")
        amount: float = Port(0.35, ge=0.0, le=1.0, step=0.05, description="θ when steps < 2.")
        steps: int = Port(0, ge=0, le=64, description="If ≥ 2: θ from 0 to `amount` in that many steps.")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="Edited embeddings, (len(θ) × B, D), grouped by θ.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        z_i = inputs.image_embedding
        thetas = _ts(inputs.amount, inputs.steps, 0.0, inputs.amount)
        moved = [text_diff(z_i, inputs.source.embeds, inputs.target.embeds, th) for th in thetas]
        if moved[0] is None:
            # no direction to move in: every θ gives the image embedding itself
            ctx.show(text=["source and target texts have the same embedding: nothing to move towards; "
                           "change the target text"])
            return self.Outputs(embedding=torch.cat([z_i] * len(thetas)))
        return self.Outputs(embedding=torch.cat(moved))


class EmbeddingPCA(Node):
    """Reconstruct embeddings from their first k principal components over a set (the paper's PCA probe)."""

    name = "embedding_pca"
    search_aliases = ("pca", "principal components")
    category = "unclip/embeddings"

    class Inputs(nodegraph.Inputs):
        basis: EMBEDDING = Port(description="The set the principal components are computed over, (N, D).")
        embedding: EMBEDDING = Port(description="Embeddings to reconstruct, (B, D).")
        components: str = Port("1,2,4,8,16", pattern=_LIST,
                               description="Comma-separated numbers of components k, one output each.")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="Reconstructions, (len(k) × B, D), grouped by k.")
        explained: str = Port(description="Fraction of the set's variance kept by each k.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        ks = [int(x) for x in re.findall(r"\d+", inputs.components)]
        basis = inputs.basis.float()
        n, d = basis.shape
        limit = min(n, d)
        if max(ks) > limit or min(ks) < 1:
            raise NodeExecutionError(f"components must be between 1 and {limit} (the set has {n} embeddings of "
                                     f"width {d}); got {ks}")
        mean = basis.mean(0, keepdim=True)
        _, s, vh = torch.linalg.svd(basis - mean, full_matrices=False)
        var = (s**2) / (s**2).sum().clamp_min(1e-12)
        x = inputs.embedding.float() - mean
        outs, kept = [], []
        for k in ks:
            v = vh[:k]  # (k, D)
            outs.append(mean + (x @ v.T) @ v)
            kept.append(f"k={k}: {float(var[:k].sum()):.3f}")
        return self.Outputs(embedding=torch.cat(outs), explained=", ".join(kept))


class EmbeddingBatch(Node):
    """Join two batches of embeddings."""

    name = "embedding_batch"
    search_aliases = ("concat embeddings", "batch")
    category = "unclip/embeddings"

    class Inputs(nodegraph.Inputs):
        a: EMBEDDING = Port(description="First embeddings.")
        b: EMBEDDING = Port(description="Embeddings appended after a.")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="a followed by b.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        if inputs.a.shape[-1] != inputs.b.shape[-1]:
            raise NodeExecutionError("embeddings of different widths cannot be batched")
        return self.Outputs(embedding=torch.cat([inputs.a, inputs.b]))
