"""Shared pieces of the edit-pack tests: a node context that records progress and can cancel."""

from __future__ import annotations

from pathlib import Path

from nodegraph import Cancelled, CancelToken, Engine, ModelStore, NodeContext, Settings


class Ctx(NodeContext):
    """A NodeContext for calling a node's run() directly; `cancel_at` cancels at that progress step.

    `models`: a model store shared by several calls (derived models such as fitted maps are kept there).
    """

    def __init__(self, tmp: Path, cancel_at: int | None = None, models: ModelStore | None = None):
        settings = Settings(input_dir=tmp / "input", output_dir=tmp / "out", temp_dir=tmp / "temp",
                            builtin_packs=False, entry_point_packs=False)
        engine = Engine.from_settings(settings)
        self.steps: list[tuple[int, int | None]] = []
        self.cancel_at = cancel_at
        super().__init__(node_id="n", type_id="edit.test", run_id="r", settings=settings,
                         models=engine.models if models is None else models,
                         cancel=CancelToken(), sink=lambda e: None, output_dir=settings.output_dir)

    def progress(self, step, total=None, preview=None):
        self.steps.append((step, total))
        if self.cancel_at is not None and step >= self.cancel_at:
            raise Cancelled("test cancel")
        super().progress(step, total, preview)


def run(node_cls, tmp: Path, cancel_at: int | None = None, models: ModelStore | None = None, **values):
    ctx = Ctx(tmp, cancel_at, models)
    defaults = {name: f.default for name, f in node_cls.Inputs.model_fields.items() if not f.is_required()}
    inputs = node_cls.Inputs.model_construct(**{**defaults, **values})
    return node_cls().run(inputs, ctx), ctx
