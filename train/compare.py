"""``train compare``: several finished runs side by side — a table of test metrics and one PNG report.

The report shows each run's validation MAE curve, predicted against annotated counts on the test images,
and the density maps the runs predict for the same few test pictures, so the difference between, say,
counting alone and ranking + counting can be seen as well as read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from train.errors import ConfigError, DataError

METRICS = ("mae", "rmse", "nae", "game0", "game3")


@dataclass(frozen=True)
class CompareConfig:
    runs: tuple[Path, ...]
    out: Path
    examples: int = 3
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.runs) < 1:
            raise ConfigError("train compare needs at least one RUN folder")
        for run in self.runs:
            if not (run / "eval.json").is_file() or not (run / "best.pt").is_file():
                raise ConfigError(f"{run} is not a finished run folder (no eval.json or best.pt); train it first")
        if self.labels and len(self.labels) != len(self.runs):
            raise ConfigError(f"--label was given {len(self.labels)} times for {len(self.runs)} runs; give one per run")
        if self.examples < 0:
            raise ConfigError(f"--examples {self.examples} is out of range: expected an integer >= 0")
        if Path(self.out).suffix.lower() != ".png":  # matplotlib would add .png to a bare name, or fail after drawing
            raise ConfigError(f"--out {self.out} must end in .png (the report is written as a PNG)")
        if Path(self.out).is_dir():
            raise ConfigError(f"--out {self.out} is a folder; pass the path of the PNG to write")

    def names(self) -> list[str]:
        return list(self.labels) or [run.name for run in self.runs]


def run_table(config: CompareConfig) -> list[dict[str, Any]]:
    """One row per run: its label, paradigm, labeled fraction and test metrics."""
    import tomllib

    rows = []
    for name, run in zip(config.names(), config.runs, strict=True):
        metrics = read_eval_json(run / "eval.json")
        try:  # a missing or damaged config.toml leaves paradigm "?" and the default fraction
            manifest = tomllib.loads((run / "config.toml").read_text())
        except (OSError, ValueError):
            manifest = {}
        rows.append(
            {
                "run": name,
                "paradigm": manifest.get("schedule", {}).get("paradigm", "?"),
                "labeled_fraction": manifest.get("data", {}).get("labeled_fraction", 1.0),
                "best_step": metrics.get("step"),
                **{m: metrics.get(m) for m in METRICS},
            }
        )
    return rows


def compare_runs(config: CompareConfig) -> tuple[list[dict[str, Any]], Path]:
    """The table rows and the PNG report written to ``config.out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rankset.io import write_figure
    from train.runlog import make_out_folder

    make_out_folder(config.out.parent)  # before reading every run and drawing the figure
    rows = run_table(config)
    names = config.names()
    per_image = [read_images_csv(run / "eval_images.csv") for run in config.runs]
    examples = _pick_examples(per_image[0], config.examples)
    pictures, densities = _predict_examples(config.runs, examples) if examples else ({}, [])

    slots = 2 * (len(config.runs) + 1)  # a picture, then one density map per run, each two slots wide
    n_rows = 1 + len(examples)
    fig = plt.figure(figsize=(2.6 * slots, 3.4 * n_rows))
    grid = fig.add_gridspec(n_rows, slots)
    ax_curve = fig.add_subplot(grid[0, : slots // 2])
    ax_scatter = fig.add_subplot(grid[0, slots // 2 :])
    for name, run in zip(names, config.runs, strict=True):
        val = validation_curve(run / "metrics.jsonl")
        if val:
            ax_curve.plot([v["step"] for v in val], [v["val_mae"] for v in val], marker="o", label=name)
    ax_curve.set(xlabel="step", ylabel="validation MAE", title="validation MAE while training")
    ax_curve.legend(fontsize=8)
    top = 1.0
    for name, df in zip(names, per_image, strict=True):
        ok = df[df["status"] == "ok"]
        ax_scatter.scatter(ok["count"], ok["predicted"], s=10, alpha=0.7, label=name)
        top = max(top, float(ok["count"].max()), float(ok["predicted"].max()))
    ax_scatter.plot([0, top], [0, top], color="grey", lw=1, ls="--")
    ax_scatter.set(xlabel="annotated count", ylabel="predicted count", title="test images")
    ax_scatter.legend(fontsize=8)
    for i, (image_id, truth) in enumerate(examples):
        image = pictures[image_id]
        ax = fig.add_subplot(grid[1 + i, 0:2])
        ax.imshow(image)
        ax.set_title(f"{image_id}: {truth:.0f} annotated", fontsize=9)
        ax.axis("off")
        for j, name in enumerate(names):
            density = densities[j][i]
            ax = fig.add_subplot(grid[1 + i, 2 + 2 * j : 4 + 2 * j])
            ax.imshow(image)
            ax.imshow(density, cmap="jet", alpha=0.5, extent=(0, image.shape[1], image.shape[0], 0))
            ax.set_title(f"{name}: {density.sum():.1f}", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return rows, write_figure(fig, config.out, dpi=90)


def read_eval_json(path: Path) -> dict[str, Any]:
    """A run's ``eval.json``, or a DataError naming it: a damaged one was a JSONDecodeError traceback."""
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}). {FIX_EVAL}") from e
    if not isinstance(metrics, dict):
        raise DataError(f"{path} holds a JSON {type(metrics).__name__}, not the metrics object. {FIX_EVAL}")
    return metrics


def read_images_csv(path: Path) -> Any:
    """A run's ``eval_images.csv`` (one row per test image), or a DataError naming it."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:  # missing, empty or unparsable
        raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}). {FIX_EVAL}") from e
    missing = [c for c in ("image_id", "count", "predicted", "status") if c not in df.columns]
    if missing:
        raise DataError(f"{path} has no column {', '.join(missing)}. {FIX_EVAL}")
    return df


def validation_curve(path: Path) -> list[dict[str, Any]]:
    """The validation records of a run's ``metrics.jsonl``; a missing file or an unreadable line (a run killed while
    writing it) gives fewer points on the curve, not a traceback. Not :meth:`train.runlog.MetricsLog.read`, which a
    resume uses and so must refuse a damaged line before the last one rather than drop steps in silence."""
    records = []
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("val_mae"), (int, float)) and "step" in record:
            records.append(record)
    return records


FIX_EVAL = "Fix: leave this run out, or restore the file from the finished run (train fit writes it at its end)"


def _pick_examples(df: Any, n: int) -> list[tuple[str, float]]:
    """``n`` test pictures spread over the count range (sparse to dense): (image id, annotated count)."""
    ok = df[df["status"] == "ok"].sort_values("count")
    if not len(ok) or n == 0:
        return []
    picks = ok.iloc[np.linspace(0, len(ok) - 1, min(n, len(ok))).round().astype(int)]
    return [(str(r["image_id"]), float(r["count"])) for _, r in picks.iterrows()]


def _predict_examples(
    runs: tuple[Path, ...], examples: list[tuple[str, float]]
) -> tuple[dict[str, np.ndarray], list[list[np.ndarray]]]:
    """The example pictures, and each run's density (people per cell) on each of them, from its best.pt."""
    import torch

    from rankset.io import load_dataset_dict
    from train.checkpoint import model_from_checkpoint
    from train.data import decode_image, undecoded
    from train.evaluate import predict_density

    device = torch.device("cpu")
    densities: list[list[np.ndarray]] = []
    pictures: dict[str, np.ndarray] = {}
    for run in runs:
        model, state, config = model_from_checkpoint(run / "best.pt", device)
        if not pictures:
            try:
                test = undecoded(load_dataset_dict(config.data.eval)["test"])
            except Exception as e:  # moved, relative to another folder, or a Hub id offline: rankset's errors
                raise DataError(
                    f"{run}: its data.eval = {config.data.eval!r} cannot be opened from here, so its test pictures "
                    f"cannot be drawn ({type(e).__name__}: {e}). Fix: run `train compare` from the folder the run "
                    "was trained in, or pass --examples 0"
                ) from e
            ids = test.data.column("image_id").to_pylist()
            for image_id, _ in examples:
                pictures[image_id] = np.array(decode_image(test[ids.index(image_id)].to_pylist()[0]["image"]))
        stride, scale = int(state.get("output_stride", 1)), float(state.get("density_scale", 1.0))
        densities.append([predict_density(model, pictures[i], stride, 1024, device, False, scale) for i, _ in examples])
    return pictures, densities
