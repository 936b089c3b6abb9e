"""Counting metrics as pure functions: MAE, RMSE (what crowd papers call MSE), NAE and GAME(L).

GAME(L) (Guerrero-Gómez-Olmedo et al. 2015) splits the image into 4^L equal regions (a 2^L x 2^L grid) and
sums the absolute count error of each region; GAME(0) is the absolute error of the whole image. A predicted
density cell that straddles a region border is shared between regions in proportion to its overlapping area.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GAME_LEVELS = (0, 1, 2, 3)


def mae(predicted: Sequence[float], truth: Sequence[float]) -> float:
    """Mean absolute count error."""
    p, t = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    return float(np.abs(p - t).mean()) if len(p) else float("nan")


def rmse(predicted: Sequence[float], truth: Sequence[float]) -> float:
    """Root mean squared count error (reported as "MSE" by most crowd-counting papers)."""
    p, t = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    return float(np.sqrt(((p - t) ** 2).mean())) if len(p) else float("nan")


def nae(predicted: Sequence[float], truth: Sequence[float]) -> float:
    """Normalised absolute error |p - t| / t, averaged over images with t > 0 (others are undefined)."""
    p, t = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    keep = t > 0
    return float((np.abs(p[keep] - t[keep]) / t[keep]).mean()) if keep.any() else float("nan")


def _overlap_matrix(cells: int, cell_size: float, extent: float, regions: int) -> np.ndarray:
    """(regions, cells): the fraction of each cell [c*s, (c+1)*s] that lies in each region of [0, extent].

    Cells beyond ``extent`` (padding) are given to the last region so no predicted mass is dropped.
    """
    starts = np.arange(cells) * cell_size
    ends = starts + cell_size
    bounds = np.linspace(0.0, extent, regions + 1)
    lo = np.maximum(starts[None, :], bounds[:-1, None])
    hi = np.minimum(ends[None, :], bounds[1:, None])
    share = np.clip(hi - lo, 0.0, None) / cell_size  # (regions, cells)
    share[-1] += np.clip(ends - np.maximum(starts, extent), 0.0, None) / cell_size
    return share


def region_counts(density: np.ndarray, image_size: tuple[int, int], cell: float, level: int) -> np.ndarray:
    """(2^L, 2^L) predicted counts of a (h, w) density map with cells of ``cell`` pixels on a (W, H) image."""
    width, height = image_size
    regions = 2**level
    rows = _overlap_matrix(density.shape[0], cell, height, regions)  # (R, h)
    cols = _overlap_matrix(density.shape[1], cell, width, regions)  # (R, w)
    return rows @ density.astype(np.float64) @ cols.T


def point_region_counts(points: np.ndarray, image_size: tuple[int, int], level: int) -> np.ndarray:
    """(2^L, 2^L) annotated counts per region; a point on a border goes to the region after it."""
    width, height = image_size
    regions = 2**level
    grid = np.zeros((regions, regions))
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points):
        col = np.clip((points[:, 0] / width * regions).astype(int), 0, regions - 1)
        row = np.clip((points[:, 1] / height * regions).astype(int), 0, regions - 1)
        np.add.at(grid, (row, col), 1.0)
    return grid


def game(density: np.ndarray, points: np.ndarray, image_size: tuple[int, int], cell: float, level: int) -> float:
    """GAME(level) of one image: sum over the 4^level regions of |predicted - annotated| count."""
    predicted = region_counts(density, image_size, cell, level)
    return float(np.abs(predicted - point_region_counts(points, image_size, level)).sum())


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """eval.json's numbers from per-image rows holding ``count``, ``predicted`` and ``game0``..``game3``."""
    truth = [r["count"] for r in rows]
    predicted = [r["predicted"] for r in rows]
    summary = {"mae": mae(predicted, truth), "rmse": rmse(predicted, truth), "nae": nae(predicted, truth)}
    for level in GAME_LEVELS:
        values = [r[f"game{level}"] for r in rows]
        summary[f"game{level}"] = float(np.mean(values)) if values else float("nan")
    summary["images"] = len(rows)
    return summary
