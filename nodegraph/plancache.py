"""Plans kept by the workflow's content, so an unchanged workflow is not validated and planned again.

The key is a sha256 over the workflow as it was given and everything else planning reads: the
targets, the output folder and the folders file names are checked against. JSON text and bytes are
hashed as they are; a dict is pickled, which keeps Python types (``1`` and ``"1"`` differ) and key
order — the order of the nodes breaks ties in the plan's order, so two dicts that differ only in
order are two workflows here. Only plain data is pickled (dicts, lists, tuples, strings, numbers,
booleans, ``None``): a source with anything else (a :class:`~nodegraph.Workflow`, objects whose
pickle may not capture their content, a dict that contains itself) is simply not cached. Shared
objects are written out where each occurs (no pickle memo), so equal content pickles alike.

The cache belongs to one registry: when the registry's ``generation`` changes (a pack was added),
everything is dropped. What planning reads beyond the key is re-read on every hit: literal file
names are checked against their folders again (a file may have gone), and a plan with volatile
nodes gets fresh keys (:func:`~nodegraph.plan.rekeyed`: fingerprints, run nonce).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .plan import Plan, rekeyed
from .registry import Registry
from .validation import Validator

__all__ = ["PlanCache", "pickled_dict", "source_bytes", "source_digest"]


def source_bytes(source: Any) -> bytes | None:
    """The workflow as given, as bytes (a dict pickled, after a ``d``): what :func:`source_digest`
    hashes, and a snapshot of a dict's content that its owner's later changes do not reach (see
    :attr:`~nodegraph.plan.Plan.snapshot`). ``None`` when it is not plain data."""
    if isinstance(source, bytes | bytearray):
        return b"b" + bytes(source)
    if isinstance(source, str):
        return b"s" + source.encode("utf-8", "surrogatepass")
    if type(source) is dict:
        buffer = io.BytesIO(b"d")
        buffer.seek(1)
        pickler = _PlainData(buffer, 5)
        # No memo: shared objects are written out each time, which costs bytes but not time (a
        # third less than keeping the memo) and makes equal content pickle alike; a cycle raises.
        pickler.fast = True
        try:
            pickler.dump(source)
        except (TypeError, ValueError, pickle.PicklingError, RecursionError):  # not plain data, or a cycle
            return None
        return buffer.getvalue()
    return None


def source_digest(source: Any, targets: list[str] | None, output_dir: str,
                  folders: Mapping[str, Path], *, body: bytes | None = None) -> str | None:
    """The cache key of planning ``source`` with these arguments, or ``None`` when it is not plain data
    (``body``: its :func:`source_bytes`, when already made)."""
    if body is None:
        body = source_bytes(source)
        if body is None:
            return None
    h = hashlib.sha256(body)
    h.update(pickle.dumps((targets, output_dir, sorted((k, str(Path(v).absolute())) for k, v in folders.items()))))
    return h.hexdigest()


def pickled_dict(body: bytes | None) -> bytes | None:
    """The pickle of a dict in a :func:`source_bytes` answer (``None`` for text, bytes or nothing)."""
    return body[1:] if body is not None and body[:1] == b"d" else None


class _PlainData(pickle.Pickler):
    """Pickles plain data only; the C pickler never calls the hook for dict, list, tuple, str, int,
    float, bool and None, so anything else raises."""

    def reducer_override(self, obj: Any) -> Any:
        raise TypeError(f"not plain data: {type(obj).__name__}")


@dataclass
class _Entry:
    plan: Plan
    files: list[tuple[str, str, Any, str]]  # (node, port, widget, name) of literal file names
    volatile: bool


class PlanCache:
    """Least-recently-used plans of one registry, bounded by their total number of nodes."""

    def __init__(self, registry: Registry, max_nodes: int = 100_000) -> None:
        self.registry = registry
        self.max_nodes = max_nodes
        self._generation = registry.generation
        self._plans: OrderedDict[str, _Entry] = OrderedDict()
        self._nodes = 0
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, digest: str, folders: Mapping[str, Path], *, output_dir: str,
            settings: Any = None) -> Plan | None:
        """The plan planned under ``digest``, ready for a new run, or ``None`` (plan it again)."""
        with self._lock:
            self._check_generation()
            entry = self._plans.get(digest)
            if entry is None:
                return None
            self._plans.move_to_end(digest)
        if entry.files and not _files_ok(entry, self.registry, folders):
            return None  # planning again reports the file with every other issue
        self.hits += 1
        if entry.volatile:
            return rekeyed(entry.plan, output_dir=output_dir, settings=settings)
        return replace(entry.plan, run_nonce=uuid.uuid4().hex)  # a new object, as planning gives

    def put(self, digest: str, plan: Plan) -> None:
        size = len(plan.nodes)
        if size > self.max_nodes:
            return
        entry = _Entry(plan, *_file_literals(plan))
        with self._lock:
            self._check_generation()
            old = self._plans.pop(digest, None)
            if old is not None:
                self._nodes -= len(old.plan.nodes)
            self._plans[digest] = entry
            self._nodes += size
            while self._nodes > self.max_nodes:
                _, evicted = self._plans.popitem(last=False)
                self._nodes -= len(evicted.plan.nodes)

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
            self._nodes = 0

    def __len__(self) -> int:
        return len(self._plans)

    def _check_generation(self) -> None:
        if self.registry.generation != self._generation:
            self._plans.clear()
            self._nodes = 0
            self._generation = self.registry.generation


def _file_literals(plan: Plan) -> tuple[list[tuple[str, str, Any, str]], bool]:
    """Every literal file name the workflow gives, with its widget (what validation checks on disk),
    and whether the plan has a volatile node (one pass over the nodes)."""
    found = []
    volatile = False
    nodes = plan.source.nodes
    for pn in plan.nodes.values():
        spec = pn.spec
        if spec.cls.volatile:
            volatile = True
        ports = spec.file_ports
        if not ports:
            continue
        given = nodes[pn.id].inputs
        for port in ports:
            value = pn.literals.get(port)
            if port in given and isinstance(value, str):  # a default is not checked by validation
                found.append((pn.id, port, spec.inputs[port].type.widget, value))
    return found, volatile


def _files_ok(entry: _Entry, registry: Registry, folders: Mapping[str, Path]) -> bool:
    validator = Validator(entry.plan.source, registry, folders)
    for nid, port, widget, name in entry.files:
        validator.check_file(nid, port, widget, name)
    return not validator.issues
