"""Near-duplicate grouping on 64-bit perceptual hashes: pure functions on integer arrays, no files.

Two pictures are near-duplicates when their pHash differ in at most ``phash_threshold`` bits AND their
dHash in at most ``dhash_threshold`` bits (dHash is the second vote: it keeps two distinct scenes whose
pHash happen to be close apart). Near-duplicate pairs are grouped transitively (connected components).

The search is exact and sub-quadratic: multi-index hashing (:mod:`harvest.hash_index`, with the band plan of
:mod:`harvest.hash_bands`). Embeddings pair by cosine similarity instead (:func:`cosine_blocks`).

Grouping needs components, not every pair: :func:`near_duplicate_groups` streams the pairs into
:class:`Components` and skips the pairs of items already joined (:func:`harvest.hash_index.group_join`). That
matters when the hashes are not uniform: a folder of 5,000 frames of one scene has 12.5M near pairs, which took 37 s
and 1.4 GB as pairs and now takes 0.1 s and 22 MB.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from harvest.hash_bands import hamming
from harvest.hash_index import cross_join, group_join, self_join


def _pair_codes(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """Each unordered pair as one int64, ``min * n + max``, so duplicates found by several bands are cheap to drop."""
    return np.minimum(i, j).astype(np.int64) * n + np.maximum(i, j)


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
    self_join(
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

    cross_join((query_p, query_dhash), (ref_p, ref_dhash), (phash_threshold, dhash_threshold), keep, workers)
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
    group_join(unique_p, unique_d, (phash_threshold, dhash_threshold), components, workers=workers)
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
