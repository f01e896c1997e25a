"""nodegraph.lazy_exports: a module's names imported on first use (what packs' api modules rely on)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import nodegraph


def test_names_load_on_first_use_as_attributes_or_modules():
    getattr_ = nodegraph.lazy_exports("json", {"dumps": "json:dumps", "decoder": ".decoder"})
    import json
    import json.decoder

    assert getattr_("dumps") is json.dumps and getattr_("decoder") is json.decoder
    with pytest.raises(AttributeError, match="module 'json' has no attribute 'loads'"):
        getattr_("loads")


def test_loading_the_packs_imports_no_torch_or_pil_and_their_api_modules_load_them_on_use():
    code = ("import sys; from nodegraph import Engine, Settings; Engine.from_settings(Settings(entry_point_packs=False));"
            " import nodes.unclip.api, nodes.shapes.api as shapes; print('torch' in sys.modules, 'PIL' in sys.modules);"
            " nodes.unclip.api.sample_decoder; shapes.analyse; print('torch' in sys.modules, 'PIL' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "False", "True", "True"], out.stderr[-2000:]


def test_validating_with_every_builtin_pack_imports_no_numpy():
    # `nodegraph validate` and the server's start pay for every import a pack makes when it is loaded
    code = ("import sys; from nodegraph import Engine, Settings; Engine.from_settings(Settings(entry_point_packs=False));"
            " print(sorted(m for m in ('numpy', 'torch', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
