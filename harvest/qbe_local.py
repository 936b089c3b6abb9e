"""The ``local`` backend of ``harvest qbe``: rank the pictures of an existing pool by CLIP similarity to the examples.

Design. The candidate pool (``--from-pool``, for example one filled by ``harvest keywords``) is an input: it is
read, never rewritten; only its embedding cache (``POOL/embeddings/``) grows, under that pool's writer lock, so a
second run embeds nothing again. The nearest pictures are *copied* into the target pool (``--out``, which must be
another pool): bytes stored under the same sha256 id, the row's url, attribution, size and hashes carried over, and
``mode`` ``qbe``, ``source`` ``local``, ``query`` (the first example that found it), ``found_by`` (``local:IMG_12``,
...), ``similarity`` (cosine to ``query``) and ``rank`` added; ``from_pool`` and ``from_source`` say where it came
from. The other pool's decisions (``dup_of``, ``leak_of``, ``kept``, ``clip_kept``) are not carried: they were
judged within that pool, and ``harvest dedup`` / ``filter`` judge the new one. Copying rather than marking rows in
place keeps the keyword pool's provenance intact and makes a qbe selection one folder that later stages read.

Search is exact, without faiss: the pool's embeddings are scanned in chunks; each chunk gives a matrix product
with the examples and its top k per example, merged with the best so far (:func:`exact_knn`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harvest.pool import Pool, kept_and_unreviewed, utc_now
from harvest.pool_lock import exclusive

KNN_CHUNK = 65_536  # pool pictures per matrix product: 65536 x 512 float32 is 128 MB
EMBED_CHUNK = 1024  # pool pictures per embedder call, each saved to the cache: a killed run embeds them again at most
CARRIED_COLUMNS = (
    "url", "final_url", "page_url", "title", "author", "license", "license_url", "width", "height", "bytes", "format",
    "phash", "dhash", "clip_score", "clip_model",
)  # fmt: skip
_INTEGER_COLUMNS = ("width", "height", "bytes")


class Embedder(Protocol):
    """Pictures to L2-normalised vectors ``(N, D)`` plus one error message per file ('' when fine).

    ``tag`` names the model and weights; a pool's embedding cache is keyed by it.
    """

    tag: str

    def __call__(
        self, paths: Sequence[Path], on_progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, list[str]]: ...


class ClipEmbedder:
    """An open_clip model behind the :class:`Embedder` interface (weights are loaded at construction)."""

    def __init__(
        self,
        model: str,
        pretrained: str | None,
        checkpoint: str | Path | None = None,
        device: str = "auto",
        batch_size: int = 64,
        workers: int = 2,
    ) -> None:
        from harvest.embed import load_clip

        self.bundle = load_clip(model, pretrained, checkpoint, device)
        self.tag = self.bundle.tag
        self.batch_size = batch_size
        self.workers = workers

    def __call__(
        self, paths: Sequence[Path], on_progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        from harvest.embed import embed_pictures

        return embed_pictures(self.bundle, [str(p) for p in paths], self.batch_size, self.workers, on_progress)


def exact_knn(queries: np.ndarray, base: np.ndarray, k: int, chunk: int = KNN_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner products of each query row against ``base``: (similarities, indices), each ``(Q, min(k, N))``.

    Rows of both should be L2-normalised, so the products are cosines. Memory stays at one ``(Q, chunk)`` block.
    """
    import torch

    queries = np.asarray(queries, dtype=np.float32)
    base = np.asarray(base, dtype=np.float32)
    if queries.ndim != 2 or base.ndim != 2 or (len(base) and queries.shape[1] != base.shape[1]):
        raise ValueError(f"exact_knn needs (Q, D) queries and (N, D) base, got {queries.shape} and {base.shape}")
    q = torch.from_numpy(queries)  # (Q, D)
    best_sims = torch.empty(len(queries), 0)
    best_idx = torch.empty(len(queries), 0, dtype=torch.long)
    for start in range(0, len(base), chunk):
        block = torch.from_numpy(base[start : start + chunk])  # (C, D)
        sims = q @ block.T  # (Q, C)
        top = sims.topk(min(k, sims.shape[1]), dim=1)
        merged_sims = torch.cat([best_sims, top.values], dim=1)  # (Q, <= 2k)
        merged_idx = torch.cat([best_idx, top.indices + start], dim=1)
        keep = merged_sims.topk(min(k, merged_sims.shape[1]), dim=1)
        best_sims, best_idx = keep.values, merged_idx.gather(1, keep.indices)
    return best_sims.numpy(), best_idx.numpy()


