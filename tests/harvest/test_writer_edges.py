"""Rows into the pool at their edges: flushes on the row count, which failures are retried, the compaction of
repeated URLs, and the run summary's counts."""

from __future__ import annotations

from pathlib import Path

from harvest.pool import Pool
from harvest.writer import PoolWriter, Summary, compact_pool, transient_failures


def test_rows_are_flushed_as_a_part_as_soon_as_flush_rows_are_waiting(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    with PoolWriter(pool, flush_rows=2, flush_seconds=3600) as writer:
        writer.add({"url": "u/1", "status": "ok"})
        assert pool.part_files() == []
        writer.add({"url": "u/2", "status": "ok"})
        assert len(pool.part_files()) == 1 and writer.written == 2  # a kill now would lose nothing
        writer.add({"url": "u/3", "status": "ok"})
    assert len(pool.part_files()) == 2 and sorted(pool.read_index()["url"]) == ["u/1", "u/2", "u/3"]


def test_only_urls_whose_every_row_failed_for_a_passing_reason_are_retried(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows(
        [
            {"url": "u/slow", "status": "timeout"},
            {"url": "u/busy", "status": "http_429"},
            {"url": "u/gone", "status": "http_404"},
            {"url": "u/later-ok", "status": "http_503"},
            {"url": "u/later-ok", "status": "ok"},
        ]
    )
    assert transient_failures(pool) == {"u/slow", "u/busy"}


def test_compaction_folds_a_url_written_twice_with_the_same_tags_into_one_row(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows([{"url": "u/1", "status": "ok", "id": "a", "found_by": ["s:x"]}])
    pool.append_rows([{"url": "u/1", "status": "ok", "id": "a", "found_by": ["s:x"]}])  # a run that wrote it again
    assert not compact_pool(pool, {}, repeated=False)  # nothing announced: the run is not asked to read everything
    assert compact_pool(pool, {}, repeated=True)
    df = pool.read_index()
    assert df["url"].tolist() == ["u/1"] and [list(tags) for tags in df["found_by"]] == [["s:x"]]
    assert not compact_pool(pool, {}, repeated=True)  # already one row per URL: no rewrite


def test_compaction_merges_many_small_parts_into_one_without_losing_a_row(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    for k in range(5):
        pool.append_rows([{"url": f"u/{k}", "status": "ok", "found_by": [f"s:{k}"]}])
    assert not compact_pool(pool, {}, max_parts=5)
    assert compact_pool(pool, {}, max_parts=4)
    assert len(pool.part_files()) == 1 and sorted(pool.read_index()["url"]) == [f"u/{k}" for k in range(5)]


def test_the_summary_counts_failed_searches_apart_from_rows() -> None:
    summary = Summary("keywords")
    summary.add("wikimedia", "ok", 1000)
    summary.add("wikimedia", "http_404")
    summary.add("openverse", "search_error")
    record = summary.to_record()
    assert (record["rows"], record["ok"], record["stored_bytes"]) == (2, 1, 1000)
    assert record["by_source_status"] == {"openverse/search_error": 1, "wikimedia/http_404": 1, "wikimedia/ok": 1}


def test_merging_keeps_rows_of_other_urls_in_their_order(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows([{"url": f"u/{k}", "status": "ok", "found_by": ["s:q"]} for k in (3, 1, 2)])
    assert compact_pool(pool, {"u/1": ["t:w"]})
    df = pool.read_index()
    assert df["url"].tolist() == ["u/3", "u/1", "u/2"]
    assert [list(tags) for tags in df["found_by"]] == [["s:q"], ["s:q", "t:w"], ["s:q"]]
