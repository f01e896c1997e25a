"""Pack discovery: built-in, directory and entry-point packs; failures are isolated and reported."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import TESTS

import nodegraph
from nodegraph import Engine, Pack, PackError, Registry, Settings, load_packs
from nodegraph.plugins import ENTRY_POINT_GROUP

SAMPLE = TESTS / "sample_pack"


def write_pack(folder: Path, name: str, body: str) -> Path:
    pack = folder / name
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(textwrap.dedent(body))
    return pack


GOOD = """
    import nodegraph
    from nodegraph import Node, Port

    class Hello(Node):
        \"\"\"Says hello.\"\"\"
        name = "hello"

        class Inputs(nodegraph.Inputs):
            who: str = Port("world", description="Whom to greet.")

        class Outputs(nodegraph.Outputs):
            text: str = Port(description="The greeting.")

        def run(self, inputs, ctx):
            return self.Outputs(text=f"hello {inputs.who}")

    PACK = nodegraph.Pack("{name}", nodes=[Hello])
"""


def test_builtin_packs_load_without_failures():
    registry = load_packs(Registry(), builtin=True, entry_points=False)
    assert "core" in registry.packs
    assert registry.packs["core"].source == "builtin:nodes.core"
    assert not registry.failures
    assert "core.save_image" in registry


def test_directory_pack_loads_with_relative_imports_and_web_folder():
    registry = load_packs(Registry(), builtin=False, entry_points=False, dirs=[SAMPLE])
    assert not registry.failures, registry.failures
    info = registry.packs["sample"]
    assert info.source.startswith("dir:") and info.node_types == ["sample.invert"]
    assert info.web_dir is not None and (info.web_dir / "sample.js").is_file()


def test_entry_point_pack_loads(tmp_path, monkeypatch):
    # A real distribution on sys.path: a dist-info with the pack's entry point, as pip would install it.
    site = tmp_path / "site"
    dist = site / "ng_sample_pack-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ng-sample-pack\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nsample = ng_sample_pack\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(SAMPLE))
    registry = load_packs(Registry(), builtin=False, entry_points=True)
    assert "sample.invert" in registry, registry.failures
    assert registry.packs["sample"].source == "entry-point:ng-sample-pack:sample"


def test_a_pack_that_fails_to_import_is_reported_and_the_others_load(tmp_path):
    write_pack(tmp_path, "broken", "import nodegraph\nraise RuntimeError('boom at import')\n")
    write_pack(tmp_path, "good", GOOD.replace("{name}", "good"))
    registry = load_packs(Registry(), builtin=True, entry_points=False, dirs=[tmp_path])
    assert "good.hello" in registry and "core.math" in registry
    assert len(registry.failures) == 1
    failure = registry.failures[0]
    assert "broken" in failure.source
    assert "RuntimeError: boom at import" in failure.message
    assert "Traceback" in failure.traceback and "boom at import" in failure.traceback


def test_a_pack_calling_sys_exit_or_with_a_syntax_error_does_not_stop_loading(tmp_path):
    write_pack(tmp_path, "exits", "import sys\nsys.exit(3)\n")
    write_pack(tmp_path, "syntax", "def broken(:\n")
    write_pack(tmp_path, "good", GOOD.replace("{name}", "good"))
    registry = load_packs(Registry(), builtin=False, entry_points=False, dirs=[tmp_path])
    assert "good.hello" in registry
    assert sorted(Path(f.source).name for f in registry.failures) == ["exits", "syntax"]


def test_a_module_without_pack_is_reported(tmp_path):
    write_pack(tmp_path, "nopack", "X = 1\n")
    registry = load_packs(Registry(), builtin=False, entry_points=False, dirs=[tmp_path])
    assert "defines no PACK" in registry.failures[0].message


def test_duplicate_type_id_is_an_error_naming_both_packs(tmp_path):
    write_pack(tmp_path / "a", "one", GOOD.replace("{name}", "dup"))
    write_pack(tmp_path / "b", "two", GOOD.replace("{name}", "dup"))
    registry = load_packs(Registry(), builtin=False, entry_points=False, dirs=[tmp_path / "a", tmp_path / "b"])
    assert len(registry.failures) == 1
    message = registry.failures[0].message
    assert "'dup'" in message and "one" in message and "two" in message


def test_duplicate_node_name_inside_one_pack_is_refused():
    class A(nodegraph.Node):
        """A."""

        name = "same"

    class B(nodegraph.Node):
        """B."""

        name = "same"

    registry = Registry()
    with pytest.raises(nodegraph.DuplicateNodeType, match="defined twice"):
        registry.add_pack(Pack("p", nodes=[A, B]), "test")
    assert len(registry) == 0  # all or nothing


def test_malformed_node_is_a_pack_error():
    class Bad(nodegraph.Node):
        """Bad port type."""

        name = "bad"

        class Inputs(nodegraph.Inputs):
            x: object = nodegraph.Port(description="?")

    with pytest.raises(PackError, match="link_type"):
        Registry().add_pack(Pack("p", nodes=[Bad]), "test")


def test_missing_nodes_dir_is_reported(tmp_path):
    registry = load_packs(Registry(), builtin=False, entry_points=False, dirs=[tmp_path / "nope"])
    assert "does not exist" in registry.failures[0].message


def test_catalogue_lists_failed_packs(tmp_path):
    write_pack(tmp_path, "broken", "raise ImportError('missing dependency foo')\n")
    settings = Settings(nodes_dirs=[tmp_path], entry_point_packs=False)
    cat = Engine.from_settings(settings).registry.catalogue()
    assert cat["failed_packs"][0]["message"].startswith("ImportError: missing dependency foo")
    assert "core.math" in cat["nodes"]
