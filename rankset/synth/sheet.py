"""A contact sheet of rendered scenes with their head points overlaid, for a person to judge them by eye."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rankset.io import write_figure
from rankset.synth.render import Scene


def save_contact_sheet(scenes: Sequence[Scene], path: str | Path, columns: int = 3) -> Path:
    """Write a PNG grid: each scene with red head points, its depth map beside it, and its count as title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(scenes) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns * 2, figsize=(columns * 2 * 3.2, rows * 2.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, scene in enumerate(scenes):
        picture, depth = axes[i // columns][(i % columns) * 2], axes[i // columns][(i % columns) * 2 + 1]
        picture.imshow(scene.image)
        if scene.count:
            picture.scatter(scene.points[:, 0], scene.points[:, 1], s=2, c="red", linewidths=0)
        picture.set_title(f"count {scene.count} ({'+'.join(scene.plan.kinds) or 'empty'})", fontsize=7)
        # log scale: ground near the horizon is hundreds of metres away and would flatten everything else
        depth.imshow(np.log1p(scene.depth), cmap="viridis")
        depth.set_title(f"log depth (max {scene.depth.max():.0f} m)", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
    return path
