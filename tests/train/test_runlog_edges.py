"""Run-folder logs at their edges: a resume keeps the metrics of the checkpoint's own step, CSV rows of different
keys keep every column, and JSON never holds a NaN."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from train.runlog import MetricsLog, write_json, write_rows_csv


def test_truncating_after_a_step_keeps_that_step(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (2, 4, 6):
        log.append({"step": step, "loss": float(step)})
    log.truncate_after(4)
    assert [r["step"] for r in log.read()] == [2, 4]


def test_csv_columns_are_the_union_of_every_row_keys(tmp_path: Path) -> None:
    rows = [{"image_id": "a", "status": "unreadable_image"}, {"image_id": "b", "status": "ok", "count": 3}]
    write_rows_csv(tmp_path / "rows.csv", rows)
    with (tmp_path / "rows.csv").open(newline="") as f:
        written = list(csv.DictReader(f))
    assert written == [
        {"image_id": "a", "status": "unreadable_image", "count": ""},
        {"image_id": "b", "status": "ok", "count": "3"},
    ]


def test_non_finite_numbers_are_written_as_null(tmp_path: Path) -> None:
    write_json(tmp_path / "eval.json", {"mae": math.nan, "rmse": math.inf, "nae": 0.5})
    text = (tmp_path / "eval.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"mae": None, "nae": 0.5, "rmse": None}
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"step": 1, "val_mae": math.nan})
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "val_mae": null}\n'


def test_a_last_line_cut_short_by_a_crash_is_dropped_and_truncating_rewrites_the_log_clean(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (2, 4):
        log.append({"step": step, "loss": float(step)})
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 6, "lo')  # the machine died mid-append
    assert [r["step"] for r in log.read()] == [2, 4]
    log.truncate_after(4)  # what --resume does first: the next append starts on a fresh line
    log.append({"step": 6, "loss": 6.0})
    assert [r["step"] for r in log.read()] == [2, 4, 6]


def test_a_damaged_line_before_the_last_is_an_error_naming_the_line(tmp_path: Path) -> None:
    import pytest

    from train.errors import DataError

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2}\n{"step": 4, oops\n{"step": 6}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl line 2 is not a JSON record .*delete that line"):
        MetricsLog(path).read()
