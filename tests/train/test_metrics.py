"""MAE, RMSE, NAE and GAME on hand-made examples."""

from __future__ import annotations

import numpy as np
import pytest

from train.metrics import game, mae, nae, region_counts, rmse


def test_count_errors_on_a_hand_example() -> None:
    predicted, truth = [12.0, 8.0, 3.0], [10.0, 10.0, 0.0]
    assert mae(predicted, truth) == pytest.approx(7 / 3)
    assert rmse(predicted, truth) == pytest.approx(np.sqrt((4 + 4 + 9) / 3))
    assert nae(predicted, truth) == pytest.approx((0.2 + 0.2) / 2)  # the empty image has no NAE


def test_game_on_a_hand_example() -> None:
    # 8x8 image, density with cell 4: a 2x2 map holding 1, 2, 0, 3 people
    density = np.array([[1.0, 2.0], [0.0, 3.0]])
    points = np.array([[1.0, 1.0], [5.0, 1.0], [6.0, 2.0], [2.0, 6.0], [6.0, 6.0], [7.0, 7.0]])
    assert game(density, points, (8, 8), cell=4, level=0) == pytest.approx(0.0)  # 6 vs 6
    # quadrants: predicted [1, 2; 0, 3], annotated [1, 2; 1, 2] -> |0|+|0|+|1|+|1|
    assert game(density, points, (8, 8), cell=4, level=1) == pytest.approx(2.0)


def test_a_cell_straddling_a_region_border_is_shared_by_area() -> None:
    density = np.array([[4.0]])  # one cell of 6 px over a 6x6 image split in 2x2 regions
    np.testing.assert_allclose(region_counts(density, (6, 6), cell=6, level=1), np.full((2, 2), 1.0))


def test_padding_cells_beyond_the_image_keep_their_mass() -> None:
    density = np.array([[1.0, 1.0]])  # cells of 4 px over a 6 px wide image: the second cell is half padding
    assert region_counts(density, (6, 4), cell=4, level=1).sum() == pytest.approx(2.0)
