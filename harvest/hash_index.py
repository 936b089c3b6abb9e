"""Exact sub-quadratic search for the pairs of 64-bit hashes within a Hamming threshold: multi-index hashing with a
radius search in each band (Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index Hashing",
CVPR 2012).

Only one of the two hashes (pHash, dHash) is indexed: the one with the smaller threshold ``t``, cut into the bands of
:func:`harvest.hash_bands.plan_bands`, each searched at its radius (the pigeonhole rule of
:func:`harvest.hash_bands.band_radii`). Each band is a CSR table (items counting-sorted by band value, ``offsets`` of
size ``2^width + 1``). Every item probes its band value XOR each flip mask of popcount <= radius, one vectorised
pass per block of (masks, items); the hits are verified with the exact pHash AND dHash distances. In a
self-join an unordered pair differs by one mask, so only the member whose band value has a 0 at the mask's
highest set bit probes (half the work); mask 0 (equal band values) pairs the members of each run.
The (band, highest mask bit) work units can run on threads (``workers``).

Three joins share the tables: :func:`self_join` passes every close pair of one set to a callback,
:func:`group_join` only enough of them to give the same components, and :func:`cross_join` pairs a query set with
a reference set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import numpy as np

from harvest.hash_bands import band_values, flip_masks_by_top_bit, plan_bands, popcount64

if TYPE_CHECKING:
    from harvest.dedup import Components

BIG_BUCKET = 32  # buckets this large are searched component by component (dense clusters of near-identical pictures)
PROBE_BLOCK = 1 << 18  # (mask, item) probes per vectorised pass: big enough for numpy, small enough for cache
T = TypeVar("T")
R = TypeVar("R")


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


def self_join(
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


def group_join(
    phash: np.ndarray, dhash: np.ndarray, limits: tuple[int, int], components: Components, *, workers: int = 1
) -> None:
    """Add to ``components`` enough of the pairs within both thresholds to give the same groups as all of them.

    The same search as :func:`self_join`, but a pair already in one component is not kept, and buckets of at
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


def cross_join(
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
