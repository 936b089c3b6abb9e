"""Density targets: x and y kept apart (a hand-made mutant that rendered x from y survived the suite)."""

from __future__ import annotations

import numpy as np
import pytest

from train.targets import density_map


@pytest.mark.parametrize("cell", [1, 4])
def test_a_head_lands_in_the_row_of_its_y_and_the_column_of_its_x_on_a_wide_crop(cell: int) -> None:
    # (x, y) = (50, 10) on a 64 x 32 crop (W x H): a sharp kernel puts the mass at row y // cell, column x // cell.
    density = density_map(np.array([[50.5, 10.5]]), (64, 32), 1.0, cell=cell)
    assert density.shape == (32 // cell, 64 // cell)
    row, col = np.unravel_index(np.argmax(density), density.shape)
    assert (row, col) == (10 // cell, 50 // cell)
    assert density.sum() == pytest.approx(1.0, abs=1e-5)
    assert density[:, : 40 // cell].sum() == pytest.approx(0.0, abs=1e-6)  # nothing left of x = 40


def test_two_heads_with_swapped_coordinates_give_transposed_maps_on_a_square_crop() -> None:
    a = density_map(np.array([[5.0, 20.0], [12.0, 3.0]]), (32, 32), [2.0, 3.0])
    b = density_map(np.array([[20.0, 5.0], [3.0, 12.0]]), (32, 32), [2.0, 3.0])
    np.testing.assert_allclose(a, b.T, atol=1e-6)
    assert a[20, 5] > a[5, 20]  # head 1 sits at row 20 (its y), column 5 (its x)
