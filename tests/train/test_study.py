"""train study: a grid of runs, resumable run by run, tabulated as CSV, Markdown and a plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from train.errors import ConfigError
from train.study import load_study, run_study
from train.study_results import summary_markdown

MANIFEST = """
name = "tiny"
seed = 0
[model]
arch = "test-tiny"
pretrained = "none"
[data]
labeled = ["{labeled}"]
ranked = ["{ranked}"]
eval = "{labeled}"
crop = [24, 48]
input_size = 32
sigma = 3.0
workers = 0
val_fraction = 0.125
[tasks.rank]
weight = 1.0
sets_per_batch = 2
[schedule]
paradigm = "multitask"
steps = 4
batch = 4
eval_every = 2
log_every = 2
[optim]
name = "adam"
lr = 0.01
weight_decay = 0.0
"""

STUDY = """
name = "grid"
manifest = "base.toml"
seeds = [0, 1]
[grid]
"schedule.paradigm" = ["count-only", "multitask"]
"data.labeled_fraction" = [0.5]
[set]
"schedule.steps" = 4
"""


@pytest.fixture
def study_file(blob_data: dict[str, Path], tmp_path: Path) -> Path:
    (tmp_path / "base.toml").write_text(MANIFEST.format(labeled=blob_data["labeled"], ranked=blob_data["ranked"]))
    path = tmp_path / "grid.toml"
    path.write_text(STUDY)
    return path


def test_study_runs_every_point_and_seed_and_tabulates_mean_and_spread(study_file: Path, tmp_path: Path) -> None:
    study = load_study(study_file)
    assert [r["name"] for r in study.runs()] == [
        "paradigm=count-only__labeled_fraction=0.5__seed=0",
        "paradigm=count-only__labeled_fraction=0.5__seed=1",
        "paradigm=multitask__labeled_fraction=0.5__seed=0",
        "paradigm=multitask__labeled_fraction=0.5__seed=1",
    ]
    rows = run_study(study, tmp_path / "out", jobs=2, progress=False)
    assert [r["status"] for r in rows] == ["ok"] * 4
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(df) == 4 and set(df["seed"]) == {0, 1}
    per_image = pd.read_csv(tmp_path / "out" / "runs" / rows[0]["run"] / "eval_images.csv")
    ratio = per_image["predicted"].sum() / per_image["count"].sum()
    assert df.loc[0, "count_ratio"] == pytest.approx(ratio) and -1 <= df.loc[0, "spearman"] <= 1
    config = (tmp_path / "out" / "runs" / rows[0]["run"] / "config.toml").read_text()
    assert "labeled_fraction = 0.5" in config and 'paradigm = "count-only"' in config
    table = (tmp_path / "out" / "results.md").read_text()
    mean = df[df["schedule.paradigm"] == "multitask"]["mae"].mean()
    assert f"{mean:.2f} ± " in table and "(n=2)" in table
    first = df.loc[0]
    assert f"| {first['run']} | {first['mae']:.2f} | {first['spearman']:.3f} | {first['count_ratio']:.3f} |" in table
    assert (tmp_path / "out" / "results.png").stat().st_size > 1000


def test_a_second_invocation_reads_finished_runs_back_without_training(study_file: Path, tmp_path: Path) -> None:
    study = load_study(study_file)
    run_study(study, tmp_path / "out", progress=False)
    evals = sorted((tmp_path / "out" / "runs").glob("*/eval.json"))
    stamps = [p.stat().st_mtime_ns for p in evals]
    again = run_study(study, tmp_path / "out", progress=False)
    assert [p.stat().st_mtime_ns for p in evals] == stamps
    assert all(r["status"] == "ok" for r in again)


def test_sharing_a_folder_with_other_overrides_is_refused(study_file: Path, tmp_path: Path) -> None:
    run_study(load_study(study_file), tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match="other overrides"):
        run_study(load_study(study_file, ["schedule.steps=6"]), tmp_path / "out", progress=False)


def test_folds_run_each_point_on_each_fold_and_average_over_folds(blob_data: dict[str, Path], tmp_path: Path) -> None:
    """UCF_CC_50's protocol: every grid point and seed trains and tests once per fold dataset."""
    from tests.train.conftest import build_labeled

    folds = [build_labeled(tmp_path / f"fold{k}", {"train": 12, "test": 3}, seed=10 + k) for k in (1, 2)]
    (tmp_path / "base.toml").write_text(MANIFEST.format(labeled=blob_data["labeled"], ranked=blob_data["ranked"]))
    study_path = tmp_path / "folds.toml"
    study_path.write_text(
        'name = "folds"\nmanifest = "base.toml"\nseeds = [0]\nfolds = ['
        + ", ".join(f'"{f}"' for f in folds)
        + ']\n[grid]\n"schedule.paradigm" = ["count-only"]\n'
    )
    study = load_study(study_path)
    assert [r["name"] for r in study.runs()] == [
        "paradigm=count-only__fold=1__seed=0",
        "paradigm=count-only__fold=2__seed=0",
    ]
    rows = run_study(study, tmp_path / "out", jobs=2, progress=False)
    assert [r["status"] for r in rows] == ["ok"] * 2
    for row in rows:
        config = (tmp_path / "out" / "runs" / row["run"] / "config.toml").read_text()
        fold = folds[row["fold"] - 1]
        assert f'labeled = ["{fold}"]' in config and f'eval = "{fold}"' in config
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(df["fold"]) == [1, 2]
    table = (tmp_path / "out" / "results.md").read_text()
    mean = df[df["schedule.paradigm"] == "count-only"]["mae"].mean()
    assert "over 2 folds" in table and f"{mean:.2f} ± " in table and "(n=2)" in table
    assert f"| 1 | {df.loc[0, 'mae']:.2f} |" in table and f"| 2 | {df.loc[1, 'mae']:.2f} |" in table  # per fold
    study_path.write_text(study_path.read_text().replace("[grid]", '[set]\n"data.eval" = "x"\n[grid]'))
    with pytest.raises(ConfigError, match=r"\['data.eval'\] and `folds`"):
        load_study(study_path)


