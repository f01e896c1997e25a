"""The cached pack index: a later start imports only the packs whose node types it needs, and any
change to the packs (an edited file, a new pack, a pack that fails) is seen."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from test_plugins import GOOD

from nodegraph import Registry, Settings, load_packs
from nodegraph.packindex import IndexedRegistry, index_path
from nodegraph.plugins import load_settings_packs


def _source(log: Path, name: str, node: str, aliases: dict) -> str:
    """test_plugins' pack, which also logs its import and may name its node otherwise and keep old ids."""
    body = textwrap.dedent(GOOD).replace("{name}", name).replace('name = "hello"', f'name = "{node}"')
    body = body.replace("nodes=[Hello])", f"nodes=[Hello], aliases={aliases!r})")
    return f"with open({str(log)!r}, 'a') as f:\n    f.write({name!r} + '\\n')\n" + body


@pytest.fixture
def places(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "packs"
    folder.mkdir()
    log = tmp_path / "imported.txt"
    settings = Settings(builtin_packs=False, entry_point_packs=False, nodes_dirs=[folder])
    yield folder, log, settings
    _forget_dir_packs()


def _forget_dir_packs() -> None:
    """Drop the imported folder packs, as a new process would not have them."""
    for name in [m for m in sys.modules if m.startswith("nodegraph_ext_")]:
        del sys.modules[name]


def write(folder: Path, log: Path, name: str, node: str = "hello", aliases: dict | None = None) -> Path:
    path = folder / f"{name}.py"
    path.write_text(_source(log, name, node, aliases or {}))
    return path


def start(settings: Settings, log: Path) -> Registry:
    """A new process's registry: no folder pack imported yet, the import log emptied."""
    _forget_dir_packs()
    log.write_text("")
    return load_settings_packs(settings, indexed=True)


def imported(log: Path) -> list[str]:
    return log.read_text().split()


def test_a_later_start_imports_only_the_pack_of_the_node_type_asked_for(places):
    folder, log, settings = places
    write(folder, log, "alpha")
    write(folder, log, "beta", aliases={"beta.old": "hello"})
    first = start(settings, log)
    assert not isinstance(first, IndexedRegistry) and imported(log) == ["alpha", "beta"]
    assert index_path(False, False, [folder]).is_file()

    again = start(settings, log)
    assert isinstance(again, IndexedRegistry) and imported(log) == []
    assert "beta.hello" in again and "beta.old" in again and "gamma.hello" not in again
    assert again.get("alpha.hello").type_id == "alpha.hello" and imported(log) == ["alpha"]
    assert again.get("beta.old").type_id == "beta.hello" and imported(log) == ["alpha", "beta"]


def test_listing_everything_loads_every_pack_in_the_order_of_a_full_load(places):
    folder, log, settings = places
    for name in ("alpha", "beta", "gamma"):
        write(folder, log, name)
    start(settings, log)
    again = start(settings, log)
    again.get("gamma.hello")
    full = load_packs(Registry(), builtin=False, entry_points=False, dirs=[folder])
    assert [s.type_id for s in again.specs()] == [s.type_id for s in full.specs()]
    assert list(again.packs) == list(full.packs) and not again.failures
    assert again.suggest("alpha.helo") == full.suggest("alpha.helo")


def test_an_edited_pack_is_imported_again(places):
    folder, log, settings = places
    write(folder, log, "alpha")
    path = write(folder, log, "beta")
    start(settings, log)
    write(folder, log, "beta", node="hi")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    again = start(settings, log)
    assert "beta.hi" in again and "beta.hello" not in again
    assert imported(log) == ["alpha", "beta"]  # stale index: a full load
    assert isinstance(start(settings, log), IndexedRegistry)  # ... which wrote it again


def test_a_new_pack_file_is_found(places):
    folder, log, settings = places
    write(folder, log, "alpha")
    start(settings, log)
    write(folder, log, "gamma")
    again = start(settings, log)
    assert again.get("gamma.hello") is not None and imported(log) == ["alpha", "gamma"]


def test_a_pack_that_fails_to_import_is_reported_on_every_start(places):
    folder, log, settings = places
    write(folder, log, "alpha")
    start(settings, log)
    (folder / "broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    for _ in range(2):
        registry = start(settings, log)
        assert not isinstance(registry, IndexedRegistry)
        assert [f.message for f in registry.failures] == ["RuntimeError: broken on purpose"]
        assert "alpha.hello" in registry
    (folder / "broken.py").unlink()
    start(settings, log)
    assert isinstance(start(settings, log), IndexedRegistry)


def test_an_unwritable_cache_only_costs_the_index(places, tmp_path, monkeypatch):
    folder, log, settings = places
    write(folder, log, "alpha")
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file: no folder can be made in it
    for _ in range(2):
        registry = start(settings, log)
        assert not isinstance(registry, IndexedRegistry) and "alpha.hello" in registry
