"""Near-duplicate grouping on 64-bit perceptual hashes: pure functions on integer arrays, no files.

Two pictures are near-duplicates when their pHash differ in at most ``phash_threshold`` bits AND their
dHash in at most ``dhash_threshold`` bits (dHash is the second vote: it keeps two distinct scenes whose
pHash happen to be close apart). Near-duplicate pairs are grouped transitively (connected components).

The search is exact and sub-quadratic: multi-index hashing with a radius search in each band (Norouzi,
Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012). Only one of the two
hashes is indexed (the one with the smaller threshold ``t``), cut into ``m`` contiguous bands of about
``64 / m`` bits. Write ``t = q*m + a`` with ``0 <= a < m``. If every one of ``a + 1`` chosen bands differed
in more than ``q`` bits and every other band in more than ``q - 1``, the pair would differ in at least
``(a+1)(q+1) + (m-a-1)q = t + 1`` bits; so a pair within ``t`` bits has one of those ``a + 1`` bands within
radius ``q`` or one of the others within radius ``q - 1`` (:func:`band_radii`; a radius of -1 means the band
is not searched). Each band is a CSR table (items counting-sorted by band value, ``offsets`` of size
``2^width + 1``). Every item probes its band value XOR each flip mask of popcount <= radius, one vectorised
pass per block of (masks, items); the hits are verified with the exact pHash AND dHash distances. In a
self-join an unordered pair differs by one mask, so only the member whose band value has a 0 at the mask's
highest set bit probes (half the work); mask 0 (equal band values) pairs the members of each run.

Lookups cost ``N * masks`` and candidates ``N^2 * masks / 2^width``, so wide bands trade lookups for
candidates; :func:`plan_bands` picks ``m`` (and which bands get the larger radius) by minimising that cost
for the actual ``N`` and threshold: 3 bands of 21-22 bits (radii 3/3/2) for 1M hashes at t = 10, 4 bands
of 16 bits (2/2/2/1) for 100k. The (band, highest mask bit) work units can run on threads (``workers``).

Grouping needs components, not every pair: :func:`near_duplicate_groups` streams the pairs into
:class:`Components` and skips the pairs of items already joined (:func:`_group_join`). That matters when the
hashes are not uniform: a folder of 5,000 frames of one scene has 12.5M near pairs, which took 37 s and 1.4 GB
as pairs and now takes 0.1 s and 22 MB.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from typing import NamedTuple, TypeVar

import numpy as np

HASH_BITS = 64
MIN_BANDS = 3  # bands of at most 22 bits: a CSR table of at most 2^22 + 1 offsets (16 MB)
BIG_BUCKET = 32  # buckets this large are searched component by component (dense clusters of near-identical pictures)
PROBE_BLOCK = 1 << 18  # (mask, item) probes per vectorised pass: big enough for numpy, small enough for cache
# Relative costs of one probe, one verified candidate and one table slot: on 2 shared cores a probe took 3-6 ns and
# a candidate 20-30 ns (1M and 100k random hashes); 5 picks 4 bands at 100k (1.0 s, where 3 bands took 1.3 s).
LOOKUP_COST, CANDIDATE_COST, TABLE_COST = 1.0, 5.0, 1.0
T = TypeVar("T")
R = TypeVar("R")
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


class BandTable(NamedTuple):
    """One band as a CSR table: items sorted by band value, ``offsets[v]:offsets[v + 1]`` those of value ``v``."""

    order: np.ndarray  # item index at each sorted position
    keys: np.ndarray  # band value at each sorted position (uint32)
    offsets: np.ndarray  # (2^width + 1,) first sorted position of each band value
    occupied: np.ndarray  # (2^width,) bool: some item has this value (a 1-byte gather rejects most probes)


def band_table(hashes: np.ndarray, shift: int, width: int) -> BandTable:
    """Counting-sort the items by the band value of their hash."""
    keys = band_values(hashes, shift, width).astype(np.uint32)
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=2**width)
    offsets = np.zeros(2**width + 1, dtype=np.int32 if len(keys) < 2**31 else np.int64)  # int32: half the cache
    np.cumsum(counts, out=offsets[1:])
    return BandTable(order, keys[order], offsets, counts > 0)


def probe_hits(table: BandTable, probe_keys: np.ndarray, masks: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For each block of (mask, probe) combinations, the (probe index, sorted position) of every table hit.

    Probe keys should be sorted: each mask then maps a block of them into a narrow range of the table, which
    keeps the random gathers in cache (about 7x faster than scattered keys).
    """
    for probe, _, low, counts in probe_buckets(table, probe_keys, masks):
        yield probe, low  # the first item of every hit bucket; most buckets hold one
        multi = np.flatnonzero(counts > 1)
        if len(multi):
            yield from _bucket_rest(probe[multi], low[multi], counts[multi])


