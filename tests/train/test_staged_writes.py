"""Every file train writes whole goes through rankset.io.staged_file: the staging files that killed writers of the
same file left behind are removed by the next write, and a rerun into a finished --out first removes the file that
marks it finished, so a killed rerun never leaves old results beside new ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rankset.io import HOST
from tests.train.test_pseudo_label import tiny_checkpoint
from train.export import ExportConfig, export_model


def dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_export_removes_the_model_sized_temp_files_of_killed_exports_and_keeps_a_live_ones(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "best.pt", masksembles=False)
    out = tmp_path / "out" / "model.pt"
    out.parent.mkdir()
    killed = out.parent / f".model.pt.tmp-{HOST}-{dead_pid()}-0123abcd"
    running = out.parent / f".model.pt.tmp-{HOST}-{os.getppid()}-4567cdef"  # our parent: alive
    other = out.parent / f".other.pt.tmp-{HOST}-{dead_pid()}-89abcdef"  # another file's: not this write's to take
    for leftover in (killed, running, other):
        leftover.write_bytes(b"x" * 1000)
    export_model(ExportConfig(checkpoint, out))
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["model.pt", running.name, other.name])


def test_a_checkpoint_write_that_fails_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    checkpoint = tiny_checkpoint(tmp_path / "best.pt", masksembles=False)
    before = checkpoint.read_bytes()

    def full_disk(obj: object, f: object, *args: object, **kwargs: object) -> None:
        Path(str(f)).write_bytes(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    from train.loop import promote_best

    (tmp_path / "last.pt").write_bytes(before)
    with pytest.raises(OSError, match="No space left"):
        export_model(ExportConfig(checkpoint, tmp_path / "model.pt"))
    promote_best(tmp_path)  # a copy, not torch.save: it still works
    assert checkpoint.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_a_predict_rerun_killed_midway_leaves_no_counts_csv_of_the_earlier_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from train import predict as predict_module
    from train.predict import PredictConfig, predict_images

    checkpoint = tiny_checkpoint(tmp_path / "ckpt.pt", masksembles=False)
    rng = np.random.default_rng(0)
    pictures = []
    for k in range(3):
        pictures.append(tmp_path / "in" / f"p{k}.png")
        pictures[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(pictures[-1])
    config = PredictConfig(checkpoint, (tmp_path / "in",), tmp_path / "out")
    predict_images(config, show_progress=False)
    assert (tmp_path / "out" / "counts.csv").is_file()

    real_save, saved = predict_module.save_overlay, []

    def killed_after_one(*args: object, **kwargs: object) -> None:
        if saved:
            raise KeyboardInterrupt
        saved.append(real_save(*args, **kwargs))

    monkeypatch.setattr(predict_module, "save_overlay", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        predict_images(config, show_progress=False)
    assert not (tmp_path / "out" / "counts.csv").exists()  # overlays without counts.csv: an unfinished --out


def test_an_eval_rerun_killed_before_its_summary_leaves_no_eval_json_of_the_earlier_run(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from train import evaluate as evaluate_module
    from train.evaluate import EvalConfig, evaluate_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "ckpt.pt", masksembles=False)
    config = EvalConfig(checkpoint, str(blob_data["labeled"]), "test", tmp_path / "ev", "cpu", 64)
    evaluate_checkpoint(config, show_progress=False)
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["split"] == "test"

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate_checkpoint(config, show_progress=False)
    assert (tmp_path / "ev" / "images.csv").is_file() and not (tmp_path / "ev" / "eval.json").exists()


def test_predict_lists_overlays_once_whatever_the_number_of_pictures_and_clears_killed_overlay_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rankset.io
    from train.predict import PredictConfig, predict_images

    checkpoint = tiny_checkpoint(tmp_path / "ckpt.pt", masksembles=False)
    rng = np.random.default_rng(1)
    for k in range(4):
        (tmp_path / "in").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "in" / f"p{k}.png")
    torn = tmp_path / "out" / "overlays" / f".p0.png.tmp-{HOST}-{dead_pid()}-0123abcd"
    torn.parent.mkdir(parents=True)
    torn.write_bytes(b"half a png")
    real, listings = rankset.io.remove_stale_staging, []

    def counted(folder: Path, *args: object, **kwargs: object) -> list[str]:
        listings.append(Path(folder).name)
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(rankset.io, "remove_stale_staging", counted)
    predict_images(PredictConfig(checkpoint, (tmp_path / "in",), tmp_path / "out"), show_progress=False)
    assert sorted(listings) == ["out", "overlays"]  # once for overlays/, once for counts.csv: not once a picture
    assert sorted(p.name for p in torn.parent.iterdir()) == [f"p{k}.png" for k in range(4)]
