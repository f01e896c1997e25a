"""Small helpers shared by the engine tests."""

from __future__ import annotations

from typing import Any


def link(node: str, output: str = "value") -> dict[str, str]:
    return {"from": node, "output": output}


def node(type_: str, **inputs: Any) -> dict[str, Any]:
    return {"type": type_, "inputs": inputs}


def workflow(**nodes: dict[str, Any]) -> dict[str, Any]:
    return {"format": "nodegraph/1", "nodes": nodes, "ui": {}, "meta": {}}


def chain(n: int, *, type_: str = "toy.add", sink: bool = True) -> dict[str, Any]:
    """const -> add -> add -> ... (n nodes) -> sink."""
    nodes: dict[str, Any] = {"n0": node("toy.const", value=1.0)}
    for i in range(1, n):
        nodes[f"n{i}"] = node(type_, a=link(f"n{i - 1}"), b=1.0)
    if sink:
        nodes["out"] = node("toy.sink", value=link(f"n{n - 1}"))
    return workflow(**nodes)


class Recorder(list):
    """An event sink that keeps the events; helpers read them by kind."""

    def __call__(self, event: Any) -> None:
        self.append(event)

    def kinds(self) -> list[str]:
        return [e.event for e in self]

    def nodes(self, kind: str) -> list[str]:
        """Node ids of events of one kind: 'node_started', 'node_completed', 'node_cached', ..."""
        return [e.node for e in self if e.event == kind]

    @property
    def ran(self) -> set[str]:
        return set(self.nodes("node_completed"))

    @property
    def cached(self) -> set[str]:
        return set(self.nodes("node_cached"))

    @property
    def finished(self) -> Any:
        return [e for e in self if e.event == "run_finished"][-1]
