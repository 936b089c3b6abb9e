"""Masksembles masks: every channel in at least one mask (Durasov et al. 2021), each mask of its fixed size."""

from __future__ import annotations

import numpy as np
import pytest

from train.models.masksembles import generate_masks


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("channels", "masks", "scale"), [(64, 4, 2.0), (16, 4, 2.0), (512, 4, 3.0), (10, 3, 1.5)])
def test_every_channel_is_in_some_mask_and_every_mask_keeps_its_size(
    channels: int, masks: int, scale: float, seed: int
) -> None:
    """Independent draws left 2-6 of 64 channels in no mask at 4 masks of scale 2 (seeds 0-2): features the density
    layer never saw, in every member of the ensemble."""
    out = generate_masks(channels, masks, scale, seed)
    assert out.shape == (masks, channels) and out.any(axis=0).all()
    assert (out.sum(axis=1) == round(channels / scale)).all()
    np.testing.assert_array_equal(out, generate_masks(channels, masks, scale, seed))  # the seed decides


def test_masks_too_small_to_cover_every_channel_keep_their_size_and_differ() -> None:
    out = generate_masks(64, 2, 4.0, seed=0)  # 2 masks of 16 cannot cover 64 channels
    assert (out.sum(axis=1) == 16).all() and not np.array_equal(out[0], out[1])


def test_scale_one_gives_identical_all_ones_masks() -> None:
    assert generate_masks(8, 3, 1.0, seed=5).all()
