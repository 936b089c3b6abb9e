"""train study without training: each run's ``train fit`` child is faked at ``train.study.call_fit``, so the tests
see exactly which command a run gets, which rows and tables come back, and how failures and resumes are handled.
The real children are exercised by tests/train/test_study.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from train.errors import ConfigError, TrainError
from train.study import load_study, run_study
from train.study_results import ordering_metrics, summary_markdown

Outcome = Callable[[str], dict[str, Any] | int]


def study(tmp_path: Path, body: str, extra: list[str] | None = None) -> Any:
    """A study file over an (unused) base manifest, parsed."""
    (tmp_path / "base.toml").write_text("name = 'base'\n")
    path = tmp_path / "study.toml"
    path.write_text('name = "s"\nmanifest = "base.toml"\n' + body)
    return load_study(path, extra)


def fake_fit(monkeypatch: pytest.MonkeyPatch, outcome: Outcome, preflight: bool = False) -> list[list[str]]:
    """Replace each run's child process: record its command; ``outcome(run name)`` is the eval.json it writes (exit
    0), or the exit code of a run that writes none. The base manifest names no data, so the study's check of every
    run's manifest and datasets before the first run is left out unless ``preflight``."""
    commands: list[list[str]] = []
    if not preflight:
        monkeypatch.setattr("train.study.preflight", lambda study, runs: None)

    def call(command: list[str], **kwargs: Any) -> int:
        commands.append(command)
        folder = Path(command[command.index("--out") + 1])
        result = outcome(folder.name)
        if isinstance(result, int):
            return result
        (folder / "eval.json").write_text(json.dumps(result))
        return 0

    monkeypatch.setattr("train.study.call_fit", call)
    return commands


def overrides_of(command: list[str]) -> dict[str, str]:
    pairs = [command[i + 1] for i, arg in enumerate(command) if arg == "--set"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_a_grid_value_wins_over_the_study_set_table_and_the_command_line_wins_over_both(tmp_path: Path) -> None:
    body = '[grid]\n"schedule.steps" = [5, 9]\n[set]\n"schedule.steps" = 1\n"optim.lr" = 0.1\n"schedule.batch" = 2\n'
    runs = study(tmp_path, body, ["optim.lr=0.5", "data.eval=data/my set"]).runs()
    assert [r["overrides"]["schedule.steps"] for r in runs] == [5, 9]
    assert runs[0]["overrides"]["optim.lr"] == 0.5  # --set is parsed as TOML, not kept as the text "0.5"
    assert runs[0]["overrides"]["schedule.batch"] == 2
    assert runs[0]["overrides"]["data.eval"] == "data/my set"  # not TOML: kept as the bare string


def test_run_names_are_single_folder_names_and_booleans_reach_the_child_as_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = '[grid]\n"data.eval" = ["data/shb"]\n"schedule.compile" = [true]\n'
    commands = fake_fit(monkeypatch, lambda name: {"mae": 1.0, "step": 3})
    rows = run_study(study(tmp_path, body), tmp_path / "out", progress=False)
    assert rows[0]["run"] == "eval=data_shb__compile=True__seed=0"
    assert (tmp_path / "out" / "runs" / rows[0]["run"] / "eval.json").is_file()  # one folder, not data/shb/...
    sets = overrides_of(commands[0])
    assert sets["schedule.compile"] == "true" and sets["data.eval"] == '"data/shb"' and sets["seed"] == "0"


def test_an_empty_grid_axis_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"study grid.'schedule.steps' = \[\]: expected a non-empty list"):
        study(tmp_path, '[grid]\n"schedule.steps" = []\n')


@pytest.mark.parametrize("jobs", [0, -2])
def test_jobs_below_one_is_refused_before_anything_runs_or_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    commands = fake_fit(monkeypatch, lambda name: {"mae": 1.0})
    config = study(tmp_path, "seeds = [0]\n")
    with pytest.raises(ConfigError, match=rf"--jobs {jobs} is out of range: expected an integer >= 1"):
        run_study(config, tmp_path / "out", jobs=jobs, progress=False)
    assert commands == [] and not (tmp_path / "out").exists()


def test_an_interrupted_run_or_rounds_chain_is_resumed_and_a_finished_one_is_not_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = study(tmp_path, "seeds = [0, 1, 2]\n")
    runs = tmp_path / "out" / "runs"
    (runs / "seed=1").mkdir(parents=True)
    (runs / "seed=1" / "last.pt").write_bytes(b"")  # a single run killed after its first checkpoint
    (runs / "seed=2" / "round-0").mkdir(parents=True)  # a [rounds] chain killed in its first round
    commands = fake_fit(monkeypatch, lambda name: {"mae": 2.0, "step": 4})
    run_study(config, tmp_path / "out", progress=False)
    resumed = {Path(c[c.index("--out") + 1]).name: "--resume" in c for c in commands}
    assert resumed == {"seed=0": False, "seed=1": True, "seed=2": True}
    again = fake_fit(monkeypatch, lambda name: pytest.fail("a finished run was started again"))
    rows = run_study(config, tmp_path / "out", progress=False)
    assert again == [] and [r["mae"] for r in rows] == [2.0, 2.0, 2.0]


