"""Density-map targets from head points: fixed or geometry-adaptive Gaussians, exact per-crop sums, sum-pooling.

Each head is a 2-D Gaussian truncated to a window of ``TRUNCATE`` sigmas and to the crop, then normalised so
its mass inside the crop is exactly 1: a crop's target sums to the number of heads inside it. The mass of a
separable Gaussian over a pixel (or an output cell) is a product of differences of the normal CDF along x and
y, so a map is rendered directly at any cell size; rendering with cells of ``s`` pixels equals sum-pooling the
full-resolution map by ``s`` (up to float rounding). Only the window around each point is non-zero and the
whole map is one matrix product (heads x rows)^T @ (heads x columns): fast for thousands of heads.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

TRUNCATE = 3.0  # kernel window half-width in sigmas
ADAPTIVE_NEIGHBOURS = 3
ADAPTIVE_BETA = 0.3
ADAPTIVE_FALLBACK_SIGMA = 15.0  # a lone head has no neighbours: the paper's fixed sigma


def adaptive_sigmas(
    points: np.ndarray, neighbours: int = ADAPTIVE_NEIGHBOURS, beta: float = ADAPTIVE_BETA
) -> np.ndarray:
    """Geometry-adaptive sigma per head: beta times the mean distance to its ``neighbours`` nearest heads.

    With fewer heads than ``neighbours + 1``, the available ones are used; a lone head gets the fixed 15 px.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(points)
    if n < 2:
        return np.full(n, ADAPTIVE_FALLBACK_SIGMA)
    from scipy.spatial import cKDTree

    k = min(neighbours, n - 1)
    distances, _ = cKDTree(points).query(points, k=k + 1)  # (N, k+1); column 0 is the point itself
    sigma = beta * distances[:, 1:].mean(axis=1)
    return np.where(sigma > 0, sigma, ADAPTIVE_FALLBACK_SIGMA)  # duplicate points: distance 0


def _axis_masses(centres: np.ndarray, sigmas: np.ndarray, length: float, cells: int) -> np.ndarray:
    """(N, cells) mass of each 1-D truncated Gaussian in each of ``cells`` equal bins over [0, length]."""
    edges = np.linspace(0.0, length, cells + 1)  # (cells+1,)
    lo = np.clip(centres - TRUNCATE * sigmas, 0.0, length)[:, None]  # window clipped to the crop
    hi = np.clip(centres + TRUNCATE * sigmas, 0.0, length)[:, None]
    clipped = np.clip(edges[None, :], lo, hi)  # (N, cells+1)
    cdf = ndtr((clipped - centres[:, None]) / sigmas[:, None])
    masses = np.diff(cdf, axis=1)  # (N, cells)
    total = masses.sum(axis=1, keepdims=True)
    return np.divide(masses, total, out=np.zeros_like(masses), where=total > 0)


def density_map(
    points: np.ndarray,
    size: tuple[int, int],
    sigma: float | np.ndarray,
    cell: int = 1,
) -> np.ndarray:
    """A (H/cell, W/cell) float32 density for heads ``points`` (x, y in pixels) in a crop of ``size`` = (W, H).

    ``sigma`` is one value or one per point (pixels). Points outside [0, W] x [0, H] are not heads of this
    crop and are ignored; every other head contributes exactly 1. W and H must be multiples of ``cell``.
    """
    width, height = size
    assert width % cell == 0 and height % cell == 0, f"crop {size} is not a multiple of cell {cell}"
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    sigmas = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(points),))
    inside = (points[:, 0] >= 0) & (points[:, 0] <= width) & (points[:, 1] >= 0) & (points[:, 1] <= height)
    points, sigmas = points[inside], sigmas[inside]
    out = np.zeros((height // cell, width // cell), dtype=np.float32)
    if len(points) == 0:
        return out
    mass_x = _axis_masses(points[:, 0], sigmas, float(width), width // cell)  # (N, W/cell)
    mass_y = _axis_masses(points[:, 1], sigmas, float(height), height // cell)  # (N, H/cell)
    out[:] = mass_y.T @ mass_x  # (H/cell, W/cell)
    return out


def sum_pool(density: np.ndarray, stride: int) -> np.ndarray:
    """Sum non-overlapping ``stride`` x ``stride`` blocks: the map at output stride with its total kept."""
    height, width = density.shape
    assert height % stride == 0 and width % stride == 0, f"map {density.shape} is not a multiple of {stride}"
    return density.reshape(height // stride, stride, width // stride, stride).sum(axis=(1, 3))


def points_in_box(points: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The heads inside ``box`` = (x0, y0, x1, y1), borders included: (points in box coordinates, boolean mask)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x0, y0, x1, y1 = box
    keep = (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
    return points[keep] - np.array([x0, y0]), keep
