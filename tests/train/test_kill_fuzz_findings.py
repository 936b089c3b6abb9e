"""What a kill-and-resume fuzz of ``train`` found, each kill point simulated deterministically.

A kill is simulated by an exception (KeyboardInterrupt) raised at the point the fuzz killed the process with
SIGKILL: what the run folder holds then is what a SIGKILL at that point leaves, less the temp file a real kill keeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.train.conftest import blob_data_table
from train.config import RunConfig
from train.loop import fit
from train.manifest import config_from_dict


def tiny_config(blobs: dict[str, Path], **schedule: Any) -> RunConfig:
    """Count-only test-tiny on the blob sets: 4 steps, validation and a checkpoint every 2."""
    return config_from_dict(
        {
            "name": "fuzz",
            "model": {"arch": "test-tiny", "pretrained": "none"},
            "data": blob_data_table(blobs),
            "schedule": {"paradigm": "count-only", "steps": 4, "batch": 4, "eval_every": 2, "log_every": 2, **schedule},
            "optim": {"name": "adam", "lr": 0.01, "weight_decay": 0.0},
        }
    )


def test_a_run_killed_while_plotting_has_no_eval_json_and_its_resume_writes_it_with_the_plots(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval.json was written before eval_images.csv and the plots: a run killed between them looked finished, and
    `train study`, which reads a run with eval.json back instead of resuming it, kept it without plots (and
    without eval_images.csv, which its ordering metrics read)."""
    import train.plots

    real_plot_run = train.plots.plot_run

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed while plotting")

    monkeypatch.setattr(train.plots, "plot_run", killed)
    config, run = tiny_config(blob_data), tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(config, run, show_progress=False)
    assert not (run / "eval.json").exists()
    monkeypatch.setattr(train.plots, "plot_run", real_plot_run)
    fit(config, run, resume=True, show_progress=False)
    assert (run / "eval.json").is_file() and (run / "eval_images.csv").is_file()
    assert (run / "plots" / "loss.png").is_file() and (run / "plots" / "density_examples.png").is_file()


