"""Sindagi & Patel's cascaded multi-task network: shapes, count groups, class weights, training and checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.train.conftest import blob_data_table
from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.errors import ConfigError
from train.loop import fit
from train.manifest import config_from_dict
from train.models import create_model
from train.tasks import auxiliary_terms, class_weights, count_group_edges, count_groups_of


def cascaded_table(blobs: dict[str, Path], **tasks: Any) -> dict[str, Any]:
    return {
        "name": "cmtl",
        "model": {"arch": "cascaded-mtl", "pretrained": "none"},
        "data": blob_data_table(blobs, crop=[24, 40], input_size=24),
        "tasks": {"count_class": {"weight": 1.0, "groups": 4, "calibration_crops": 12}, **tasks},
        "schedule": {"paradigm": "count-only", "steps": 3, "batch": 2, "eval_every": 3, "log_every": 1},
        "optim": {"name": "adam", "lr": 1e-4, "weight_decay": 0.0},
    }


def test_cascaded_mtl_gives_full_resolution_density_and_group_logits_for_any_input_size() -> None:
    model = create_model("cascaded-mtl").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 30, 35))
    assert out["density"].shape == (2, 1, 30, 35)
    assert out["count_class"].shape == (2, 10)
    assert model.output_stride == 1


def test_group_edges_split_the_count_range_evenly_and_counts_fall_in_their_bin() -> None:
    edges = count_group_edges(np.array([0.0, 3.0, 20.0, 7.0]), groups=4)
    np.testing.assert_allclose(edges, [0, 5, 10, 15, 20])
    groups = count_groups_of(torch.tensor([0.0, 4.9, 5.0, 19.0, 20.0, 35.0]), edges)
    assert groups.tolist() == [0, 0, 1, 3, 3, 3]  # the top bin is closed and catches counts beyond the range


def test_class_weights_are_inverse_frequencies_normalised_with_empty_groups_counted_once() -> None:
    weights = class_weights(np.array([0, 0, 0, 1]), groups=3)  # frequencies 3, 1, 0 -> inverse 1/3, 1, 1
    np.testing.assert_allclose(weights, np.array([1 / 3, 1, 1]) / (7 / 3))
    assert weights.sum() == pytest.approx(1.0)


def test_count_class_loss_is_class_weighted_cross_entropy_on_the_crop_count_group() -> None:
    config = config_from_dict(
        {"model": {"arch": "cascaded-mtl"}, "data": {"labeled": ["x"]}, "schedule": {"paradigm": "count-only"},
         "tasks": {"count_class": {"weight": 0.5, "groups": 2}}}
    )  # fmt: skip
    model = create_model("cascaded-mtl")
    model.set_count_groups([0.0, 10.0, 20.0], [0.25, 0.75])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    counts = torch.tensor([3.0, 12.0])  # groups 0 and 1
    batch = (None, torch.zeros(2, 1, 4, 4), counts, torch.zeros(2))
    terms = auxiliary_terms({"count_class": logits}, 2, batch, None, config, model, step=0)
    log_p = torch.log_softmax(logits, dim=1)
    expected = 0.5 * -(0.25 * log_p[0, 0] + 0.75 * log_p[1, 1]) / (0.25 + 0.75)
    assert float(terms["count_class"]) == pytest.approx(float(expected), rel=1e-5)


def test_cascaded_mtl_requires_its_count_class_task_and_the_task_requires_the_arch() -> None:
    with pytest.raises(ConfigError, match=r"tasks.count_class = 'absent'.*cascaded-mtl"):
        config_from_dict(
            {"model": {"arch": "cascaded-mtl"}, "data": {"labeled": ["x"]}, "schedule": {"paradigm": "count-only"}}
        )
    with pytest.raises(ConfigError, match="tasks.count_class = 'present'"):
        config_from_dict(
            {"data": {"labeled": ["x"]}, "schedule": {"paradigm": "count-only"}, "tasks": {"count_class": {}}}
        )


def test_fit_calibrates_groups_on_training_crops_logs_the_term_and_records_groups_in_the_checkpoint(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    result = fit(config_from_dict(cascaded_table(blob_data)), tmp_path / "run", show_progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("count_class" in r for r in records if "loss" in r)
    assert any(note.startswith("count groups: 4 bins") for note in result.notes)
    state = load_checkpoint(tmp_path / "run" / "best.pt")
    edges, weights = state["model"]["group_edges"], state["model"]["class_weights"]
    assert edges.shape == (5,) and edges[0] == 0 and edges[-1] >= 1
    assert weights.sum().item() == pytest.approx(1.0, rel=1e-5)
    model, _, _ = model_from_checkpoint(tmp_path / "run" / "best.pt", torch.device("cpu"))
    torch.testing.assert_close(model.group_edges, edges)
    assert model.classifier is None  # eval/predict drop the FC classifier
    with torch.no_grad():
        assert set(model(torch.zeros(1, 3, 24, 24))) == {"density"}
