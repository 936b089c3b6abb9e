"""Masksembles and the upside-down task: mask construction, train/eval behaviour, masks saved in checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.errors import DataError
from train.loop import fit
from train.manifest import config_from_dict
from train.models import create_model
from train.models.heads import wrap_with_heads
from train.models.masksembles import create_masksembles, generate_masks
from train.unlabeled import UpsideDownCrops, list_unlabeled


def write_pictures(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` small JPEGs whose top half is bright and bottom half dark (so upside down is learnable)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = rng.integers(0, 60, size=(40, 48, 3), dtype=np.uint8)
        pixels[:20] += 150
        Image.fromarray(pixels).save(folder / f"real{i}.jpg")
    return folder


def masks_table(blobs: dict[str, Path], real: Path, **model: Any) -> dict[str, Any]:
    return {
        "name": "synth2real",
        "seed": 3,
        "model": {"arch": "test-tiny", "pretrained": "none", "masksembles": {"masks": 4, "scale": 2.0}, **model},
        "data": {
            "labeled": [str(blobs["labeled"])],
            "unlabeled": [str(real)],
            "crop": [24, 40],
            "input_size": 32,
            "sigma": 3.0,
            "workers": 0,
        },
        "tasks": {"upside_down": {"weight": 1.0, "batch": 4}},
        "schedule": {"paradigm": "count-only", "steps": 4, "batch": 4, "eval_every": 4, "log_every": 1},
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }


def test_masks_keep_channels_over_scale_and_are_identical_at_scale_one() -> None:
    masks = generate_masks(channels=16, masks=4, scale=2.0, seed=0)
    assert masks.shape == (4, 16) and masks.sum(axis=1).tolist() == [8, 8, 8, 8]
    assert len({m.tobytes() for m in masks}) == 4  # four different sub-networks
    assert generate_masks(16, 4, 1.0, 0).all()
    np.testing.assert_array_equal(generate_masks(16, 4, 2.0, 0), masks)  # seeded
    assert not np.array_equal(generate_masks(16, 4, 2.0, 1), masks)


def test_training_masks_sample_i_with_mask_i_mod_n_and_evaluation_runs_every_mask() -> None:
    layer = create_masksembles(channels=3, masks=2, scale=1.5, seed=0)
    x = torch.ones(3, 3, 1, 1)
    masks = layer.masks
    layer.train()
    torch.testing.assert_close(layer(x)[:, :, 0, 0], masks[[0, 1, 0]])
    layer.eval()
    out = layer(x)  # (n * B, C, 1, 1), mask-major
    assert out.shape == (6, 3, 1, 1)
    torch.testing.assert_close(out[:, :, 0, 0], masks.repeat_interleave(3, dim=0))
    layer.member = 1
    torch.testing.assert_close(layer(x)[:, :, 0, 0], masks[[1, 1, 1]])


def test_evaluation_density_is_the_mean_of_the_members() -> None:
    model = wrap_with_heads(create_model("test-tiny"), (), create_masksembles(16, 4, 2.0, 0)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        singles = []
        for member in range(4):
            model.masksembles.member = member
            singles.append(model(x)["density"])
    assert out["members"].shape == (4, 2, 1, 8, 8)
    torch.testing.assert_close(out["density"], torch.stack(singles).mean(0))
    assert not torch.allclose(singles[0], singles[1])


def test_masks_are_identical_after_save_and_load_not_redrawn(blob_data: dict[str, Path], tmp_path: Path) -> None:
    real = write_pictures(tmp_path / "real", 6)
    config = config_from_dict(masks_table(blob_data, real))
    fit(config, tmp_path / "run", show_progress=False)
    saved = load_checkpoint(tmp_path / "run" / "best.pt")["model"]["masksembles.masks"]
    model, _, _ = model_from_checkpoint(tmp_path / "run" / "best.pt", torch.device("cpu"))
    torch.testing.assert_close(model.masksembles.masks, saved)
    torch.testing.assert_close(saved, torch.from_numpy(generate_masks(16, 4, 2.0, seed=3)).float())
    # a checkpoint's masks win over whatever the loading code would draw (here: another seed's masks)
    other = wrap_with_heads(create_model("test-tiny"), ("upside_down",), create_masksembles(16, 4, 2.0, seed=99))
    assert not torch.equal(other.masksembles.masks, saved)
    other.load_state_dict(load_checkpoint(tmp_path / "run" / "best.pt")["model"])
    torch.testing.assert_close(other.masksembles.masks, saved)


def test_upside_down_task_trains_on_the_real_pictures_and_logs_its_term(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    real = write_pictures(tmp_path / "real", 6)
    fit(config_from_dict(masks_table(blob_data, real)), tmp_path / "run", show_progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    terms = [r["upside_down"] for r in logged if "loss" in r]
    assert len(terms) == 4 and all(0 < t / 100.0**2 < 5 for t in terms)  # a cross-entropy, times s^2 = 100^2


def test_upside_down_crops_are_flipped_vertically_exactly_when_labelled(tmp_path: Path) -> None:
    real = write_pictures(tmp_path / "real", 2)
    crops = UpsideDownCrops(list_unlabeled([str(real)]), input_size=16, crop=(40, 40), seed=0)
    labels = []
    for draw in range(12):
        pixels, flipped, skipped = crops[(draw % 2, draw)]
        top, bottom = pixels[:, :8].float().mean(), pixels[:, 8:].float().mean()
        assert (top < bottom) == bool(flipped) and skipped == 0
        labels.append(bool(flipped))
    assert 0 < sum(labels) < 12


def test_unlabeled_inputs_must_hold_pictures(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no pictures"):
        list_unlabeled([str(tmp_path / "empty")])
    with pytest.raises(DataError, match=r"data.unlabeled\[0\] = .*missing"):
        list_unlabeled([str(tmp_path / "missing")])


def test_a_next_round_starts_from_an_exported_model_and_refuses_a_training_checkpoint(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    from train.errors import ModelError
    from train.export import ExportConfig, export_model
    from train.models.assemble import build_model

    real = write_pictures(tmp_path / "real", 6)
    table = masks_table(blob_data, real)
    table["schedule"].update(steps=2, eval_every=2)
    fit(config_from_dict(table), tmp_path / "r0", show_progress=False)
    export_model(ExportConfig(tmp_path / "r0" / "best.pt", tmp_path / "r0.pt"))
    trained = load_checkpoint(tmp_path / "r0" / "best.pt")["model"]
    table["seed"] = 8  # a new round with another seed still keeps round 0's masks and network
    next_round = build_model(config_from_dict(table), pretrained=str(tmp_path / "r0.pt"))
    for name, value in next_round.state_dict().items():
        if not name.startswith("heads."):
            torch.testing.assert_close(value, trained[name])
    with pytest.raises(ModelError, match="train export"):
        build_model(config_from_dict(table), pretrained=str(tmp_path / "r0" / "best.pt"))


def test_each_training_sample_gets_its_own_members_mask_in_turn() -> None:
    layer = create_masksembles(channels=16, masks=4, scale=2.0, seed=0).train()
    masks = layer.masks
    assert len({tuple(m.tolist()) for m in masks}) == 4  # four different masks, so a wrong index shows
    out = layer(torch.ones(6, 16, 1, 1))[:, :, 0, 0]
    torch.testing.assert_close(out, masks[[0, 1, 2, 3, 0, 1]])


def test_each_mask_keeps_channels_over_scale_rounded_and_at_least_one() -> None:
    assert generate_masks(7, 3, 2.0, seed=0).sum(axis=1).tolist() == [4, 4, 4]  # round(3.5) = 4, not 3
    assert generate_masks(10, 2, 3.0, seed=0).sum(axis=1).tolist() == [3, 3]  # round(3.33) = 3
    assert generate_masks(1, 2, 3.0, seed=0).tolist() == [[True], [True]]  # round(1/3) = 0 -> one channel


def test_heads_read_the_unmasked_features_one_row_per_picture_in_training_and_evaluation() -> None:
    torch.manual_seed(0)
    model = wrap_with_heads(create_model("test-tiny"), ("count_reg", "upside_down"), create_masksembles(16, 4, 4.0, 0))
    x = torch.randn(3, 3, 32, 32)
    features = model.base.body(x)  # what enters the density layer, before any mask
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            out = model(x)
            assert out["count_reg"].shape == out["upside_down"].shape == (3,)
            torch.testing.assert_close(out["count_reg"], model.heads["count_reg"](features)[:, 0])
    model.masksembles.member = 2  # one member, as train pseudo-label runs them
    with torch.no_grad():
        single = model(x)
    assert "members" not in single and single["density"].shape == (3, 1, 8, 8)
    masked = features * model.masksembles.masks[2][None, :, None, None]
    torch.testing.assert_close(single["density"], model.base.density(masked))