def test_failed_runs_are_rows_and_the_study_still_writes_its_tables_then_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = study(tmp_path, "seeds = [0, 1, 2]\n")
    outcomes: dict[str, Any] = {"seed=0": {"mae": 4.0, "step": 8}, "seed=1": 1, "seed=2": 0}  # 0: no eval.json
    fake_fit(monkeypatch, outcomes.__getitem__)
    with pytest.raises(TrainError, match=r"2 of 3 runs failed \(seed=1, seed=2 …\); see their study.log"):
        run_study(config, tmp_path / "out", progress=False)
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(df["status"]) == ["ok", "failed (exit 1)", "failed (exit 0)"]
    assert df.loc[0, "best_step"] == 8
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| seed=0 | 4.00 |" in table and "seed=1 |" not in table  # failed runs are not averaged or listed


def test_a_run_folder_trained_with_other_overrides_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = fake_fit(monkeypatch, lambda name: {"mae": 1.0, "step": 1})
    run_study(study(tmp_path, '[set]\n"schedule.steps" = 4\n'), tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match=r"was trained with other overrides .*schedule.steps.: 4.*6"):
        run_study(study(tmp_path, '[set]\n"schedule.steps" = 6\n'), tmp_path / "out", progress=False)
    assert len(commands) == 1


def test_fold_rows_carry_their_fold_and_the_markdown_averages_over_folds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = study(tmp_path, 'seeds = [0, 1]\nfolds = ["data/f1", "data/f2"]\n')
    maes = {"fold=1__seed=0": 1.0, "fold=1__seed=1": 3.0, "fold=2__seed=0": 5.0, "fold=2__seed=1": 7.0}
    fake_fit(monkeypatch, lambda name: {"mae": maes[name], "step": 2})
    rows = run_study(config, tmp_path / "out", progress=False)
    assert [(r["fold"], r["seed"]) for r in rows] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| fold | mae |" in table and "| 1 | 2.00 ± 1.41 (n=2) |" in table and "| 2 | 6.00 ± 1.41 (n=2) |" in table


def test_ordering_metrics_use_only_readable_images_and_need_two_of_them(tmp_path: Path) -> None:
    csv = tmp_path / "eval_images.csv"
    csv.write_text("image_id,count,predicted,status\na,10,5,ok\nb,20,15,ok\nc,30,,unreadable_image\nd,40,45,ok\n")
    metrics = ordering_metrics(csv)
    assert metrics["count_ratio"] == pytest.approx(65 / 70)  # predicted over annotated, c left out
    assert metrics["spearman"] == pytest.approx(1.0)
    csv.write_text("image_id,count,predicted,status\na,10,5,ok\nc,30,,unreadable_image\n")
    assert ordering_metrics(csv) == {}  # one image orders nothing
    assert ordering_metrics(tmp_path / "missing.csv") == {}


def test_a_one_key_grid_tabulates_that_key_and_a_single_run_has_no_spread(tmp_path: Path) -> None:
    config = study(tmp_path, 'seeds = [0]\n[grid]\n"schedule.paradigm" = ["count-only", "multitask"]\n')
    df = pd.DataFrame(
        [
            {"run": "a", "schedule.paradigm": "count-only", "seed": 0, "mae": 3.0},
            {"run": "b", "schedule.paradigm": "multitask", "seed": 0, "mae": 2.5},
        ]
    )
    table = summary_markdown(config, df)
    assert "| schedule.paradigm | mae |" in table
    assert "| count-only | 3.00 ± 0.00 (n=1) |" in table and "| multitask | 2.50 ± 0.00 (n=1) |" in table


def test_a_second_study_in_the_same_folder_writes_its_own_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_fit(monkeypatch, lambda name: {"mae": 1.0, "step": 1})
    first = study(tmp_path, "seeds = [0]\n")
    run_study(first, tmp_path / "out", progress=False)
    second = tmp_path / "other.toml"
    second.write_text('name = "other"\nmanifest = "base.toml"\nseeds = [0, 1]\n')
    run_study(load_study(second), tmp_path / "out", progress=False)
    assert len(pd.read_csv(tmp_path / "out" / "results.csv")) == 1  # the first study's table is left as it was
    assert len(pd.read_csv(tmp_path / "out" / "other.csv")) == 2
    run_study(first, tmp_path / "out", progress=False)  # the owner of the folder still writes results.*
    assert not (tmp_path / "out" / "s.csv").exists()


@pytest.mark.parametrize(
    ("metric", "reading"),
    [("mae", "lower is better"), ("spearman", "higher is better"), ("count_ratio", "closest to 1 is best")],
)
def test_the_table_says_which_way_its_metric_is_better(tmp_path: Path, metric: str, reading: str) -> None:
    config = study(tmp_path, f'metric = "{metric}"\n')
    table = summary_markdown(config, pd.DataFrame([{"run": "seed=0", "seed": 0, metric: 0.5}]))
    assert f"Test {metric.upper()}, mean ± standard deviation over seeds [0] ({reading})." in table


