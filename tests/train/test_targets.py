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


def test_a_head_on_the_right_or_bottom_crop_border_still_counts_as_one() -> None:
    # points_in_box keeps border heads, so the crop's count includes them: its target must too
    density = density_map(np.array([[32.0, 10.0], [10.0, 32.0], [32.0, 32.0]]), (32, 32), sigma=3.0, cell=4)
    assert density.sum() == pytest.approx(3.0, abs=1e-4)


def test_a_kernel_is_zero_beyond_three_sigmas_of_its_head() -> None:
    density = density_map(np.array([[16.0, 16.0]]), (32, 32), sigma=2.0)
    assert density.sum() == pytest.approx(1.0, abs=1e-5)
    # the window is [16 - 3 * 2, 16 + 3 * 2] = [10, 22] px: pixels 10..21 hold mass, every other is exactly 0
    assert density[16, 10] > 0 and density[16, 21] > 0 and density[10, 16] > 0
    assert density[:, :10].max() == 0.0 and density[:, 22:].max() == 0.0 and density[:10].max() == 0.0


def test_adaptive_sigma_uses_the_three_nearest_neighbours_not_every_head() -> None:
    line = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    # nearest three: 0 -> 1, 2, 3; 1 -> 1, 1, 2; 2 -> 1, 1, 2; 3 -> 1, 2, 3; 10 -> 7, 8, 9
    expected = 0.3 * np.array([6.0, 4.0, 4.0, 6.0, 24.0]) / 3
    np.testing.assert_allclose(adaptive_sigmas(line), expected)


def test_duplicate_heads_get_the_fixed_sigma_and_a_finite_target() -> None:
    twins = np.array([[8.0, 8.0], [8.0, 8.0]])  # an annotation error seen in real sets: distance 0
    sigmas = adaptive_sigmas(twins)
    assert sigmas.tolist() == [15.0, 15.0]
    density = density_map(twins, (32, 32), sigma=sigmas)
    assert np.isfinite(density).all() and density.sum() == pytest.approx(2.0, abs=1e-4)


def test_each_head_keeps_its_own_sigma_when_heads_outside_the_crop_are_dropped() -> None:
    points = np.array([[-5.0, 5.0], [16.0, 16.0]])  # the first head is outside the crop
    density = density_map(points, (32, 32), sigma=np.array([1.0, 4.0]))
    np.testing.assert_allclose(density, density_map(points[1:], (32, 32), sigma=4.0), atol=1e-7)


def _phi(x: float) -> float:
    """The standard normal CDF, computed by hand (math.erf) rather than with the code under test's scipy.ndtr."""
    import math

    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_a_head_s_pixel_masses_are_the_normal_cdf_differences_of_its_sigma_renormalised_to_the_window() -> None:
    # one head at the centre of pixel (4, 4) of a 9x9 crop, sigma 1: its window [1.5, 7.5] lies inside the crop,
    # so each axis holds (Phi(b) - Phi(a)) / (Phi(3) - Phi(-3)) over a pixel [a, b] in sigmas from the head
    density = density_map(np.array([[4.5, 4.5]]), (9, 9), sigma=1.0)
    window = _phi(3.0) - _phi(-3.0)
    centre = (_phi(0.5) - _phi(-0.5)) / window
    right = (_phi(1.5) - _phi(0.5)) / window  # pixel 5: [5, 6] is [0.5, 1.5] sigmas from the head
    edge = (_phi(-2.5) - _phi(-3.0)) / window  # pixel 1: [1, 2] cut by the window at 1.5 = -3 sigmas
    assert density[4, 4] == pytest.approx(centre * centre, rel=1e-5)
    assert density[4, 5] == pytest.approx(centre * right, rel=1e-5)
    assert density[1, 4] == pytest.approx(edge * centre, rel=1e-5)
    assert density[0, 4] == 0.0 and density[4, 8] == 0.0  # pixels 0 and 8 lie wholly outside the window


def test_points_in_box_keeps_left_and_bottom_borders_and_shifts_x_and_y_by_their_own_origin() -> None:
    # a box whose x0 and y0 differ, so a shift by (x0, x0) or (y0, y0) shows; heads on each of its four borders
    points = np.array([[2.0, 30.0], [12.0, 10.0], [1.9, 15.0], [7.0, 30.1], [5.0, 20.0]])
    inside, mask = points_in_box(points, (2, 10, 12, 30))
    assert mask.tolist() == [True, True, False, False, True]
    assert inside.tolist() == [[0.0, 20.0], [10.0, 0.0], [3.0, 10.0]]
