"""train compare without models: the table read from each run folder, the example pictures it picks, and the
arguments it refuses. Drawing the report from real checkpoints is tests/train/test_study.py's compare test."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from train.compare import CompareConfig, _pick_examples, run_table
from train.errors import ConfigError


def finished_run(folder: Path, metrics: dict[str, float], manifest: str | None) -> Path:
    """A run folder as compare reads it: eval.json, best.pt (only its presence matters here) and config.toml."""
    folder.mkdir(parents=True)
    (folder / "eval.json").write_text(json.dumps(metrics))
    (folder / "best.pt").write_bytes(b"")
    if manifest is not None:
        (folder / "config.toml").write_text(manifest)
    return folder


def test_the_table_reads_each_run_own_manifest_and_metrics(tmp_path: Path) -> None:
    alone = finished_run(
        tmp_path / "alone",
        {"mae": 3.5, "rmse": 4.0, "nae": 0.2, "game0": 3.5, "game3": 6.0, "step": 40},
        '[schedule]\nparadigm = "count-only"\n[data]\nlabeled_fraction = 0.25\n',
    )
    old = finished_run(tmp_path / "old", {"mae": 2.0, "step": 8}, None)  # a run folder without config.toml
    rows = run_table(CompareConfig((alone, old), tmp_path / "cmp.png"))
    assert rows[0] == {
        "run": "alone",
        "paradigm": "count-only",
        "labeled_fraction": 0.25,
        "best_step": 40,
        "mae": 3.5,
        "rmse": 4.0,
        "nae": 0.2,
        "game0": 3.5,
        "game3": 6.0,
    }
    assert (rows[1]["run"], rows[1]["paradigm"], rows[1]["labeled_fraction"], rows[1]["rmse"]) == (
        "old",
        "?",
        1.0,
        None,
    )
    labeled = run_table(CompareConfig((alone, old), tmp_path / "cmp.png", labels=("A", "B")))
    assert [r["run"] for r in labeled] == ["A", "B"]


def test_examples_spread_from_the_sparsest_to_the_densest_readable_picture() -> None:
    df = pd.DataFrame(
        {
            "image_id": ["m", "dense", "broken", "sparse", "n", "o"],
            "count": [20, 90, 500, 1, 30, 40],
            "status": ["ok", "ok", "unreadable_image", "ok", "ok", "ok"],
        }
    )
    assert _pick_examples(df, 3) == [("sparse", 1.0), ("n", 30.0), ("dense", 90.0)]  # the median between
    assert [i for i, _ in _pick_examples(df, 10)] == ["sparse", "m", "n", "o", "dense"]  # each picture at most once
    assert _pick_examples(df, 0) == []


def test_labels_must_match_the_runs_and_examples_cannot_be_negative(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "r", {"mae": 1.0}, None)
    with pytest.raises(ConfigError, match="--label was given 2 times for 1 runs; give one per run"):
        CompareConfig((run,), tmp_path / "c.png", labels=("a", "b"))
    with pytest.raises(ConfigError, match="--examples -1 is out of range"):
        CompareConfig((run,), tmp_path / "c.png", examples=-1)
    with pytest.raises(ConfigError, match="at least one RUN"):
        CompareConfig((), tmp_path / "c.png")


@pytest.mark.parametrize("name", ["report", "report.txt", "report.pdf"])
def test_out_that_is_not_a_png_is_refused_before_anything_is_drawn(tmp_path: Path, name: str) -> None:
    run = finished_run(tmp_path / "r", {"mae": 1.0}, None)
    with pytest.raises(ConfigError, match=rf"--out .*{name} must end in .png"):
        CompareConfig((run,), tmp_path / name)


def test_an_out_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "r", {"mae": 1.0}, None)
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(ConfigError, match=r"--out .*taken.png is a folder; pass the path of the PNG"):
        CompareConfig((run,), tmp_path / "taken.png")


def test_the_printed_table_shows_a_label_with_brackets_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --label such as "[b] ranking" was taken for rich markup and vanished from the table."""
    from typer.testing import CliRunner

    import train.compare
    from train.cli import app

    run = finished_run(tmp_path / "b", {"mae": 2.0, "step": 8}, None)
    monkeypatch.setattr(train.compare, "compare_runs", lambda config: (run_table(config), config.out))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["compare", str(run), "--label", "[b] ranking", "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert "[b] ranking" in result.output


def test_a_damaged_run_file_is_a_data_error_naming_it_and_a_damaged_log_or_manifest_only_shortens_the_report(
    tmp_path: Path,
) -> None:
    """A corrupt eval.json was a JSONDecodeError traceback (a list: AttributeError), a missing eval_images.csv a
    FileNotFoundError, a missing metrics.jsonl or a half-written last line (a killed run) one too, and so was a
    damaged config.toml."""
    from train.compare import read_images_csv, validation_curve
    from train.errors import DataError

    broken = finished_run(tmp_path / "broken", {}, "[schedule\n")
    (broken / "eval.json").write_text("{bad")
    with pytest.raises(DataError, match=r"broken/eval.json cannot be read \(JSONDecodeError: .*Fix: leave this run"):
        run_table(CompareConfig((broken,), tmp_path / "cmp.png"))
    (broken / "eval.json").write_text("[1]")
    with pytest.raises(DataError, match=r"eval.json holds a JSON list, not the metrics object"):
        run_table(CompareConfig((broken,), tmp_path / "cmp.png"))
    (broken / "eval.json").write_text('{"mae": 1.0}')
    assert run_table(CompareConfig((broken,), tmp_path / "cmp.png"))[0]["paradigm"] == "?"
    with pytest.raises(DataError, match=r"broken/eval_images.csv cannot be read \(FileNotFoundError"):
        read_images_csv(broken / "eval_images.csv")
    assert validation_curve(broken / "metrics.jsonl") == []
    (broken / "metrics.jsonl").write_text('{"step": 2, "val_mae": 4.5}\n{"step": 4, "loss": 1}\n{"step": 6, "val_m')
    assert validation_curve(broken / "metrics.jsonl") == [{"step": 2, "val_mae": 4.5}]


def test_an_out_under_a_file_is_a_data_error_before_any_run_is_read(tmp_path: Path) -> None:
    from train.compare import compare_runs
    from train.errors import DataError

    run = finished_run(tmp_path / "r", {"mae": 1.0}, None)
    (run / "eval.json").write_text("[")  # reading it would fail differently: the folder is checked first
    (tmp_path / "afile").write_text("")
    with pytest.raises(DataError, match=r"--out .*afile cannot be written to"):
        compare_runs(CompareConfig((run,), tmp_path / "afile" / "report.png"))
