"""CLI wiring only: fit, eval and predict reach the library and map its errors to clean exits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from train.cli import app

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


def manifest(tmp_path: Path, blob_data: dict[str, Path]) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(
        f"""name = "cli"
[model]
arch = "test-tiny"
pretrained = "none"
[data]
labeled = ["{blob_data["labeled"]}"]
ranked = ["{blob_data["ranked"]}"]
eval = "{blob_data["labeled"]}"
crop = [24, 48]
input_size = 32
sigma = 3
workers = 0
[tasks.rank]
sets_per_batch = 2
[schedule]
steps = 50
batch = 4
eval_every = 2
[optim]
name = "adam"
lr = 0.01
weight_decay = 0.0
"""
    )
    return path


def test_fit_eval_predict_wiring(blob_data: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["fit", str(manifest(tmp_path, blob_data)), "--set", "schedule.steps=2", "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    assert "best validation MAE" in result.output and (run / "best.pt").is_file()
    assert "steps = 2" in (run / "config.toml").read_text()

    evaluate = ["eval", str(run / "best.pt"), "--data", str(blob_data["labeled"]), "--out", str(tmp_path / "ev")]
    result = runner.invoke(app, [*evaluate, "--ranked", str(blob_data["ranked"]), "--ranked-sets", "5"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ev" / "eval.json").is_file() and "mae" in result.output
    ranking = json.loads((tmp_path / "ev" / "eval.json").read_text())["ranking"]
    assert ranking["sets"] == 5 and ranking["pairs"] == 15  # k = 3: three contained pairs per set
    assert "nested pairs ordered wrongly" in result.output

    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    result = runner.invoke(
        app, ["predict", str(run / "best.pt"), str(tmp_path / "a.png"), "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "counts.csv").is_file() and "images counted" in result.output


def test_bad_manifest_key_is_a_usage_error_naming_the_key(blob_data: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["fit", str(manifest(tmp_path, blob_data)), "--set", "schedule.stepz=3"])
    assert result.exit_code == 2
    assert "schedule.stepz" in result.output


def test_missing_dataset_exits_1_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[data]\nlabeled = ["nowhere"]\n[schedule]\nparadigm = "count-only"\n')
    result = runner.invoke(app, ["fit", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "data.labeled[0]" in result.output


def test_eval_of_a_missing_checkpoint_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(tmp_path / "none.pt"), "--data", "x"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_upgrade_rewrites_a_format_1_checkpoint_and_reports_both_versions(tmp_path: Path) -> None:
    import random

    import torch

    from tests.train.test_checkpoint import tiny_checkpoint

    state = torch.load(tiny_checkpoint(tmp_path / "new.pt"), weights_only=True)
    state["rng"].update(python=random.getstate(), numpy=np.random.get_state())  # how format 1 stored them
    torch.save({**state, "format_version": 1}, tmp_path / "old.pt")
    refused = runner.invoke(app, ["export", str(tmp_path / "old.pt"), "--out", str(tmp_path / "m.pt")])
    assert refused.exit_code == 1 and "train upgrade" in refused.output
    result = runner.invoke(app, ["upgrade", str(tmp_path / "old.pt"), "--out", str(tmp_path / "up.pt")])
    assert result.exit_code == 0, result.output
    assert "checkpoint format 1 -> 2, step 3" in result.output and (tmp_path / "up.pt").is_file()


def test_ctrl_c_in_fit_says_how_to_continue_instead_of_a_traceback(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C used to end `train fit` with exit 130 and nothing said (no hint that --resume exists)."""
    import train.loop

    def interrupted(config: object, out: str, resume: bool = False) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train.loop, "fit", interrupted)
    run = tmp_path / "run"
    result = runner.invoke(app, ["fit", str(manifest(tmp_path, blob_data)), "--out", str(run)])
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert "interrupted before the first checkpoint" in result.output and "without --resume" in result.output
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    result = runner.invoke(app, ["fit", str(manifest(tmp_path, blob_data)), "--out", str(run)])
    assert result.exit_code == 130 and "rerun the same command with --resume" in result.output
