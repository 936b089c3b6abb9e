"""Zhao et al.'s auxiliary tasks: head shapes, targets, losses, depth crops, the stage window and export."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.train.conftest import _rows, blob_image
from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.data import crop_depth
from train.export import ExportConfig, export_model
from train.loop import fit
from train.manifest import config_from_dict
from train.models import create_model
from train.models.assemble import auxiliary_parameters, build_model
from train.models.heads import wrap_with_heads
from train.tasks import depth_loss, segment_target


def depth_png(depth_metres: np.ndarray) -> bytes:
    """A 16-bit PNG of metres * DEPTH_SCALE, as rankset synth writes."""
    from rankset.schema import DEPTH_SCALE

    buffer = io.BytesIO()
    Image.fromarray((depth_metres * DEPTH_SCALE).astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def depth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Labeled blobs with a depth field: depth = 2 + row / 8 metres (nearer at the top)."""
    from rankset.io import write_dataset_dict
    from rankset.schema import labeled_features

    rng = np.random.default_rng(3)
    rows = []
    for i in range(8):
        data, points = blob_image(rng, 48, 48, heads=int(rng.integers(2, 10)))
        depth = np.broadcast_to(2 + np.arange(48, dtype=np.float64)[:, None] / 8, (48, 48))
        rows.append(
            {"image_id": f"d{i}", "image": {"bytes": data, "path": None}, "points": points, "count": len(points),
             "dataset": "blobs-depth", "split": "train", "depth": {"bytes": depth_png(depth), "path": None}}
        )  # fmt: skip
    out = tmp_path_factory.mktemp("depth") / "labeled"
    write_dataset_dict(out, {"train": (_rows, {"rows": rows})}, labeled_features(("depth",)))
    return out


def aux_table(labeled: Path, **tasks: Any) -> dict[str, Any]:
    return {
        "name": "aux",
        "model": {"arch": "test-tiny", "pretrained": "none"},
        "data": {"labeled": [str(labeled)], "crop": [24, 40], "input_size": 32, "sigma": 3.0, "workers": 0},
        "tasks": tasks,
        "schedule": {"paradigm": "count-only", "steps": 4, "batch": 4, "eval_every": 4, "log_every": 1},
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }


def test_heads_read_the_shared_features_at_the_density_grid_with_their_shapes() -> None:
    model = wrap_with_heads(create_model("test-tiny"), ("segment", "depth", "count_reg", "upside_down"))
    out = model(torch.randn(3, 3, 32, 32))
    assert out["density"].shape == out["segment"].shape == out["depth"].shape == (3, 1, 8, 8)
    assert out["count_reg"].shape == out["upside_down"].shape == (3,)


def test_wrapping_leaves_the_density_of_the_wrapped_model_unchanged() -> None:
    base = create_model("test-tiny").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = base(x)
        wrapped = wrap_with_heads(base, ("segment", "count_reg")).eval()(x)["density"]
    torch.testing.assert_close(wrapped, plain)


def test_segment_target_binarises_the_unscaled_density_at_the_threshold() -> None:
    target = torch.tensor([[[[0.0, 0.05], [0.2, 3.0]]]]) * 100  # density_scale 100
    assert segment_target(target, 100.0, 0.0).flatten().tolist() == [0, 1, 1, 1]
    assert segment_target(target, 100.0, 0.1).flatten().tolist() == [0, 0, 1, 1]


def test_depth_loss_is_l2_to_segment_times_depth_over_cells_with_known_depth() -> None:
    predicted = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    segment = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    depth = torch.tensor([[[[2.0, 5.0], [float("nan"), 4.0]]]])
    # targets 2, 0, -, 4 -> squared errors 1, 4, 0 over three known cells
    assert float(depth_loss(predicted, segment, depth)) == pytest.approx(5 / 3)
    assert float(depth_loss(predicted, segment, torch.full_like(depth, float("nan")))) == 0.0


