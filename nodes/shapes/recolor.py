"""Recolour Embedding: move CLIP image embeddings to another object colour along a linear map.

The map (`fit_color_map`) is measured on Shapes renders repainted in another palette colour, once per
loaded CLIP. It lets a colour–shape pair the prior never saw be drawn: sample the prior for the
prompt without its colour, then recolour (docs/shapes.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nodegraph
from nodegraph import ModelHandle, Node, NodeContext, NodeExecutionError, Port

from ..unclip.api import CLIP, EMBEDDING, library_errors

if TYPE_CHECKING:  # numpy is imported where it is used: loading the pack stays cheap
    import numpy as np

FIT_SEED = 14
FIT_SCENES = 1000
BATCH = 250


@dataclass(frozen=True)
class ColorMap:
    """A fitted linear colour map of one CLIP model's image space (rgb in [0, 1])."""

    direction: Any  # (3, D) torch: Δembedding per unit Δrgb, the least-squares fit
    readout: Any  # (D + 1, 3) torch: rgb ≈ [e, 1] @ readout
    step: Any  # (3, D): the direction rescaled so that moving by Δrgb · step changes the read-out by Δrgb
    explained: float  # fraction of the repaintings' embedding change that Δrgb · direction explains

    def read(self, emb):
        """The rgb (B, 3) in [0, 1] that the read-out sees in embeddings (B, D)."""
        import torch

        emb = emb.to(self.readout)
        return torch.cat([emb, torch.ones(len(emb), 1).to(emb)], 1) @ self.readout

    def apply(self, emb, rgb, strength: float = 1.0):
        """Move embeddings (B, D) so their read-out colour goes to `rgb` (3,) or (B, 3) in [0, 1]
        (strength 1: exactly; the move is along the fitted direction)."""
        emb = emb.to(self.readout)
        return emb + strength * (rgb.to(emb) - self.read(emb)) @ self.step


def _repaint_colors(rng: np.random.Generator, scenes, part: str = "object") -> list[tuple[int, int, int]]:
    """For each scene another palette colour (jittered) for `part` ("object" or "background"): never the
    scene's object or background colour, and never a held-out (colour, shape) pair or a held-out
    attribute combination (the repaint stays in the training split)."""
    from . import domain  # renders with PIL: imported on use, not when the pack loads

    out = []
    for s in scenes:
        options = [c for c in domain.COLORS if c not in (s.color, s.background)
                   and (domain.split_of(c, s.background, s.shape, s.size, s.position) if part == "object"
                        else domain.split_of(s.color, c, s.shape, s.size, s.position)) == "train"]
        new = options[rng.integers(len(options))]
        scene = (domain.make_scene(rng, new, s.background, s.shape, s.size, s.position) if part == "object"
                 else domain.make_scene(rng, s.color, new, s.shape, s.size, s.position))
        out.append(scene.fg_rgb if part == "object" else scene.bg_rgb)
    return out


def fit_scenes(n: int = FIT_SCENES, seed: int = FIT_SEED, part: str = "object"):
    """The fitting pairs: (training-split scenes, the same scenes with `part`, "object" or "background",
    repainted in another colour)."""
    import dataclasses

    import numpy as np

    from . import domain

    scenes = domain.sample_scenes(seed, n, "train")
    rng = np.random.default_rng([seed, 1] if part == "object" else [seed, 2])  # its own stream
    field = "fg_rgb" if part == "object" else "bg_rgb"
    return scenes, [dataclasses.replace(s, **{field: rgb}) for s, rgb in zip(scenes, _repaint_colors(rng, scenes, part),
                                                                             strict=True)]


