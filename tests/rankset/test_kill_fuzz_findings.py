"""Findings of a kill-and-resume fuzz audit of the rankset CLI, each replayed at its kill point without timing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rankset.synth.writer
from rankset.schema import RANKED_FIELDS as RANKED
from rankset.synth import SynthConfig, synth_unlabeled


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the point it is raised at runs (no ``except Exception`` catches it)."""


def test_a_killed_unlabeled_rerun_never_leaves_new_pictures_beside_the_earlier_runs_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "pictures"
    synth_unlabeled(SynthConfig(n=3, out=out, seed=0, width=64, height=64, max_count=5, unlabeled=True))
    assert (out / "counts.csv").is_file() and (out / "synth.json").is_file()
    real = rankset.synth.writer._rendered

    def killed_after_one_scene(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        rows = real(*args, **kwargs)
        yield next(rows)
        raise Killed

    monkeypatch.setattr(rankset.synth.writer, "_rendered", killed_after_one_scene)
    with pytest.raises(Killed):
        synth_unlabeled(SynthConfig(n=3, out=out, seed=1, width=64, height=64, max_count=5, unlabeled=True))
    # synth_00000.jpg is seed 1's now, 00001-00002 still seed 0's: the earlier counts.csv would be wrong for it, and
    # a synth.json would say the folder is a finished seed-0 run
    assert sorted(p.name for p in out.iterdir()) == ["synth_00000.jpg", "synth_00001.jpg", "synth_00002.jpg"]
    monkeypatch.setattr(rankset.synth.writer, "_rendered", real)
    again = synth_unlabeled(SynthConfig(n=3, out=out, seed=1, width=64, height=64, max_count=5, unlabeled=True))
    fresh = tmp_path / "fresh"
    reference = synth_unlabeled(SynthConfig(n=3, out=fresh, seed=1, width=64, height=64, max_count=5, unlabeled=True))
    assert again.counts == reference.counts
    for name in ("synth_00000.jpg", "synth_00001.jpg", "synth_00002.jpg", "counts.csv"):
        assert (out / name).read_bytes() == (fresh / name).read_bytes()


def test_a_build_into_a_labeled_parquet_snapshot_is_refused_and_leaves_it_whole(tmp_path: Path) -> None:
    """A ``push --dry-run`` folder or a downloaded Hub snapshot holds no dataset_info.json, only data/*.parquet: its
    kind was read as unknown, so a ranked-set build replaced a labeled benchmark there without a word."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from rankset.build import BuildConfig, build_ranked_sets
    from rankset.errors import InputError
    from rankset.io import saved_kind
    from rankset.schema import LABELED_FIELDS

    snapshot = tmp_path / "shb-upload"
    (snapshot / "data").mkdir(parents=True)
    columns = {name: pa.array([None], pa.string()) for name in LABELED_FIELDS}
    pq.write_table(pa.table(columns), snapshot / "data" / "train-00000-of-00001.parquet")
    (snapshot / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n")
    before = sorted((p.relative_to(snapshot), p.read_bytes()) for p in snapshot.rglob("*") if p.is_file())
    assert saved_kind(snapshot) == "labeled"
    pics = tmp_path / "pics"
    pics.mkdir()
    Image.new("RGB", (96, 80), (90, 120, 200)).save(pics / "a.jpg")
    with pytest.raises(InputError, match="holds a labeled dataset"):
        build_ranked_sets(BuildConfig(str(pics), str(snapshot), k=2, s=0.5, size=16), progress=False)
    assert sorted((p.relative_to(snapshot), p.read_bytes()) for p in snapshot.rglob("*") if p.is_file()) == before
    ranked = tmp_path / "ranked"  # a ranked-set snapshot is of the same kind: a build may still replace it
    (ranked / "data").mkdir(parents=True)
    pq.write_table(pa.table({name: pa.array([None], pa.string()) for name in RANKED}), ranked / "data" / "t.parquet")
    assert saved_kind(ranked) == "ranked"
    build_ranked_sets(BuildConfig(str(pics), str(ranked), k=2, s=0.5, size=16), progress=False)
    assert saved_kind(ranked) == "ranked" and (ranked / "dataset_dict.json").is_file()


def dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_figure_staging_file_of_a_killed_preview_or_info_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """A kill between writing a PNG's staging file and renaming it left ``.NAME.tmp-HOST-PID-…`` beside the figure;
    preview and info never cleaned their folder, so every such kill added one more."""
    from PIL import Image

    from rankset.build import BuildConfig, build_ranked_sets
    from rankset.info import InfoConfig, dataset_report
    from rankset.io import HOST
    from rankset.preview import render_preview

    pics = tmp_path / "pics"
    pics.mkdir()
    Image.new("RGB", (96, 80), (90, 120, 200)).save(pics / "a.jpg")
    build_ranked_sets(BuildConfig(str(pics), str(tmp_path / "sets"), k=2, s=0.5, size=16), progress=False)
    figures = tmp_path / "figures"
    figures.mkdir()
    killed = {name: figures / f".{name}.tmp-{HOST}-{dead_pid()}-0123abcd" for name in ("preview.png", "info.png")}
    live = figures / f".preview.png.tmp-{HOST}-{os.getpid()}-0123abcd"  # a writer still running: kept
    other = figures / f".mine.png.tmp-{HOST}-{dead_pid()}-0123abcd"  # another target's: not this write's to judge
    for staging in (*killed.values(), live, other):
        staging.write_bytes(b"\x89PNG torn")
    render_preview(str(tmp_path / "sets"), figures / "preview.png", n=1)
    dataset_report(InfoConfig(str(tmp_path / "sets"), out=figures / "info.png"))
    hidden = sorted(p.name for p in figures.iterdir() if p.name.startswith("."))
    assert hidden == sorted([live.name, other.name])
    assert (figures / "preview.png").read_bytes()[:4] == (figures / "info.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("command", ["build", "import", "synth", "preview", "info", "push"])
def test_ctrl_c_says_what_became_of_the_output_and_exits_130_without_a_traceback(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typer turned Ctrl-C into a bare exit 130: the run ended on a progress bar with no word on --out."""
    from typer.testing import CliRunner

    import rankset.build
    import rankset.importers
    import rankset.info
    import rankset.preview
    import rankset.publish
    import rankset.synth
    from rankset.cli import app

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    for module, name in (
        (rankset.build, "build_ranked_sets"),
        (rankset.importers, "import_benchmark"),
        (rankset.synth, "synth_dataset"),
        (rankset.preview, "render_preview"),
        (rankset.info, "InfoConfig"),
        (rankset.publish, "publish_dataset"),
    ):
        monkeypatch.setattr(module, name, ctrl_c)
    out = str(tmp_path / "out")
    args = {
        "build": ["build", str(tmp_path), "--out", out],
        "import": ["import", "points", str(tmp_path), "--out", out],
        "synth": ["synth", "--n", "1", "--out", out],
        "preview": ["preview", str(tmp_path), "--out", out],
        "info": ["info", str(tmp_path), "--out", out],
        "push": ["push", str(tmp_path), "--repo-id", "me/x", "--dry-run", out],
    }[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130 and isinstance(result.exception, SystemExit)
    assert "interrupted:" in result.output and "again" in result.output.split("interrupted:")[1]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("race", ["other run renames its folder to out", "other run moves out aside"])
def test_two_writes_into_one_out_at_once_both_finish_and_out_is_the_last_ones_whole(
    race: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builds into the same --out: the other one's rename landed between this one's check that out exists and
    its own rename, which then failed with ENOTEMPTY (or FileNotFoundError): a traceback, though both had finished."""
    import datasets

    from rankset.io import load_dataset_dict, write_dataset_dict

    features = datasets.Features({"n": datasets.Value("int32")})
    out = tmp_path / "ds"
    if race == "other run moves out aside":
        write_dataset_dict(out, {"train": [{"n": 1}]}, features)
    other = tmp_path / "other-run"  # the other run's finished dataset, as it would be in its staging folder
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"n": [2]}, features=features)}).save_to_disk(other)
    real_replace = os.replace
    raced: list[str] = []

    def racing_replace(src: Any, dst: Any) -> None:
        if not raced and race == "other run renames its folder to out" and Path(dst) == out:
            raced.append(race)
            real_replace(other, out)  # it finished first and is in place now
        if not raced and race == "other run moves out aside" and Path(src) == out:
            raced.append(race)
            real_replace(out, tmp_path / ".ds.old-elsewhere")  # it is between its two renames
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", racing_replace)
    write_dataset_dict(out, {"train": [{"n": 3}, {"n": 3}]}, features)
    assert raced == [race]
    assert load_dataset_dict(out)["train"]["n"] == [3, 3]  # this run finished last: its whole dataset
    ours = [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds.") and "elsewhere" not in p.name]
    assert ours == []  # neither this run's staging nor what it moved aside stays behind


class CtrlCOnImport:
    """A meta path finder that raises KeyboardInterrupt when ``name`` is imported: Ctrl-C while it loads."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname == self.name:
            raise KeyboardInterrupt


@pytest.mark.parametrize(("command", "module"), [("build", "rankset.build"), ("synth", "rankset.synth")])
def test_ctrl_c_while_a_command_loads_its_modules_gets_the_same_message(
    command: str, module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command imported rankset.build (and with it datasets: a second or two) before entering command_errors,
    so a Ctrl-C in that window still ended with typer's bare exit 130."""
    import sys

    from typer.testing import CliRunner

    from rankset.cli import app

    for name in [m for m in sys.modules if m == module or m.startswith(f"{module}.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [CtrlCOnImport(module), *sys.meta_path])
    out = str(tmp_path / "out")
    args = {"build": ["build", str(tmp_path), "--out", out], "synth": ["synth", "--n", "1", "--out", out]}[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130 and "interrupted:" in result.output and "Traceback" not in result.output