def test_bad_study_files_fail_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text("name = 'x'\n")
    bad = tmp_path / "bad.toml"
    bad.write_text('manifest = "base.toml"\nseed = [1]\n')
    with pytest.raises(ConfigError, match="seed"):
        load_study(bad)
    bad.write_text('manifest = "nope.toml"\n')
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(bad)
    bad.write_text('manifest = "base.toml"\nseeds = [0, -1]\n')
    with pytest.raises(ConfigError, match=r"study seeds = \[0, -1\] holds \[-1\]: each seed must be an integer in"):
        load_study(bad)
    bad.write_text('manifest = "base.toml"\nmetric = "accuracy"\n')
    with pytest.raises(ConfigError, match="accuracy"):
        load_study(bad)


def test_summary_table_puts_the_first_grid_key_in_columns(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text("name = 'x'\n")
    (tmp_path / "s.toml").write_text(
        'manifest = "base.toml"\nseeds = [0, 1]\n[grid]\n"schedule.paradigm" = ["a", "b"]\n'
        '"data.labeled_fraction" = [0.1, 1.0]\n'
    )
    study = load_study(tmp_path / "s.toml")
    df = pd.DataFrame(
        [
            {"run": f"{p}-{f}-{s}", "schedule.paradigm": p, "data.labeled_fraction": f, "seed": s, "mae": mae}
            for p, f, s, mae in [("a", 0.1, 0, 10.0), ("a", 0.1, 1, 12.0), ("b", 0.1, 0, 8.0), ("b", 0.1, 1, 8.0),
                                 ("a", 1.0, 0, 5.0), ("a", 1.0, 1, 5.0), ("b", 1.0, 0, 4.0), ("b", 1.0, 1, 6.0)]
        ]
    )  # fmt: skip
    table = summary_markdown(study, df)
    assert "| data.labeled_fraction | a | b |" in table
    assert "| 0.1 | 11.00 ± 1.41 (n=2) | 8.00 ± 0.00 (n=2) |" in table
    assert "| a-0.1-1 | 12.00 | – | – |" in table  # a run without per-image counts has no ordering figures


def test_cli_study_wiring(study_file: Path, tmp_path: Path) -> None:
    from train.cli import app

    result = CliRunner().invoke(app, ["study", str(study_file), "--out", str(tmp_path / "o"), "--set", "seed=3"])
    assert result.exit_code == 2 and "seed" in result.output  # seed is the study's grid axis, not an override
    result = CliRunner().invoke(app, ["study", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2


def test_compare_tabulates_runs_and_draws_their_density_maps(study_file: Path, tmp_path: Path) -> None:
    import json

    from train.compare import CompareConfig, compare_runs

    rows = run_study(load_study(study_file), tmp_path / "out", progress=False)
    folders = tuple(tmp_path / "out" / "runs" / r["run"] for r in rows[::2])
    table, png = compare_runs(CompareConfig(folders, tmp_path / "cmp.png", examples=2, labels=("alone", "ranked")))
    assert [r["run"] for r in table] == ["alone", "ranked"]
    assert [r["paradigm"] for r in table] == ["count-only", "multitask"]
    assert table[1]["mae"] == json.loads((folders[1] / "eval.json").read_text())["mae"]
    assert png.stat().st_size > 10_000
    with pytest.raises(ConfigError, match="not a finished run"):
        CompareConfig((tmp_path,), tmp_path / "x.png")


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "manifests" / "studies").glob("*.toml")))
def test_every_shipped_study_expands_to_valid_manifests(path: Path) -> None:
    from train.manifest import load_manifest
    from train.study import _toml_literal

    study = load_study(path)
    runs = study.runs()
    folds = max(1, len(study.folds))
    assert len(runs) == len(study.seeds) * folds * int(np.prod([len(v) for v in study.grid.values()]))
    for run in runs:
        config = load_manifest(study.manifest, [f"{k}={_toml_literal(v)}" for k, v in run["overrides"].items()])
        assert config.seed == run["seed"] and config.name == run["name"]


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for a reaper counts: it runs no code)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="parent-death signals are Linux-only")
def test_a_run_started_by_a_study_dies_when_the_study_is_killed(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    parent_code = (
        "import subprocess, sys, time\n"
        "from train.study import child_code\n"
        "child = subprocess.Popen([sys.executable, '-c', child_code(\"print('ready', flush=True); "
        'import time; time.sleep(300)")])\n'
        "print(child.pid, flush=True)\n"
        "child.wait()\n"
    )
    study = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True, cwd=Path.cwd())
    child_pid = int(study.stdout.readline())
    assert study.stdout.readline().strip() == "ready"  # the child has passed die_with_parent
    os.kill(study.pid, signal.SIGKILL)  # what `kill -9` of `train study` does: no cleanup runs in the study
    study.wait()
    deadline = time.monotonic() + 60  # a liveness bound, not a timing assertion: it is normally milliseconds
    while not _gone(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = not _gone(child_pid)
    if alive:
        os.kill(child_pid, signal.SIGKILL)
    assert not alive, "the study's child outlived the study"
