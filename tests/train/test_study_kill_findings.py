"""Kill-and-resume findings of ``train study``: each test stops the study at one chosen point, then reruns it.

A kill is stood in for by :class:`Killed`, raised where a write has opened (and so truncated) its file but not yet
written it: what SIGKILL leaves when it lands inside a plain ``write_text``. Nothing is timed.
"""

from __future__ import annotations

import pathlib
from pathlib import Path
from typing import Any

import pytest

from train.study import load_study, run_study

MANIFEST = """
name = "tiny"
seed = 0
[model]
arch = "test-tiny"
pretrained = "none"
[data]
labeled = ["{labeled}"]
eval = "{labeled}"
crop = [24, 48]
input_size = 32
sigma = 3.0
workers = 0
val_fraction = 0.125
[schedule]
paradigm = "count-only"
steps = 2
batch = 2
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
seeds = [0]
[grid]
"schedule.paradigm" = ["count-only"]
"""


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so no ``except Exception`` handler swallows it."""


@pytest.fixture
def study_file(blob_data: dict[str, Path], tmp_path: Path) -> Path:
    (tmp_path / "base.toml").write_text(MANIFEST.format(labeled=blob_data["labeled"]))
    path = tmp_path / "grid.toml"
    path.write_text(STUDY)
    return path


def kill_inside_write_text(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The next ``Path.write_text`` of a file whose name holds ``name`` (or its staging name) truncates it and dies."""
    real = pathlib.Path.write_text

    def write_text(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if name in self.name:
            self.open("w").close()
            monkeypatch.setattr(pathlib.Path, "write_text", real)  # only the first such write is killed
            raise Killed(str(self))
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)


@pytest.mark.parametrize("name", ["study_overrides.json", "study.json"])
def test_a_study_killed_while_writing_its_bookkeeping_resumes(
    study_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A kill inside the write of a run's study_overrides.json (or the folder's study.json) left it empty, and every
    rerun then failed: "trained with other overrides ()", or a JSONDecodeError from the empty study.json."""
    study, out = load_study(study_file), tmp_path / "out"
    kill_inside_write_text(monkeypatch, name)
    with pytest.raises(Killed):
        run_study(study, out, progress=False)
    rows = run_study(study, out, progress=False)
    assert [r["status"] for r in rows] == ["ok"]
    assert not [p.name for p in out.rglob("*") if ".tmp-" in p.name]


@pytest.mark.parametrize("name", ["results.csv", "results.md"])
def test_a_rerun_killed_while_writing_the_results_keeps_the_previous_ones_whole(
    study_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """results.csv and results.md were written in place, so a kill while a rerun rewrote them left them empty."""
    import pandas as pd

    study, out = load_study(study_file), tmp_path / "out"
    run_study(study, out, progress=False)
    before = (out / name).read_bytes()
    real_to_csv = pd.DataFrame.to_csv

    def to_csv(self: pd.DataFrame, path_or_buf: Any = None, *args: Any, **kwargs: Any) -> Any:
        if path_or_buf is not None and name in Path(path_or_buf).name:
            Path(path_or_buf).open("w").close()
            raise Killed(str(path_or_buf))
        return real_to_csv(self, path_or_buf, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    kill_inside_write_text(monkeypatch, name)
    with pytest.raises(Killed):
        run_study(study, out, progress=False)
    assert (out / name).read_bytes() == before


def test_a_rounds_run_killed_before_its_first_round_folder_resumes_in_the_study(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A [rounds] run killed after its chain's config.toml but before round-0/ was rerun without --resume (the
    study looked for last.pt or round-0/ only), and fit refused the folder: the run failed on every rerun."""
    import train.rounds
    import train.study
    from tests.train.test_rounds import chain_table, real_pictures
    from train.manifest import config_from_dict, config_to_toml, load_manifest
    from train.study import run_sets

    config = config_from_dict(chain_table(blob_data, real_pictures(tmp_path / "real", 4)))
    (tmp_path / "base.toml").write_text(config_to_toml(config))
    (tmp_path / "chain.toml").write_text('name = "chain"\nmanifest = "base.toml"\nseeds = [0]\n')
    study, out = load_study(tmp_path / "chain.toml"), tmp_path / "out"
    [run] = study.runs()
    real_call_fit = train.study.call_fit

    def killed_child(command: list[str], **kwargs: Any) -> int:
        """The run's child: fit_rounds dies as the first round's fit starts, as SIGKILL there would leave it."""
        with monkeypatch.context() as patch:
            patch.setattr(train.rounds, "train_round", lambda *a, **k: (_ for _ in ()).throw(Killed()))
            with pytest.raises(Killed):
                train.rounds.fit_rounds(load_manifest(study.manifest, run_sets(run)), out / "runs" / run["name"])
        return -9

    with monkeypatch.context() as patch:
        patch.setattr(train.study, "call_fit", killed_child)
        with pytest.raises(train.study.TrainError):
            run_study(study, out, progress=False)
    assert (out / "runs" / run["name"] / "config.toml").is_file()
    assert not (out / "runs" / run["name"] / "round-0").exists()
    assert train.study.call_fit is real_call_fit
    rows = run_study(study, out, progress=False)
    assert [r["status"] for r in rows] == ["ok"]


def test_ctrl_c_in_a_study_says_how_to_go_on(study_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C ended `train study` with exit 130 and nothing said (or "Aborted!"); `train fit` says how to go on."""
    from typer.testing import CliRunner

    import train.study
    from train.cli import app

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train.study, "run_study", interrupted)
    out = tmp_path / "out"
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
    result = runner.invoke(app, ["study", str(study_file), "--out", str(out)])
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert f"interrupted before {out / 'results.csv'} was written" in result.output
    assert "rerun the same command" in result.output