def test_crop_depth_averages_metres_per_cell_flips_with_the_crop_and_is_nan_without_a_map(tmp_path: Path) -> None:
    from rankset.schema import DEPTH_SCALE

    columns = np.broadcast_to(np.arange(16, dtype=np.float64)[None, :], (16, 16))  # depth = x metres
    record = {"image_id": "a", "depth": {"bytes": depth_png(columns), "path": None}}
    cells = crop_depth(record, "", (16, 16), (0, 0, 8, 8), cells=2, flip=False)
    np.testing.assert_allclose(cells, [[1.5, 5.5], [1.5, 5.5]], atol=1 / DEPTH_SCALE)
    flipped = crop_depth(record, "", (16, 16), (0, 0, 8, 8), cells=2, flip=True)
    np.testing.assert_allclose(flipped, [[5.5, 1.5], [5.5, 1.5]], atol=1 / DEPTH_SCALE)
    (tmp_path / "b.png").write_bytes(depth_png(np.full((32, 32), 7.0)))  # a folder map at twice the image size
    from_folder = crop_depth({"image_id": "b"}, str(tmp_path), (16, 16), (4, 4, 12, 12), cells=2, flip=False)
    np.testing.assert_allclose(from_folder, np.full((2, 2), 7.0))
    assert np.isnan(crop_depth({"image_id": "c"}, str(tmp_path), (16, 16), (0, 0, 8, 8), 2, False)).all()


def test_fit_trains_every_auxiliary_task_and_stops_one_at_the_end_of_its_stage(
    depth_data: Path, tmp_path: Path
) -> None:
    table = aux_table(depth_data, segment={}, depth={}, count_reg={"stop": 2})
    result = fit(config_from_dict(table), tmp_path / "run", show_progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in logged if "loss" in r]
    assert [("count_reg" in r) for r in logged] == [True, True, False, False]
    cache = [note for note in result.notes if "cache" in note]  # off by design with depth, not "decoded 0 of N"
    assert cache == [
        "decoded-image cache off: [tasks.depth] reads each of the 8 labeled training rows whole, so "
        "data.cache_gb = 4 is not used"
    ]
    assert all(r["depth"] > 0 and r["segment"] > 0 for r in logged)  # depth maps were found and used
    first = logged[0]
    assert first["loss"] == pytest.approx(first["count"] + first["segment"] + first["depth"] + first["count_reg"])


def test_export_drops_every_auxiliary_parameter_and_keeps_the_densities_identical(
    depth_data: Path, tmp_path: Path
) -> None:
    table = aux_table(depth_data, segment={}, depth={}, count_reg={})
    table["schedule"].update(steps=2, eval_every=2)
    fit(config_from_dict(table), tmp_path / "run", show_progress=False)
    summary = export_model(ExportConfig(tmp_path / "run" / "best.pt", tmp_path / "model.pt"))
    exported = load_checkpoint(tmp_path / "model.pt")
    assert exported["exported"] is True and "optimizer" not in exported and "rng" not in exported
    assert not [k for k in exported["model"] if k.startswith("heads.")]
    trained = build_model(config_from_dict(table), pretrained="none")
    trained.load_state_dict(load_checkpoint(tmp_path / "run" / "best.pt")["model"])
    assert summary["dropped_values"] == auxiliary_parameters(trained) > 0
    plain = create_model("test-tiny")
    assert summary["kept_values"] == sum(p.numel() for p in plain.parameters())
    model, _, _ = model_from_checkpoint(tmp_path / "model.pt", torch.device("cpu"))
    assert auxiliary_parameters(model) == 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["density"], trained.eval()(x)["density"])


