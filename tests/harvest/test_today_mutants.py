"""Mutants of today's harvest changes that the tests written with them let through, pinned down.

qbe --from-pool embeds in chunks: the tests only ever had one complete chunk per run, so where each chunk's vectors
land, failures of earlier chunks, a chunk of failures before good ones, and how often the cache is folded were free.
A Ctrl-C wrapped more than once in RuntimeErrors was free as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harvest import qbe_local
from harvest.cli import _caused_by_ctrl_c
from harvest.embed import EmbeddingCache
from harvest.pool import Pool
from harvest.qbe_local import pool_vectors
from tests.harvest.imagegen import add_pictures, encode, scene
from tests.harvest.test_qbe import LookupEmbedder


def test_a_from_pool_embedded_over_several_chunks_gives_each_picture_its_own_vector_and_every_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 2: the first holds only pictures the embedder cannot read, the second and third good ones. Every
    good picture must get its own vector (not one of an earlier chunk), the unreadable ones must all be reported,
    and the cache, as large as the pool's embeddings, is folded once per run rather than once per chunk."""
    monkeypatch.setattr(qbe_local, "EMBED_CHUNK", 2)
    pool = Pool.create(tmp_path / "keyword-pool")
    pictures = {f"p{seed}": scene(seed, 48, 40) for seed in range(5)}
    ids = add_pictures(pool, pictures)
    known = {"p2": [1.0, 0.0, 0.0], "p3": [0.0, 1.0, 0.0], "p4": [0.0, 0.0, 1.0]}  # p0, p1: "unknown picture"
    embedder = LookupEmbedder({encode(pictures[name]): vector for name, vector in known.items()})
    folds: list[int] = []
    real_fold = EmbeddingCache.consolidate

    def counted_fold(self: EmbeddingCache) -> None:
        folds.append(len(self._shards()))
        real_fold(self)

    monkeypatch.setattr(EmbeddingCache, "consolidate", counted_fold)
    result = pool_vectors(pool, embedder)
    name_of = {image_id: name for name, image_id in ids.items()}
    assert sorted(name_of[i] for i in result.failures) == ["p0", "p1"]
    assert result.embedded_now == 3
    got = {name_of[row["id"]]: vector.tolist() for row, vector in zip(result.rows, result.vectors, strict=True)}
    assert got == known
    assert folds == [2]  # one fold, of the two chunks' shards
    cached_ids, cached = EmbeddingCache(pool.root, embedder.tag).load()
    assert {name_of[i]: v.tolist() for i, v in zip(cached_ids, cached, strict=True)} == known

    again = pool_vectors(pool, embedder)  # from the cache: only the unreadable ones are tried again
    assert again.embedded_now == 0 and sorted(name_of[i] for i in again.failures) == ["p0", "p1"]
    assert {name_of[row["id"]]: v.tolist() for row, v in zip(again.rows, again.vectors, strict=True)} == known


def test_a_ctrl_c_wrapped_in_runtime_errors_more_than_once_is_still_a_ctrl_c() -> None:
    """A ``__set_name__`` in a class body run by another ``__set_name__`` (an import inside an import) wraps the
    KeyboardInterrupt twice; the whole chain of causes is read, not only the first."""

    def chained(*errors: BaseException) -> BaseException:
        for inner, outer in zip(errors[1:], errors[:-1], strict=True):
            outer.__cause__ = inner
        return errors[0]

    assert _caused_by_ctrl_c(chained(RuntimeError("a"), KeyboardInterrupt()))
    assert _caused_by_ctrl_c(chained(RuntimeError("a"), RuntimeError("b"), KeyboardInterrupt()))
    assert not _caused_by_ctrl_c(chained(RuntimeError("a"), RuntimeError("b"), ValueError("c")))
    assert not _caused_by_ctrl_c(RuntimeError("a"))


def test_a_from_pool_whose_cache_cannot_be_written_still_gives_its_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache only saves work: a --from-pool qbe cannot write (read-only, full disk) must still be ranked."""
    pool = Pool.create(tmp_path / "keyword-pool")
    pictures = {f"p{seed}": scene(seed, 48, 40) for seed in range(2)}
    add_pictures(pool, pictures)
    embedder = LookupEmbedder({encode(pictures["p0"]): [1, 0, 0], encode(pictures["p1"]): [0, 1, 0]})

    def unwritable(self: EmbeddingCache, ids: object, embeddings: object) -> None:
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(EmbeddingCache, "add_shard", unwritable)
    result = pool_vectors(pool, embedder)
    assert result.embedded_now == 2 and len(result.rows) == 2 and result.vectors.shape == (2, 3)


def test_reading_the_cache_starts_over_as_often_as_folds_keep_removing_its_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three folds in a row by other commands, each between a listing of the shards and the reading of one (a
    filter saving every 1024 pictures): the read starts over each time instead of failing on the second."""
    from harvest import embed

    cache = EmbeddingCache(tmp_path, "tag")
    cache.add_shard(["a"], np.ones((1, 3), dtype=np.float32))
    real_read = embed._read_shard
    folds: list[str] = []
    folding: list[bool] = []  # the other command's own reads, while it folds, go through unhooked

    def fold_and_add_before_the_read(path: Path) -> tuple[list[str], np.ndarray]:
        if len(folds) < 3 and not folding:
            other = EmbeddingCache(tmp_path, "tag")
            folding.append(True)
            other.consolidate()
            folding.clear()
            folds.append(f"n{len(folds)}")
            other.add_shard([folds[-1]], np.full((1, 3), len(folds) + 1, dtype=np.float32))
        return real_read(path)

    monkeypatch.setattr(embed, "_read_shard", fold_and_add_before_the_read)
    ids, vectors = cache.load()
    assert len(folds) == 3 and ids == ["a", "n0", "n1", "n2"] and vectors[:, 0].tolist() == [1, 2, 3, 4]