def test_an_out_that_is_a_file_is_refused_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = fake_fit(monkeypatch, lambda name: {"mae": 1.0})
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"--out .*out is a file, not a study folder; choose another --out"):
        run_study(study(tmp_path, "seeds = [0]\n"), tmp_path / "out", progress=False)
    assert commands == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("manifest = 5\n", r"study manifest = 5 .* has the wrong type; write e.g. manifest = \"../quickstart.toml\""),
        ('manifest = ["base.toml"]\n', r"study manifest = \['base.toml'\] .* has the wrong type"),
        (
            'name = "s"\nmanifest = "base.toml"\nseeds = 3\n',
            r"study seeds = 3 .* wrong type; write e.g. seeds = \[0, 1, 2\]",
        ),
        ('name = "s"\nmanifest = "base.toml"\nseeds = ["a"]\n', r"study seeds = \['a'\] .* holds 'a', not an integer"),
        ('name = "s"\nmanifest = "base.toml"\nseeds = [1.7]\n', r"holds 1.7, not an integer"),  # int() made it 1
        ('name = "s"\nmanifest = "base.toml"\nseeds = [true]\n', r"holds True, not an integer"),
        ('name = "s"\nmanifest = "base.toml"\ngrid = "x"\n', r"study grid = 'x' .* wrong type; write e.g. \[grid\]"),
        ('name = "s"\nmanifest = "base.toml"\nset = [1]\n', r"study set = \[1\] .* wrong type; write e.g. \[set\]"),
    ],
)
def test_a_study_key_of_the_wrong_type_is_refused_naming_it_not_a_traceback(
    tmp_path: Path, text: str, message: str
) -> None:
    """Fuzzing manifests/studies/: a number for `manifest` or a string for `seeds` or `grid` raised TypeError."""
    (tmp_path / "base.toml").write_text("name = 'base'\n")
    (tmp_path / "study.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_study(tmp_path / "study.toml")


def test_a_study_that_is_not_utf8_is_refused_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "study.toml").write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"cannot read study .*study.toml: .*utf-8.*save it as UTF-8 TOML"):
        load_study(tmp_path / "study.toml")


def test_a_dataset_no_run_can_load_stops_the_study_before_any_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing dataset used to fail every run of the grid one by one, the reason only in each run's study.log."""
    from train.errors import DataError

    body = 'seeds = [0, 1]\n[set]\n"data.labeled" = ["no-such-dataset"]\n"schedule.paradigm" = "count-only"\n'
    config = study(tmp_path, body)
    commands = fake_fit(monkeypatch, lambda name: pytest.fail("a run started"), preflight=True)
    with pytest.raises(DataError, match=r"study run seed=0: data.labeled\[0\] = 'no-such-dataset' cannot be loaded"):
        run_study(config, tmp_path / "out", progress=False)
    assert commands == [] and not (tmp_path / "out").exists()


def test_an_override_no_manifest_accepts_stops_the_study_before_any_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = study(
        tmp_path, '[set]\n"data.labeled" = ["x"]\n[grid]\n"schedule.paradigm" = ["count-only", "multitaks"]\n'
    )
    monkeypatch.setattr("train.data.open_dataset", lambda path, key, kind: None)  # only the manifest is wrong here
    commands = fake_fit(monkeypatch, lambda name: pytest.fail("a run started"), preflight=True)
    with pytest.raises(ConfigError, match=r"study run paradigm=multitaks__seed=0: .*multitaks.*no run was started"):
        run_study(config, tmp_path / "out", progress=False)
    assert commands == []


def test_finished_runs_are_not_checked_again_so_their_results_read_back_without_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = study(tmp_path, '[set]\n"data.labeled" = ["deleted-since"]\n')
    folder = tmp_path / "out" / "runs" / "seed=0"
    folder.mkdir(parents=True)
    (folder / "study_overrides.json").write_text(json.dumps(config.runs()[0]["overrides"], sort_keys=True))
    (folder / "eval.json").write_text(json.dumps({"mae": 3.0, "step": 4}))
    fake_fit(monkeypatch, lambda name: pytest.fail("a finished run started again"), preflight=True)
    assert [row["mae"] for row in run_study(config, tmp_path / "out", progress=False)] == [3.0]


def test_the_failure_message_quotes_the_first_failed_runs_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = study(tmp_path, "seeds = [0, 1]\n")

    def call(command: list[str], stdout: Any = None, **kwargs: Any) -> int:
        stdout.write("step 10 ...\nerror: loss is NaN at step 12 (term rank); lower optim.lr\n")
        return 1

    monkeypatch.setattr("train.study.preflight", lambda study, runs: None)
    monkeypatch.setattr("train.study.call_fit", call)
    with pytest.raises(TrainError, match=r"The first, seed=0, ended with: error: loss is NaN at step 12"):
        run_study(config, tmp_path / "out", progress=False)