def fit_color_map(clip, n: int = FIT_SCENES, seed: int = FIT_SEED, progress=None, part: str = "object") -> ColorMap:
    """Fit the colour map of `clip` (anything with encode_image((B, 3, H, W) in [0, 1]) → (B, D)) for the
    object's colour (`part` "object") or the background's ("background": the same fit on the same
    scenes with their background repainted instead; `fit_background_map`).

    The fitting scenes are rendered in their own colour and repainted in another palette colour; a
    least-squares fit over both encodings gives Δembedding ≈ Δrgb · A (one 3 × D map shared by all
    shapes) and a read-out rgb ≈ [embedding, 1] · R. Recolouring e to c is e + s · (c − R(e)) · S with
    S = (A·R)⁻¹·A, A rescaled so that s = 1 puts the read-out exactly on c.

    `progress(done, total)` is called after each batch of renders is encoded (it may raise to stop).
    """
    import numpy as np
    import torch

    from . import domain

    scenes, repainted = fit_scenes(n, seed, part)
    field = "fg_rgb" if part == "object" else "bg_rgb"
    jobs = [scenes[i:i + BATCH] for i in range(0, n, BATCH)] + [repainted[i:i + BATCH] for i in range(0, n, BATCH)]
    encoded = []
    for k, batch in enumerate(jobs):
        ims = np.stack([domain.render(s, 64) for s in batch]) / 255.0
        with torch.no_grad():  # not inference_mode: the cached map may be used where autograd is on
            encoded.append(clip.encode_image(nodegraph.to_tensor(ims)).float())
        if progress is not None:
            progress(k + 1, len(jobs))
    e0, e1 = torch.cat(encoded[:len(jobs) // 2]), torch.cat(encoded[len(jobs) // 2:])
    rgb0 = torch.tensor([getattr(s, field) for s in scenes], dtype=torch.float32).to(e0) / 255
    rgb1 = torch.tensor([getattr(s, field) for s in repainted], dtype=torch.float32).to(e0) / 255
    # the solves in float64 (see least_squares), rounded to float32 at the end
    d_rgb, d_emb = (rgb1 - rgb0).cpu().double(), (e1 - e0).cpu().double()
    direction = least_squares(d_rgb, d_emb)
    explained = 1 - float(((d_emb - d_rgb @ direction) ** 2).sum() / (d_emb ** 2).sum().clamp_min(1e-12))
    both = torch.cat([e0, e1]).cpu().double()
    readout = least_squares(torch.cat([both, torch.ones(len(both), 1).to(both)], 1),
                            torch.cat([rgb0, rgb1]).cpu().double())
    # direction · readout (3 × 3) is close to, but not, the identity: solve for the step that moves the
    # read-out by exactly Δrgb, still within the direction's span
    step = torch.linalg.solve(direction @ readout[:-1], direction)
    return ColorMap(direction=as_map(direction, e0), readout=as_map(readout, e0), step=as_map(step, e0),
                    explained=explained)


def fit_background_map(clip, n: int = FIT_SCENES, seed: int = FIT_SEED, progress=None) -> ColorMap:
    """The colour map of `clip`'s image embeddings for the background's colour (`fit_color_map`, part
    "background"): Recolour Embedding reads with it whether a sample's background is the target colour."""
    return fit_color_map(clip, n, seed, progress, part="background")


def least_squares(a, b, driver: str | None = None):
    """``lstsq(a, b).solution`` in float64 on the CPU, for a fit that gives the same bits in every process.

    LAPACK's float32 solves sum in an order that follows torch's thread count: on the shipped CLIP a
    fit with 1 thread and one with 2 differ in the last bits, and so do the images made with them (a
    Ray worker's against a local run's). Solved in float64, the differences stay far below float32's
    precision at the scale of the map's entries and ``as_map`` rounds them away: the shipped CLIP's
    maps have the same bits with 1 and 2 threads. An entry near 0 (a stand-in's intercept of 1e-9)
    can still differ in its last bits, too little to change a product with it (tests/test_edit_*color.py).
    """
    import torch

    return torch.linalg.lstsq(a.cpu().double(), b.cpu().double(), driver=driver).solution


def as_map(t, like):
    """A fitted float64 tensor as the float32, row-major tensor a map keeps, on ``like``'s device.

    Row-major, as a map read from disk is: LAPACK returns column-major solutions, and a matrix product
    with one rounds differently from the same values laid out row-major.
    """
    return t.float().contiguous().to(like.device)


FIT_VERSION = 2  # bump when a fit's code or constants change: maps kept on disk are then fitted again
# 2: least squares in float64, so the thread count does not change the map's bits


def fit_cache_dir() -> Path:
    """Where fitted maps are kept between processes: `$NODEGRAPH_FIT_CACHE`, else
    `$XDG_CACHE_HOME/nodegraph/fits` (default `~/.cache/nodegraph/fits`)."""
    if os.environ.get("NODEGRAPH_FIT_CACHE"):
        return Path(os.environ["NODEGRAPH_FIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nodegraph" / "fits"


def _weights_digest(model) -> str | None:
    """sha256 over a torch module's parameters and buffers (names, shapes, bytes); None for anything else,
    and for a module with none (nothing tells two of them apart: their maps are not kept on disk)."""
    import hashlib

    import torch

    module = getattr(model, "model", model)
    if not isinstance(module, torch.nn.Module) or not module.state_dict():
        return None
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _weights_device(model) -> str:
    """The device of a torch module's first parameter ("cpu" if it has none)."""
    first = next(getattr(model, "model", model).parameters(), None)
    return "cpu" if first is None else str(first.device)


def _save_map(value: Any, path: Path) -> None:
    """A fitted map (a dataclass of tensors and plain values) as safetensors: tensors as tensors, the
    rest as JSON in the metadata; written to a temporary name, then moved into place."""
    import dataclasses
    import json

    import torch
    from safetensors.torch import save_file

    tensors, plain = {}, {}
    for f in dataclasses.fields(value):
        v = getattr(value, f.name)
        if isinstance(v, torch.Tensor):
            tensors[f.name] = v.detach().cpu().contiguous()
        else:
            plain[f.name] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata={"fields": json.dumps(plain)})
    tmp.replace(path)


def _load_map(cls: type, path: Path, device: str = "cpu") -> Any:
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=str(device)) as f:
        plain = json.loads(f.metadata()["fields"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    plain = {k: tuple(v) if isinstance(v, list) else v for k, v in plain.items()}
    return cls(**tensors, **plain)


def fitted(ctx: NodeContext, clip: ModelHandle, kind: str, fit: Callable[..., Any], cls: type) -> Any:
    """``fit(clip.model, progress=...)`` once per loaded CLIP model, kept in the model store beside it,
    and on disk (`fit_cache_dir()`) under the hash of the model's weights, so the next process that
    loads the same weights reads the map instead of fitting it again (a fit takes seconds).

    The key names the model object (and its name, so a reloaded model that happens to get the same
    id is the same files); another model or kind is fitted apart, also while one is being fitted.
    A disk entry that cannot be read is fitted again and rewritten.
    """
    key = f"shapes.{kind}:{clip.kind}:{clip.name}:{id(clip.model)}"

    def load():
        digest = _weights_digest(clip.model)
        path = fit_cache_dir() / f"{kind}-v{FIT_VERSION}-{digest}.safetensors" if digest else None
        if path is not None and path.is_file():
            try:  # onto the weights' device, where a fit puts its map
                return _load_map(cls, path, _weights_device(clip.model))
            except Exception:  # a torn or foreign file: fit again below
                pass
        value = fit(clip.model, progress=lambda done, total: ctx.progress(done, total))
        if path is not None:
            try:
                _save_map(value, path)
            except OSError:  # a read-only or full disk: the map still serves this process
                pass
        return value

    return ctx.models.load(key, load)


def parse_color(text: str) -> tuple[int, int, int]:
    """A colour name of the Shapes palette ("blue"), any other name PIL knows ("teal"), or "#rrggbb"."""
    from PIL import ImageColor

    from . import domain

    name = text.strip().lower()
    if name in domain.PALETTE:
        return tuple(domain.PALETTE[name])
    try:
        return tuple(ImageColor.getrgb(name)[:3])
    except ValueError:
        raise NodeExecutionError(f"unknown colour {text!r}: give a palette name ({', '.join(domain.COLORS)}), "
                                 "another CSS colour name, or a hex code such as #2346e1") from None


class EmbeddingRecolor(Node):
    """Recolour CLIP image embeddings: move them along a linear colour map to a target colour.

    The map is fitted for the connected CLIP model on repainted Shapes renders (once per loaded model,
    a few seconds for the shipped CLIP, with progress; then read from disk by later processes). Use it on a prior sample for a prompt without its colour to draw colour–shape pairs
    the prior never saw together, or on an image embedding for variations in another colour. With `color_from` connected, the target is
    the colour those embeddings read as (one row for all, or one per embedding): an image's shape in
    another image's colour.
    """

    name = "embedding_recolor"
    title = "Recolour Embedding"
    category = "shapes"
    version = 2  # 2: `keep_apart` (default on) and "a/b" colours; version 1 never moved the background

    class Inputs(nodegraph.Inputs):
        clip: CLIP = Port(description="The CLIP model the embeddings come from (its image encoder fits the map).")
        embedding: EMBEDDING = Port(description="CLIP image embeddings to recolour, (B, D).")
        color: str = Port("blue", description="Target object colour (unless color_from is connected): a palette name "
                                              "(red, orange, yellow, green, blue, purple, white, black), another CSS "
                                              "name, or #rrggbb; empty passes the embeddings on unchanged. A "
                                              "comma-separated list gives one colour per prompt (as Factor Out "
                                              "Colour writes for prompts of different colours): the embeddings "
                                              "split into that many equal runs, an empty entry keeps its run. "
                                              "\"purple/orange\" (a prompt naming both, as Factor Out Colour "
                                              "writes when it cannot tell which is the object's): per "
                                              "embedding, the first that its background does not read as.")
        strength: float = Port(1.0, ge=0.0, le=2.0, step=0.05, display="slider",
                               description="0 keeps the embeddings, 1 moves their read-out colour to the target.")
        color_from: EMBEDDING = Port(None, description="Optional: take the target colour from these embeddings "
                                                       "(1 or B rows, e.g. another image's) instead of `color`.")
        keep_apart: bool = Port(True, description="Where an embedding's background reads as the target colour (a "
                                                  "prior sample for a prompt without its colour may pick it), "
                                                  "also move the background to the colour the object had, so the "
                                                  "object does not vanish into it. Off: the background is never "
                                                  "moved.")

    class Outputs(nodegraph.Outputs):
        embedding: EMBEDDING = Port(description="Recoloured embeddings, (B, D).")

    @classmethod
    def migrate(cls, from_version: int, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if from_version == 1:  # saved before `keep_apart` existed: keep what it did
            return {"keep_apart": False, **inputs}
        return None

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import torch

        keep = inputs.color_from is None and not inputs.color.strip()  # e.g. Factor Out Colour read no colour
        emb = inputs.embedding
        if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[0] == 0:
            raise NodeExecutionError("embedding: expected CLIP image embeddings of shape (B, D); connect a prior "
                                     "or CLIP Image Encode")
        choices, moved = None, None
        if inputs.color_from is None and not keep:
            choices, moved = _targets(inputs.color, len(emb))
        clip = inputs.clip.model
        width = getattr(clip, "embed_dim", None)
        if width is not None and width != emb.shape[1]:
            raise NodeExecutionError(f"embedding: width {emb.shape[1]}, but this CLIP's image embeddings have width "
                                     f"{width}; connect the CLIP model the embeddings come from")
        if keep:
            ctx.show(text=["no colour given: the embeddings are passed on as they are"])
            return self.Outputs(embedding=emb)
        ref = inputs.color_from
        if ref is not None and (not isinstance(ref, torch.Tensor) or ref.ndim != 2 or ref.shape[1] != emb.shape[1]
                                or len(ref) not in (1, len(emb))):
            got = tuple(ref.shape) if isinstance(ref, torch.Tensor) else type(ref).__name__
            raise NodeExecutionError(f"color_from: expected embeddings of shape (1, {emb.shape[1]}) or "
                                     f"({len(emb)}, {emb.shape[1]}), one row for all or one per embedding; got {got}")
        with library_errors():
            cmap = fitted(ctx, inputs.clip, "image_color", fit_color_map, ColorMap)
        if cmap.direction.shape[1] != emb.shape[1]:
            raise NodeExecutionError(f"embedding: width {emb.shape[1]}, but this CLIP's image embeddings have width "
                                     f"{cmap.direction.shape[1]}; connect the CLIP model the embeddings come from")
        either = choices is not None and any(len(c) > 1 for c in choices)
        bmap = None
        if either or (inputs.keep_apart and inputs.strength > 0):
            with library_errors():
                bmap = fitted(ctx, inputs.clip, "image_background", fit_background_map, ColorMap)
        out, before, rgb, swapped = recolor_rows(emb, cmap, bmap, color=inputs.color, ref=ref,
                                                 strength=inputs.strength, apart=inputs.keep_apart)
        after = cmap.read(out)
        moves = ", ".join(f"{_hex(a)} → {_hex(b)}" for a, b in zip(before[:8], after[:8], strict=True))
        more = f" (first 8 of {len(emb)})" if len(emb) > 8 else ""
        one = ref is None and "," not in inputs.color and not either
        target = (f"targets read from color_from: {', '.join(_hex(c) for c in rgb[:8])}" if ref is not None
                  else f"target {_hex(rgb[0])}" if one
                  else f"targets, per prompt: {inputs.color}"
                  + (f" (chosen{more}: {', '.join(_hex(c) for c in rgb[:8])})" if either else ""))
        lines = [f"read-out colour{more}: {moves}; {target}; the map explains "
                 f"{cmap.explained:.2f} of a repaint's embedding change"]
        if any(swapped):
            lines.append("background read as the target colour, moved to the object's own: "
                         + ", ".join(f"row {i}: {b}" for i, b in enumerate(swapped) if b))
        ctx.show(text=lines)
        return self.Outputs(embedding=out.to(emb.dtype))


def recolor_rows(emb, cmap: ColorMap, bmap: ColorMap | None, color: str = "", ref=None, strength: float = 1.0,
                 apart: bool = True):
    """Recolour Embedding's move: (the moved embeddings, their read-out colours before, the (B, 3) object
    targets (None when no colour is given), the backgrounds `keep_apart` moved: a colour name per row, ""
    where none).

    `color` as the node's port (a colour, "a/b", or one per equal run of rows, comma-separated; an empty
    entry keeps its rows); `ref` replaces it with the colours these embeddings read as. `bmap` (the
    background map) is needed for "a/b" targets and for `apart` (the node's `keep_apart`) with
    `strength` above 0."""
    import torch

    if ref is None and not color.strip():  # no colour: as the node, the embeddings as they are
        return emb, cmap.read(emb), None, [""] * len(emb)
    choices, moved = (None, None) if ref is not None else _targets(color, len(emb))
    either = choices is not None and any(len(c) > 1 for c in choices)
    if bmap is None and (either or (apart and strength > 0)):
        raise ValueError("recolor_rows: the background map is needed for 'a/b' colours and for apart")
    if ref is not None:  # the colour another embedding reads as, row by row
        rgb = cmap.read(ref).clamp(0, 1).expand(len(emb), 3)
    before = cmap.read(emb)
    rows = torch.ones(len(emb), dtype=torch.bool) if moved is None else moved
    back = torch.zeros(len(emb), 3)
    paired = torch.zeros(len(emb), dtype=torch.bool)
    backgrounds = nearest_palette(bmap.read(emb)) if bmap is not None else None
    if ref is None:  # where a prompt names two colours, the sample's own colours give them their roles
        rgb, back, paired = choose(choices, backgrounds if either else None,
                                   nearest_palette(before) if either else None)
        rgb = rgb.to(emb.device)
    swapped: list[str] = []
    if apart and strength > 0:
        swapped = keep_apart(backgrounds, before, rgb, rows & ~paired)
        for i, c in enumerate(swapped):
            if c:
                back[i] = torch.tensor(parse_color(c), dtype=torch.float32) / 255
    to_move = paired | torch.tensor([bool(c) for c in swapped] or [False] * len(emb))
    out = emb.to(cmap.readout)
    if bool(to_move.any()):  # the background first: the object's move then lands exactly on its target
        out = torch.where(to_move[:, None].to(out.device), bmap.apply(out, back.to(out), strength), out)
    out = cmap.apply(out, rgb, strength)
    if moved is not None:  # rows whose prompt named no colour stay as they are
        out = torch.where(moved[:, None], out, emb.to(out))
    return out, before, rgb, swapped


def nearest_palette(rgb) -> list[str]:
    """The Shapes palette colour nearest each RGB row ((B, 3) in [0, 1])."""
    import torch

    from . import domain

    palette = torch.tensor([domain.PALETTE[c] for c in domain.COLORS], dtype=torch.float32) / 255
    return [domain.COLORS[int(i)] for i in torch.cdist(rgb.float().cpu(), palette).argmin(1)]


def keep_apart(backgrounds: list[str], before, rgb, moved) -> list[str]:
    """The palette colour each row's background should move to, or "" to leave it.

    The domain never draws an object on a background of its own colour, and the decoder given such an
    embedding draws no object at all. So where a sample's background reads (`backgrounds`) as the palette
    colour nearest its target `rgb` (B, 3), the background goes to the colour the object had before the
    recolour (`before`, read by the object map; the next nearest palette colour if that is the target's
    too): the two colours swap, a pair the sample already shows. Rows of `moved` only.
    """
    import torch

    from . import domain

    palette = torch.tensor([domain.PALETTE[c] for c in domain.COLORS], dtype=torch.float32) / 255
    target = nearest_palette(rgb)
    order = torch.cdist(before.float().cpu(), palette).argsort(1)
    return ["" if not bool(moved[i]) or backgrounds[i] != target[i]
            else next(domain.COLORS[int(k)] for k in order[i] if domain.COLORS[int(k)] != target[i])
            for i in range(len(backgrounds))]


def _targets(color: str, rows: int):
    """`color` as candidate RGBs in [0, 1] per row (one for a plain colour; "a/b" gives both, see `choose`)
    and a (rows,) mask of the rows to move (None: all). A comma-separated list gives one entry per equal
    run of rows (a prompt's `count` samples); an empty entry keeps its run."""
    import torch

    names = [c.strip() for c in color.split(",")]
    if rows % len(names):
        raise NodeExecutionError(f"color: {len(names)} colours (one per prompt) but {rows} embeddings, which do not "
                                 f"split into {len(names)} equal runs; give one colour, or connect the prior of "
                                 "those prompts")
    per = rows // len(names)
    parsed = [tuple(parse_color(c) for c in name.split("/")) if name else ((0, 0, 0),) for name in names]
    choices = [tuple(torch.tensor(c, dtype=torch.float32) / 255 for c in p) for p in parsed for _ in range(per)]
    if len(names) == 1:
        return choices, None
    return choices, torch.tensor([bool(c) for c in names]).repeat_interleave(per)


def choose(choices, backgrounds: list[str] | None, objects: list[str] | None):
    """((B, 3) object targets, (B, 3) background targets, (B,) mask of the rows whose background is set).

    A row with one candidate takes it for its object. A row with two ("purple/orange": Factor Out Colour
    writes them for a prompt naming two colours when its read-out cannot tell which is the object's)
    paints one on the object and the other on the background, in the roles the sample gives them
    (`backgrounds`, `objects`: the palette colours its background and object read as): where its
    background reads as the first or its object as the second, the second is the object's; else the
    first, the read-out's guess."""
    import torch

    obj, back, mask = [], [], []
    for i, cands in enumerate(choices):
        if len(cands) < 2 or backgrounds is None:
            obj.append(cands[0])
            back.append(torch.zeros(3))
            mask.append(False)
            continue
        a, b = nearest_palette(torch.stack(cands[:2]))
        swap = backgrounds[i] == a or (objects is not None and objects[i] == b)
        obj.append(cands[1] if swap else cands[0])
        back.append(cands[0] if swap else cands[1])
        mask.append(True)
    return torch.stack(obj), torch.stack(back), torch.tensor(mask)


def _hex(rgb) -> str:
    r, g, b = (int(round(float(v) * 255)) for v in rgb.clamp(0, 1))
    return f"#{r:02x}{g:02x}{b:02x}"
