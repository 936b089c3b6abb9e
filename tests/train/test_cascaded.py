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
        {"model": {"arch": "cascaded-mtl"}, "data": {"labeled": ["x"], "density_scale": 1.0},
         "schedule": {"paradigm": "count-only"}, "tasks": {"count_class": {"weight": 0.5, "groups": 2}}}
    )  # fmt: skip
    model = create_model("cascaded-mtl")
    model.set_count_groups([0.0, 10.0, 20.0], [0.25, 0.75])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    counts = torch.tensor([3.0, 12.0])  # groups 0 and 1
    batch = (None, torch.zeros(2, 1, 4, 4), counts, torch.zeros(2))
    terms = auxiliary_terms({"count_class": logits}, 2, batch, None, config, model, step=0)
    log_p = torch.log_softmax(logits, dim=1)
    expected = 0.5 * -(0.25 * log_p[0, 0] + 0.75 * log_p[1, 1]) / (0.25 + 0.75)  # density_scale 1: no s^2
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


def test_count_group_edges_start_at_zero_and_span_at_least_one_person() -> None:
    np.testing.assert_allclose(count_group_edges(np.array([5.0, 20.0]), groups=4), [0, 5, 10, 15, 20])
    np.testing.assert_allclose(count_group_edges(np.zeros(3), groups=2), [0, 0.5, 1])  # all empty crops
    np.testing.assert_allclose(count_group_edges(np.zeros(0), groups=2), [0, 0.5, 1])
    np.testing.assert_allclose(count_group_edges(np.array([0.4]), groups=2), [0, 0.5, 1])


def test_calibration_installs_the_crops_groups_weights_and_a_resized_classifier() -> None:
    from train.tasks import calibrate_count_groups

    model = create_model("cascaded-mtl")
    counts = np.array([0.0, 1.0, 2.0, 3.0, 8.0, 12.0])  # edges 0, 4, 8, 12: groups 0, 0, 0, 0, 2, 2
    edges, weights = calibrate_count_groups(model, counts, groups=3)
    np.testing.assert_allclose(edges, [0, 4, 8, 12])
    np.testing.assert_allclose(weights, np.array([1 / 4, 1, 1 / 2]) / 1.75)  # group 1 is empty: counted once
    torch.testing.assert_close(model.group_edges, torch.tensor([0.0, 4.0, 8.0, 12.0]))
    torch.testing.assert_close(model.class_weights, torch.from_numpy(weights).float())
    assert model.classifier[-1].out_features == 3 and model.groups == 3


def test_calibration_measures_the_first_crops_the_run_itself_draws(blob_data: dict[str, Path]) -> None:
    from train.data import LABELED_STREAM, DrawSampler, LabeledCrops
    from train.models.assemble import build_model
    from train.sources import resolve_sources
    from train.tasks import calibrate_from_training_crops, count_groups_of

    table = cascaded_table(blob_data)
    table["tasks"]["count_class"].update(calibration_crops=5, groups=3)
    config = config_from_dict(table)
    sources = resolve_sources(config)
    model = build_model(config)
    note = calibrate_from_training_crops(model, config, sources, stride=1)
    data = config.data
    crops = LabeledCrops(sources.labeled, data.input_size, tuple(data.crop), data.sigma, 1, 100.0, config.seed)
    first = next(iter(DrawSampler(len(crops), 5, config.seed, LABELED_STREAM, 0, 1)))  # the run's first 5 draws
    counts = np.array([float(crops[item][2]) for item in first])
    np.testing.assert_allclose(model.group_edges.numpy(), count_group_edges(counts, 3), rtol=1e-6)
    labels = count_groups_of(torch.from_numpy(counts), count_group_edges(counts, 3)).numpy()
    np.testing.assert_allclose(model.class_weights.numpy(), class_weights(labels, 3), rtol=1e-6)
    assert "from 5 training crops" in note


def test_the_spp_classifier_reads_168_features_of_the_prior_map() -> None:
    model = create_model("cascaded-mtl")
    assert model.classifier[0].in_features == 8 * (1 + 4 + 16)  # 1x1, 2x2 and 4x4 max-pooled cells, 8 channels


def test_the_density_stage_is_fed_by_the_prior_stage_features() -> None:
    torch.manual_seed(0)
    model = create_model("cascaded-mtl")
    x = torch.randn(1, 3, 16, 16)
    shared = model.shared(x)
    manual = model.density(model.fuse(torch.cat([model.stage(shared), model.prior(shared)], dim=1)))
    density = model(x)["density"]
    torch.testing.assert_close(density, manual)
    prior_conv = model.prior[0].weight
    (grad,) = torch.autograd.grad(density.sum(), prior_conv, retain_graph=True)
    assert grad.abs().sum() > 0  # the density loss trains the prior stage too
    params = list(model.shared.parameters())
    torch.testing.assert_close(
        torch.autograd.grad(density.sum(), params, retain_graph=True), torch.autograd.grad(manual.sum(), params)
    )  # and reaches the shared front end through both stages


def test_count_class_loss_reads_the_labeled_crops_first_in_the_batch() -> None:
    config = config_from_dict(
        {"model": {"arch": "cascaded-mtl"}, "data": {"labeled": ["x"], "density_scale": 1.0},
         "schedule": {"paradigm": "count-only"}, "tasks": {"count_class": {"weight": 1.0, "groups": 2}}}
    )  # fmt: skip
    model = create_model("cascaded-mtl")
    model.set_count_groups([0.0, 10.0, 20.0], [0.5, 0.5])
    logits = torch.tensor([[3.0, 0.0], [-1.0, 2.0], [0.0, 9.0]])  # 2 labeled crops, then a ranked patch
    batch = (None, torch.zeros(2, 1, 4, 4), torch.tensor([3.0, 12.0]), torch.zeros(2))
    terms = auxiliary_terms({"count_class": logits}, 2, batch, None, config, model, step=0)
    expected = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([0, 1]))
    assert float(terms["count_class"]) == pytest.approx(float(expected), rel=1e-5)


def test_auxiliary_parameters_count_the_cascaded_classifier() -> None:
    from train.models.assemble import auxiliary_parameters, drop_auxiliary

    model = create_model("cascaded-mtl")
    assert auxiliary_parameters(model) == sum(p.numel() for p in model.classifier.parameters()) > 0
    assert auxiliary_parameters(drop_auxiliary(model)) == 0


def test_an_input_off_the_grid_is_zero_padded_to_the_next_multiple_of_4_and_cropped_back() -> None:
    torch.manual_seed(0)
    model = create_model("cascaded-mtl").eval()
    x = torch.randn(1, 3, 30, 35)
    with torch.no_grad():
        density = model(x)["density"]
        padded = model(torch.nn.functional.pad(x, (0, 1, 0, 2)))["density"]  # 32 x 36
    torch.testing.assert_close(density, padded[..., :30, :35])
