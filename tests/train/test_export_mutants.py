"""train export, pinned where a hand-made mutant survived: the exported file keeps the run's density scale, so
``train eval`` / ``predict`` on model.pt count exactly what they count on best.pt (a file written with scale 1 kept
the raw densities identical, which the earlier tests compared, but every count came out 40 times too large)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_an_exported_model_keeps_the_density_scale_and_predicts_the_same_counts(tmp_path: Path) -> None:
    import torch

    from train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
    from train.evaluate import predict_density
    from train.export import ExportConfig, export_model
    from train.manifest import config_from_dict
    from train.models.assemble import build_model

    torch.manual_seed(0)
    table = {
        "model": {"arch": "test-tiny", "pretrained": "none"},
        "data": {"labeled": ["never-read"], "density_scale": 40.0},
        "schedule": {"paradigm": "count-only"},
    }
    config = config_from_dict(table)
    save_checkpoint(tmp_path / "best.pt", build_model(config), None, None, 3, config)
    export_model(ExportConfig(tmp_path / "best.pt", tmp_path / "model.pt"))
    assert load_checkpoint(tmp_path / "model.pt")["density_scale"] == 40.0

    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    counts = []
    for name in ("best.pt", "model.pt"):
        model, state, _ = model_from_checkpoint(tmp_path / name, torch.device("cpu"))
        scale = float(state["density_scale"])
        counts.append(predict_density(model, image, 4, 1024, torch.device("cpu"), False, scale).sum())
    assert counts[1] == np.float32(counts[0]) != 0
