"""Resuming after a killed ``--retry-failed`` run: its new row was flushed but the end-of-run compaction never ran,
so the pool holds two rows for one URL; the next run (keywords or local, with or without --retry-failed) folds them
into one."""

from __future__ import annotations

from pathlib import Path

import pytest

from harvest.collect import collect
from harvest.local import LocalConfig, file_uri, ingest_local
from harvest.pool import Pool
from harvest.sources.base import Candidate
from tests.harvest.test_collect import JPEG, fetch_config, jpeg


@pytest.mark.parametrize("retry_failed", [False, True])
def test_a_rerun_folds_the_rows_a_killed_retry_failed_run_left_doubled(web, tmp_path: Path, retry_failed: bool) -> None:
    url = web.route("/img/a.jpg", body=jpeg(1), headers=JPEG)
    other = web.route("/img/b.jpg", body=jpeg(2), headers=JPEG)
    pool = Pool.create(tmp_path / "pool")
    # What a killed --retry-failed run leaves: the first run's timeout row, then the retry's ok row in a new part.
    pool.append_rows([{"url": url, "status": "timeout", "found_by": ["t:q"], "source": "t", "query": "q"}])
    pool.append_rows([{"url": url, "status": "ok", "found_by": ["t:q"], "source": "t", "query": "q"}])
    candidates = [Candidate(url=url, source="t", query="q"), Candidate(url=other, source="t", query="q")]
    summary = collect(pool, candidates, fetch_config(retry_failed=retry_failed))
    assert (summary.rows, summary.known) == (1, 1) and web.hits("/img/a.jpg") == 0
    df = pool.read_index().set_index("url")
    assert df.index.is_unique and sorted(df.index) == sorted([url, other])
    assert df.loc[url, "status"] == "ok"


def test_harvest_local_folds_the_rows_a_killed_retry_failed_run_left_doubled(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    picture = root / "a.jpg"
    picture.write_bytes(jpeg(3, size=(40, 30)))
    pool = Pool.create(tmp_path / "pool")
    uri = file_uri(picture)
    pool.append_rows([{"url": uri, "status": "not_image", "found_by": ["local:x"]}])
    pool.append_rows([{"url": uri, "status": "ok", "found_by": ["local:x"]}])
    summary = ingest_local(LocalConfig(root=root, out=tmp_path / "pool", workers=1, min_side=8, show_progress=False))
    assert (summary.rows, summary.known) == (0, 1)
    df = pool.read_index()
    assert df["url"].tolist() == [uri] and df["status"].tolist() == ["ok"]
