"""Pseudo-label rounds chained in one manifest: round folders, kept fractions, resumption, [rounds] validation."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.train.conftest import blob_data_table, blob_image
from train.cli import app
from train.errors import ConfigError
from train.manifest import config_from_dict, config_to_toml, load_manifest
from train.rounds import fit_rounds


def real_pictures(folder: Path, n: int) -> Path:
    """``n`` unlabeled blob pictures (the "real" domain the rounds pseudo-label), true counts in counts.csv as
    ``rankset synth --unlabeled`` writes them (for evaluation only)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    lines = ["# evaluation only", "file,count"]
    for i in range(n):
        data, points = blob_image(rng, 48, 40, heads=int(rng.integers(1, 10)))
        (folder / f"real{i}.jpg").write_bytes(data)
        lines.append(f"real{i}.jpg,{len(points)}")
    (folder / "counts.csv").write_text("\n".join(lines) + "\n")
    return folder


def chain_table(blobs: dict[str, Path], pictures: Path, **rounds: Any) -> dict[str, Any]:
    """A test-tiny Masksembles manifest on the blob sets with a [rounds] table: 4 steps a round, no workers."""
    return {
        "name": "chain",
        "model": {"arch": "test-tiny", "pretrained": "none", "masksembles": {"masks": 4, "scale": 2.0}},
        "data": blob_data_table(blobs, unlabeled=[str(pictures)]),
        "schedule": {"paradigm": "count-only", "steps": 4, "batch": 4, "eval_every": 4, "log_every": 2},
        "optim": {"name": "adam", "lr": 0.01, "weight_decay": 0.0},
        "rounds": {"count": 2, "keep_fraction": 0.5, **rounds},
    }


