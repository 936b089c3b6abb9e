"""train export at its edges: it never writes over its own input, and the exported file keeps the step it came from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.train.test_pseudo_label import tiny_checkpoint
from train.checkpoint import load_checkpoint
from train.errors import ConfigError
from train.export import ExportConfig, export_model


def test_exporting_onto_the_checkpoint_itself_is_refused_however_it_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "best.pt")
    before = checkpoint.read_bytes()
    monkeypatch.chdir(tmp_path)
    for out in (checkpoint, Path("best.pt"), tmp_path / "sub" / ".." / "best.pt"):
        with pytest.raises(ConfigError, match=r"--out .* is the checkpoint itself; choose another file, e.g. model.pt"):
            ExportConfig(checkpoint, out)
    assert checkpoint.read_bytes() == before


def test_the_exported_file_keeps_the_step_and_names_its_source(tmp_path: Path) -> None:
    import torch

    state = load_checkpoint(tiny_checkpoint(tmp_path / "best.pt"))
    state["step"] = 120
    torch.save(state, tmp_path / "best.pt")
    summary = export_model(ExportConfig(tmp_path / "best.pt", tmp_path / "deep" / "model.pt"))
    exported = load_checkpoint(tmp_path / "deep" / "model.pt")
    assert (summary["step"], exported["step"], exported["exported_from"]) == (120, 120, str(tmp_path / "best.pt"))
    assert os.listdir(tmp_path / "deep") == ["model.pt"]  # the temp file was renamed into place


def test_an_out_that_is_a_folder_is_refused_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "best.pt", masksembles=False)
    (tmp_path / "models").mkdir()
    with pytest.raises(ConfigError, match=r"--out .*models is a folder; pass a file path, e.g. .*models/model.pt"):
        ExportConfig(checkpoint, tmp_path / "models")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "models"]


def test_an_out_under_a_file_is_a_data_error_naming_it_not_a_traceback(tmp_path: Path) -> None:
    """`train export CKPT --out afile/model.pt` was a FileExistsError traceback."""
    from tests.train.test_checkpoint import tiny_checkpoint
    from train.errors import DataError
    from train.export import ExportConfig, export_model

    (tmp_path / "afile").write_text("")
    with pytest.raises(DataError, match=r"--out .*afile cannot be written to \(FileExistsError"):
        export_model(ExportConfig(tiny_checkpoint(tmp_path / "best.pt"), tmp_path / "afile" / "model.pt"))
