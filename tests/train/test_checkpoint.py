"""Checkpoints load with weights_only=True: a pickled payload never runs, and old files are refused with the fix."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from train.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    upgrade_checkpoint,
)
from train.errors import DataError, ModelError
from train.manifest import config_from_dict


class MakeFolderOnUnpickle:
    """A pickle payload: unpickling it calls ``os.mkdir(marker)``, which stands for any code an attacker picks."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def draws() -> tuple[float, float, float]:
    """One draw from each RNG a checkpoint restores."""
    return random.random(), float(np.random.random()), float(torch.rand(1))


def tiny_checkpoint(path: Path) -> Path:
    """A real checkpoint of an untrained test-tiny model (no data needed)."""
    from train.loop import build_optimizer
    from train.models.assemble import build_model

    table = {
        "name": "ckpt",
        "model": {"arch": "test-tiny", "pretrained": "none"},
        "data": {"labeled": ["never-read"]},
        "schedule": {"paradigm": "count-only"},
    }
    config = config_from_dict(table)
    model = build_model(config)
    optimizer, scheduler = build_optimizer(model, config)
    save_checkpoint(path, model, optimizer, scheduler, 3, config, {"best_val_mae": 1.5})
    return path


@pytest.mark.parametrize("reader", [load_checkpoint, lambda p: model_from_checkpoint(p, torch.device("cpu"))])
def test_a_checkpoint_with_a_pickled_payload_is_refused_without_running_it(tmp_path: Path, reader) -> None:
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "best.pt"
    torch.save({"model": {}, "config": {}, "step": MakeFolderOnUnpickle(marker)}, evil)
    with pytest.raises(ModelError, match=r"weights-only\) load refuses \(it references \w+\.mkdir\)"):
        reader(evil)
    assert not marker.exists()


def test_rng_states_survive_a_weights_only_round_trip(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's state
    torch.save(rng_states(), tmp_path / "rng.pt")
    expected = draws(), float(np.random.standard_normal())  # the Gaussian NumPy cached before the save
    restore_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (draws(), float(np.random.standard_normal())) == expected


def test_a_format_1_checkpoint_is_refused_with_the_fix_and_train_upgrade_makes_it_resumable(tmp_path: Path) -> None:
    state = torch.load(tiny_checkpoint(tmp_path / "new.pt"), weights_only=True)
    random.seed(4), np.random.seed(5)
    state["rng"].update(python=random.getstate(), numpy=np.random.get_state())  # how format 1 stored them
    state["format_version"] = 1
    torch.save(state, tmp_path / "last.pt")
    expected = draws()
    with pytest.raises(ModelError, match=r"before checkpoint format 2.*`train upgrade .*last.pt`"):
        load_checkpoint(tmp_path / "last.pt")

    summary = upgrade_checkpoint(tmp_path / "last.pt")
    assert (summary["from_version"], summary["to_version"], summary["step"]) == (1, 2, 3)
    upgraded = load_checkpoint(tmp_path / "last.pt")
    restore_rng_states(upgraded["rng"])
    assert draws()[:2] == expected[:2]  # Python and NumPy continue where the old file left them
    assert upgraded["best_val_mae"] == 1.5


def test_weights_that_do_not_fit_the_stored_manifest_are_a_model_error_naming_the_tensor(tmp_path: Path) -> None:
    state = torch.load(tiny_checkpoint(tmp_path / "best.pt"), weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3)  # a resized tensor
    torch.save(state, tmp_path / "resized.pt")
    with pytest.raises(ModelError, match=rf"resized.pt do not fit .*size mismatch for {name}.*Fix: the file was"):
        model_from_checkpoint(tmp_path / "resized.pt", torch.device("cpu"))


def test_a_checkpoint_of_a_newer_format_is_refused_naming_the_version(tmp_path: Path) -> None:
    state = torch.load(tiny_checkpoint(tmp_path / "best.pt"), weights_only=True)
    torch.save({**state, "format_version": 999}, tmp_path / "future.pt")
    with pytest.raises(ModelError, match=r"format_version = 999; this crowdrank reads checkpoint formats 1 to 2"):
        model_from_checkpoint(tmp_path / "future.pt", torch.device("cpu"))


def test_upgrading_a_current_checkpoint_never_unpickles_it_and_leaves_it_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tiny_checkpoint(tmp_path / "best.pt")
    before = path.read_bytes()
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: loads.append(kw.get("weights_only")) or real_load(*a, **kw))
    summary = upgrade_checkpoint(path)
    assert (summary["from_version"], summary["to_version"], summary["step"], summary["upgraded"]) == (2, 2, 3, False)
    assert False not in loads  # read the safe way only: nothing in it can run
    assert path.read_bytes() == before  # nothing rewritten

    copied = upgrade_checkpoint(path, tmp_path / "copy.pt")  # --out still gets the file
    assert copied["out"] == str(tmp_path / "copy.pt") and (tmp_path / "copy.pt").read_bytes() == before


def test_upgrading_into_a_folder_is_refused_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tiny_checkpoint(tmp_path / "best.pt")
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelError, match=r"--out .*models is a folder; pass a file path"):
        upgrade_checkpoint(path, tmp_path / "models")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "models"]