@pytest.fixture(scope="module")
def best_pt(blob_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of a finished 2-step run."""
    run = tmp_path_factory.mktemp("finished") / "run"
    fit(tiny_config(blob_data, steps=2), run, show_progress=False)
    return run / "best.pt"


def test_train_eval_killed_before_its_per_image_rows_leaves_no_eval_json(
    blob_data: dict[str, Path], best_pt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train eval` wrote eval.json and then images.csv: a kill between them left a summary that looked complete
    beside no per-image rows (or an earlier evaluation's)."""
    import train.evaluate
    from train.evaluate import EvalConfig, evaluate_checkpoint

    real_write_rows_csv = train.evaluate.write_rows_csv

    def killed(path: Path, rows: list[dict[str, Any]]) -> None:
        raise KeyboardInterrupt("killed while writing images.csv")

    monkeypatch.setattr(train.evaluate, "write_rows_csv", killed)
    config = EvalConfig(best_pt, str(blob_data["labeled"]), "test", tmp_path / "ev", "cpu")
    with pytest.raises(KeyboardInterrupt):
        evaluate_checkpoint(config, show_progress=False)
    assert not (tmp_path / "ev" / "eval.json").exists()
    monkeypatch.setattr(train.evaluate, "write_rows_csv", real_write_rows_csv)
    evaluate_checkpoint(config, show_progress=False)
    assert (tmp_path / "ev" / "eval.json").is_file() and (tmp_path / "ev" / "images.csv").is_file()


def test_a_resume_removes_the_half_checkpoint_a_kill_during_its_write_left(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGKILL inside torch.save leaves ``.last.pt.tmp-PID`` (checkpoint-sized for a real model) that nothing
    renames; a resume kept it for good, one more per kill, since only a fresh start cleared temp files."""
    import train.loop

    real_train_step = train.loop.train_step
    steps = iter(range(100))

    def killed_at_step_3(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if next(steps) == 2:
            raise KeyboardInterrupt("killed at step 3")
        return real_train_step(*args, **kwargs)

    monkeypatch.setattr(train.loop, "train_step", killed_at_step_3)
    config, run = tiny_config(blob_data), tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(config, run, show_progress=False)
    half = (run / "last.pt").read_bytes()[:1000]  # what the killed process had written of its step-4 checkpoint
    (run / ".last.pt.tmp-999999").write_bytes(half)
    (run / "plots" / ".loss.png.tmp-host-999999-0a1b2c3d").write_bytes(b"\x89PNG")
    monkeypatch.setattr(train.loop, "train_step", real_train_step)
    result = fit(config, run, resume=True, show_progress=False)
    assert result.resumed_from == 2
    assert sorted(p.name for p in run.rglob(".*.tmp-*")) == []
    assert any(".last.pt.tmp-999999" in note for note in result.notes)


def test_train_predict_killed_while_writing_an_overlay_leaves_no_torn_png(
    best_pt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overlays were saved straight under their final name: a kill mid-write left a torn ``overlays/NAME.png``
    that looked like a finished one (and that a rerun into another --out skipped only beside a counts.csv)."""
    import numpy as np
    from PIL import Image

    from train.predict import PredictConfig, predict_images

    for name in ("a", "b"):
        Image.fromarray(np.full((40, 48, 3), 30, dtype=np.uint8)).save(tmp_path / f"{name}.png")
    real_save = Image.Image.save

    def killed_mid_write(self: Image.Image, fp: Any, format: str | None = None, **params: Any) -> None:
        if isinstance(fp, (str, Path)) and "overlays" not in str(fp):
            return real_save(self, fp, format, **params)
        import io

        buffer = io.BytesIO()
        real_save(self, buffer, format or "PNG", **params)
        data = buffer.getvalue()[:100]
        if isinstance(fp, (str, Path)):
            Path(fp).write_bytes(data)
        else:
            fp.write(data)
        raise KeyboardInterrupt("killed while writing an overlay")

    monkeypatch.setattr(Image.Image, "save", killed_mid_write)
    config = PredictConfig(best_pt, (tmp_path / "a.png", tmp_path / "b.png"), tmp_path / "p", "cpu")
    with pytest.raises(KeyboardInterrupt):
        predict_images(config, show_progress=False)
    assert list((tmp_path / "p" / "overlays").glob("*.png")) == [] and not (tmp_path / "p" / "counts.csv").exists()
    monkeypatch.setattr(Image.Image, "save", real_save)
    rows = predict_images(config, show_progress=False)
    assert [row["status"] for row in rows] == ["ok", "ok"]
    for row in rows:
        with Image.open(tmp_path / "p" / row["overlay"]) as overlay:
            overlay.load()


def test_a_resume_between_two_log_lines_logs_the_same_loss_as_an_uninterrupted_run(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With eval_every 3 and log_every 2 the checkpoint at step 3 falls inside the log window of steps 3-4: the
    resumed run averaged step 4 alone (its sums started empty), so metrics.jsonl differed from the uninterrupted
    run's although the weights were the same."""
    import json

    import train.loop

    config = tiny_config(blob_data, steps=6, eval_every=3, log_every=2)
    fit(config, tmp_path / "whole", show_progress=False)
    real_train_step = train.loop.train_step
    steps = iter(range(100))

    def killed_at_step_4(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if next(steps) == 3:
            raise KeyboardInterrupt("killed at step 4")
        return real_train_step(*args, **kwargs)

    monkeypatch.setattr(train.loop, "train_step", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        fit(config, tmp_path / "split", show_progress=False)
    monkeypatch.setattr(train.loop, "train_step", real_train_step)
    assert fit(config, tmp_path / "split", resume=True, show_progress=False).resumed_from == 3

    def logged(run: str) -> list[tuple[int, float, float]]:
        lines = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["skipped_unreadable"]) for r in lines if "loss" in r]

    assert [step for step, *_ in logged("split")] == [2, 4, 6]
    assert logged("split") == logged("whole")


def test_a_finished_run_resumed_with_more_steps_and_killed_keeps_no_eval_json_of_its_shorter_schedule(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train fit ... --set schedule.steps=N --resume` (README) continues a finished run; killed before its new end,
    it kept the old eval.json, which called the run finished and named a best.pt step that a later best.pt may
    already have replaced."""
    import train.loop

    run = tmp_path / "run"
    fit(tiny_config(blob_data, steps=2), run, show_progress=False)
    assert (run / "eval.json").is_file()

    def killed(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise KeyboardInterrupt("killed at step 3")

    monkeypatch.setattr(train.loop, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(blob_data, steps=4), run, resume=True, show_progress=False)
    assert not (run / "eval.json").exists()


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_ctrl_c_in_eval_predict_and_export_says_what_was_not_written(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C ended `train eval`, `predict` and `export` with exit 130 and nothing said; `train fit` says how to go
    on. Each now names the output it did not write, without a traceback."""
    from typer.testing import CliRunner

    import train.evaluate
    import train.export
    import train.predict
    from train.cli import app

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train.evaluate, "evaluate_checkpoint", interrupted)
    monkeypatch.setattr(train.predict, "predict_images", interrupted)
    monkeypatch.setattr(train.export, "export_model", interrupted)
    (tmp_path / "best.pt").write_bytes(b"")
    (tmp_path / "a.png").write_bytes(b"")
    out = tmp_path / "out"
    args = {
        "eval": ["eval", str(tmp_path / "best.pt"), "--data", str(tmp_path), "--out", str(out)],
        "predict": ["predict", str(tmp_path / "best.pt"), str(tmp_path / "a.png"), "--out", str(out)],
        "export": ["export", str(tmp_path / "best.pt"), "--out", str(out / "model.pt")],
    }[command]
    result = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"}).invoke(app, args)
    written = {"eval": out / "eval.json", "predict": out / "counts.csv", "export": out / "model.pt"}[command]
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert f"interrupted before {written} was written" in result.output and "rerun the same command" in result.output


def test_export_interrupted_while_writing_leaves_neither_its_output_nor_a_temp_file(
    best_pt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during `train export`'s write left ``.model.pt.tmp-PID``, as large as the model, that no later export
    (another pid) replaces or removes."""
    import torch

    from train.export import ExportConfig, export_model

    real_save = torch.save

    def interrupted_mid_write(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        real_save(obj, f, *args, **kwargs)
        Path(f).write_bytes(Path(f).read_bytes()[:1000])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_mid_write)
    config = ExportConfig(best_pt, tmp_path / "out" / "model.pt")
    with pytest.raises(KeyboardInterrupt):
        export_model(config)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
    monkeypatch.setattr(torch, "save", real_save)
    assert export_model(config)["step"] == 2 and (tmp_path / "out" / "model.pt").is_file()