def probe_buckets(
    table: BandTable, probe_keys: np.ndarray, masks: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """For each block of (mask, probe) combinations, every hit bucket as (probe index, band value, first sorted
    position, item count)."""
    chunk = 1 << max(0, (PROBE_BLOCK // max(len(masks), 1)).bit_length() - 1)  # a power of two: `&`, not `%`
    ends = table.offsets[1:]
    for start in range(0, len(probe_keys), chunk):
        keys = probe_keys[start : start + chunk]
        probes = (masks[:, None] ^ keys[None, :]).ravel()  # (masks * chunk,), mask-major
        hit = np.flatnonzero(np.take(table.occupied, probes))
        if len(hit) == 0:
            continue
        values = np.take(probes, hit)
        low = np.take(table.offsets, values)
        probe = (hit & (chunk - 1) if len(keys) == chunk else hit % len(keys)) + start
        yield probe, values, low, np.take(ends, values) - low


def _bucket_rest(probe: np.ndarray, low: np.ndarray, counts: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(probe, position) for the 2nd..last item of each hit bucket."""
    return _range_pairs(probe, low + 1, low + counts)


def _range_pairs(owner: np.ndarray, start: np.ndarray, stop: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(owner, position) for every position in ``[start[k], stop[k])`` of every k, in pieces of about
    ``PROBE_BLOCK`` pairs, so a huge bucket (thousands of blank pictures share a band value) costs time but never
    memory."""
    extra = (stop - start).astype(np.int64)  # callers guarantee stop >= start
    done = np.cumsum(extra)
    if len(done) == 0 or done[-1] == 0:
        return
    cuts = np.searchsorted(done, np.arange(PROBE_BLOCK, int(done[-1]), PROBE_BLOCK), side="right")
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(extra)], strict=True):
        if hi <= lo:
            continue
        piece = extra[lo:hi]
        repeated = np.repeat(np.arange(lo, hi), piece)
        within = np.arange(len(repeated)) - np.repeat(np.cumsum(piece) - piece, piece)
        yield owner[repeated], start[repeated] + within


def _within(a: np.ndarray, b: np.ndarray, threshold: int) -> np.ndarray:
    """Boolean: uint64 ``a`` and ``b`` differ in at most ``threshold`` bits (no int64 widening on numpy >= 2)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(a ^ b) <= threshold
    return popcount64(a ^ b) <= threshold


def _verified(
    hashes: tuple[np.ndarray, np.ndarray],
    others: tuple[np.ndarray, np.ndarray],
    a: np.ndarray,
    b: np.ndarray,
    tp: int,
    td: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The candidate pairs ``(a, b)`` whose pHash ``hashes[0][a]``, ``others[0][b]`` are within ``tp`` bits and
    whose dHash ``hashes[1][a]``, ``others[1][b]`` are within ``td`` bits (pHash first: it rejects nearly all)."""
    keep = np.flatnonzero(_within(np.take(hashes[0], a), np.take(others[0], b), tp))
    a, b = a[keep], b[keep]
    keep = np.flatnonzero(_within(np.take(hashes[1], a), np.take(others[1], b), td))
    return a[keep], b[keep]


def pairs_within_runs(starts: np.ndarray) -> Iterator[tuple[np.ndarray, int]]:
    """Every pair of sorted positions inside one run of equal keys, as (positions, offset) one offset at a time.

    The pairs of offset ``k`` are ``(p, p + k)`` for each yielded ``p``; memory stays bounded by the item count.
    """
    n = len(starts)
    run_id = np.cumsum(starts) - 1
    run_start = np.flatnonzero(starts)
    run_end = np.append(run_start[1:], n)
    end_of = run_end[run_id]  # for each sorted position, one past the end of its run
    positions = np.flatnonzero(end_of - np.arange(n) > 1)
    offset = 1
    while len(positions):
        yield positions, offset
        offset += 1
        positions = positions[end_of[positions] - positions > offset]


def _indexed_side(phash: np.ndarray, dhash: np.ndarray, tp: int, td: int) -> tuple[np.ndarray, int]:
    """The hash to index and its threshold: the one with the smaller threshold is the more selective index."""
    return (phash, tp) if tp <= td else (dhash, td)


def _run_workers(units: list[T], work: Callable[[T], R], workers: int) -> list[R]:
    """``work(unit)`` for every unit, on ``workers`` threads (0: one per core); results in unit order.

    numpy releases the GIL inside each pass: on 2 quiet cores two threads group 1M hashes at t = 10 in 9.9-10.5 s
    against 12.5-13.3 s (on the same cores under load 5-6 they gained nothing). The functions default to one;
    ``harvest dedup --workers`` passes its own (0: one per core).
    """
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(units) == 1:
        return [work(unit) for unit in units]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, units))


