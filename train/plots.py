"""Figures of a run, for people who would rather look than read: loss terms, validation MAE, density examples.

All PNGs go to ``RUN/plots/`` through matplotlib's Agg backend (no display needed). Every figure train writes, here
and in compare, rounds and studies, goes through :func:`rankset.io.write_figure`, so a kill mid-write never leaves a
torn PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rankset.io import write_figure
from train.data import RowSource, decode_image, raw_row, undecoded
from train.runlog import MetricsLog

EXAMPLES = 3


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """``loss.png`` (every logged loss term against step) and ``val_mae.png`` when validation was logged."""
    plt = _pyplot()
    written = []
    train = [r for r in records if "loss" in r]
    if train:
        fig, ax = plt.subplots(figsize=(6, 4))
        for term in ("loss", "count", "rank"):
            points = [(r["step"], r[term]) for r in train if r.get(term) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), label=term)
        ax.set(xlabel="step", ylabel="loss (weighted terms)", yscale="log", title="training loss")
        ax.legend()
        written.append(write_figure(fig, out / "loss.png", dpi=100))
    val = [(r["step"], r["val_mae"]) for r in records if r.get("val_mae") is not None]
    if val:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(*zip(*val, strict=True), marker="o")
        ax.set(xlabel="step", ylabel="MAE (people)", title="validation MAE")
        written.append(write_figure(fig, out / "val_mae.png", dpi=100))
    return written


def plot_density_examples(
    examples: list[tuple[str, np.ndarray, np.ndarray, float, float]], cell: int, path: Path
) -> Path:
    """One row per (id, image, predicted density, annotated count, predicted count): picture and overlay.

    ``cell`` is the density map's cell size in image pixels (the model's output stride).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(len(examples), 2, figsize=(8, 3.2 * len(examples)), squeeze=False)
    for (image_id, image, density, truth, predicted), (left, right) in zip(examples, axes, strict=True):
        left.imshow(image)
        left.set_title(f"{image_id}: annotated {truth:.0f}")
        right.imshow(image)
        height, width = image.shape[:2]
        right.imshow(density, cmap="jet", alpha=0.5, extent=(0, density.shape[1] * cell, density.shape[0] * cell, 0))
        right.set_xlim(0, width)
        right.set_ylim(height, 0)
        right.set_title(f"predicted {predicted:.1f}")
        for ax in (left, right):
            ax.axis("off")
    return write_figure(fig, path, dpi=100)


def plot_run(out: Path, model: Any, sources: list[RowSource], config: Any, device: Any) -> list[Path]:
    """Every figure of a finished run: curves from metrics.jsonl, density examples from ``sources``."""
    from train.evaluate import predict_density

    written = plot_curves(MetricsLog(out / "metrics.jsonl").read(), out / "plots")
    examples = []
    model.eval()
    for source in sources:
        ds = undecoded(source.dataset)
        for index in source.indices[: EXAMPLES - len(examples)]:
            record = raw_row(ds, index)
            try:
                image = np.array(decode_image(record["image"]))
            except Exception:  # an unreadable image was already counted by evaluation; skip it here
                continue
            density = predict_density(
                model,
                image,
                int(model.output_stride),
                config.schedule.eval_tile,
                device,
                config.schedule.amp,
                config.data.density_scale,
            )
            examples.append((record["image_id"], image, density, float(record["count"]), float(density.sum())))
    if examples:
        written.append(
            plot_density_examples(examples, int(model.output_stride), out / "plots" / "density_examples.png")
        )
    return written
