"""Algorithm 1's geometry, checked on every shape hypothesis can think of."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankset.geometry import boxes_around, draft_factor, nested_boxes, sample_anchor

sizes = st.integers(min_value=16, max_value=6000)
ks = st.integers(min_value=2, max_value=8)
ratios = st.floats(min_value=0.05, max_value=0.99)
rs = st.floats(min_value=1.0, max_value=32.0)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=300, deadline=None)
@given(w=sizes, h=sizes, k=ks, s=ratios, r=rs, seed=seeds)
def test_nested_boxes_obey_algorithm_1(w: int, h: int, k: int, s: float, r: float, seed: int) -> None:
    ns = nested_boxes(w, h, k, s, r, np.random.default_rng(seed))
    ax, ay = ns.anchor
    # anchor in the centred (W/r, H/r) region
    assert abs(ax - w / 2) <= w / (2 * r) + 1e-9
    assert abs(ay - h / 2) <= h / (2 * r) + 1e-9
    assert len(ns.boxes) == k
    for j, (x0, y0, x1, y1) in enumerate(ns.boxes):
        # squares sharing the anchor as centre, inside the image
        assert math.isclose(x1 - x0, y1 - y0, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose((x0 + x1) / 2, ax, abs_tol=1e-9) and math.isclose((y0 + y1) / 2, ay, abs_tol=1e-9)
        assert x0 >= -1e-9 and y0 >= -1e-9 and x1 <= w + 1e-9 and y1 <= h + 1e-9
        # side ratio s between consecutive patches
        assert math.isclose(x1 - x0, ns.sides[0] * s**j, rel_tol=1e-9, abs_tol=1e-6)
        if j:  # each patch inside the previous one
            px0, py0, px1, py1 = ns.boxes[j - 1]
            assert px0 <= x0 and py0 <= y0 and x1 <= px1 and y1 <= py1
    # patch 0 is the largest square centred on the anchor that fits: it touches the nearest border
    x0, y0, x1, y1 = ns.boxes[0]
    assert min(x0, y0, w - x1, h - y1) == pytest.approx(0.0, abs=1e-6)


def test_patch_zero_touches_the_nearest_border() -> None:
    ns = boxes_around((30.0, 50.0), 100, 200, k=3, s=0.5)
    assert ns.boxes[0] == (0.0, 20.0, 60.0, 80.0)
    assert ns.boxes[1] == (15.0, 35.0, 45.0, 65.0)
    assert ns.sides == (60.0, 30.0, 15.0)


@pytest.mark.parametrize("anchor", [(120.0, 5.0), (-1.0, 5.0), (5.0, 120.0), (5.0, -1.0)])
def test_anchor_outside_image_is_refused(anchor: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="outside"):
        boxes_around(anchor, 100, 100, k=2, s=0.5)


def test_r_equal_one_spreads_anchors_over_the_whole_picture() -> None:
    rng = np.random.default_rng(0)
    xs = [sample_anchor(1000, 10, 1.0, rng)[0] for _ in range(2000)]
    assert min(xs) < 50 and max(xs) > 950


def test_same_seed_same_sets_different_seed_different() -> None:
    a = nested_boxes(640, 480, 5, 0.75, 8, np.random.default_rng(7))
    b = nested_boxes(640, 480, 5, 0.75, 8, np.random.default_rng(7))
    c = nested_boxes(640, 480, 5, 0.75, 8, np.random.default_rng(8))
    assert a == b and a != c


@pytest.mark.parametrize(
    ("smallest", "size", "expected"), [(223.0, 224, 1), (448.0, 224, 2), (1000.0, 224, 4), (5000.0, 224, 8)]
)
def test_draft_factor_keeps_smallest_patch_at_output_size(smallest: float, size: int, expected: int) -> None:
    factor = draft_factor(smallest, size)
    assert factor == expected
    assert smallest / factor >= size or factor == 1


@pytest.mark.parametrize("anchor", [(0.0, 40.0), (100.0, 40.0), (30.0, 0.0), (30.0, 80.0)])
def test_an_anchor_on_the_border_is_inside_and_gives_empty_patches(anchor: tuple[float, float]) -> None:
    """The border is part of the picture: only a point past it is refused (build then skips sides below 2 px)."""
    ns = boxes_around(anchor, 100, 80, k=3, s=0.5)
    assert ns.anchor == anchor and ns.sides == (0.0, 0.0, 0.0)
    assert ns.boxes == ((anchor[0], anchor[1], anchor[0], anchor[1]),) * 3


def test_anchors_fill_the_centred_region_in_both_axes() -> None:
    """r = 4 in 800x400: x uniform in [300, 500], y in [150, 250], edge to edge."""
    rng = np.random.default_rng(0)
    xs, ys = np.array([sample_anchor(800, 400, 4.0, rng) for _ in range(2000)]).T
    assert 300 <= xs.min() < 305 and 495 < xs.max() <= 500
    assert 150 <= ys.min() < 152.5 and 247.5 < ys.max() <= 250
