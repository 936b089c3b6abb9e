"""``train export``: a checkpoint without its auxiliary heads, optimizer or RNG states, for inference only.

The exported file is still a crowdrank checkpoint (``model``, ``config``, ``arch``, ``output_stride``,
``density_scale``) marked ``"exported": True``, so ``train eval`` and ``train predict`` read it as they read
``best.pt``. What is dropped: every auxiliary head of :mod:`train.models.heads` and ``cascaded-mtl``'s FC
count-group classifier (the density stage reads the prior's conv features, never its class scores). What stays:
the density network, and the Masksembles masks of a model that has them (its prediction is their mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankset.io import staged_file
from train.errors import ConfigError


@dataclass(frozen=True)
class ExportConfig:
    """A checkpoint to export and the output file."""

    checkpoint: Path
    out: Path

    def __post_init__(self) -> None:
        if not Path(self.checkpoint).is_file():
            raise ConfigError(f"CHECKPOINT {self.checkpoint} does not exist; pass RUN_DIR/best.pt")
        if Path(self.out).resolve() == Path(self.checkpoint).resolve():
            raise ConfigError(f"--out {self.out} is the checkpoint itself; choose another file, e.g. model.pt")
        if Path(self.out).is_dir():
            raise ConfigError(f"--out {self.out} is a folder; pass a file path, e.g. {Path(self.out) / 'model.pt'}")


def export_model(config: ExportConfig) -> dict[str, Any]:
    """Write the inference-only checkpoint atomically; returns the kept and dropped value counts."""
    import torch

    from train.checkpoint import FORMAT_VERSION, model_from_checkpoint
    from train.runlog import make_out_folder

    model, state, _ = model_from_checkpoint(config.checkpoint, torch.device("cpu"))  # heads already dropped
    weights = {name: value.detach().clone() for name, value in model.state_dict().items()}
    before = sum(v.numel() for v in state["model"].values())
    kept = sum(v.numel() for v in weights.values())
    exported = {
        "format_version": FORMAT_VERSION,
        "exported": True,
        "model": weights,
        "step": state["step"],
        "config": state["config"],
        "config_toml": state["config_toml"],
        "arch": state["arch"],
        "output_stride": state["output_stride"],
        "density_scale": state["density_scale"],
        "exported_from": str(config.checkpoint),
    }
    out = Path(config.out)
    make_out_folder(out.parent)
    with staged_file(out) as tmp:  # Ctrl-C, a full disk or a kill: no model-sized temp file piles up beside --out
        torch.save(exported, tmp)
    return {"out": str(out), "kept_values": kept, "dropped_values": before - kept, "step": int(state["step"])}
