"""End-of-run summaries at their edges: failures are counted by kind, and kept pseudo-labels are told from the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.report import print_eval_summary, print_fit_summary, print_predict_summary, print_pseudo_label_summary


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich wraps tables to the terminal width: a fixed wide one keeps every row on one line."""
    monkeypatch.setenv("COLUMNS", "200")


def test_predict_summary_counts_people_and_each_kind_of_failure(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"status": "ok", "count": 2.5},
        {"status": "unreadable_image", "count": None},
        {"status": "ok", "count": 4.0},
        {"status": "unreadable_image", "count": None},
    ]
    print_predict_summary(rows, "out")
    lines = [" ".join(line.strip("│ ").split()) for line in capsys.readouterr().out.splitlines()]
    assert "images counted │ 2" in lines and "people (total) │ 6.5" in lines
    assert "failed: unreadable_image │ 2" in lines


def test_pseudo_label_summary_tells_kept_from_dropped_and_unreadable(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"status": "kept", "count": 3, "uncertainty": 0.1},
        {"status": "dropped", "count": 9, "uncertainty": 0.7},
        {"status": "kept", "count": 5, "uncertainty": 0.2},
        {"status": "unreadable_image"},
    ]
    print_pseudo_label_summary(rows, "pseudo")
    lines = [" ".join(line.strip("│ ").split()) for line in capsys.readouterr().out.splitlines()]
    assert {"pictures │ 4", "kept │ 2", "dropped (less confident) │ 1", "unreadable │ 1"} <= set(lines)
    assert "kept relative uncertainty, max │ 0.2" in lines and "kept people (total) │ 8" in lines


def test_eval_summary_shows_unlabeled_images_only_when_there_are_some(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    summary = {"split": "test", "images": 2, "failed": 0, "unlabeled": 3, "mae": 1.5}
    print_eval_summary(summary, tmp_path)
    lines = [" ".join(line.strip("│ ").split()) for line in capsys.readouterr().out.splitlines()]
    assert {"images │ 2", "failed │ 0", "unlabeled │ 3", "mae │ 1.5"} <= set(lines)
    print_eval_summary({**summary, "unlabeled": 0}, tmp_path)
    assert "unlabeled" not in capsys.readouterr().out


def test_fit_summary_prints_brackets_in_notes_and_paths_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """Rich markup would swallow ``[tasks.depth]`` (the note then read "cache off:  reads") and ``[b]`` in a path."""
    from train.loop import FitResult

    note = "decoded-image cache off: [tasks.depth] reads each of the 84 labeled training rows whole"
    print_fit_summary(FitResult(Path("runs/[b]"), 10, 0, 1.5, notes=[note]))
    out = " ".join(capsys.readouterr().out.split())
    assert "[tasks.depth] reads each" in out and "runs/[b]" in out


def test_rounds_summary_prints_brackets_in_notes_and_paths_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    from train.rounds import RoundsResult, print_rounds_summary

    print_rounds_summary(RoundsResult(Path("runs/[b]"), [{"round": 0, "steps": 4}], notes=["see [tasks.depth] here"]))
    out = " ".join(capsys.readouterr().out.split())
    assert "note: see [tasks.depth] here" in out and "wrote runs/[b]/rounds.csv" in out