@dataclass
class PoolVectors:
    """The candidate pictures of a pool that have an embedding: their rows and an ``(N, D)`` matrix."""

    rows: list[dict[str, Any]]
    vectors: np.ndarray
    embedded_now: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # id -> why it could not be embedded
    unreviewed: int = 0  # pictures added after the pool's last dedup/filter: left out until they are judged


def pool_vectors(from_pool: Pool, embedder: Embedder, progress: Any = None) -> PoolVectors:
    """Embeddings of every usable picture of ``from_pool`` (status ok, not rejected), from its cache or computed.

    ``progress`` (``add_total(n)`` / ``advance()``, as :func:`harvest.writer.run_progress` gives) counts embeddings.
    """
    from harvest.embed import EmbeddingCache

    rows, unreviewed = kept_and_unreviewed(from_pool)
    cache = EmbeddingCache(from_pool.root, embedder.tag)
    cached_ids, cached = cache.load()
    position = {image_id: k for k, image_id in enumerate(cached_ids)}
    missing = [row for row in rows if row["id"] not in position]
    result = PoolVectors([], np.zeros((0, 0), dtype=np.float32), unreviewed=len(unreviewed))
    parts = [cached] if len(cached_ids) else []
    if missing:
        if progress is not None:
            progress.add_total(len(missing))

        def advance(n: int) -> None:
            for _ in range(n if progress is not None else 0):
                progress.advance()

        for first in range(0, len(missing), EMBED_CHUNK):
            chunk = missing[first : first + EMBED_CHUNK]
            vectors, errors = embedder([from_pool.path_of(row["path"]) for row in chunk], advance)
            good = [k for k, error in enumerate(errors) if not error]
            result.failures.update({chunk[k]["id"]: error for k, error in enumerate(errors) if error})
            if not good:
                continue
            new_ids, new_vectors = [chunk[k]["id"] for k in good], np.asarray(vectors[good], dtype=np.float32)
            _save_to_cache(from_pool, cache, new_ids, new_vectors, fold=False)  # a kill loses one chunk at most
            start = len(cached_ids) + result.embedded_now
            position.update({image_id: start + n for n, image_id in enumerate(new_ids)})
            parts.append(new_vectors)
            result.embedded_now += len(good)
    _save_to_cache(from_pool, cache, [], np.zeros((0, 0), dtype=np.float32), fold=True)
    cached = np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else cached)
    result.rows = [row for row in rows if row["id"] in position]
    if result.rows:
        result.vectors = np.asarray(cached[[position[row["id"]] for row in result.rows]], dtype=np.float32)
    return result


def _save_to_cache(from_pool: Pool, cache: Any, ids: list[str], vectors: np.ndarray, fold: bool) -> None:
    """Add ``ids`` to ``--from-pool``'s embedding cache as one shard and, with ``fold``, fold the shards into the
    main files (with what a killed run left there: its shards and temporaries), under that pool's writer lock. qbe
    only reads that pool: while another command writes it (a ``harvest filter`` folding the same cache) the cache is
    left alone and this run's vectors serve this run only. The cache only saves work: a read-only pool is fine."""
    with contextlib.suppress(OSError), exclusive(from_pool.root, "qbe (embedding cache of --from-pool)", False) as free:
        if not free:
            return
        if ids:
            cache.add_shard(ids, vectors)
        if fold:
            cache.consolidate()


def copied_row(
    pool: Pool, from_pool: Pool, row: dict[str, Any], example_id: str, found_by: list[str], similarity: float, rank: int
) -> dict[str, Any]:
    """The target pool's row for a candidate picture found by ``example_id``; its bytes are stored in ``pool``."""
    out: dict[str, Any] = {name: row.get(name) for name in CARRIED_COLUMNS if name in row}
    for name in _INTEGER_COLUMNS:  # Parquet hands back nullable integers as floats
        value = out.get(name)
        out[name] = None if value is None or value != value else int(value)
    out.update(
        source="local",
        mode="qbe",
        query=example_id,
        found_by=list(found_by),
        similarity=float(similarity),
        rank=int(rank),
        from_pool=str(from_pool.root),
        from_source=row.get("source"),
        fetched_at=utc_now(),
    )
    try:
        data = from_pool.path_of(row["path"]).read_bytes()
    except OSError as e:
        return out | {"status": "unreadable", "error": f"cannot read {row['path']} in --from-pool: {e}"}
    out["id"], out["path"] = pool.store_image(data, Path(row["path"]).suffix.lstrip(".") or "bin")
    out.update(status="ok", error=None)
    return out
