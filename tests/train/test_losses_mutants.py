"""Gaps in the Eq. 5 tests found by hand-made mutants of train/losses.py.

Every existing hinge test fed density maps that are constant over each patch, so c(I) as the map's mean, its
maximum or any single cell gave the same number: a hinge on the peak cell (``amax``) passed them all. Here the
maps are not flat, so only the mean (the paper's global average pooling) gives the expected loss and gradient.
"""

from __future__ import annotations

import pytest
import torch

from train.losses import multitask_loss, ranking_hinge


def _uneven_pair() -> torch.Tensor:
    """One set of k=2: the larger patch's map is one peak of 4 (mean 1), the smaller's a flat 2 (mean 2)."""
    larger = torch.tensor([[4.0, 0.0], [0.0, 0.0]])
    smaller = torch.full((2, 2), 2.0)
    return torch.stack([larger, smaller]).view(1, 2, 1, 2, 2)


def test_ranking_compares_the_mean_of_each_map_not_its_peak_or_sum() -> None:
    # mean: max(0, 2 - 1 + 0) = 1; a peak (max) would give max(0, 2 - 4) = 0, a sum max(0, 8 - 4) = 4
    assert ranking_hinge(_uneven_pair(), margin=0.0).item() == pytest.approx(1.0)
    # with a margin of 0.5: 1.5, and each cell of a map gets 1/4 of its patch's gradient, peak or not
    densities = _uneven_pair().requires_grad_(True)
    ranking_hinge(densities, margin=0.5).backward()
    expected = torch.stack([torch.full((2, 2), -0.25), torch.full((2, 2), 0.25)]).view(1, 2, 1, 2, 2)
    torch.testing.assert_close(densities.grad, expected)


def test_multitask_rank_term_uses_the_mean_of_uneven_maps() -> None:
    terms = multitask_loss(None, None, _uneven_pair(), count_weight=1.0, rank_weight=0.5, margin=0.0)
    assert terms["rank"].item() == pytest.approx(0.5 * 1.0)
    assert terms["loss"].item() == pytest.approx(0.5)
