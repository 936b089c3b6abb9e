"""Loss terms of Liu et al. CVPR 2018: density regression (Eq. 1) and the pairwise ranking hinge (Eq. 5).

Both are pure functions of tensors. :func:`multitask_loss` returns ``{"loss", "count", "rank"}`` with each
term already weighted, so the loop logs every key and ``loss`` is their sum.

Weights and margins are in the papers' units, whatever ``data.density_scale`` (s) is. Training targets are s times
the true density, so the count term is s^2 times its value on true densities; every other term is multiplied by the
power of s that keeps it in the same proportion (:func:`scale_compensation`): the loss is s^2 (Lc + lambda Lr) of
the paper, and lambda = 100 means the paper's lambda, not lambda / s.
"""

from __future__ import annotations

from typing import Any


def density_mse(predicted: Any, target: Any) -> Any:
    """Eq. 1: L_c = 1/(2M) * sum_i ||y_hat_i - y_i||^2 over the M maps of the batch.

    ``||.||^2`` is the squared L2 norm of the whole (1, h, w) difference map, i.e. summed over pixels, and the
    batch is averaged (divided by M, not by M*h*w), as in the paper's Euclidean loss. Shapes (M, 1, h, w).
    """
    assert predicted.shape == target.shape, f"prediction {tuple(predicted.shape)} vs target {tuple(target.shape)}"
    return (predicted.float() - target.float()).pow(2).sum() / (2 * predicted.shape[0])


def pair_indices(k: int) -> tuple[list[int], list[int]]:
    """Every contained pair (i, j), i < j, of a largest-first set of k patches: k*(k-1)/2 pairs."""
    first = [i for i in range(k) for _ in range(i + 1, k)]
    second = [j for i in range(k) for j in range(i + 1, k)]
    return first, second


def ranking_hinge(densities: Any, margin: float = 0.0) -> Any:
    """Eq. 5: sum over every set and every pair i < j of max(0, c(I_j) - c(I_i) + margin).

    ``densities`` is (S, k, 1, h, w): S sets of k patches, largest first. c(I) is the *mean* of the predicted
    density map of patch I: the paper's ranking branch ends in global average pooling of the density map. All
    patches of a set are resized to the same input size, so the mean is the predicted count divided by the same
    number of cells for every patch: the nesting inequality count(I_i) >= count(I_j) holds for c exactly as for
    counts, and the margin is in the densities' units per output cell (:func:`multitask_loss` passes the paper's
    margin times the density scale). The sum over pairs is
    Eq. 5 as written (5 sets of 5 -> 50 pairs); it is not averaged, so its scale follows ``sets_per_batch``.
    """
    sets, k = densities.shape[:2]
    c = densities.float().reshape(sets, k, -1).mean(dim=2)  # (S, k)
    first, second = pair_indices(k)
    return (c[:, second] - c[:, first] + margin).clamp(min=0).sum()


def scale_compensation(density_scale: float, degree: int) -> float:
    """The factor a loss term of ``degree`` in the densities (the ranking hinge: 1; a cross-entropy or a loss on
    true counts or depths: 0) is multiplied by so that its weight keeps its meaning relative to Eq. 1, which is of
    degree 2: s^(2 - degree). With s = 100 and no such factor, lambda = 100 acted as the paper's lambda = 1 and the
    auxiliary tasks' 0.04 / 0.6 / 1 as 1e-4 of their values."""
    return float(density_scale) ** (2 - degree)


def multitask_loss(
    count_pred: Any | None,
    count_target: Any | None,
    rank_pred: Any | None,
    count_weight: float,
    rank_weight: float,
    margin: float,
    density_scale: float = 1.0,
) -> dict[str, Any]:
    """The weighted terms of the tasks given (None = not active this step) and their sum under ``"loss"``.

    ``count_target`` and the predictions are in scaled units (``density_scale`` times people per cell); ``margin``
    is in people per output cell, as the paper's, and ``rank_weight`` is the paper's lambda (module docstring)."""
    terms: dict[str, Any] = {}
    if count_pred is not None:
        terms["count"] = count_weight * density_mse(count_pred, count_target)
    if rank_pred is not None:
        weight = rank_weight * scale_compensation(density_scale, degree=1)
        terms["rank"] = weight * ranking_hinge(rank_pred, margin * density_scale)
    assert terms, "a step needs at least one active task"
    terms["loss"] = sum(terms.values())
    return terms
