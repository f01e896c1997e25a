"""The import rules of docs/packs.md, checked by reading every module's imports (ast), not by running them.

- the engine core (`nodegraph/`) never imports a pack, the research folders or torch at module level;
- a pack (`nodes/<pack>/`) imports only `nodegraph`'s public names, its own modules, and other packs'
  declared public module (`nodes/<other>/api.py`);
- nothing imports `train/` (the training scripts): not the engine, the packs or the evaluations of the
  shipped models; only the tests and probes of the training code itself (`tests/`, `bench/`) do.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

import nodegraph

PUBLIC = frozenset(nodegraph.__all__)
PUBLIC_MODULE = "api"  # a pack's declared public module
RESEARCH = ("train", "eval", "bench", "tests")  # folders of the checkout that nothing shipped imports


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path, path: Path) -> Iterator[tuple[int, str, str | None, bool]]:
    """(line, absolute module, imported name or None, at module level) for every import in a file."""
    tree = ast.parse(path.read_text(), str(path))
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = set(_module_level(tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None, node in top_level
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                yield node.lineno, base, alias.name, node in top_level


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run when the module is imported (module and class bodies, not functions or TYPE_CHECKING)."""
    for stmt in body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            yield from _module_level(stmt.orelse)
            continue
        yield stmt
        if isinstance(stmt, ast.ClassDef):
            yield from _module_level(stmt.body)
        elif isinstance(stmt, ast.If | ast.Try | ast.With):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(stmt, field, []):
                    yield from _module_level(child.body if isinstance(child, ast.ExceptHandler) else [child])


def _root_of(module: str) -> str:
    return module.partition(".")[0]


def core_violations(root: Path, path: Path) -> list[str]:
    out = []
    for line, module, _, top in imports(root, path):
        if _root_of(module) in ("nodes", *RESEARCH):
            out.append(f"{path.relative_to(root)}:{line}: the engine imports {module}")
        elif _root_of(module) == "torch" and top:
            out.append(f"{path.relative_to(root)}:{line}: the engine imports torch at module level")
    return out


def pack_violations(root: Path, path: Path) -> list[str]:
    where = path.relative_to(root)
    own = module_name(root, path).split(".")[:2]  # ["nodes", pack]
    out = []
    for line, module, name, _ in imports(root, path):
        parts = module.split(".")
        if parts[0] == "nodegraph":
            if len(parts) > 1:
                out.append(f"{where}:{line}: imports {module}, an engine internal; use `import nodegraph`")
            elif name is not None and name not in PUBLIC:
                out.append(f"{where}:{line}: imports nodegraph.{name}, which is not public API")
        elif parts[0] == "nodes" and len(own) == 2:
            target = parts + ([name] if name is not None and len(parts) == 2 else [])
            if len(target) >= 2 and target[1] != own[1] and target[2:] != [PUBLIC_MODULE]:
                shown = ".".join(target)
                out.append(f"{where}:{line}: imports {shown}; another pack is used only through its "
                           f"public module nodes.{target[1]}.{PUBLIC_MODULE}")
        elif parts[0] in RESEARCH:
            out.append(f"{where}:{line}: a pack imports {module}")
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "nodegraph" \
                and node.attr not in PUBLIC:
            out.append(f"{where}:{node.lineno}: uses nodegraph.{node.attr}, which is not public API")
    return out


def train_violations(root: Path, path: Path) -> list[str]:
    return [f"{path.relative_to(root)}:{line}: imports {module}; nothing imports the training scripts"
            for line, module, _, _ in imports(root, path) if _root_of(module) == "train"]


def violations(root: Path) -> list[str]:
    """Every broken rule in a tree laid out like the checkout (nodegraph/, nodes/, train/, ...)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        top = path.relative_to(root).parts[0]
        if top.startswith(".") or top in ("web", "build", "node_modules"):
            continue
        if top == "nodegraph":
            out += core_violations(root, path)
        elif top == "nodes":
            out += pack_violations(root, path)
        if top not in ("train", "tests", "bench"):
            out += train_violations(root, path)
    return out


def test_the_checkout_keeps_the_import_rules():
    assert violations(ROOT) == []


BAD = {
    "nodegraph/engine.py": """
        import torch
        from nodes.core import PACK
        def f():
            import torch  # inside a function: allowed
        """,
    "nodegraph/types.py": """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import torch  # for type checkers only: allowed
        """,
    "nodes/core/__init__.py": """
        import nodegraph
        from nodegraph import Node, Registry2
        from nodegraph.node import derive_spec
        x = nodegraph.workflow
        y = nodegraph.Node
        """,
    "nodes/edit/inpaint.py": """
        from ..unclip.api import DECODER
        from ..unclip.models import sample_decoder
        from ..unclip import convert
        from nodes.unclip.api import EMBEDDING
        from nodes.shapes.domain import render
        from . import common
        """,
    "nodes/unclip/api.py": "from .models import load_clip\n",
    "eval/shapes.py": "from nodes.shapes import domain\nfrom train.data import to_tensor\n",
    "tests/test_x.py": "import train.common  # a test of the training code: allowed\n",
    "nodes/shapes/nodes.py": "def f():\n    from train import data\n",
    "train/clip.py": "from train.common import ROOT\n",
}


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    for rel, text in BAD.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_each_broken_rule_is_reported_with_its_file_and_line(bad_tree):
    found = violations(bad_tree)
    assert found == [
        "eval/shapes.py:2: imports train.data; nothing imports the training scripts",
        "nodegraph/engine.py:2: the engine imports torch at module level",
        "nodegraph/engine.py:3: the engine imports nodes.core",
        "nodes/core/__init__.py:3: imports nodegraph.Registry2, which is not public API",
        "nodes/core/__init__.py:4: imports nodegraph.node, an engine internal; use `import nodegraph`",
        "nodes/core/__init__.py:5: uses nodegraph.workflow, which is not public API",
        "nodes/edit/inpaint.py:3: imports nodes.unclip.models; another pack is used only through its public "
        "module nodes.unclip.api",
        "nodes/edit/inpaint.py:4: imports nodes.unclip.convert; another pack is used only through its public "
        "module nodes.unclip.api",
        "nodes/edit/inpaint.py:6: imports nodes.shapes.domain; another pack is used only through its public "
        "module nodes.shapes.api",
        "nodes/shapes/nodes.py:2: a pack imports train",
        "nodes/shapes/nodes.py:2: imports train; nothing imports the training scripts",
    ]
