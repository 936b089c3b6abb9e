"""collect's resume bookkeeping where a hand-made mutant survived: a URL found again after this run already wrote
its row is not fetched a second time (the existing test only met it while the first fetch was still queued)."""

from __future__ import annotations

from pathlib import Path

from harvest.collect import collect
from harvest.pool import Pool
from harvest.sources.base import Candidate
from tests.harvest.test_collect import JPEG, fetch_config, jpeg


def test_a_url_found_again_after_its_row_was_written_is_not_fetched_again(web, tmp_path: Path) -> None:
    urls = [web.route(f"/img/{k}.jpg", body=jpeg(k), headers=JPEG) for k in range(3)]
    # One worker, robots.txt not read (every host settled at once): two URLs are in flight at a time, so the first
    # URL's row is written before its second appearance is read, and only the URLs this run fetched know it.
    order = [urls[0], urls[1], urls[2], urls[0]]
    candidates = [Candidate(url=url, source="t", query=f"q{i}") for i, url in enumerate(order)]
    pool = Pool.create(tmp_path / "pool")
    summary = collect(pool, candidates, fetch_config(workers=1, ignore_robots=True))
    assert (summary.rows, summary.known, summary.repeats) == (3, 0, 1)
    assert web.hits("/img/0.jpg") == 1
    df = pool.read_index()
    assert df["url"].is_unique and len(df) == 3
    assert list(df.set_index("url").loc[urls[0], "found_by"]) == ["t:q0", "t:q3"]
