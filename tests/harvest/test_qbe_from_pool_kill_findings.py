"""What a kill-and-resume fuzz of `harvest qbe --from-pool` (real SIGKILL/SIGINT, at random moments and at hooked
calls) and runs of it beside other writers of the pools found, pinned down deterministically."""

from __future__ import annotations

import builtins
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from harvest import embed, qbe_local
from harvest.cli import app
from harvest.embed import EmbeddingCache
from harvest.pool import Pool
from harvest.pool_lock import exclusive
from harvest.qbe import harvest_qbe
from tests.harvest.imagegen import add_pictures, encode, scene, write_folder
from tests.harvest.test_qbe import LookupEmbedder, qbe_config


def _candidates_and_examples(tmp_path: Path) -> tuple[Pool, Path, LookupEmbedder]:
    candidates = Pool.create(tmp_path / "keyword-pool")
    pictures = {f"c{seed}": scene(seed, 48, 40) for seed in range(3)}
    add_pictures(candidates, pictures)
    folder = write_folder(tmp_path / "ex", {"A": scene(10, 48, 40)})
    embedder = LookupEmbedder({
        (folder / "A.jpg").read_bytes(): [1, 0, 0], encode(pictures["c0"]): [0.9, 0.1, 0],
        encode(pictures["c1"]): [0.5, 0.5, 0], encode(pictures["c2"]): [0, 0, 1],
    })  # fmt: skip
    return candidates, folder, embedder


def _cache_files(pool: Pool) -> list[str]:
    folder = pool.root / "embeddings"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


class _Killed(BaseException):
    """Stands for the SIGKILL: nothing after it runs, no ``except Exception`` catches it."""


