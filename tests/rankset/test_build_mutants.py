"""rankset build, pinned where a hand-made mutant survived the other build tests.

The reduced (draft) JPEG decode is planned once per picture for all its sets: on the smallest patch of any of them.
Planned on one set alone, another set's smallest patch would be cut from fewer than ``--size`` decoded pixels and
upscaled, a blurred patch in a dataset that looks fine.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from rankset.build import BuildConfig, cut_sets
from rankset.geometry import draft_factor
from rankset.inputs import SourcePicture


def jpeg(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def test_the_draft_factor_of_a_picture_with_many_sets_keeps_every_sets_smallest_patch_at_size() -> None:
    """1600x1600, r=2, k=2, s=0.75, size 224: smallest patches of 600 to 1200 px, so one set alone would allow 1/4
    decoding and the set with the smallest patch only 1/2."""
    cfg = BuildConfig("in", "out", k=2, s=0.75, r=2.0, size=224, sets_per_image=20)
    rows, skip, factor = cut_sets(SourcePicture("big", data=jpeg(1600, 1600)), cfg)
    assert skip is None and len(rows) == 20
    smallest = [row["boxes"][-1][2] - row["boxes"][-1][0] for row in rows]
    assert {draft_factor(side, cfg.size) for side in smallest} == {2, 4}  # the sets disagree: the test means something
    assert factor == draft_factor(min(smallest), cfg.size) == 2
    assert all(side / factor >= cfg.size for side in smallest)
