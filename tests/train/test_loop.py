"""The training loop on the tiny model: it learns, resumes exactly, stops on divergence, fills the run folder."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.train.conftest import blob_data_table
from train.checkpoint import load_checkpoint
from train.config import RunConfig
from train.errors import ConfigError, DivergenceError
from train.loop import fit
from train.manifest import config_from_dict, load_manifest


def tiny_config(blobs: dict[str, Path], **sections: dict[str, Any]) -> RunConfig:
    """A test-tiny manifest on the blob sets: 32 px crops, Adam, no workers (the suite shares 2 cores)."""
    table: dict[str, Any] = {
        "name": "tiny",
        "model": {"arch": "test-tiny", "pretrained": "none"},
        "data": blob_data_table(blobs, ranked=[str(blobs["ranked"])]),
        "tasks": {"rank": {"weight": 1.0, "sets_per_batch": 2}},
        "schedule": {"paradigm": "multitask", "steps": 8, "batch": 4, "eval_every": 4, "log_every": 2},
        "optim": {"name": "adam", "lr": 0.01, "weight_decay": 0.0},
    }
    for name, values in sections.items():
        table[name] = {**table.get(name, {}), **values}
    return config_from_dict(table)


def test_tiny_model_learns_to_count_better_than_predicting_the_mean(blob_data: dict[str, Path], tmp_path: Path) -> None:
    config = tiny_config(
        blob_data,
        schedule={"paradigm": "count-only", "steps": 80, "batch": 8, "eval_every": 80, "log_every": 10},
        optim={"name": "adam", "lr": 0.01, "weight_decay": 0.0, "lr_milestones": [60]},
    )
    result = fit(config, tmp_path / "run", show_progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    rows = [line.split(",") for line in (tmp_path / "run" / "eval_images.csv").read_text().splitlines()]
    header = rows[0]
    truth = np.array([float(r[header.index("count")]) for r in rows[1:]])
    from train.data import open_dataset

    train_counts = np.array(open_dataset(str(blob_data["labeled"]), "x", "labeled")["train"]["count"], dtype=float)
    mean_predictor_mae = np.abs(truth - train_counts.mean()).mean()
    assert result.test["mae"] < mean_predictor_mae


def _record_rng_draws(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float, float, float]]:
    """Make every training step draw once from Python's, NumPy's and torch's global RNGs, as a model with dropout
    (cascaded-mtl) would, and record (step, draws)."""
    import random

    import rich.progress  # noqa: F401  (its first import in a process draws from Python's RNG, inside one fit)

    import train.loop

    real_step, draws = train.loop.train_step, []

    def drawing_step(*args: Any, **kwargs: Any) -> dict[str, Any]:
        draws.append((args[-1], random.random(), float(np.random.random()), float(torch.rand(1))))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train.loop, "train_step", drawing_step)
    return draws


def test_resumed_run_matches_an_uninterrupted_one(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = _record_rng_draws(monkeypatch)
    decay = {"lr_milestones": [6]}  # the learning rate drops after the resume: the schedule must carry over
    fit(tiny_config(blob_data, optim=decay), tmp_path / "full", show_progress=False)
    full_draws = draws[:]
    # the interrupted run also loads with a worker process: the batches must not depend on it
    fit(tiny_config(blob_data, schedule={"steps": 4}, optim=decay), tmp_path / "split", show_progress=False)
    with (tmp_path / "split" / "metrics.jsonl").open("a") as f:  # logged by the first part after its last.pt
        f.write('{"step": 5, "loss": 99.0}\n')
    del draws[:]
    resumed = tiny_config(blob_data, data={"workers": 1}, optim=decay)
    result = fit(resumed, tmp_path / "split", resume=True, show_progress=False)
    assert result.resumed_from == 4
    # the global RNG streams continue where they stood at step 4 (the loaders made at the resume draw none of them)
    assert [d[0] for d in draws] == [4, 5, 6, 7] and draws == full_draws[4:]
    assert any(note == "resumed with changed manifest sections: data, schedule" for note in result.notes)
    full, split = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert split["step"] == 8
    for name, value in full["model"].items():
        torch.testing.assert_close(split["model"][name], value, rtol=1e-5, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [
        json.loads(line)["step"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    ]
    logs = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("full", "split")]  # fmt: skip
    rates = [[record["lr"] for record in log if "lr" in record] for log in logs]
    assert rates[1] == rates[0] == pytest.approx([0.01, 0.01, 0.001, 0.001])  # logged at steps 2, 4, 6, 8


def test_run_folder_holds_config_metrics_checkpoints_eval_and_plots(blob_data: dict[str, Path], tmp_path: Path) -> None:
    fit(tiny_config(blob_data), tmp_path / "run", show_progress=False)
    run = tmp_path / "run"
    for name in (
        "config.toml",
        "metrics.jsonl",
        "last.pt",
        "best.pt",
        "eval.json",
        "plots/loss.png",
        "plots/val_mae.png",
        "plots/density_examples.png",
    ):
        assert (run / name).is_file(), name
    report = json.loads((run / "eval.json").read_text())
    assert {"mae", "rmse", "nae", "game0", "game1", "game2", "game3"} <= set(report)
    assert report["images"] == 4 and report["split"] == "test"
    state = load_checkpoint(run / "best.pt")
    assert state["density_scale"] == 100.0 and state["output_stride"] == 4 and "[schedule]" in state["config_toml"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"count", "rank", "loss", "lr"} <= set(records[0])
    assert [r["step"] for r in records if "val_mae" in r] == [4, 8]


def test_alternate_and_rank_then_finetune_log_only_their_active_terms(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    alternate = tiny_config(blob_data, schedule={"paradigm": "alternate", "alternate_every": 2, "log_every": 2})
    fit(alternate, tmp_path / "alt", show_progress=False)
    logged = [json.loads(line) for line in (tmp_path / "alt" / "metrics.jsonl").read_text().splitlines()]
    terms = [("count" in r, "rank" in r) for r in logged if "loss" in r]
    assert terms == [(True, False), (False, True), (True, False), (False, True)]
    finetune = tiny_config(blob_data, schedule={"paradigm": "rank-then-finetune", "rank_steps": 4, "log_every": 4})
    fit(finetune, tmp_path / "rtf", show_progress=False)
    logged = [json.loads(line) for line in (tmp_path / "rtf" / "metrics.jsonl").read_text().splitlines()]
    assert [("count" in r, "rank" in r) for r in logged if "loss" in r] == [(False, True), (True, False)]


def test_a_non_finite_loss_stops_the_run_naming_step_and_term(blob_data: dict[str, Path], tmp_path: Path) -> None:
    config = tiny_config(blob_data, data={"density_scale": 1e38}, schedule={"paradigm": "count-only"})
    with pytest.raises(DivergenceError, match=r"step 1: loss term 'count' is inf.*rerun without --resume \(no last"):
        fit(config, tmp_path / "run", show_progress=False)  # no checkpoint to resume from: it said "--resume"


def test_an_existing_run_is_not_overwritten_without_resume(blob_data: dict[str, Path], tmp_path: Path) -> None:
    config = tiny_config(blob_data, schedule={"steps": 2, "eval_every": 2})
    fit(config, tmp_path / "run", show_progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        fit(config, tmp_path / "run", show_progress=False)


def test_a_fresh_run_replaces_the_logs_of_a_run_killed_before_its_first_checkpoint(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    config = tiny_config(blob_data, schedule={"steps": 2, "eval_every": 2})
    fit(config, tmp_path / "clean", show_progress=False)
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)  # what a kill -9 after a few logged steps, before step eval_every, leaves
    (run / "metrics.jsonl").write_text('{"step": 2, "loss": 99.0}\n{"step": 4, "loss": 98.0}\n')
    (run / "plots" / "val_mae.png").write_bytes(b"stale")
    (run / ".last.pt.tmp-12345").write_bytes(b"half a checkpoint")
    (run / "notes.txt").write_text("the user's own file")
    with pytest.raises(ConfigError, match=r"last.pt does not exist \(a run stopped before its first checkpoint"):
        fit(config, run, resume=True, show_progress=False)

    result = fit(config, run, show_progress=False)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    clean = [json.loads(line) for line in (tmp_path / "clean" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [r["step"] for r in clean] == [2, 2]
    assert all(r.get("loss") not in (99.0, 98.0) for r in logged)
    assert (run / "plots" / "val_mae.png").read_bytes() != b"stale"
    assert not (run / ".last.pt.tmp-12345").exists() and (run / "notes.txt").read_text() == "the user's own file"
    assert any("removed metrics.jsonl, plots/val_mae.png, .last.pt.tmp-12345" in note for note in result.notes)


def test_a_folder_with_best_pt_but_no_last_pt_is_not_overwritten(blob_data: dict[str, Path], tmp_path: Path) -> None:
    config = tiny_config(blob_data, schedule={"steps": 2, "eval_every": 2})
    fit(config, tmp_path / "run", show_progress=False)
    (tmp_path / "run" / "last.pt").unlink()
    with pytest.raises(ConfigError, match="best.pt but no last.pt"):
        fit(config, tmp_path / "run", show_progress=False)


def test_input_size_must_be_a_multiple_of_the_output_stride(blob_data: dict[str, Path], tmp_path: Path) -> None:
    config = tiny_config(blob_data, data={"input_size": 34})
    with pytest.raises(ConfigError, match=r"data.input_size = 34 .* stride 4"):
        fit(config, tmp_path / "run", show_progress=False)


def _bn_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)
    )


def test_frozen_running_stats_normalise_with_batch_statistics_and_leave_running_ones_untouched() -> None:
    from train.loop import running_stats_frozen

    model, reference = _bn_model(), _bn_model()
    x = torch.rand(6, 3, 8, 8) * 5 + 2  # far from the initial running statistics (mean 0, var 1)
    norm = model[1]
    before = (norm.running_mean.clone(), norm.running_var.clone(), int(norm.num_batches_tracked))
    with running_stats_frozen(model):
        out = model(x)
    assert torch.equal(norm.running_mean, before[0]) and torch.equal(norm.running_var, before[1])
    assert int(norm.num_batches_tracked) == before[2] and norm.momentum == 0.1
    torch.testing.assert_close(out, reference(x))  # batch statistics, exactly as an ordinary training forward
    assert not torch.equal(reference[1].running_mean, before[0])  # which would have moved them


@pytest.mark.parametrize("batchnorm", ["shared", "separate"])
def test_separate_batchnorm_keeps_ranked_patches_out_of_the_running_statistics(
    blob_data: dict[str, Path], batchnorm: str
) -> None:
    from train.loop import train_step

    config = tiny_config(blob_data, tasks={"rank": {"weight": 1.0, "sets_per_batch": 2, "batchnorm": batchnorm}})
    gen = torch.Generator().manual_seed(3)
    images = (torch.rand(4, 3, 16, 16, generator=gen) * 255).to(torch.uint8)
    targets = torch.rand(4, 1, 16, 16, generator=gen)
    ranked = (torch.rand(2, 3, 3, 16, 16, generator=gen) * 60).to(torch.uint8)  # darker than the labeled crops
    stats = []
    for rank_batch in (ranked, None):
        model = _bn_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: only the BatchNorm buffers can change
        terms = train_step(model, optimizer, (images, targets), rank_batch, config, torch.device("cpu"))
        stats.append(model[1].running_mean.clone())
        assert ("rank" in terms) == (rank_batch is not None)
    same = torch.allclose(stats[0], stats[1])
    assert same == (batchnorm == "separate")


@pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="torch.compile needs a C compiler"
)
def test_compiled_training_matches_eager_and_saves_plain_checkpoints(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    """``schedule.compile = true`` trains the same model (inductor on the CPU here, about 7 s of compiling) and
    its checkpoints hold the plain module's weights, which eval, predict and export read."""
    fit(tiny_config(blob_data), tmp_path / "eager", show_progress=False)
    result = fit(tiny_config(blob_data, schedule={"compile": True}), tmp_path / "compiled", show_progress=False)
    eager, compiled = (load_checkpoint(tmp_path / name / "last.pt")["model"] for name in ("eager", "compiled"))
    assert list(compiled) == list(eager)  # no "_orig_mod." prefixes
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, rtol=1e-3, atol=1e-4)
    assert np.isfinite(result.test["mae"])