@contextmanager
def _killed_at_first_replace_of(suffix: str) -> Iterator[None]:
    """Every ``os.replace`` onto a path ending in ``suffix`` dies there, as the fuzz's hooked SIGKILL did."""
    real = os.replace

    def dying(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if str(dst).endswith(suffix):
            raise _Killed
        real(src, dst)

    os.replace = dying  # type: ignore[assignment]
    try:
        yield
    finally:
        os.replace = real


def test_a_qbe_killed_while_folding_the_from_pools_embedding_cache_leaves_nothing_behind_after_the_rerun(
    tmp_path: Path,
) -> None:
    """The fuzz: SIGKILL right after qbe wrote the temporary array of the from-pool's embedding cache left that file
    (``embeddings/.TAG.xxxx.npy``, as large as the whole cache: 2 GB for a million ViT-B-32 vectors) and the shard
    folder in the from-pool for good: a rerun found every picture cached, so it never folded the cache again, and
    nothing ever removed the temporary. The rerun now folds the shards and removes a killed run's temporaries."""
    candidates, folder, embedder = _candidates_and_examples(tmp_path)
    config = qbe_config(tmp_path / "pool", folder, sources=("local",), from_pool=candidates.root, per_query=2)
    with _killed_at_first_replace_of(".npy"), pytest.raises(_Killed):
        harvest_qbe(config, embedder=embedder)
    tag = embedder.tag
    assert any(name.startswith(f".{tag}.") for name in _cache_files(candidates))  # what the kill leaves
    assert (candidates.root / "embeddings" / f"{tag}.shards").is_dir()

    harvest_qbe(config, embedder=embedder)
    assert _cache_files(candidates) == [f"{tag}.ids.parquet", f"{tag}.npy"]
    ids, vectors = EmbeddingCache(candidates.root, tag).load()
    assert len(ids) == 3 and vectors.shape == (3, 3)
    assert sorted(Pool.open(tmp_path / "pool").read_index()["title"]) == ["c0", "c1"]


def test_qbe_leaves_the_from_pools_embedding_cache_alone_while_another_command_writes_that_pool(
    tmp_path: Path,
) -> None:
    """qbe only reads its --from-pool, but wrote that pool's embedding cache without its writer lock: beside a
    `harvest filter` of the same pool (which folds the same cache under the lock) either could unlink the other's
    shards between its listing and its reading them, and a filter's fold failed on the folder qbe had just added a
    shard to. While another command holds the from-pool's lock, qbe now embeds without saving, and still answers."""
    candidates, folder, embedder = _candidates_and_examples(tmp_path)
    config = qbe_config(tmp_path / "pool", folder, sources=("local",), from_pool=candidates.root, per_query=2)
    taken, release, done = threading.Event(), threading.Event(), threading.Event()

    def other_writer() -> None:
        with exclusive(candidates.root, "filter"):
            taken.set()
            release.wait()
        done.set()

    holder = threading.Thread(target=other_writer)
    holder.start()
    try:
        taken.wait()
        harvest_qbe(config, embedder=embedder)
        assert _cache_files(candidates) == []
    finally:
        release.set()
        holder.join()
    assert done.is_set()
    assert sorted(Pool.open(tmp_path / "pool").read_index()["title"]) == ["c0", "c1"]

    harvest_qbe(config, embedder=embedder)  # the pool is free again: the cache is written as before
    assert _cache_files(candidates) == [f"{embedder.tag}.ids.parquet", f"{embedder.tag}.npy"]
    assert np.asarray(EmbeddingCache(candidates.root, embedder.tag).load()[1]).shape == (3, 3)


def test_a_qbe_interrupted_while_embedding_the_from_pool_keeps_what_it_had_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qbe embedded every picture of --from-pool in one call and saved them to the cache only once all were done, so
    a kill or Ctrl-C during that (hours, for a keyword pool of a million pictures on a CPU) lost it all and the rerun
    began again from the first picture; `harvest filter` saves every 1024. qbe now embeds and saves chunk by chunk."""
    monkeypatch.setattr(qbe_local, "EMBED_CHUNK", 2, raising=False)
    candidates, folder, embedder = _candidates_and_examples(tmp_path)
    config = qbe_config(tmp_path / "pool", folder, sources=("local",), from_pool=candidates.root, per_query=2)
    real_call = LookupEmbedder.__call__
    calls: list[int] = []

    def interrupted_at_the_third_call(self: LookupEmbedder, paths: Any, on_progress: Any = None) -> Any:
        calls.append(len(paths))
        if len(calls) == 3:  # the example, the first chunk of the pool, then Ctrl-C during the second chunk
            raise KeyboardInterrupt
        return real_call(self, paths, on_progress)

    monkeypatch.setattr(LookupEmbedder, "__call__", interrupted_at_the_third_call)
    with pytest.raises(KeyboardInterrupt):
        harvest_qbe(config, embedder=embedder)
    assert calls == [1, 2, 1]
    monkeypatch.setattr(LookupEmbedder, "__call__", real_call)

    asked = embedder.asked
    harvest_qbe(config, embedder=embedder)
    assert embedder.asked - asked == 1 + 1  # the example and the one picture not embedded before the Ctrl-C
    assert sorted(Pool.open(tmp_path / "pool").read_index()["title"]) == ["c0", "c1"]
    assert len(EmbeddingCache(candidates.root, embedder.tag).load()[0]) == 3


def test_reading_the_embedding_cache_while_another_command_folds_it_starts_over_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qbe reads its --from-pool's embedding cache without that pool's lock; a `harvest filter` of the pool folding
    the cache between qbe's listing of the shards and its reading them made qbe fail with FileNotFoundError and a
    traceback. The read now starts over, and finds the folded vectors in the main files."""
    cache = EmbeddingCache(tmp_path, "tag")
    cache.add_shard(["a"], np.ones((1, 3), dtype=np.float32))
    cache.consolidate()
    cache.add_shard(["b"], np.full((1, 3), 2, dtype=np.float32))
    cache.add_shard(["c"], np.full((1, 3), 3, dtype=np.float32))
    real_read = embed._read_shard
    folded: list[bool] = []

    def fold_before_the_first_read(path: Path) -> tuple[list[str], np.ndarray]:
        if not folded:
            folded.append(True)
            EmbeddingCache(tmp_path, "tag").consolidate()  # the other command, in the middle of this read
        return real_read(path)

    monkeypatch.setattr(embed, "_read_shard", fold_before_the_first_read)
    ids, vectors = cache.load()
    assert folded and ids == ["a", "b", "c"] and vectors[:, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("command", [["qbe", "--examples", "ex", "--out", "pool"], ["report", "pool"]])
def test_ctrl_c_while_qbe_or_report_imports_rich_says_so_instead_of_exiting_130_in_silence(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fuzz: SIGINT 2.85 s into `harvest qbe` ended it with exit 130 and nothing on stdout or stderr. qbe (and
    report) imported rich before entering the block that reports a Ctrl-C, so typer turned the KeyboardInterrupt
    into a bare exit 130. Every import of the command is inside that block now."""
    real_import = builtins.__import__
    interrupted: list[str] = []

    def ctrl_c_at_the_first_rich_console_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "rich.console" and not interrupted:
            interrupted.append(name)
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", ctrl_c_at_the_first_rich_console_import)
    result = CliRunner().invoke(app, command)
    assert interrupted and result.exit_code == 130
    assert f"harvest {command[0]} interrupted" in result.output and "run the same command again" in result.output


class _CtrlCWhenNamed:
    def __set_name__(self, owner: type, name: str) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_while_a_class_body_runs_during_an_import_is_reported_as_an_interruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fuzz: SIGINT 14 s into `harvest qbe --from-pool` (importing open_clip, which imports torch._dynamo) printed
    a traceback ending in `RuntimeError: Error calling __set_name__ on 'Field' instance '_hash' in 'DistState'` and
    exited 1: Python 3.11 wraps a KeyboardInterrupt raised in ``__set_name__`` in a RuntimeError. Such a RuntimeError
    is now reported as the Ctrl-C it is; any other RuntimeError still propagates."""
    import harvest.qbe

    def importing_when_interrupted(config: Any) -> Any:
        type("DistState", (), {"_hash": _CtrlCWhenNamed()})  # what a class statement in an imported module does
        raise AssertionError("not reached")

    monkeypatch.setattr(harvest.qbe, "harvest_qbe", importing_when_interrupted)
    args = ["qbe", "--examples", str(tmp_path), "--out", str(tmp_path / "pool"), "--endpoint", "clip-knn=http://x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130, result.output
    assert "harvest qbe interrupted" in result.output and "Traceback" not in result.output

    def failing(config: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(harvest.qbe, "harvest_qbe", failing)
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, RuntimeError) and "interrupted" not in result.output
