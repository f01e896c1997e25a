"""Pure planning for the cluster: how one plan's branches spread over workers, and model identities.

:func:`split_plan` cuts a plan with several targets into parts, one per worker. Nodes without
inputs (model loaders, constants, prompts) are cheap or held in each worker's stores, so every
part that needs one runs it; every other node belongs to exactly one part, and a part that needs
a node of another imports its outputs (an object reference, never a copy through the head).
Targets go to the least loaded part in plan order, each taking the nodes of its cone nobody owns
yet, so parts only import from parts made before them: no cycles, and the shared upstream of
every branch is computed once, first.

:func:`identities` gives every node a key that leaves out fingerprints and nonces (which depend on
the machine's files and the run): equal identities on two runs mean the same node with the same
inputs, e.g. the same model loaded, wherever the files are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..plan import Plan, cache_key

__all__ = ["Part", "identities", "split_plan"]


@dataclass
class Part:
    """What one worker runs of a plan."""

    targets: list[str]  # the plan's targets it computes
    exports: list[str] = field(default_factory=list)  # its nodes that other parts import
    imports: list[str] = field(default_factory=list)  # nodes of other parts it needs
    nodes: list[str] = field(default_factory=list)  # the nodes it owns (not counting shared roots)

    @property
    def walk(self) -> list[str]:
        """What the worker walks to: exports first, so that the parts waiting for them start early."""
        return self.exports + [t for t in self.targets if t not in self.exports]


def split_plan(plan: Plan, parts: int) -> list[Part]:
    """At most ``parts`` parts of ``plan`` (one when it has one target or ``parts`` is 1)."""
    targets = plan.targets
    if parts <= 1 or len(targets) <= 1:
        return [Part(targets=list(targets), nodes=list(plan.order))]
    nodes = plan.nodes
    roots = {nid for nid, pn in nodes.items() if not pn.links and nid not in targets}
    owner: dict[str, int] = {}
    made: list[Part] = [Part(targets=[]) for _ in range(min(parts, len(targets)))]
    load = [0] * len(made)
    for target in targets:
        if target in owner:  # a target another target's cone took
            made[owner[target]].targets.append(target)
            continue
        i = min(range(len(made)), key=lambda k: (load[k], k))
        cone = _cone(plan, target)
        claimed = [n for n in plan.order if n in cone and n not in owner and n not in roots]
        for n in claimed:
            owner[n] = i
        made[i].nodes.extend(claimed)
        made[i].targets.append(target)
        load[i] += len(claimed)
    for i, part in enumerate(made):
        needed = {src for n in part.nodes for src, _ in nodes[n].links.values()}
        part.imports = [n for n in plan.order if n in needed and owner.get(n, i) != i]
        for n in part.imports:
            made[owner[n]].exports.append(n)
    for part in made:
        part.exports = [n for n in plan.order if n in set(part.exports)]
    return [p for p in made if p.targets]


def _cone(plan: Plan, target: str) -> set[str]:
    seen = {target}
    stack = [target]
    while stack:
        for src, _ in plan.nodes[stack.pop()].links.values():
            if src not in seen:
                seen.add(src)
                stack.append(src)
    return seen


def identities(plan: Plan) -> dict[str, str]:
    """Node id -> its key without fingerprints, nonces or output folders (see the module docstring)."""
    ids: dict[str, str] = {}
    for nid in plan.order:
        pn = plan.nodes[nid]
        ids[nid] = cache_key(pn.spec, pn.literals, pn.links, ids)
    return ids
