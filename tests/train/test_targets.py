"""Density targets: exact per-crop sums, sum-pooling equivalence, adaptive sigmas."""

from __future__ import annotations

import numpy as np
import pytest

from train.targets import adaptive_sigmas, density_map, points_in_box, sum_pool


def test_each_head_contributes_exactly_one_even_when_cut_by_the_crop_border() -> None:
    points = np.array([[0.0, 0.0], [31.5, 10.0], [16.0, 16.0], [40.0, 5.0]])  # the last is outside a 32x32 crop
    density = density_map(points, (32, 32), sigma=6.0)
    assert density.sum() == pytest.approx(3.0, abs=1e-4)
    assert density[0, 0] > density[0, 8] > 0  # the corner head keeps its mass inside the crop


def test_rendering_at_the_output_stride_equals_sum_pooling_the_full_map() -> None:
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 64, size=(40, 2))
    full = density_map(points, (64, 48), sigma=4.0)
    pooled = density_map(points, (64, 48), sigma=4.0, cell=8)
    assert pooled.shape == (6, 8)
    np.testing.assert_allclose(sum_pool(full, 8), pooled, atol=1e-5)
    assert pooled.sum() == pytest.approx(float((points[:, 1] <= 48).sum()), abs=1e-3)


def test_per_point_sigmas_are_used() -> None:
    points = np.array([[8.0, 8.0], [24.0, 24.0]])
    density = density_map(points, (32, 32), sigma=np.array([1.0, 4.0]))
    assert density[8, 8] > 4 * density[24, 24]


def test_adaptive_sigma_is_beta_times_mean_distance_to_three_neighbours() -> None:
    square = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    expected = 0.3 * (10 + 10 + 10 * np.sqrt(2)) / 3
    np.testing.assert_allclose(adaptive_sigmas(square), expected)
    assert adaptive_sigmas(np.array([[5.0, 5.0]])).tolist() == [15.0]


def test_points_in_box_shift_into_box_coordinates_and_keep_borders() -> None:
    inside, mask = points_in_box(np.array([[10.0, 10.0], [20.0, 5.0], [3.0, 3.0]]), (5, 5, 20, 20))
    assert inside.tolist() == [[5.0, 5.0], [15.0, 0.0]] and mask.tolist() == [True, True, False]