def test_auxiliary_terms_weight_each_task_and_read_the_upside_down_logits_of_the_unlabeled_pictures() -> None:
    from torch.nn import functional as F

    from train.tasks import auxiliary_terms

    table = aux_table(Path("never-read"), segment={"weight": 0.3}, depth={"weight": 0.2}, count_reg={"weight": 0.7},
                      upside_down={"weight": 0.4})  # fmt: skip
    table["data"]["unlabeled"] = ["never-read"]
    config = config_from_dict(table)
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 1, 4, 4, generator=gen) * 100  # density_scale 100: 0 to 1 person per cell
    counts, depth = torch.tensor([3.0, 9.0]), torch.rand(2, 1, 4, 4, generator=gen) * 10
    out = {
        "segment": torch.randn(2, 1, 4, 4, generator=gen),
        "depth": torch.randn(2, 1, 4, 4, generator=gen),
        "count_reg": torch.tensor([2.0, 11.0]),
        "upside_down": torch.tensor([9.0, 9.0, 5.0, -5.0, 2.0]),  # 2 labeled crops, 3 unlabeled pictures last
    }
    flipped = torch.tensor([0.0, 1.0, 1.0])
    batch = (None, target, counts, torch.zeros(2), depth)
    terms = auxiliary_terms(out, 2, batch, flipped, config, None, step=0)
    segment = (target / 100 > 0).float()
    assert set(terms) == {"segment", "depth", "count_reg", "upside_down"}
    boost = 100.0**2  # every term is of degree 0 in the densities; the count term on scaled targets is s^2 times
    bce = F.binary_cross_entropy_with_logits(out["segment"], segment)
    assert float(terms["segment"]) == pytest.approx(boost * 0.3 * float(bce))
    depth_l2 = float(((out["depth"] - segment * depth) ** 2).mean())
    assert float(terms["depth"]) == pytest.approx(boost * 0.2 * depth_l2)
    assert float(terms["count_reg"]) == pytest.approx(boost * 0.7 * (1.0 + 4.0) / 2)
    expected = F.binary_cross_entropy_with_logits(torch.tensor([5.0, -5.0, 2.0]), flipped)
    assert float(terms["upside_down"]) == pytest.approx(boost * 0.4 * float(expected))


def test_auxiliary_terms_read_the_labeled_crops_first_and_share_the_segment_threshold_with_depth() -> None:
    from torch.nn import functional as F

    from train.tasks import auxiliary_terms

    table = aux_table(Path("never-read"), segment={"weight": 1.0, "threshold": 0.5}, depth={"weight": 1.0},
                      count_reg={"weight": 1.0})  # fmt: skip
    config = config_from_dict(table)
    target = torch.tensor([[[[0.0, 40.0], [60.0, 200.0]]], [[[100.0, 0.0], [0.0, 30.0]]]])  # density_scale 100
    segment = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])  # > 0.5 people per cell
    depth = torch.full((2, 1, 2, 2), 3.0)
    gen = torch.Generator().manual_seed(1)
    out = {  # two labeled crops, then three ranked patches the auxiliary tasks must not read
        "segment": torch.randn(5, 1, 2, 2, generator=gen),
        "depth": torch.randn(5, 1, 2, 2, generator=gen),
        "count_reg": torch.tensor([2.0, 11.0, 50.0, 60.0, 70.0]),
    }
    terms = auxiliary_terms(out, 2, (None, target, torch.tensor([3.0, 9.0]), torch.zeros(2), depth), None,
                            config, None, step=0)  # fmt: skip
    boost = 100.0**2  # density_scale 100: the count term is s^2 times its value on true densities, so these are too
    bce = F.binary_cross_entropy_with_logits(out["segment"][:2], segment)
    assert float(terms["segment"]) == pytest.approx(boost * float(bce))
    assert float(terms["depth"]) == pytest.approx(boost * float(((out["depth"][:2] - 3.0 * segment) ** 2).mean()))
    assert float(terms["count_reg"]) == pytest.approx(boost * (1.0 + 4.0) / 2)


def test_each_auxiliary_task_contributes_only_inside_its_step_window() -> None:
    from train.tasks import auxiliary_terms

    table = aux_table(Path("never-read"), segment={"start": 2}, depth={"stop": 1}, count_reg={"start": 1, "stop": 2})
    config = config_from_dict(table)
    out = {"segment": torch.zeros(1, 1, 2, 2), "depth": torch.zeros(1, 1, 2, 2), "count_reg": torch.zeros(1)}
    batch = (None, torch.ones(1, 1, 2, 2), torch.ones(1), torch.zeros(1), torch.ones(1, 1, 2, 2))
    active = [sorted(auxiliary_terms(out, 1, batch, None, config, None, step=s)) for s in range(4)]
    assert active == [["depth"], ["count_reg"], ["segment"], ["segment"]]  # windows are [start, stop)