def _pair_codes(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """Each unordered pair as one int64, ``min * n + max``, so duplicates found by several bands are cheap to drop."""
    return np.minimum(i, j).astype(np.int64) * n + np.maximum(i, j)


Unit = tuple[BandTable, np.ndarray, np.ndarray, "np.ndarray | None"]


def _band_units(phash: np.ndarray, dhash: np.ndarray, limits: tuple[int, int]) -> list[Unit]:
    """The work of a self-join: per band, its table with the hashes in table order, then ``None`` (pairs of equal
    band values) and one unit per group of flip masks sharing a highest bit."""
    n = len(phash)
    indexed, threshold = _indexed_side(phash, dhash, *limits)
    plan = plan_bands(threshold, n, n, self_join=True)
    units: list[Unit] = []
    for (shift, width), radius in zip(plan.bands, plan.radii, strict=True):
        if radius < 0 or n < 2:
            continue
        table = band_table(indexed, shift, width)
        sorted_p, sorted_d = phash[table.order], dhash[table.order]  # probes then read their own hashes in order
        units.append((table, sorted_p, sorted_d, None))  # mask 0: runs of equal band values
        units += [(table, sorted_p, sorted_d, masks) for masks in flip_masks_by_top_bit(width, radius)]
    return units


def _probe_positions(table: BandTable, masks: np.ndarray) -> np.ndarray:
    """The sorted positions that probe with ``masks``: in a self-join an unordered pair differs by one mask, so
    only the member with a 0 at the mask's highest bit probes."""
    top = int(masks[0]).bit_length() - 1
    return np.flatnonzero((table.keys & np.uint32(1 << top)) == 0)


def _run_starts(keys: np.ndarray) -> np.ndarray:
    """Boolean per sorted position: the first of its run of equal band values."""
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = keys[1:] != keys[:-1]
    return starts


def _emit_close(
    table: BandTable,
    hashes: tuple[np.ndarray, np.ndarray],
    first: np.ndarray,
    second: np.ndarray,
    limits: tuple[int, int],
    emit: Callable[[np.ndarray, np.ndarray], None],
) -> None:
    """Verify the candidate pairs of sorted positions ``(first, second)``; pass the close ones to ``emit`` as items."""
    a, b = _verified(hashes, hashes, first, second, *limits)
    if len(a):
        emit(table.order[a], table.order[b])


def _self_join(
    phash: np.ndarray,
    dhash: np.ndarray,
    limits: tuple[int, int],
    emit: Callable[[np.ndarray, np.ndarray], None],
    *,
    workers: int = 1,
) -> None:
    """Pass every item pair within both thresholds to ``emit(i, j)`` in chunks (a pair may come once per band).
    ``emit`` must be safe to call from several threads when ``workers`` > 1."""

    def work(unit: Unit) -> None:
        table, sorted_p, sorted_d, masks = unit
        hashes = (sorted_p, sorted_d)
        if masks is None:
            starts = _run_starts(table.keys)
            pairs = ((positions, positions + offset) for positions, offset in pairs_within_runs(starts))
        else:
            probes = _probe_positions(table, masks)
            pairs = ((probes[probe], position) for probe, position in probe_hits(table, table.keys[probes], masks))
        for first, second in pairs:
            _emit_close(table, hashes, first, second, limits, emit)

    _run_workers(_band_units(phash, dhash, limits), work, workers)


def _group_join(
    phash: np.ndarray, dhash: np.ndarray, limits: tuple[int, int], components: Components, *, workers: int = 1
) -> None:
    """Add to ``components`` enough of the pairs within both thresholds to give the same groups as all of them.

    The same search as :func:`_self_join`, but a pair already in one component is not kept, and buckets of at
    least ``BIG_BUCKET`` items are searched component by component: their items are ordered by component, and a
    probe skips the block of its own component. Every band's equal-value buckets come first, each linked along
    its members before the rest of its pairs are looked at, so a dense cluster of near-identical pictures
    (thousands of frames of one scene) becomes one component early and its quadratic number of pairs is skipped,
    not enumerated. Components only merge, so skipping on roots read earlier is always safe.
    """
    n = len(phash)

    def check(table: BandTable, hashes: tuple[np.ndarray, np.ndarray], first: np.ndarray, second: np.ndarray) -> None:
        # verified first (cheaper than the component test); components.add drops the pairs already joined
        _emit_close(table, hashes, first, second, limits, components.add)

    big_positions: dict[int, np.ndarray] = {}

    def big_of(table: BandTable) -> np.ndarray:
        """Sorted positions in buckets of at least ``BIG_BUCKET`` items (computed once per band)."""
        if id(table) not in big_positions:
            big_positions[id(table)] = np.flatnonzero(np.diff(table.offsets)[table.keys] >= BIG_BUCKET)
        return big_positions[id(table)]

    def by_component(table: BandTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions in big buckets, ``perm`` (table position -> sorted position, big buckets ordered by
        component) and ``comp`` (band value and root of each big position in that order, ascending)."""
        big = big_of(table)
        perm = np.arange(n)
        root = components.root[table.order[big]]
        order = np.lexsort((root, table.keys[big]))
        perm[big] = big[order]
        comp = table.keys[big[order]].astype(np.int64) * (n + 1) + root[order]
        return big, perm, comp

    def equal_values(table: BandTable, hashes: tuple[np.ndarray, np.ndarray]) -> None:
        """Pairs of equal band values: small buckets pair by pair; big ones linked along their members, then
        searched across the components that leaves."""
        starts = _run_starts(table.keys)
        big = big_of(table)
        starts[big] = True  # big buckets are searched below, not enumerated pair by pair
        for positions, offset in pairs_within_runs(starts):
            check(table, hashes, positions, positions + offset)
        if len(big) == 0:
            return
        chain = big[:-1][table.keys[big[:-1]] == table.keys[big[1:]]]
        check(table, hashes, chain, chain + 1)  # each member with the next: one edge per near pair in a row
        components.flush()
        big, perm, comp = by_component(table)
        ends = np.flatnonzero(np.r_[comp[1:] != comp[:-1], True])  # last index of each (value, root) block
        block_end = big[ends][np.searchsorted(ends, np.arange(len(big)))] + 1  # as a table position
        bucket_end = table.offsets[table.keys[big] + 1]
        for owner, position in _range_pairs(big, block_end, bucket_end):
            check(table, hashes, perm[owner], perm[position])

    def flipped_values(table: BandTable, hashes: tuple[np.ndarray, np.ndarray], masks: np.ndarray) -> None:
        """Pairs whose band values differ by one of ``masks``: a probe skips its own component in big buckets."""
        big, perm, comp = by_component(table) if len(big_of(table)) else (big_of(table), None, None)
        probes = _probe_positions(table, masks)
        for probe, values, low, counts in probe_buckets(table, table.keys[probes], masks):
            first = probes[probe]
            large = np.flatnonzero(counts >= BIG_BUCKET) if perm is not None else ()
            if len(large):
                small = np.flatnonzero(counts < BIG_BUCKET)
                small_first, small_low, small_counts = first[small], low[small], counts[small]
            else:
                small_first, small_low, small_counts = first, low, counts  # nearly always: no copies needed
            check(table, hashes, small_first, small_low)
            multi = np.flatnonzero(small_counts > 1)
            for k, position in _bucket_rest(multi, small_low[multi], small_counts[multi]):
                check(table, hashes, small_first[k], position)
            if len(large) == 0:
                continue
            own = values[large].astype(np.int64) * (n + 1) + components.root[table.order[first[large]]]
            lo, hi = np.searchsorted(comp, own, side="left"), np.searchsorted(comp, own, side="right")
            skip_from = np.where(hi > lo, big[np.minimum(lo, len(big) - 1)], low[large] + counts[large])
            skip_to = skip_from + (hi - lo)
            for start, stop in ((low[large], skip_from), (skip_to, low[large] + counts[large])):
                for k, position in _range_pairs(large, start, stop):
                    check(table, hashes, first[k], perm[position])

    def work(unit: Unit) -> None:
        table, sorted_p, sorted_d, masks = unit
        if masks is None:
            equal_values(table, (sorted_p, sorted_d))
        else:
            flipped_values(table, (sorted_p, sorted_d), masks)

    units = _band_units(phash, dhash, limits)
    equal_first = [u for u in units if u[3] is None] + [u for u in units if u[3] is not None]
    _run_workers(equal_first, work, workers)


def _sorted_unique(codes: np.ndarray) -> np.ndarray:
    """The distinct values of ``codes``, sorted (an in-place sort: numpy's hash-based ``unique`` was 5x slower on
    tens of millions of pair codes)."""
    codes.sort()
    return codes[np.r_[True, codes[1:] != codes[:-1]]] if len(codes) else codes


def near_duplicate_pairs(
    phash: np.ndarray, dhash: np.ndarray, phash_threshold: int, dhash_threshold: int, *, workers: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i < j) within both thresholds, found by multi-index hashing; each pair once.

    Memory grows with the number of pairs; :func:`near_duplicate_groups` needs only the groups and stays bounded.
    """
    phash = np.ascontiguousarray(phash, dtype=np.uint64)
    dhash = np.ascontiguousarray(dhash, dtype=np.uint64)
    n = len(phash)
    found: list[np.ndarray] = []  # list.append is atomic: safe from worker threads
    _self_join(
        phash,
        dhash,
        (phash_threshold, dhash_threshold),
        lambda i, j: found.append(_pair_codes(i, j, n)),
        workers=workers,
    )
    codes = _sorted_unique(np.concatenate([np.empty(0, dtype=np.int64), *found]))
    return codes // max(n, 1), codes % max(n, 1)


class Components:
    """Connected components of ``n`` items under edges that arrive in chunks, in memory O(n + ``buffer``).

    Edges wait in a buffer; every ``buffer`` edges they are folded, with one star per component found so far
    (each item -> its component's root), into new components. An edge whose ends already share a root adds
    nothing and is dropped on arrival, so a dense cluster of near-identical pictures (thousands of video frames
    of one scene) costs one fold, not its millions of pairs. Roots only ever merge, so a stale read of
    :attr:`root` from another thread is still correct (it drops fewer edges).
    """

    def __init__(self, n: int, buffer: int = 1 << 22) -> None:
        self.n, self.buffer = n, buffer
        self.root = np.arange(n, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._count = 0
        self._lock = threading.Lock()

    def joined(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Boolean per pair: already in one component."""
        root = self.root
        return root[i] == root[j]

    def add(self, i: np.ndarray, j: np.ndarray) -> None:
        """Add undirected edges ``(i[k], j[k])``."""
        keep = np.flatnonzero(~self.joined(i, j))
        if len(keep) == 0:
            return
        with self._lock:
            self._pending.append((i[keep], j[keep]))
            self._count += len(keep)
            if self._count >= self.buffer:
                self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        items = np.arange(self.n, dtype=np.int64)
        labels = group_labels(
            self.n,
            np.concatenate([items, *(i for i, _ in self._pending)]),
            np.concatenate([self.root, *(j for _, j in self._pending)]),
        )
        _, first = np.unique(labels, return_index=True)  # the lowest item of each component is its root
        self.root = first[labels].astype(np.int64)
        self._pending, self._count = [], 0

    def flush(self) -> None:
        """Fold the waiting edges now, so that :meth:`joined` and :attr:`root` see them."""
        with self._lock:
            self._fold()

    def labels(self) -> np.ndarray:
        """Component label per item, numbered as :func:`group_labels` numbers them."""
        with self._lock:
            self._fold()
        return group_labels(self.n, np.arange(self.n), self.root)


def _cross_join(
    query: tuple[np.ndarray, np.ndarray],
    ref: tuple[np.ndarray, np.ndarray],
    limits: tuple[int, int],
    emit: Callable[[np.ndarray, np.ndarray], None],
    workers: int = 1,
) -> None:
    """Pass every (query index, reference index) pair within both thresholds to ``emit`` in chunks (a pair may come
    once per band); the larger side is indexed, the smaller probes."""
    sides = [
        (np.ascontiguousarray(p, dtype=np.uint64), np.ascontiguousarray(d, dtype=np.uint64)) for p, d in (query, ref)
    ]
    swapped = len(sides[0][0]) > len(sides[1][0])
    (probe_p, probe_d), (table_p, table_d) = sides[::-1] if swapped else sides
    if len(probe_p) == 0:
        return
    indexed, threshold = _indexed_side(table_p, table_d, *limits)
    probe_indexed = probe_p if indexed is table_p else probe_d
    plan = plan_bands(threshold, len(probe_p), len(table_p), self_join=False)
    bands = [(band, radius) for band, radius in zip(plan.bands, plan.radii, strict=True) if radius >= 0]

    def work(band_radius: tuple[tuple[int, int], int]) -> None:
        (shift, width), radius = band_radius
        table = band_table(indexed, shift, width)
        masks = np.concatenate([np.zeros(1, dtype=np.uint32), *flip_masks_by_top_bit(width, radius)])
        probe_keys = band_values(probe_indexed, shift, width).astype(np.uint32)
        probe_order = np.argsort(probe_keys)  # sorted probes keep the table reads local
        probe_hashes = (probe_p[probe_order], probe_d[probe_order])
        sorted_hashes = (table_p[table.order], table_d[table.order])
        for probe, position in probe_hits(table, probe_keys[probe_order], masks):
            a, b = _verified(probe_hashes, sorted_hashes, probe, position, *limits)
            if len(a):
                i, j = probe_order[a], table.order[b]
                emit(*((j, i) if swapped else (i, j)))

    _run_workers(bands, work, workers)


def cross_matches(
    query_phash: np.ndarray,
    query_dhash: np.ndarray,
    ref_phash: np.ndarray,
    ref_dhash: np.ndarray,
    phash_threshold: int,
    dhash_threshold: int,
    *,
    closest: bool = False,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query index, reference index) within both thresholds, each once, sorted by query then reference.

    Memory grows with the number of pairs. With ``closest`` only each matched query item's closest reference item
    by pHash distance is kept (ties: the lowest reference index), as pairs arrive, so memory stays O(query)
    whatever the number of pairs: 50,000 video frames against 1,000 test frames of the same camera are 50M pairs.
    """
    query_p = np.ascontiguousarray(query_phash, dtype=np.uint64)
    ref_p = np.ascontiguousarray(ref_phash, dtype=np.uint64)
    n_ref = max(len(ref_p), 1)
    found: list[np.ndarray] = []  # list.append is atomic: safe from worker threads
    best = np.full(len(query_p), np.iinfo(np.int64).max, dtype=np.int64)  # distance * n_ref + reference index
    lock = threading.Lock()

    def keep(i: np.ndarray, j: np.ndarray) -> None:
        if not closest:
            found.append(i.astype(np.int64) * n_ref + j)
            return
        key = hamming(query_p[i], ref_p[j]).astype(np.int64) * n_ref + j
        with lock:
            np.minimum.at(best, i, key)

    _cross_join((query_p, query_dhash), (ref_p, ref_dhash), (phash_threshold, dhash_threshold), keep, workers)
    if closest:
        hit = np.flatnonzero(best != np.iinfo(np.int64).max)
        return hit, best[hit] % n_ref
    codes = _sorted_unique(np.concatenate([np.empty(0, dtype=np.int64), *found]))
    return codes // n_ref, codes % n_ref


def cosine_blocks(
    embeddings: np.ndarray, threshold: float, block: int = 4096, max_block_bytes: int = 1 << 28
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs (i < j) of L2-normalised rows whose cosine similarity is >= ``threshold``, one block of rows at a
    time (O(N^2 d) time); a block's similarity matrix stays under ``max_block_bytes`` whatever N is."""
    emb = np.asarray(embeddings, dtype=np.float32)
    block = max(1, min(block, max_block_bytes // (4 * max(len(emb), 1))))
    for start in range(0, len(emb), block):
        sims = emb[start : start + block] @ emb[start:].T  # (block, N - start)
        rows, cols = np.nonzero(sims >= threshold)
        i, j = rows + start, cols + start
        keep = i < j
        yield i[keep].astype(np.int64), j[keep].astype(np.int64)


def cosine_pairs(embeddings: np.ndarray, threshold: float, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of :func:`cosine_blocks`, held at once (for tests and small sets; grouping streams them)."""
    found = list(cosine_blocks(embeddings, threshold, block))
    empty = np.empty(0, dtype=np.int64)
    return np.concatenate([empty, *(i for i, _ in found)]), np.concatenate([empty, *(j for _, j in found)])


def group_labels(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` items given undirected edges (union-find, transitive)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (np.asarray(i), np.asarray(j))), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def near_duplicate_groups(
    phash: np.ndarray, dhash: np.ndarray, phash_threshold: int, dhash_threshold: int, *, workers: int = 1
) -> np.ndarray:
    """Group label per item: identical hash pairs collapse first (cheap), then near pairs join groups.

    The pairs are never all held: they stream into :class:`Components`, which drops those already joined before
    they are verified.
    """
    phash = np.asarray(phash, dtype=np.uint64)
    dhash = np.asarray(dhash, dtype=np.uint64)
    if len(phash) == 0:
        return np.empty(0, dtype=np.int64)
    unique_p, unique_d, inverse = unique_hash_pairs(phash, dhash)
    components = Components(len(unique_p))
    _group_join(unique_p, unique_d, (phash_threshold, dhash_threshold), components, workers=workers)
    return components.labels()[inverse]


def unique_hash_pairs(phash: np.ndarray, dhash: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (pHash, dHash) pairs and each item's index among them (a lexsort: 4x faster than
    ``np.unique(axis=0)`` at 1M rows)."""
    order = np.lexsort((dhash, phash))
    sorted_p, sorted_d = phash[order], dhash[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (sorted_p[1:] != sorted_p[:-1]) | (sorted_d[1:] != sorted_d[:-1])
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return sorted_p[first], sorted_d[first], inverse


def representatives(labels: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """For each item, the index of its group's representative: the item of highest ``priority`` (first on ties)."""
    labels = np.asarray(labels)
    order = np.lexsort((np.arange(len(labels)), -np.asarray(priority, dtype=np.float64), labels))
    first = np.ones(len(order), dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    rep_of_label = np.zeros(int(labels.max()) + 1 if len(labels) else 0, dtype=np.int64)
    rep_of_label[labels[order][first]] = order[first]
    return rep_of_label[labels]
