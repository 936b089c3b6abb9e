"""Band plans for multi-index hashing over 64-bit hashes: Hamming distance, band bounds and radii, and the split
of least estimated cost.

Multi-index hashing (Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012)
cuts the indexed hash into ``m`` contiguous bands of about ``64 / m`` bits. Write ``t = q*m + a`` with
``0 <= a < m``. If every one of ``a + 1`` chosen bands differed in more than ``q`` bits and every other band in more
than ``q - 1``, the pair would differ in at least ``(a+1)(q+1) + (m-a-1)q = t + 1`` bits; so a pair within ``t`` bits
has one of those ``a + 1`` bands within radius ``q`` or one of the others within radius ``q - 1``
(:func:`band_radii`; a radius of -1 means the band is not searched).

Lookups cost ``N * masks`` and candidates ``N^2 * masks / 2^width``, so wide bands trade lookups for
candidates; :func:`plan_bands` picks ``m`` (and which bands get the larger radius) by minimising that cost
for the actual ``N`` and threshold: 3 bands of 21-22 bits (radii 3/3/2) for 1M hashes at t = 10, 4 bands
of 16 bits (2/2/2/1) for 100k. The search itself is :mod:`harvest.hash_index`.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import NamedTuple

import numpy as np

HASH_BITS = 64
MIN_BANDS = 3  # bands of at most 22 bits: a CSR table of at most 2^22 + 1 offsets (16 MB)
# Relative costs of one probe, one verified candidate and one table slot: on 2 shared cores a probe took 3-6 ns and
# a candidate 20-30 ns (1M and 100k random hashes); 5 picks 4 bands at 100k (1.0 s, where 3 bands took 1.3 s).
LOOKUP_COST, CANDIDATE_COST, TABLE_COST = 1.0, 5.0, 1.0
_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount64(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 (numpy >= 2 has it built in; older numpy uses a byte table)."""
    values = np.ascontiguousarray(values, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values).astype(np.int64)
    return _BYTE_POPCOUNT[values.view(np.uint8).reshape(-1, 8)].sum(axis=1).astype(np.int64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between uint64 arrays (broadcasting)."""
    return popcount64(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


def band_bounds(bands: int, bits: int = HASH_BITS) -> list[tuple[int, int]]:
    """``bands`` contiguous (shift, width) bit ranges covering ``bits`` bits, widths differing by at most one."""
    assert 1 <= bands <= bits, f"bands must be in 1..{bits}, got {bands}"
    edges = np.linspace(0, bits, bands + 1).round().astype(int)
    return [(int(lo), int(hi - lo)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def band_values(hashes: np.ndarray, shift: int, width: int) -> np.ndarray:
    """The ``width`` bits of each hash starting at bit ``shift`` (from the least significant end)."""
    mask = np.uint64((1 << width) - 1) if width < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    return (np.asarray(hashes, dtype=np.uint64) >> np.uint64(shift)) & mask


def band_radii(threshold: int, bands: int) -> list[int]:
    """Search radius per band (in band order) so that any two hashes within ``threshold`` bits are caught.

    With ``threshold = q * bands + a`` the first ``a + 1`` bands get radius ``q`` and the rest ``q - 1``
    (-1: not searched); see the module docstring for the pigeonhole argument.
    """
    assert threshold >= 0 and bands >= 1, f"need threshold >= 0 and bands >= 1, got {threshold}, {bands}"
    q, a = divmod(threshold, bands)
    return [q if k <= a else q - 1 for k in range(bands)]


def masks_within(width: int, radius: int) -> int:
    """How many flip masks of ``width`` bits have popcount <= ``radius`` (mask 0 included)."""
    return sum(math.comb(width, k) for k in range(min(radius, width) + 1))


def flip_masks_by_top_bit(width: int, radius: int) -> list[np.ndarray]:
    """Nonzero flip masks of popcount <= ``radius``, grouped by their highest set bit (list index = that bit)."""
    groups: list[np.ndarray] = []
    for top in range(width if radius >= 1 else 0):
        lower = [sum(1 << b for b in combo) for k in range(radius) for combo in combinations(range(top), k)]
        groups.append(np.array(lower, dtype=np.uint32) | np.uint32(1 << top))
    return groups


class BandPlan(NamedTuple):
    """Bands of the indexed hash as (shift, width) with the radius each is searched at (-1: skipped)."""

    bands: tuple[tuple[int, int], ...]
    radii: tuple[int, ...]
    cost: float


def plan_bands(threshold: int, n_probe: int, n_indexed: int, self_join: bool) -> BandPlan:
    """The band split of least estimated cost for ``n_probe`` items searching ``n_indexed`` within ``threshold``.

    Uniform hashes are assumed: a probe of a ``w``-bit band hits ``n_indexed / 2^w`` items on average. Both
    orders of the (near-equal) widths are tried, since which bands get the larger radius changes the cost.
    """
    share = 0.5 if self_join else 1.0  # a self-join probes each unordered pair from one side only
    best: BandPlan | None = None
    most = min(max(threshold + 1, 16), HASH_BITS)  # past t + 1 bands only the first t + 1 are searched: narrower
    for bands in range(MIN_BANDS, most + 1):
        radii = band_radii(threshold, bands)
        for widest_first in (False, True):
            bounds = sorted(band_bounds(bands), key=lambda band: -band[1] if widest_first else band[1])
            cost = 0.0
            for (_, width), radius in zip(bounds, radii, strict=True):
                if radius < 0:
                    continue
                masks = masks_within(width, radius)
                cost += LOOKUP_COST * share * n_probe * masks + TABLE_COST * 2**width
                cost += CANDIDATE_COST * share * n_probe * n_indexed * masks / 2**width
            if best is None or cost < best.cost:
                best = BandPlan(tuple(bounds), tuple(radii), cost)
    assert best is not None, "at least MIN_BANDS bands are always tried"
    return best
