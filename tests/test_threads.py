"""Settings.threads (NODEGRAPH_THREADS) reaches torch where a run first uses it, never at import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import link, node, workflow

from nodegraph import Engine, Settings

ROOT = Path(__file__).resolve().parents[1]

# A pack whose nodes use torch only inside run: one through a model loader, one directly.
PROBE = '''
import nodegraph
from nodegraph import ANY, Node, Port


class ThreadsViaModel(Node):
    """Loads a "model" (the loader imports torch) and reports torch's thread count afterwards."""

    name = "via_model"

    class Inputs(nodegraph.Inputs):
        seed: int = Port(0)

    class Outputs(nodegraph.Outputs):
        threads: int = Port()

    def run(self, inputs, ctx):
        def loader():
            import torch

            return torch.nn.Linear(2, 2)

        ctx.models.load("probe.linear", loader)
        import torch

        return self.Outputs(threads=torch.get_num_threads())


class ThreadsDirect(Node):
    """Reports torch's thread count when it runs."""

    name = "direct"

    class Inputs(nodegraph.Inputs):
        after: ANY = Port(None, description="Only orders the node.")

    class Outputs(nodegraph.Outputs):
        threads: int = Port()

    def run(self, inputs, ctx):
        import torch

        return self.Outputs(threads=torch.get_num_threads())


PACK = nodegraph.Pack("probe", nodes=[ThreadsViaModel, ThreadsDirect])
'''


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    pack = tmp_path / "packs" / "probe"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(PROBE)
    return tmp_path / "packs"


def _probe_workflow() -> dict:
    return workflow(m=node("probe.via_model"), d=node("probe.direct", after=link("m", "threads")),
                    out=node("core.show", value=link("d", "threads")))


def test_threads_setting_is_applied_when_a_node_runs(settings: Settings, probe_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    try:
        settings = settings.model_copy(update={"threads": want, "nodes_dirs": [*settings.nodes_dirs, probe_dir]})
        engine = Engine.from_settings(settings)
        result = engine.run(_probe_workflow(), targets=["m", "d"])
        assert result.ok, result.error
        assert result.outputs["m"]["threads"] == want
        assert result.outputs["d"]["threads"] == want
    finally:
        torch.set_num_threads(before)


def test_without_the_setting_torch_keeps_its_thread_count(settings: Settings, probe_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    engine = Engine.from_settings(settings.model_copy(update={"nodes_dirs": [*settings.nodes_dirs, probe_dir]}))
    result = engine.run(_probe_workflow(), targets=["d"])
    assert result.ok, result.error
    assert result.outputs["d"]["threads"] == before == torch.get_num_threads()


def test_nodegraph_threads_reaches_torch_imported_by_a_model_loader(tmp_path: Path, probe_dir: Path) -> None:
    """In a fresh process: a torch-free run does not import torch; the first loader that does sets it."""
    pytest.importorskip("torch")
    script = textwrap.dedent(f"""
        import json, sys
        from nodegraph import Engine, Settings
        engine = Engine.from_settings(Settings.from_env(entry_point_packs=False, nodes_dirs=[{str(probe_dir)!r}],
                                                        output_dir={str(tmp_path / "out")!r}))
        wf = {{"format": "nodegraph/1", "nodes": {{
            "a": {{"type": "core.float", "inputs": {{"value": 1.0}}}},
            "s": {{"type": "core.show", "inputs": {{"value": {{"from": "a", "output": "value"}}}}}}}}}}
        assert engine.run(wf).ok
        torch_free = "torch" not in sys.modules
        result = engine.run({{"format": "nodegraph/1", "nodes": {{"m": {{"type": "probe.via_model", "inputs": {{}}}}}}}},
                            targets=["m"])
        print(json.dumps({{"torch_free": torch_free, "threads": result.outputs["m"]["threads"]}}))
    """)
    env = {"PATH": "/usr/bin:/bin", "NODEGRAPH_THREADS": "3", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer == {"torch_free": True, "threads": 3}  # 3: not the default of a 2-core machine
