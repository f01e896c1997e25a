"""What volatile nodes fingerprint with: the narrow planning-time context and the file signature."""

from __future__ import annotations

import os

import pytest

from nodegraph import FingerprintContext, ModelStore, NodegraphError, Settings, UnsafePath, file_signature


def test_a_folder_signature_changes_with_any_file_under_it_and_only_then(tmp_path):
    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "weights.safetensors").write_bytes(b"x" * 10)
    first = file_signature(model)
    assert file_signature(model) == first and "sub/weights.safetensors:10:" in first
    st = (model / "sub" / "weights.safetensors").stat()
    os.utime(model / "sub" / "weights.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    assert file_signature(model) != first  # same size, touched
    second = file_signature(model)
    (model / "extra.txt").write_text("new")
    assert file_signature(model) != second
    assert file_signature(model / "config.json") == f"{model / 'config.json'}:2:{(model / 'config.json').stat().st_mtime_ns}"


def test_the_context_finds_models_and_inputs_as_the_running_node_does(tmp_path):
    (tmp_path / "models" / "sam" / "tiny").mkdir(parents=True)
    (tmp_path / "input").mkdir()
    settings = Settings(model_dirs=[tmp_path / "models"], input_dir=tmp_path / "input", allow_model_paths=False)
    ctx = FingerprintContext.from_settings(settings)
    store = ModelStore(settings.model_dirs, allow_paths=False)
    assert ctx.resolve_model("tiny", "sam") == store.resolve("tiny", "sam") == tmp_path / "models" / "sam" / "tiny"
    with pytest.raises(UnsafePath, match="paths are not allowed"):
        ctx.resolve_model(str(tmp_path / "models" / "sam" / "tiny"), "sam")
    with pytest.raises(NodegraphError, match="available: tiny"):
        ctx.resolve_model("nope", "sam")
    assert ctx.resolve_input("a/b.png") == tmp_path / "input" / "a" / "b.png"
    with pytest.raises(UnsafePath):
        ctx.resolve_input("../secret.png")
    assert (ctx.model_dirs, ctx.input_dir, ctx.allow_model_paths) == ((tmp_path / "models",), tmp_path / "input", False)
