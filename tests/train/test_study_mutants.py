"""train study tabulation, pinned where hand-made mutants survived: the table is the mean (not the median) and the
sample standard deviation over three or more seeds, only finished runs count, and a child that exits 0 without
writing eval.json is a failed run. Each run's ``train fit`` child is faked at ``train.study.call_fit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from train.errors import TrainError
from train.study import load_study, run_study
from train.study_results import summarise, summary_markdown


def study(tmp_path: Path, body: str) -> Any:
    (tmp_path / "base.toml").write_text("name = 'base'\n")
    path = tmp_path / "study.toml"
    path.write_text('name = "s"\nmanifest = "base.toml"\n' + body)
    return load_study(path)


def fake_fit(monkeypatch: pytest.MonkeyPatch, outcome: Any) -> None:
    """Each run's child writes ``outcome(run name)`` as eval.json and exits 0; an int is an exit code, no file;
    None exits 0 without writing eval.json."""
    monkeypatch.setattr("train.study.preflight", lambda study, runs: None)

    def call(command: list[str], **kwargs: Any) -> int:
        folder = Path(command[command.index("--out") + 1])
        result = outcome(folder.name)
        if isinstance(result, int):
            return result
        if result is not None:
            (folder / "eval.json").write_text(json.dumps(result))
        return 0

    monkeypatch.setattr("train.study.call_fit", call)


def test_the_table_is_the_mean_and_sample_std_over_three_seeds_not_the_median(tmp_path: Path) -> None:
    config = study(tmp_path, 'seeds = [0, 1, 2]\n[grid]\n"schedule.paradigm" = ["multitask"]\n')
    df = pd.DataFrame(
        [{"run": f"s{s}", "schedule.paradigm": "multitask", "seed": s, "mae": mae} for s, mae in enumerate((1, 2, 6))]
    )
    table = summarise(config, df)
    assert table.loc[0, "mean"] == pytest.approx(3.0)  # the median would be 2
    assert table.loc[0, "std"] == pytest.approx(7**0.5)  # ddof = 1: sqrt((4 + 1 + 9) / 2)
    assert "| multitask | 3.00 ± 2.65 (n=3) |" in summary_markdown(config, df)


def test_only_finished_runs_enter_the_table_and_a_silent_child_without_eval_json_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = study(tmp_path, 'seeds = [0, 1, 2, 3]\n[grid]\n"schedule.paradigm" = ["multitask"]\n')
    maes = {"seed=0": 1.0, "seed=1": 2.0, "seed=2": 6.0}

    def outcome(name: str) -> Any:
        seed = name.rsplit("__", 1)[-1]
        return {"mae": maes[seed], "step": 4} if seed in maes else None  # seed=3 exits 0 but wrote nothing

    fake_fit(monkeypatch, outcome)
    with pytest.raises(TrainError, match="1 of 4 runs failed"):
        run_study(config, tmp_path / "out", progress=False)
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(results["status"]) == ["ok", "ok", "ok", "failed (exit 0)"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| multitask | 3.00 ± 2.65 (n=3) |" in table  # the failed run is neither a value nor counted in n
    assert "seed=3" not in table and table.count("| paradigm=multitask__seed=") == 3  # per-run lines: finished only
