"""The engine: registry + cache + model store + settings + an executor, behind a small API.

No singletons: create one ``Engine`` per process (the CLI, the server, a test) and pass it around.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .cache import OutputCache
from .config import Settings
from .context import CancelToken
from .events import EventSink
from .executor import Executor, LocalExecutor, RunResult
from .issues import close_names
from .modelstore import ModelStore
from .plan import Plan, make_plan
from .plancache import PlanCache, pickled_dict, source_bytes, source_digest
from .plugins import load_settings_packs
from .registry import Registry
from .validation import Issue, ValidationResult, validate_for
from .workflow import Workflow, WorkflowFormatError, dump_workflow, parse_source

__all__ = ["Engine", "apply_overrides"]


class Engine:
    """Validate, plan and run workflows; everything long-lived (cache, models) lives here."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings | None = None,
        *,
        cache: OutputCache | None = None,
        models: ModelStore | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings or Settings()
        self.cache = cache if cache is not None else OutputCache(self.settings.cache_bytes)
        self.models = models if models is not None else ModelStore(
            self.settings.model_dirs, max_items=self.settings.model_cache_items,
            max_bytes=self.settings.model_memory, allow_paths=self.settings.allow_model_paths,
            threads=self.settings.threads)
        self.executor: Executor = executor or LocalExecutor(self.settings, self.cache, self.models)
        self.plans = PlanCache(registry)  # an unchanged workflow is not validated and planned again

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Engine:
        """An engine with packs loaded from the places the settings name."""
        settings = settings or Settings.from_env()
        return cls(load_settings_packs(settings), settings)

    def validate(self, source: Any, *, targets: Iterable[str] | None = None) -> ValidationResult:
        """Every issue, file names included (checked against the settings' folders), and the nodes'
        own checks of the files they name (model folders)."""
        return validate_for(source, self.registry, self.settings, targets=targets)

    def plan(self, source: Any, *, targets: Iterable[str] | None = None, output_dir: Path | None = None) -> Plan:
        """Validate and plan; raises :class:`~nodegraph.WorkflowInvalid` with every issue."""
        out = Path(output_dir) if output_dir is not None else Path(self.settings.output_dir)
        wanted = list(targets) if targets is not None else None
        resolved, folders = str(out.resolve()), self.settings.folders(out)
        body = source_bytes(source)
        digest = None if body is None else source_digest(source, wanted, resolved, folders, body=body)
        if self.plans.registry is not self.registry:  # plans are valid for the registry they were made with
            self.plans = PlanCache(self.registry)
        plan = None if digest is None else self.plans.get(digest, folders, output_dir=resolved,
                                                           settings=self.settings)
        if plan is None:
            # The plan keeps the dict's content as planned (its pickle, made for the digest anyway):
            # the caller may change the dict later, and a kept plan serves equal content.
            plan = make_plan(source, self.registry, targets=wanted, output_dir=resolved, settings=self.settings,
                             folders=folders, snapshot=pickled_dict(body))
            if digest is not None:
                self.plans.put(digest, plan)
        return plan

    def run(
        self,
        source: Any,
        *,
        targets: Iterable[str] | None = None,
        sink: EventSink | None = None,
        cancel: CancelToken | None = None,
        output_dir: Path | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Validate, plan and execute. Invalid workflows raise; node failures are in the result."""
        out = Path(output_dir) if output_dir is not None else Path(self.settings.output_dir)
        plan = self.plan(source, targets=targets, output_dir=out)
        return self.executor.execute(plan, run_id=run_id, sink=sink, cancel=cancel, output_dir=out)


def apply_overrides(source: Any, overrides: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[Issue]]:
    """Apply ``{"NODE.PORT": value}`` overrides to a workflow; returns the new dict and any issues.

    A value replaces a literal or a link on that port. Unknown nodes are reported as issues (code
    ``unknown_target``); values are validated later like any other input.
    """
    try:
        if isinstance(source, Workflow):
            data = dump_workflow(source)
        else:
            data = parse_source(copy.deepcopy(source) if isinstance(source, dict) else source)
    except WorkflowFormatError as exc:
        return None, [Issue(code=exc.code, message=exc.message)]
    issues: list[Issue] = []
    nodes = data.get("nodes")
    if not isinstance(nodes, dict):
        return data, issues
    for target, value in overrides.items():
        node_id, sep, port = str(target).rpartition(".")
        if not sep or not node_id or not port:
            issues.append(Issue(code="unknown_target", message=f"override {target!r} must look like NODE.PORT"))
            continue
        entry = nodes.get(node_id)
        if not isinstance(entry, dict):
            issues.append(Issue(code="unknown_target", node=node_id, port=port,
                                message=f"override {target}: there is no node {node_id!r}; "
                                + close_names(node_id, nodes, listing="nodes are")))
            continue
        entry.setdefault("inputs", {})[port] = value
    return data, issues
