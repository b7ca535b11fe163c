"""The exporter installs a model only when its parity check passed, and never half of one."""

import hashlib

import pytest

import export_onnx
from fillmask import parity

pytestmark = pytest.mark.export


def digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def export(source, output):
    return export_onnx.main(["--model", str(source), "--output", str(output)])


def test_a_failed_parity_check_leaves_the_output_as_it_was(tiny_source, tmp_path, monkeypatch):
    out = tmp_path / "models" / "m"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("an older model lives here")
    before = digests(out)
    monkeypatch.setattr(parity, "TOLERANCE", -1.0)  # no graph can pass
    assert export(tiny_source, out) == 1
    assert digests(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["m"]  # no temporary left behind


def test_a_missing_output_is_created_whole(tiny_source, tmp_path):
    out = tmp_path / "models" / "new"
    assert export(tiny_source, out) == 0
    assert {"manifest.json", "model.onnx", "tokenizer.json", "vocab.txt"} <= set(digests(out))
    assert sorted(p.name for p in out.parent.iterdir()) == ["new"]


def test_an_existing_directory_keeps_its_other_files(tiny_source, tmp_path):
    out = tmp_path / "hf-folder"
    out.mkdir()
    (out / "config.json").write_text("{}")  # say, the Hugging Face save_pretrained copy
    (out / "model.int8.onnx").write_bytes(b"stale")  # from an earlier --int8 export
    assert export(tiny_source, out) == 0
    names = set(digests(out))
    assert "config.json" in names and "manifest.json" in names
    assert "model.int8.onnx" not in names  # not in the new manifest: removed


@pytest.mark.parametrize("umask, directory, files", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_the_model_directory_has_the_modes_of_the_umask(
    tiny_source, tmp_path, umask, directory, files
):
    """As mkdir and open would make them: readable by the service's user at the usual umask."""
    import os
    import stat

    out = tmp_path / "models" / "m"
    old = os.umask(umask)
    try:
        assert export(tiny_source, out) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == directory
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert "model.onnx" in modes and "manifest.json" in modes
    assert modes == dict.fromkeys(modes, files)