def test_a_checkpoint_records_what_rebuilds_its_model_and_the_target_scale_of_its_manifest(tmp_path: Path) -> None:
    from train.loop import build_optimizer
    from train.models.assemble import build_model

    table = {
        "name": "scaled",
        "model": {"arch": "test-tiny", "pretrained": "none"},
        "data": {"labeled": ["never-read"], "density_scale": 40.0},
        "schedule": {"paradigm": "count-only"},
    }
    config = config_from_dict(table)
    model = build_model(config)
    optimizer, scheduler = build_optimizer(model, config)
    save_checkpoint(tmp_path / "last.pt", model, optimizer, scheduler, 7, config, {"best_val_mae": 2.5})
    state = load_checkpoint(tmp_path / "last.pt")
    assert (state["arch"], state["output_stride"], state["density_scale"], state["step"]) == ("test-tiny", 4, 40.0, 7)
    assert state["format_version"] == 2 and state["best_val_mae"] == 2.5
    assert config_from_dict(state["config"]) == config and "density_scale = 40.0" in state["config_toml"]
    assert state["optimizer"]["param_groups"] and state["scheduler"]["last_epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left beside it


def test_weights_missing_a_tensor_are_refused_naming_it(tmp_path: Path) -> None:
    state = torch.load(tiny_checkpoint(tmp_path / "best.pt"), weights_only=True)
    name = next(iter(state["model"]))
    del state["model"][name]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ModelError, match=rf"partial.pt do not fit .*Missing key\(s\) in state_dict: \"{name}\""):
        model_from_checkpoint(tmp_path / "partial.pt", torch.device("cpu"))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"format_version": 0}, r"format_version = 0; this crowdrank reads checkpoint formats 1 to 2"),
        ({"format_version": "2"}, r"format_version = '2'; this crowdrank reads"),
        ({"weights": {}}, r"is not a crowdrank checkpoint \(no 'model'/'config'\); pass best.pt or last.pt"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_of_a_known_format_is_refused(
    tmp_path: Path, payload: dict, message: str
) -> None:
    state = torch.load(tiny_checkpoint(tmp_path / "best.pt"), weights_only=True)
    if "weights" in payload:
        state = payload
    else:
        state.update(payload)
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(ModelError, match=message):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_a_truncated_or_foreign_file_is_named_as_such_by_every_reader_and_by_upgrade(
    tmp_path: Path, damage: str
) -> None:
    """A copy cut short used to read "cannot read checkpoint x.pt: [Errno 22] Invalid argument" under `train upgrade`
    (a text file: "Memo value not found at index 101"), naming neither what is wrong nor the fix."""
    path = tmp_path / "best.pt"
    good = tiny_checkpoint(tmp_path / "good.pt").read_bytes()
    path.write_bytes(good[: len(good) // 3] if damage == "truncated" else b"hello\n")
    what = r"not a complete file written by torch.save \(truncated or corrupt, or not a checkpoint: "
    with pytest.raises(ModelError, match=what + r".*pass RUN_DIR/best.pt or RUN_DIR/last.pt"):
        load_checkpoint(path)
    with pytest.raises(ModelError, match=what + r".*nothing to upgrade; pass the RUN_DIR/last.pt or best.pt"):
        upgrade_checkpoint(path)


@pytest.mark.parametrize(
    ("field", "value", "found"),
    [
        ("density_scale", None, "missing"),
        ("output_stride", None, "missing"),
        ("step", None, "missing"),
        ("arch", None, "missing"),
        ("config_toml", None, "missing"),
        ("config", "junk", "str 'junk'"),
        ("model", "x", "str 'x'"),
        ("step", "x", "str 'x'"),
        ("output_stride", 0, "int 0"),
        ("density_scale", 0.0, "float 0.0"),
    ],
)
def test_a_checkpoint_missing_a_field_or_holding_one_of_another_type_is_named_by_every_reader_and_by_upgrade(
    tmp_path: Path, field: str, value: object, found: str
) -> None:
    """A checkpoint without density_scale was a KeyError traceback in eval, predict and export; a str config an
    AttributeError; output_stride 0 a ZeroDivisionError; density_scale 0 made every count NaN, silently."""
    from train.export import ExportConfig, export_model

    state = torch.load(tiny_checkpoint(tmp_path / "good.pt"), weights_only=True)
    if value is None:
        del state[field]
    else:
        state[field] = value
    torch.save(state, tmp_path / "best.pt")
    message = rf"best.pt is damaged or was not written by crowdrank: its '{field}' is {found}, expected .* Fix: pass"
    with pytest.raises(ModelError, match=message):
        model_from_checkpoint(tmp_path / "best.pt", torch.device("cpu"))
    with pytest.raises(ModelError, match=message):
        export_model(ExportConfig(tmp_path / "best.pt", tmp_path / "model.pt"))
    with pytest.raises(ModelError, match=message):
        upgrade_checkpoint(tmp_path / "best.pt", tmp_path / "upgraded.pt")
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "upgraded.pt").exists()


def test_upgrading_to_a_path_under_a_file_is_a_data_error_naming_it_before_anything_is_read(tmp_path: Path) -> None:
    path = tiny_checkpoint(tmp_path / "best.pt")
    (tmp_path / "afile").write_text("")
    with pytest.raises(DataError, match=r"--out .*afile cannot be written to"):
        upgrade_checkpoint(path, tmp_path / "afile" / "x.pt")
