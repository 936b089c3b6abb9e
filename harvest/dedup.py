"""Near-duplicate grouping on 64-bit perceptual hashes: pure functions on integer arrays, no files.

Two pictures are near-duplicates when their pHash differ in at most ``phash_threshold`` bits AND their
dHash in at most ``dhash_threshold`` bits (dHash is the second vote: it keeps two distinct scenes whose
pHash happen to be close apart). Near-duplicate pairs are grouped transitively (connected components).

The search is sub-quadratic by multi-index hashing. Split pHash into ``tp + 1`` bands: by the pigeonhole
principle a pair within ``tp`` bits agrees exactly on at least one band. Likewise for dHash with
``td + 1`` bands. So every qualifying pair shares at least one combined key (pHash band i, dHash band j),
and sorting by each combined key and pairing equal neighbours finds all candidates without comparing
every pair. Candidates are then verified with an exact Hamming distance. Expected work for uniform hashes
is ``(tp+1)(td+1) * N^2 / 2^(bits per key + 1)`` candidates, which is small while keys stay above ~20 bits.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

HASH_BITS = 64
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


def _combined_keys(phash: np.ndarray, dhash: np.ndarray, pband: tuple[int, int], dband: tuple[int, int]) -> np.ndarray:
    """One uint64 key per item from a pHash band and a dHash band.

    Over 64 bits (thresholds of 0) the pHash band alone is the key: less selective, still exact.
    """
    p = band_values(phash, *pband)
    if pband[1] + dband[1] > 64:
        return p
    return (p << np.uint64(dband[1])) | band_values(dhash, *dband)


def _sort_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, run start flags) of keys: equal keys end up adjacent, ``starts[k]`` marks a new value."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return order, starts


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


def near_duplicate_pairs(
    phash: np.ndarray, dhash: np.ndarray, phash_threshold: int, dhash_threshold: int
) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i < j) within both thresholds, found by multi-index hashing; each pair once."""
    phash = np.asarray(phash, dtype=np.uint64)
    dhash = np.asarray(dhash, dtype=np.uint64)
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    for pband in band_bounds(phash_threshold + 1):
        for dband in band_bounds(dhash_threshold + 1):
            order, starts = _sort_keys(_combined_keys(phash, dhash, pband, dband))
            sorted_p, sorted_d = phash[order], dhash[order]  # sorted copies: candidates are read nearly in order
            for positions, offset in pairs_within_runs(starts):
                close = hamming(sorted_p[positions], sorted_p[positions + offset]) <= phash_threshold
                positions = positions[close]
                close = hamming(sorted_d[positions], sorted_d[positions + offset]) <= dhash_threshold
                i, j = order[positions[close]], order[positions[close] + offset]
                found_i.append(np.minimum(i, j))
                found_j.append(np.maximum(i, j))
    if not found_i:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    pairs = np.unique(np.stack([np.concatenate(found_i), np.concatenate(found_j)], axis=1), axis=0)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


def cross_matches(
    query_phash: np.ndarray,
    query_dhash: np.ndarray,
    ref_phash: np.ndarray,
    ref_dhash: np.ndarray,
    phash_threshold: int,
    dhash_threshold: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query index, reference index) within both thresholds; the same banding, across two sets only."""
    qp, qd = np.asarray(query_phash, dtype=np.uint64), np.asarray(query_dhash, dtype=np.uint64)
    rp, rd = np.asarray(ref_phash, dtype=np.uint64), np.asarray(ref_dhash, dtype=np.uint64)
    found: list[np.ndarray] = []
    if len(qp) == 0 or len(rp) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    for pband in band_bounds(phash_threshold + 1):
        for dband in band_bounds(dhash_threshold + 1):
            qkeys = _combined_keys(qp, qd, pband, dband)
            rkeys = _combined_keys(rp, rd, pband, dband)
            order = np.argsort(rkeys, kind="stable")
            sorted_ref = rkeys[order]
            lo = np.searchsorted(sorted_ref, qkeys, side="left")
            hi = np.searchsorted(sorted_ref, qkeys, side="right")
            counts = hi - lo
            qi = np.repeat(np.arange(len(qkeys)), counts)
            within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            ri = order[np.repeat(lo, counts) + within]
            ok = (hamming(qp[qi], rp[ri]) <= phash_threshold) & (hamming(qd[qi], rd[ri]) <= dhash_threshold)
            found.append(np.stack([qi[ok], ri[ok]], axis=1))
    pairs = np.unique(np.concatenate(found), axis=0) if found else np.empty((0, 2), dtype=np.int64)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


def cosine_pairs(embeddings: np.ndarray, threshold: float, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of L2-normalised rows whose cosine similarity is >= ``threshold`` (blocked, O(N^2 d))."""
    emb = np.asarray(embeddings, dtype=np.float32)
    found: list[np.ndarray] = []
    for start in range(0, len(emb), block):
        sims = emb[start : start + block] @ emb[start:].T  # (block, N - start)
        rows, cols = np.nonzero(sims >= threshold)
        i, j = rows + start, cols + start
        keep = i < j
        found.append(np.stack([i[keep], j[keep]], axis=1))
    pairs = np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


def group_labels(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` items given undirected edges (union-find, transitive)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (np.asarray(i), np.asarray(j))), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def near_duplicate_groups(
    phash: np.ndarray, dhash: np.ndarray, phash_threshold: int, dhash_threshold: int
) -> np.ndarray:
    """Group label per item: identical hash pairs collapse first (cheap), then near pairs join groups."""
    phash = np.asarray(phash, dtype=np.uint64)
    dhash = np.asarray(dhash, dtype=np.uint64)
    if len(phash) == 0:
        return np.empty(0, dtype=np.int64)
    unique, inverse = np.unique(np.stack([phash, dhash], axis=1), axis=0, return_inverse=True)
    i, j = near_duplicate_pairs(unique[:, 0], unique[:, 1], phash_threshold, dhash_threshold)
    return group_labels(len(unique), i, j)[inverse.ravel()]


def representatives(labels: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """For each item, the index of its group's representative: the item of highest ``priority`` (first on ties)."""
    labels = np.asarray(labels)
    order = np.lexsort((np.arange(len(labels)), -np.asarray(priority, dtype=np.float64), labels))
    first = np.ones(len(order), dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    rep_of_label = np.zeros(int(labels.max()) + 1 if len(labels) else 0, dtype=np.int64)
    rep_of_label[labels[order][first]] = order[first]
    return rep_of_label[labels]