def test_a_second_fit_into_a_folder_being_written_is_refused_naming_the_writer(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    import os

    from train.runlock import run_folder_lock

    refused = pytest.raises(ConfigError, match=rf"run is being written by another `train fit` \(pid {os.getpid()}")
    with run_folder_lock(tmp_path / "run"), refused:  # the lock stands for a fit still running in another process
        fit(tiny_config(blob_data), tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # the refused fit wrote nothing


def test_a_fit_into_an_out_that_is_a_file_is_refused_naming_it(blob_data: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"--out .*run is a file, not a run folder; choose another --out"):
        fit(tiny_config(blob_data), tmp_path / "run", show_progress=False)
    assert (tmp_path / "run").read_text() == "not a folder"


def test_a_fit_that_fails_before_writing_leaves_no_empty_run_folder(blob_data: dict[str, Path], tmp_path: Path) -> None:
    """A missing dataset (or a bad --resume) used to leave RUN/ holding only .lock behind."""
    from train.errors import DataError

    config = tiny_config(blob_data, data={"labeled": [str(tmp_path / "not-made-yet")]})
    with pytest.raises(DataError, match="not-made-yet"):
        fit(config, tmp_path / "runs" / "new", show_progress=False)
    assert not (tmp_path / "runs" / "new").exists() and (tmp_path / "runs").is_dir()
    (tmp_path / "mine").mkdir()  # a folder the user made is theirs: left in place
    with pytest.raises(DataError, match="not-made-yet"):
        fit(config, tmp_path / "mine", show_progress=False)
    assert (tmp_path / "mine").is_dir()


HOLD_LOCK = """
import sys, time
from pathlib import Path
from train.runlock import run_folder_lock
with run_folder_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(300)
"""


def test_a_killed_writer_leaves_no_stale_lock(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from train.runlock import run_folder_lock

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match=rf"pid {holder.pid}"), run_folder_lock(tmp_path / "run"):
        pass
    holder.send_signal(signal.SIGKILL)  # kill -9: no cleanup code runs in the holder
    holder.wait()
    with run_folder_lock(tmp_path / "run"):  # the kernel released the lock with the process
        assert (tmp_path / "run" / ".lock").is_file()


def test_a_training_step_weights_count_and_rank_and_passes_the_manifest_margin() -> None:
    from train.device import normalize
    from train.loop import train_step
    from train.losses import density_mse, ranking_hinge
    from train.models import create_model

    table = {
        "model": {"arch": "test-tiny", "pretrained": "none"},
        "data": {"labeled": ["never-read"], "ranked": ["never-read"]},
        "tasks": {"count": {"weight": 0.5}, "rank": {"weight": 3.0, "margin": 2.0}},
        "schedule": {"paradigm": "multitask"},
    }
    config = config_from_dict(table)
    gen = torch.Generator().manual_seed(1)
    images = (torch.rand(2, 3, 16, 16, generator=gen) * 255).to(torch.uint8)
    targets = torch.rand(2, 1, 4, 4, generator=gen)
    ranked = (torch.rand(2, 3, 3, 16, 16, generator=gen) * 255).to(torch.uint8)
    torch.manual_seed(0)
    model = create_model("test-tiny")
    with torch.no_grad():
        count_pred = model(normalize(images))
        rank_pred = model(normalize(ranked.flatten(0, 1))).unflatten(0, (2, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    terms = train_step(model, optimizer, (images, targets), ranked, config, torch.device("cpu"))
    assert float(terms["count"].detach()) == pytest.approx(0.5 * float(density_mse(count_pred, targets)), rel=1e-5)
    # density_scale 100: the hinge on scaled densities with the margin (people per cell) scaled too, times s
    hinge = float(ranking_hinge(rank_pred, margin=2.0 * 100.0))
    assert float(terms["rank"].detach()) == pytest.approx(3.0 * 100.0 * hinge, rel=1e-5)
    assert float(terms["rank"].detach()) > 0  # the margin of 2 makes every pair of these untrained patches pay


def test_a_nan_loss_term_stops_the_run_naming_its_step_and_term(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import train.loop

    real_step = train.loop.train_step

    def nan_rank_at_step_three(*args: Any, **kwargs: Any) -> dict[str, Any]:
        terms = real_step(*args, **kwargs)
        if args[-1] == 2:  # 0-based step 2: the third step
            terms["rank"] = terms["rank"] * float("nan")
        return terms

    monkeypatch.setattr(train.loop, "train_step", nan_rank_at_step_three)
    with pytest.raises(DivergenceError, match=r"step 3: loss term 'rank' is nan"):
        fit(tiny_config(blob_data), tmp_path / "run", show_progress=False)
    more = tiny_config(blob_data, schedule={"steps": 12})
    monkeypatch.setattr(train.loop, "train_step", lambda *a, **kw: nan_rank_at_step_three(*a[:-1], a[-1] - 8, **kw))
    with pytest.raises(DivergenceError, match=r"step 11: loss term 'rank' is nan.*--resume from the last good last.pt"):
        fit(more, tmp_path / "run2", show_progress=False)  # checkpoints at steps 4 and 8 exist by then


def test_a_resumed_run_keeps_the_best_validation_mae_of_its_first_part(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    fit(tiny_config(blob_data, schedule={"steps": 4}), run, show_progress=False)
    state = torch.load(run / "last.pt", weights_only=True)
    torch.save({**state, "best_val_mae": -1.0}, run / "last.pt")  # a first part no later step can beat
    best_before = (run / "best.pt").read_bytes()
    result = fit(tiny_config(blob_data), run, resume=True, show_progress=False)
    assert result.best_val_mae == -1.0
    assert (run / "best.pt").read_bytes() == best_before  # step 8 did not replace the better step 4
    assert load_checkpoint(run / "last.pt")["best_val_mae"] == -1.0


def _split_of(sources: list) -> str:
    """The ``split`` column of a RowSource list's rows (one value: every row of these tests has its split's)."""
    splits = {s.dataset.select_columns(["split"])[i]["split"] for s in sources for i in s.indices}
    assert len(splits) == 1, splits
    return splits.pop()


def test_best_pt_is_the_first_lowest_validation_mae_and_the_test_split_is_evaluated_once_with_it(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation MAEs 3, 1, 1, 2 at steps 2, 4, 6, 8: best.pt is step 4 (a tie is no improvement), validation is
    carved from train (the benchmark has no validation split), and test is evaluated once, at the end, on best.pt."""
    import train.loop

    calls: list[tuple[str, int, dict[str, torch.Tensor]]] = []
    val_maes = iter([3.0, 1.0, 1.0, 2.0])

    def fake_evaluate(model: Any, sources: list, config: RunConfig, device: Any) -> tuple[dict, list]:
        split = _split_of(sources)
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        calls.append((split, sum(len(s.indices) for s in sources), weights))
        mae = 7.0 if split == "test" else next(val_maes)
        return {"mae": mae, "rmse": mae + 0.5}, [{"image_id": "x", "count": 1.0}]

    monkeypatch.setattr(train.loop, "evaluate", fake_evaluate)
    config = tiny_config(blob_data, schedule={"paradigm": "count-only", "eval_every": 2})
    result = fit(config, tmp_path / "run", show_progress=False)
    run = tmp_path / "run"
    assert [(split, rows) for split, rows, _ in calls] == [("train", 2)] * 4 + [("test", 4)]
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert (best["step"], last["step"], result.best_val_mae) == (4, 8, 1.0)
    report = json.loads((run / "eval.json").read_text())
    assert (report["mae"], report["split"], report["checkpoint"], report["step"]) == (7.0, "test", "best.pt", 4)
    tested = calls[-1][2]
    assert all(torch.equal(tested[k], v) for k, v in best["model"].items())  # the test saw best.pt's weights
    assert not all(torch.equal(tested[k], v) for k, v in last["model"].items())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    validation = [(r["step"], r["val_mae"], r["val_rmse"]) for r in records if "val_mae" in r]
    assert validation == [(2, 3.0, 3.5), (4, 1.0, 1.5), (6, 1.0, 1.5), (8, 2.0, 2.5)]
    assert not any("mae" in r and "val_mae" not in r for r in records)  # the test numbers go to eval.json only
    assert load_manifest(run / "config.toml") == config == config_from_dict(best["config"])  # the resolved manifest


def test_without_validation_best_pt_is_the_last_checkpoint_and_the_last_step_is_logged_and_saved(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5 steps, logging every 2 and checkpointing every 4: lines at 2, 4 and 5, each the mean over its own steps,
    checkpoints at 4 and 5; with no validation rows best.pt follows last.pt."""
    import train.loop

    real_step = train.loop.train_step

    def numbered_terms(*args: Any, **kwargs: Any) -> dict[str, Any]:
        real_step(*args, **kwargs)
        step = args[-1]
        return {"count": torch.tensor(2.0 * step), "loss": torch.tensor(float(step))}

    monkeypatch.setattr(train.loop, "train_step", numbered_terms)
    config = tiny_config(
        blob_data,
        data={"val_fraction": 0.0},
        schedule={"paradigm": "count-only", "steps": 5, "eval_every": 4, "log_every": 2},
    )
    result = fit(config, tmp_path / "run", show_progress=False)
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"], r["count"]) for r in records] == [(2, 0.5, 1.0), (4, 2.5, 5.0), (5, 4.0, 8.0)]
    assert load_checkpoint(run / "last.pt")["step"] == load_checkpoint(run / "best.pt")["step"] == 5
    assert json.loads((run / "eval.json").read_text())["step"] == 5 and result.last_terms == {"count": 8.0, "loss": 4.0}
    assert any("data.val_fraction = 0: best.pt is the last checkpoint" in note for note in result.notes)


def test_the_seed_decides_the_initial_weights(blob_data: dict[str, Path], tmp_path: Path) -> None:
    weights = []
    for seed in (0, 1, 1):
        config = tiny_config(
            blob_data,
            data={"eval": ""},
            schedule={"paradigm": "count-only", "steps": 1, "eval_every": 1},
            optim={"lr": 1e-9},  # one step of 1e-9 leaves the initial weights
        )
        config = dataclasses.replace(config, seed=seed)
        run = tmp_path / f"run{len(weights)}"
        result = fit(config, run, show_progress=False)
        weights.append(load_checkpoint(run / "last.pt")["model"])
        assert (run / "best.pt").read_bytes() == (run / "last.pt").read_bytes() and not (run / "eval.json").exists()
        assert "no data.eval: no validation, so best.pt is the last checkpoint; no eval.json is written" in result.notes
    assert all(torch.equal(weights[1][k], v) for k, v in weights[2].items())
    assert not all(torch.allclose(weights[0][k], v, atol=1e-4) for k, v in weights[1].items() if v.is_floating_point())


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_the_optimizer_and_its_schedule_take_every_optim_value(name: str) -> None:
    from train.loop import build_optimizer

    optim = {"name": name, "lr": 0.2, "momentum": 0.5, "weight_decay": 0.01, "lr_milestones": [2, 3], "lr_gamma": 0.5}
    table = {"data": {"labeled": ["never-read"]}, "schedule": {"paradigm": "count-only"}, "optim": optim}
    config = config_from_dict(table)
    model = torch.nn.Conv2d(3, 1, 1)
    optimizer, scheduler = build_optimizer(model, config)
    kinds = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    assert type(optimizer) is kinds[name]
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.2, 0.01) and group.get("momentum", 0.5) == 0.5
    rates = []
    for _ in range(4):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    assert rates == pytest.approx([0.2, 0.1, 0.05, 0.05])


def test_each_paradigm_trains_its_tasks_on_the_documented_steps() -> None:
    from train.config import ScheduleConfig
    from train.paradigms import active_tasks, batches_before

    def tasks(schedule: ScheduleConfig) -> list[str]:
        names = {(True, False): "c", (False, True): "r", (True, True): "cr"}
        return [names[active_tasks(schedule, step)] for step in range(8)]

    assert tasks(ScheduleConfig(paradigm="count-only", steps=8)) == ["c"] * 8
    assert tasks(ScheduleConfig(paradigm="multitask", steps=8)) == ["cr"] * 8
    alternate = ScheduleConfig(paradigm="alternate", steps=8, alternate_every=3)
    assert tasks(alternate) == ["c", "c", "c", "r", "r", "r", "c", "c"]  # counting first, blocks of 3
    finetune = ScheduleConfig(paradigm="rank-then-finetune", steps=8, rank_steps=5)
    assert tasks(finetune) == ["r"] * 5 + ["c"] * 3
    # where a run resumed at step 7 starts each loader: the batches steps 0..6 consumed
    assert batches_before(alternate, 7) == (4, 3) and batches_before(finetune, 7) == (2, 5)
    assert batches_before(alternate, 0) == (0, 0)


def test_a_kill_between_last_pt_and_best_pt_is_repaired_on_resume(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation MAEs 3 then 1: step 4 improves, and the run dies once last.pt (best_val_mae 1) is written but
    before best.pt is replaced. The resume has no step left to run; best.pt must still become step 4, not stay
    step 2 while last.pt says the best MAE is 1 (which no later step would beat to rewrite it)."""
    import train.loop

    val_maes = iter([3.0, 1.0])

    def fake_evaluate(model: Any, sources: list, config: RunConfig, device: Any) -> tuple[dict, list]:
        mae = 7.0 if _split_of(sources) == "test" else next(val_maes)
        return {"mae": mae, "rmse": mae}, [{"image_id": "x", "count": 1.0}]

    real_save = train.loop.save_checkpoint

    def save_then_die_at_step_4(path: Path, *args: Any, **kwargs: Any) -> None:
        real_save(path, *args, **kwargs)
        if args[3] == 4:
            raise KeyboardInterrupt("killed right after last.pt")

    monkeypatch.setattr(train.loop, "evaluate", fake_evaluate)
    monkeypatch.setattr(train.loop, "save_checkpoint", save_then_die_at_step_4)
    config = tiny_config(blob_data, schedule={"paradigm": "count-only", "steps": 4, "eval_every": 2})
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(config, run, show_progress=False)
    assert load_checkpoint(run / "best.pt")["step"] == 2 and load_checkpoint(run / "last.pt")["best_val_mae"] == 1.0
    monkeypatch.setattr(train.loop, "save_checkpoint", real_save)
    fit(config, run, resume=True, show_progress=False)
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert (best["step"], best["best_val_mae"]) == (4, 1.0)
    assert all(torch.equal(best["model"][k], v) for k, v in last["model"].items())
    assert json.loads((run / "eval.json").read_text())["step"] == 4
