"""MAE, RMSE, NAE and GAME on hand-made examples."""

from __future__ import annotations

import numpy as np
import pytest

from train.metrics import game, mae, nae, point_region_counts, region_counts, rmse, summarise


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


def test_nae_is_undefined_not_zero_when_every_image_is_empty() -> None:
    assert np.isnan(nae([2.0, 0.0], [0.0, 0.0]))  # a 0 would read as a perfect model
    assert np.isnan(mae([], [])) and np.isnan(rmse([], []))


def test_game_on_a_wide_image_splits_width_and_height_separately() -> None:
    # 16x8 image (W=16, H=8), cells of 4 px: level-1 regions are 8 px wide and 4 px tall
    density = np.zeros((2, 4))
    density[0, 1] = 1.0  # x 4-8, y 0-4: top-left region
    density[1, 3] = 1.0  # x 12-16, y 4-8: bottom-right region
    points = np.array([[6.0, 1.0], [12.0, 6.0]])
    np.testing.assert_allclose(region_counts(density, (16, 8), cell=4, level=1), [[1.0, 0.0], [0.0, 1.0]])
    assert point_region_counts(points, (16, 8), level=1).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert game(density, points, (16, 8), cell=4, level=1) == pytest.approx(0.0)


def test_game_levels_two_and_three_use_4x4_and_8x8_grids() -> None:
    density = np.zeros((16, 16))  # cells of 1 px on a 16x16 image
    density[0, 2] = 1.0  # the predicted person at x 2-3, y 0-1
    points = np.array([[1.5, 0.5]])  # the annotated one 1 px to its left
    # same 8x8 and 4x4 px regions (levels 0 to 2); neighbouring 2x2 px regions at level 3
    assert [game(density, points, (16, 16), cell=1, level=level) for level in range(4)] == [0.0, 0.0, 0.0, 2.0]
    assert region_counts(density, (16, 16), cell=1, level=3).shape == (8, 8)


def test_a_point_on_a_region_border_goes_to_the_region_after_it() -> None:
    grid = point_region_counts(np.array([[8.0, 4.0], [16.0, 8.0]]), (16, 8), level=1)
    assert grid.tolist() == [[0.0, 0.0], [0.0, 2.0]]  # (8, 4) is the bottom-right region's corner; (16, 8) clips


def test_summary_averages_each_metric_over_the_images() -> None:
    rows = [
        {"count": 10.0, "predicted": 13.0, "game0": 3.0, "game1": 5.0, "game2": 7.0, "game3": 9.0},
        {"count": 0.0, "predicted": 1.0, "game0": 1.0, "game1": 1.0, "game2": 3.0, "game3": 5.0},
    ]
    summary = summarise(rows)
    assert summary["mae"] == pytest.approx(2.0) and summary["rmse"] == pytest.approx(np.sqrt(5.0))
    assert summary["nae"] == pytest.approx(0.3)  # only the image with people has an NAE
    assert [summary[f"game{level}"] for level in range(4)] == [2.0, 3.0, 5.0, 7.0]
    assert summary["images"] == 2


def test_game_regions_split_the_image_not_its_padded_map_and_padding_goes_to_the_last_region() -> None:
    # a 6x4 image with 4-px cells: the map is 1x2 cells (8x4 px), the second cell half padding.
    # Level-1 regions are x in [0, 3] and [3, 6], y in [0, 2] and [2, 4]: cell 0 ([0, 4]) gives 3/4 of its person
    # to the left column and 1/4 to the right; cell 1 ([4, 8]) lies in the right column and its padding half too.
    density = np.array([[1.0, 1.0]])
    left, right = 0.75, 0.25 + 1.0
    np.testing.assert_allclose(region_counts(density, (6, 4), cell=4, level=1), [[left / 2, right / 2]] * 2)


def test_summary_game_is_the_mean_over_images_not_the_median() -> None:
    rows = [
        {"count": 1.0, "predicted": 1.0, "game0": 0.0, "game1": 0.0, "game2": 0.0, "game3": 0.0},
        {"count": 1.0, "predicted": 1.0, "game0": 0.0, "game1": 0.0, "game2": 0.0, "game3": 0.0},
        {"count": 4.0, "predicted": 1.0, "game0": 3.0, "game1": 6.0, "game2": 9.0, "game3": 12.0},
    ]
    summary = summarise(rows)
    assert [summary[f"game{level}"] for level in range(4)] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert summary["mae"] == pytest.approx(1.0) and summary["nae"] == pytest.approx((0 + 0 + 0.75) / 3)
