"""Algorithm 1 of Liu, van de Weijer & Bagdanov (CVPR 2018): nested square patches around a common anchor.

Pure functions on numbers; the random generator is passed in. Side lengths are linear ratios:

1. choose the anchor uniformly in the centred region of size (W/r, H/r);
2. patch 0 is the largest square centred on the anchor that fits in the image;
3. patch j has side s**j times patch 0's, centred on the same anchor.

Any patch therefore contains every later one, so count(patch i) >= count(patch j) for i < j: the free
ranking label. Boxes are ``(x0, y0, x1, y1)`` in source pixels (continuous coordinates, x1 exclusive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NestedSet:
    """One ranked set: the anchor and k boxes, largest first."""

    anchor: tuple[float, float]
    boxes: tuple[tuple[float, float, float, float], ...]

    @property
    def sides(self) -> tuple[float, ...]:
        return tuple(b[2] - b[0] for b in self.boxes)


def sample_anchor(width: int, height: int, r: float, rng: np.random.Generator) -> tuple[float, float]:
    """A point drawn uniformly from the centred region of size (width / r, height / r)."""
    half_w, half_h = width / (2.0 * r), height / (2.0 * r)
    x = rng.uniform(width / 2.0 - half_w, width / 2.0 + half_w)
    y = rng.uniform(height / 2.0 - half_h, height / 2.0 + half_h)
    return float(x), float(y)


def boxes_around(anchor: tuple[float, float], width: int, height: int, k: int, s: float) -> NestedSet:
    """The k nested squares centred on ``anchor``: the largest that fits, then sides shrinking by ``s``."""
    x, y = anchor
    if not (0.0 <= x <= width and 0.0 <= y <= height):
        raise ValueError(f"anchor {anchor} lies outside the {width}x{height} image")
    half = min(x, width - x, y, height - y)  # the largest square centred on the anchor that fits
    boxes = []
    for j in range(k):
        h = half * s**j
        boxes.append((x - h, y - h, x + h, y + h))
    return NestedSet(anchor=(x, y), boxes=tuple(boxes))


def nested_boxes(width: int, height: int, k: int, s: float, r: float, rng: np.random.Generator) -> NestedSet:
    """Algorithm 1: a random anchor in the centred 1/r region, then :func:`boxes_around` it."""
    return boxes_around(sample_anchor(width, height, r, rng), width, height, k, s)


def draft_factor(smallest_side: float, size: int, max_factor: int = 8) -> int:
    """The largest JPEG draft reduction (1, 2, 4 or 8) that keeps the smallest patch at least ``size`` pixels.

    Decoding at 1/f resolution costs far less than a full decode and loses nothing when every patch is
    downscaled to ``size`` anyway.
    """
    factor = 1
    while factor * 2 <= max_factor and smallest_side / (factor * 2) >= size:
        factor *= 2
    return factor
