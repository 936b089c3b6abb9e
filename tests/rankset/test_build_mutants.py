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


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_with_r_1_a_skipped_picture_is_told_to_use_a_larger_r_not_that_its_size_always_fits() -> None:
    """With --r 1 an anchor on the border gives empty patches: a 100x100 picture was skipped with "pictures with a
    short side of 3 px or more always fit", which its own size contradicts."""
    cfg = BuildConfig("in", "out", k=2, s=0.9, r=1.0, size=16, sets_per_image=100)
    rows, skip, _ = cut_sets(SourcePicture("p", data=png(100, 100)), cfg)
    assert rows == [] and skip is not None
    reason, message = skip
    assert reason == "too small for k and s"
    assert "always fit)" not in message and "no picture always fits" in message and "--r 2 or more" in message


def test_with_r_above_1_the_short_side_that_always_fits_does_fit() -> None:
    """The size the message promises holds: r=2, k=3, s=0.5 names 16 px, and a 16x16 picture always gives sets."""
    cfg = BuildConfig("in", "out", k=3, s=0.5, r=2.0, size=16, sets_per_image=200)
    _, skip, _ = cut_sets(SourcePicture("small", data=png(15, 15)), cfg)
    assert skip is not None and "short side of 16 px or more always fit" in skip[1]
    rows, skip, _ = cut_sets(SourcePicture("fits", data=png(16, 16)), cfg)
    assert skip is None and len(rows) == 200


def test_with_r_1_an_empty_split_suggests_a_larger_r_and_otherwise_k_s_or_larger_pictures() -> None:
    from rankset.build import SKIP_TOO_SMALL, BuildSummary, _no_sets_message

    summary = BuildSummary("folder", sources=1)
    summary.skip("p.jpg", SKIP_TOO_SMALL, "too small")
    assert "Try --r 2 or more" in _no_sets_message(BuildConfig("in", "out", r=1.0), summary, "train", 1)
    assert "Try a smaller --k or larger --s, or larger pictures" in _no_sets_message(
        BuildConfig("in", "out", r=8.0), summary, "train", 1
    )
