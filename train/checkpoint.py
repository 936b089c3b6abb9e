"""Checkpoints: model, optimizer, scheduler, step, RNG states and the resolved manifest, written atomically.

A checkpoint carries everything to rebuild its model without the manifest file: the resolved config (as a
dict and as TOML text), ``arch``, ``output_stride`` and ``density_scale`` (the internal target scale that
predictions are divided by before any count is reported).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from train.config import RunConfig, config_from_dict, config_to_dict, config_to_toml
from train.errors import ModelError

FORMAT_VERSION = 1


def rng_states() -> dict[str, Any]:
    """Every RNG a step may touch."""
    import torch

    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`."""
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    path: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    step: int,
    config: RunConfig,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the checkpoint to a temp name beside ``path`` and rename it, so a kill never leaves half a file."""
    import torch

    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the module
    state = {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "step": step,
        "rng": rng_states(),
        "config": config_to_dict(config),
        "config_toml": config_to_toml(config),
        "arch": config.model.arch,
        "output_stride": int(model.output_stride),
        "density_scale": float(config.data.density_scale),
        **(extra or {}),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on CPU), with a clear error for anything else."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist; pass RUN_DIR/best.pt or RUN_DIR/last.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are pickled
    except Exception as e:  # zip, pickle and torch errors: "not a checkpoint"
        raise ModelError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ModelError(f"{path} is not a crowdrank checkpoint (no 'model'/'config'); pass best.pt or last.pt")
    return state


def model_from_checkpoint(path: str | Path, device: Any) -> tuple[Any, dict[str, Any], RunConfig]:
    """(model in eval mode on ``device``, checkpoint dict, its RunConfig) from a checkpoint file, a folder written
    by ``train push`` or a Hub id ``USER/NAME[@REVISION]`` (train.hub resolves the last two).

    The model is built as the manifest built it (heads, Masksembles, count groups), loaded strictly, then its
    auxiliary heads are dropped: evaluation and prediction cost what the density network costs. An exported
    checkpoint (``"exported": True``, train.export) has no heads to load.
    """
    from train.hub import read_inference_state
    from train.models.assemble import build_model, drop_auxiliary

    state = read_inference_state(path)
    config = config_from_dict(state["config"])
    model = build_model(config, pretrained="none")
    if state.get("exported"):
        drop_auxiliary(model)
    model.load_state_dict(state["model"])
    drop_auxiliary(model)
    return model.to(device).eval(), state, config