def test_two_round_chain_trains_round_1_on_the_kept_fraction_of_round_0_pseudo_labels(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    from rankset.io import load_dataset_dict

    pictures = real_pictures(tmp_path / "real", 7)
    config = config_from_dict(chain_table(blob_data, pictures, steps=6))
    out = tmp_path / "chain"
    result = fit_rounds(config, out, show_progress=False)

    pseudo = out / "round-0" / "pseudo-labels"
    kept = load_dataset_dict(pseudo)["train"]
    assert len(kept) == 4  # select_confident rounds half up: floor(0.5 * 7 + 0.5) = 4
    assert set(kept["dataset"]) == {"pseudo"}
    round1 = load_manifest(out / "round-1" / "config.toml")
    assert round1.rounds is None  # a round folder reruns alone as a single run
    assert round1.data.labeled == [str(blob_data["labeled"]), str(pseudo)]
    assert round1.model.pretrained == str(out / "round-0" / "model.pt")
    assert round1.schedule.steps == 6 and load_manifest(out / "round-0" / "config.toml").schedule.steps == 4
    assert json.loads((out / "round-1" / "round.json").read_text())["steps"] == 6
    from train.sources import resolve_sources

    sources = resolve_sources(round1)  # validation is carved from real labels only, never from pseudo-labels
    assert sources.validation and {s.name for s in sources.validation} == {str(blob_data["labeled"])}
    assert sum(len(s.indices) for s in sources.labeled if s.name == str(pseudo)) == 4

    with (out / "rounds.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["round"]) for r in table] == [0, 1]
    assert [r["pseudo_labels_in"] for r in table] == ["0", "4"]
    assert [r["pseudo_labels_kept"] for r in table] == ["4", ""]  # the last round labels nothing
    assert [r["labeled_sets"] for r in table] == ["1", "2"]
    assert [r["init"] for r in table] == ["none", str(out / "round-0" / "model.pt")]
    assert [row["pseudo_labels_in"] for row in result.rows] == [0, 4]
    rows = (pictures / "counts.csv").read_text().splitlines()[2:]
    truth = {name.removesuffix(".jpg"): int(count) for name, count in (row.split(",") for row in rows)}
    errors = [abs(count - truth[image_id]) for image_id, count in zip(kept["image_id"], kept["count"], strict=True)]
    assert result.rows[0]["pseudo_label_mae"] == pytest.approx(sum(errors) / 4)
    last = json.loads((out / "round-1" / "eval.json").read_text())
    assert json.loads((out / "eval.json").read_text())["mae"] == pytest.approx(last["mae"])
    assert (out / "eval_images.csv").read_bytes() == (out / "round-1" / "eval_images.csv").read_bytes()
    assert float(table[1]["test_mae"]) == pytest.approx(last["mae"])
    assert Image.open(out / "rounds.png").format == "PNG"
    assert load_manifest(out / "config.toml").rounds == config.rounds  # the chain reruns from its own folder


def test_resumed_chain_skips_finished_rounds_and_pseudo_labels(blob_data: dict[str, Path], tmp_path: Path) -> None:
    pictures = real_pictures(tmp_path / "real", 4)
    manifest = tmp_path / "chain.toml"
    manifest.write_text(config_to_toml(config_from_dict(chain_table(blob_data, pictures))))
    out = tmp_path / "chain"
    # a chain killed right after round 0: the same manifest with one round
    result = CliRunner().invoke(app, ["fit", str(manifest), "--out", str(out), "--set", "rounds.count=1"])
    assert result.exit_code == 0, result.output
    assert "train fit: 1 rounds" in result.output and not (out / "round-1").exists()
    round0_metrics = (out / "round-0" / "metrics.jsonl").read_bytes()
    round0_mtime = (out / "round-0" / "last.pt").stat().st_mtime_ns

    config = load_manifest(manifest)
    with pytest.raises(ConfigError, match="already holds a rounds chain; pass --resume"):
        fit_rounds(config, out, show_progress=False)
    resumed = fit_rounds(config, out, resume=True, show_progress=False)
    assert (out / "round-0" / "metrics.jsonl").read_bytes() == round0_metrics
    assert (out / "round-0" / "last.pt").stat().st_mtime_ns == round0_mtime
    assert any("round 0: finished before" in note for note in resumed.notes)
    changed = [note for note in resumed.notes if note.startswith("resumed with changed")]
    assert changed == ["resumed with changed manifest sections: rounds (finished rounds are kept as they are)"]
    assert [row["pseudo_labels_in"] for row in resumed.rows] == [0, 2]
    assert json.loads((out / "round-1" / "round.json").read_text())["resumed_from"] == 0

    pseudo_mtime = (out / "round-0" / "pseudo-labels" / "dataset_dict.json").stat().st_mtime_ns
    round1_metrics = (out / "round-1" / "metrics.jsonl").read_bytes()
    again = fit_rounds(config, out, resume=True, show_progress=False)
    assert (out / "round-0" / "pseudo-labels" / "dataset_dict.json").stat().st_mtime_ns == pseudo_mtime
    assert (out / "round-1" / "metrics.jsonl").read_bytes() == round1_metrics
    assert [row["test_mae"] for row in again.rows] == [row["test_mae"] for row in resumed.rows]

    (out / "round-1" / "round.json").unlink()  # killed after round 1's last checkpoint, before it was recorded
    killed = fit_rounds(config, out, resume=True, show_progress=False)
    assert json.loads((out / "round-1" / "round.json").read_text())["resumed_from"] == 4  # continued, not redone
    assert (out / "round-1" / "metrics.jsonl").read_bytes().startswith(round1_metrics)
    assert killed.rows[1]["test_mae"] == pytest.approx(resumed.rows[1]["test_mae"])


@pytest.mark.parametrize(
    ("rounds", "message"),
    [
        ({"cont": 3}, r"unknown key 'rounds.cont'; valid keys here: rounds.count"),
        ({"count": "3"}, r"rounds.count = '3' has the wrong type: expected int"),
        ({"count": 0}, r"rounds.count = 0 is invalid: expected an integer in \[1, 100\]"),
        ({"keep_fraction": 1.5}, r"rounds.keep_fraction = 1.5 is invalid: expected a fraction in \(0, 1\]"),
        ({"keep_fraction": [0.5, 0.7]}, r"rounds.keep_fraction = \[0.5, 0.7\] .* rounds.count - 1 = 1 values"),
        ({"init": "best"}, r"rounds.init = 'best' is invalid: expected one of previous, scratch"),
        ({"steps": -1}, r"rounds.steps = -1 is invalid"),
    ],
)
def test_bad_rounds_values_fail_naming_the_key(
    blob_data: dict[str, Path], tmp_path: Path, rounds: dict[str, Any], message: str
) -> None:
    table = chain_table(blob_data, tmp_path)
    table["rounds"] = {"count": 2, **rounds}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(table)


def test_rounds_need_masksembles_and_pictures_and_a_fraction_that_keeps_one(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    table = chain_table(blob_data, tmp_path)
    del table["model"]["masksembles"]
    with pytest.raises(ConfigError, match=r"model.masksembles = None is invalid: .* for \[rounds\]"):
        config_from_dict(table)
    table = chain_table(blob_data, tmp_path)
    table["data"]["unlabeled"] = []
    with pytest.raises(ConfigError, match=r"rounds.images = \[\] is invalid: .* \(or set data.unlabeled"):
        config_from_dict(table)
    pictures = real_pictures(tmp_path / "real", 3)
    table = chain_table(blob_data, pictures, count=3, keep_fraction=[0.5, 0.1], images=str(pictures))
    with pytest.raises(ConfigError, match=r"keeps no picture of the 3 in rounds.images for round 2"):
        fit_rounds(config_from_dict(table), tmp_path / "chain", show_progress=False)
    assert not (tmp_path / "chain").exists()  # refused before any training


def test_rounds_images_win_over_data_unlabeled(blob_data: dict[str, Path], tmp_path: Path) -> None:
    from train.rounds import check_pictures, pseudo_label_images

    unlabeled, images = real_pictures(tmp_path / "unlabeled", 2), real_pictures(tmp_path / "images", 5)
    config = config_from_dict(chain_table(blob_data, unlabeled, images=str(images)))
    assert pseudo_label_images(config) == [str(images)] and check_pictures(config) == 5
    assert pseudo_label_images(config_from_dict(chain_table(blob_data, unlabeled))) == [str(unlabeled)]


def test_a_chain_refuses_a_single_run_folder_and_a_resume_of_nothing(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    config = config_from_dict(chain_table(blob_data, real_pictures(tmp_path / "real", 2)))
    with pytest.raises(ConfigError, match=r"--resume: .*empty holds no rounds chain .*run without --resume first"):
        fit_rounds(config, tmp_path / "empty", resume=True, show_progress=False)
    (tmp_path / "single").mkdir()
    (tmp_path / "single" / "last.pt").write_bytes(b"")
    for resume in (False, True):
        with pytest.raises(ConfigError, match="holds a single run .last.pt., not a rounds chain; choose another --out"):
            fit_rounds(config, tmp_path / "single", resume=resume, show_progress=False)
    assert sorted(p.name for p in (tmp_path / "single").iterdir()) == ["last.pt"]


def fake_pseudo_label(monkeypatch: pytest.MonkeyPatch, statuses: list[str]) -> list[Any]:
    """Replace ``train pseudo-label``: record its config and write a pseudo_labels.csv with these statuses."""
    asked: list[Any] = []

    def pseudo_label(config: Any, show_progress: bool = True) -> None:
        asked.append(config)
        config.out.mkdir(parents=True)
        lines = ["image_id,status", *(f"p{i},{status}" for i, status in enumerate(statuses))]
        (config.out / "pseudo_labels.csv").write_text("\n".join(lines) + "\n")
        (config.out / "dataset_dict.json").write_text("{}")

    monkeypatch.setattr("train.pseudo_label.pseudo_label", pseudo_label)
    return asked


def test_each_pseudo_labeling_uses_its_own_fraction_and_the_run_seed(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from train.rounds import make_pseudo_labels, round_config

    pictures = real_pictures(tmp_path / "real", 4)
    table = chain_table(blob_data, pictures, count=3, keep_fraction=[0.25, 0.75])
    table["seed"] = 7
    table["schedule"]["eval_tile"] = 128
    config = config_from_dict(table)
    asked = fake_pseudo_label(monkeypatch, ["kept", "dropped", "unreadable_image", "kept"])
    folder = tmp_path / "chain" / "round-1"
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"")
    kept = make_pseudo_labels(round_config(config, 1, tmp_path / "chain"), folder, config, 1, 4, False)
    assert kept == 2  # unreadable pictures are not pseudo-labels
    (labeling,) = asked
    assert (labeling.keep_fraction, labeling.seed, labeling.tile) == (0.75, 7, 128)
    assert (labeling.checkpoint, labeling.images, labeling.out) == (
        folder / "best.pt",
        (str(pictures),),
        folder / "pseudo-labels",
    )
    assert make_pseudo_labels(round_config(config, 1, tmp_path / "chain"), folder, config, 1, 4, False) == 2
    assert len(asked) == 1  # finished pseudo-labels are read back, not predicted again


def test_a_round_that_keeps_no_pseudo_label_stops_the_chain_naming_the_table(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from train.errors import DataError
    from train.rounds import make_pseudo_labels

    config = config_from_dict(chain_table(blob_data, real_pictures(tmp_path / "real", 2)))
    fake_pseudo_label(monkeypatch, ["unreadable_image", "unreadable_image"])
    (tmp_path / "best.pt").write_bytes(b"")
    with pytest.raises(DataError, match=r"round 0 kept no pseudo-label of 2 pictures .*pseudo_labels.csv"):
        make_pseudo_labels(config, tmp_path, config, 0, 2, False)


def fake_chain(monkeypatch: pytest.MonkeyPatch, kept: list[str]) -> dict[str, list[Any]]:
    """Replace training, pseudo-labeling and export by recorders, so a whole chain runs in milliseconds."""
    from types import SimpleNamespace

    calls: dict[str, list[Any]] = {"fit": [], "export": []}

    def fit(config: Any, folder: Path, resume: bool = False, show_progress: bool = True) -> Any:
        calls["fit"].append(config)
        folder.mkdir(parents=True)
        (folder / "best.pt").write_bytes(b"")
        steps = config.schedule.steps
        return SimpleNamespace(steps=steps, resumed_from=0, best_val_mae=1.0, test={}, seconds=0.0, notes=[])

    def export_model(config: Any) -> dict[str, Any]:
        calls["export"].append(config)
        config.out.write_bytes(b"")
        return {}

    monkeypatch.setattr("train.loop.fit", fit)
    monkeypatch.setattr("train.export.export_model", export_model)
    calls["pseudo"] = fake_pseudo_label(monkeypatch, kept)
    return calls


@pytest.mark.parametrize("init", ["previous", "scratch"])
def test_each_round_trains_on_the_previous_rounds_labels_and_starts_from_its_exported_best(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, init: str
) -> None:
    pictures = real_pictures(tmp_path / "real", 4)
    table = chain_table(blob_data, pictures, count=3, keep_fraction=[0.25, 0.75], init=init)
    table["seed"] = 5
    calls = fake_chain(monkeypatch, ["kept", "dropped", "kept", "kept"])
    out = tmp_path / "chain"
    result = fit_rounds(config_from_dict(table), out, show_progress=False)
    labeled = str(blob_data["labeled"])
    assert [c.data.labeled for c in calls["fit"]] == [
        [labeled],
        [labeled, str(out / "round-0" / "pseudo-labels")],
        [labeled, str(out / "round-1" / "pseudo-labels")],  # the previous round's labels only, not every round's
    ]
    if init == "previous":
        expected = ["none", str(out / "round-0" / "model.pt"), str(out / "round-1" / "model.pt")]
        assert [(e.checkpoint, e.out) for e in calls["export"]] == [
            (out / f"round-{i}" / "best.pt", out / f"round-{i}" / "model.pt") for i in (0, 1)
        ]
    else:
        expected = ["none"] * 3
        assert calls["export"] == [] and not list(out.glob("round-*/model.pt"))
    assert [c.model.pretrained for c in calls["fit"]] == expected
    assert [(p.checkpoint, p.out, p.keep_fraction, p.seed) for p in calls["pseudo"]] == [
        (out / f"round-{i}" / "best.pt", out / f"round-{i}" / "pseudo-labels", fraction, 5)
        for i, fraction in ((0, 0.25), (1, 0.75))
    ]  # every round but the last labels the pictures with its own best.pt and its own fraction
    assert [row["pseudo_labels_in"] for row in result.rows] == [0, 3, 3]
    assert [row["pseudo_labels_kept"] for row in result.rows] == [3, 3, ""]
