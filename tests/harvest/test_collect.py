"""collect / harvest_keywords: search results into pool rows, one per URL, each URL fetched once, kill-safe."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from harvest.cli import app
from harvest.collect import KeywordsConfig, collect, harvest_keywords
from harvest.errors import ConfigError
from harvest.fetch import FetchConfig
from harvest.pool import Pool
from harvest.sources.base import Candidate, SearchSource, register_source
from harvest.writer import merge_found_by
from tests.harvest.conftest import Reply, SeenRequest

REPO = Path(__file__).resolve().parents[2]
JPEG = {"Content-Type": "image/jpeg"}


@register_source("loopback-test")
class LoopbackTestSource(SearchSource):
    """A search engine for tests: ``GET endpoint?q=TERM`` answers a JSON list of ``{url, title}``."""

    def search(self, query: str, limit: int) -> Iterator[Candidate]:
        response = self.session.get(self.endpoint, params={"q": query}, timeout=self.timeout)
        response.raise_for_status()
        for item in response.json()[:limit]:
            yield Candidate(url=item["url"], source=self.name, query=query, title=item["title"], license="cc0-1.0")


def jpeg(seed: int, size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256)).save(buffer, "JPEG")
    return buffer.getvalue()


def fetch_config(**overrides: object) -> FetchConfig:
    settings: dict[str, object] = dict(
        workers=3, host_rate=0, timeout=2.0, retries=0, min_side=8, allow_private_hosts=True, show_progress=False
    )
    settings.update(overrides)
    return FetchConfig(**settings)  # type: ignore[arg-type]


def serve_search(web, results: dict[str, list[str]]) -> str:
    """Register /search answering each term's image URLs; returns the endpoint."""

    def answer(request: SeenRequest) -> Reply:
        term = parse_qs(request.query).get("q", [""])[0]
        items = [{"url": url, "title": f"{term} #{i}"} for i, url in enumerate(results.get(term, []))]
        return Reply(200, json.dumps(items).encode(), {"Content-Type": "application/json"})

    return web.route("/search", handler=answer)


def keywords_config(out: Path, endpoint: str, terms: tuple[str, ...], **fetch: object) -> KeywordsConfig:
    return KeywordsConfig(
        out=out, terms=terms, sources=("loopback-test",), per_term=10, endpoints={"loopback-test": endpoint},
        fetch=fetch_config(**fetch),
    )  # fmt: skip


@pytest.fixture
def images(web) -> dict[str, str]:
    """Five image URLs; /img/copy.jpg serves the same bytes as /img/0.jpg."""
    urls = {f"{i}": web.route(f"/img/{i}.jpg", body=jpeg(i), headers=JPEG) for i in range(4)}
    urls["copy"] = web.route("/img/copy.jpg", body=jpeg(0), headers=JPEG)
    return urls


def stored_files(pool_dir: Path) -> list[Path]:
    return [p for p in (pool_dir / "images").rglob("*") if p.is_file() and not p.name.startswith(".")]


def test_keywords_writes_one_row_per_url_merges_found_by_and_stores_identical_bytes_once(web, images, tmp_path) -> None:
    endpoint = serve_search(
        web, {"a": [images["0"], images["1"], images["2"]], "b": [images["2"], images["3"], images["copy"]]}
    )
    summary = harvest_keywords(keywords_config(tmp_path / "pool", endpoint, ("a", "b")))

    df = pd.read_parquet(tmp_path / "pool" / "index")
    assert sorted(df["url"]) == sorted(images.values())
    assert summary.ok == 5 and summary.rows == 5
    assert (summary.known, summary.repeats) == (0, 1)  # found twice in this run: a repeat, never "in the pool"
    shared = df.set_index("url").loc[images["2"]]
    assert list(shared["found_by"]) == ["loopback-test:a", "loopback-test:b"]
    assert (shared["query"], shared["title"], shared["license"]) == ("a", "a #2", "cc0-1.0")
    assert all(web.hits(f"/img/{name}.jpg") == 1 for name in images)
    copies = df[df["url"].isin([images["0"], images["copy"]])]
    assert copies["id"].nunique() == 1 and len(stored_files(tmp_path / "pool")) == 4
    first = df.set_index("url").loc[images["1"]]
    assert (tmp_path / "pool" / first["path"]).read_bytes() == jpeg(1)
    assert (first["width"], first["height"], first["format"], first["bytes"]) == (32, 24, "JPEG", len(jpeg(1)))
    commands = json.loads((tmp_path / "pool" / "pool.json").read_text())["commands"]
    assert commands[-1]["command"] == "keywords" and commands[-1]["config"]["terms"] == ["a", "b"]


def test_a_url_found_again_after_this_run_fetched_it_is_a_repeat_not_already_in_the_pool(web, images, tmp_path) -> None:
    # One worker and a queue window of four: by the time the sixth candidate is read, the first one's row is written.
    order = [images[k] for k in ("0", "1", "2", "3", "copy", "0")]
    candidates = [Candidate(url=url, source="t", query=f"q{i}") for i, url in enumerate(order)]
    summary = collect(Pool.create(tmp_path / "pool"), candidates, fetch_config(workers=1))
    assert (summary.rows, summary.known, summary.repeats) == (5, 0, 1)


def test_a_rerun_fetches_nothing_and_a_new_term_only_extends_found_by(web, images, tmp_path) -> None:
    endpoint = serve_search(web, {"a": [images["0"], images["1"]], "c": [images["1"], images["3"]]})
    harvest_keywords(keywords_config(tmp_path / "pool", endpoint, ("a",)))
    again = harvest_keywords(keywords_config(tmp_path / "pool", endpoint, ("a",)))
    assert (again.rows, again.known) == (0, 2)
    later = harvest_keywords(keywords_config(tmp_path / "pool", endpoint, ("c",)))
    assert (later.rows, later.known) == (1, 1)

    df = Pool.open(tmp_path / "pool").read_index().set_index("url")
    assert len(df) == 3 and df.index.is_unique
    assert list(df.loc[images["1"], "found_by"]) == ["loopback-test:a", "loopback-test:c"]
    assert web.hits("/img/0.jpg") == web.hits("/img/1.jpg") == web.hits("/img/3.jpg") == 1


def test_every_failure_is_a_row_with_its_status(web, images, tmp_path) -> None:
    web.route("/img/gone.jpg", status=404)
    web.route("/img/page.jpg", body=b"<html>login</html>", headers=JPEG)
    web.route("/img/cut.jpg", body=jpeg(5, (64, 64))[:300], headers=JPEG)
    names = ["0", "gone", "page", "cut"]
    candidates = [Candidate(url=web.url(f"/img/{n}.jpg"), source="test", query="faults") for n in names]
    summary = collect(Pool.create(tmp_path / "pool"), candidates, fetch_config())
    df = Pool.open(tmp_path / "pool").read_index().set_index("url")
    statuses = [df.loc[web.url(f"/img/{n}.jpg"), "status"] for n in names]
    assert statuses == ["ok", "http_404", "not_image", "truncated"]
    assert df["error"].notna().sum() == 3 and df["id"].notna().sum() == 1
    assert summary.counts[("test", "http_404")] == 1 and summary.ok == 1


def test_a_host_with_a_crawl_delay_holds_one_worker_while_the_others_fetch_other_hosts(web, tmp_path) -> None:
    # One server under two names, two hosts to the downloader: "localhost" asks for a Crawl-delay, 127.0.0.1 not.
    def robots(request: SeenRequest) -> Reply:
        slow = request.headers.get("Host", "").startswith("localhost")
        return Reply(200, b"User-agent: *\nCrawl-delay: 1.2\n" if slow else b"User-agent: *\nAllow: /\n")

    web.route("/robots.txt", handler=robots)
    for n in range(6):
        web.route(f"/img/{n}.jpg", body=jpeg(n), headers=JPEG)
    slow = [web.url(f"/img/{n}.jpg").replace("127.0.0.1", "localhost") for n in range(3)]
    fast = [web.url(f"/img/{n}.jpg") for n in range(3, 6)]
    candidates = [Candidate(url=url, source="test", query="mixed") for url in slow + fast]
    summary = collect(Pool.create(tmp_path / "pool"), candidates, fetch_config(workers=2))
    assert summary.ok == 6
    arrived = [(r.headers.get("Host", "").split(":")[0], r.path) for r in web.requests if r.path != "/robots.txt"]
    second_slow = arrived.index(("localhost", "/img/1.jpg"))
    # Handed out in order, both workers would have slept on localhost's slots before any 127.0.0.1 picture.
    assert all(arrived.index(("127.0.0.1", f"/img/{n}.jpg")) < second_slow for n in range(3, 6)), arrived


def test_without_allow_private_hosts_loopback_images_are_blocked_rows(web, images, tmp_path) -> None:
    candidates = [Candidate(url=images["0"], source="test", query="x")]
    collect(Pool.create(tmp_path / "pool"), candidates, fetch_config(allow_private_hosts=False))
    row = Pool.open(tmp_path / "pool").read_index().iloc[0]
    assert row["status"] == "blocked_host" and web.hits("/img/0.jpg") == 0


def test_without_allow_private_hosts_a_loopback_search_is_a_recorded_failure(web, images, tmp_path) -> None:
    endpoint = serve_search(web, {"a": [images["0"]]})
    summary = harvest_keywords(keywords_config(tmp_path / "pool", endpoint, ("a",), allow_private_hosts=False))
    assert summary.rows == 0 and summary.counts[("loopback-test", "search_error")] == 1
    assert "BlockedHostError" in summary.search_failures[0]
    assert web.hits("/search") == 0


def test_keywords_uses_the_real_openverse_source_through_its_endpoint(web, images, tmp_path) -> None:
    results = [
        {"url": images["1"], "title": "<b>Fans</b>", "creator": "Ann", "license": "by", "license_version": "4.0"}
    ]
    body = json.dumps({"results": results, "page_count": 1}).encode()
    web.route("/v1/images/", body=body, headers={"Content-Type": "application/json"})
    config = KeywordsConfig(
        out=tmp_path / "pool", terms=("fans",), sources=("openverse",), endpoints={"openverse": web.base_url},
        fetch=fetch_config(),
    )  # fmt: skip
    summary = harvest_keywords(config)
    row = Pool.open(tmp_path / "pool").read_index().iloc[0]
    assert summary.ok == 1 and (row["source"], row["query"], row["author"]) == ("openverse", "fans", "Ann")
    assert list(row["found_by"]) == ["openverse:fans"]


def test_a_source_answering_non_string_image_urls_skips_them_and_writes_the_other_rows(web, images, tmp_path) -> None:
    def page(index: int, url: object) -> dict:
        info = {"url": url, "mime": "image/jpeg", "descriptionurl": 7 if index == 1 else None}
        return {"pageid": index, "title": f"File:{index}.jpg", "index": index, "imageinfo": [info]}

    answer = {"query": {"pages": [page(1, images["1"]), page(2, 5), page(3, [images["2"]]), page(4, None)]}}
    web.route("/w/api.php", body=json.dumps(answer).encode(), headers={"Content-Type": "application/json"})
    config = KeywordsConfig(
        out=tmp_path / "pool", terms=("x",), sources=("wikimedia",), endpoints={"wikimedia": web.url("/w/api.php")},
        fetch=fetch_config(),
    )  # fmt: skip
    for _ in range(2):  # the rerun finds the pool intact and fetches nothing again
        summary = harvest_keywords(config)
        df = Pool.open(tmp_path / "pool").read_index()
        assert list(df["url"]) == [images["1"]] and list(df["status"]) == ["ok"]
        assert df["page_url"].tolist() == ["7"]  # a number where text belongs is kept as text, not a crash
    assert summary.known == 1 and web.hits("/img/1.jpg") == 1
    # The three results with no usable URL have no row; the run's summary is where they are counted.
    assert summary.skipped == {("wikimedia", "no_image_url"): 3}
    assert summary.to_record()["skipped_results"] == {"wikimedia/no_image_url": 3}
    assert "left out (nothing to fetch): wikimedia 3 no_image_url" in _rendered(summary.table())


def test_what_a_source_did_that_the_counts_do_not_say_is_in_the_summary_table_and_record() -> None:
    from types import SimpleNamespace

    from harvest.writer import Summary

    summary = Summary("qbe")
    lens = SimpleNamespace(name="lens", skipped={"no_image_url": 2}, notes=["fell back to the picture"])
    again = SimpleNamespace(name="lens", skipped={"no_image_url": 1}, notes=[])  # --sources named it twice
    summary.add_source_counts([lens, again])
    assert summary.to_record()["notes"] == ["lens: fell back to the picture"]
    assert summary.skipped == {("lens", "no_image_url"): 3}
    assert "lens: fell back to the picture" in _rendered(summary.table())


def _rendered(renderable: object) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_retry_failed_fetches_transient_failures_once_more_and_keeps_one_row_per_url(web, tmp_path) -> None:
    flaky = web.route("/img/flaky.jpg", responses=[Reply(503), Reply(200, jpeg(5), JPEG)])
    gone = web.route("/img/gone.jpg", status=404)
    fine = web.route("/img/fine.jpg", body=jpeg(6), headers=JPEG)
    endpoint = serve_search(web, {"a": [flaky, gone, fine], "b": [flaky]})
    first = harvest_keywords(keywords_config(tmp_path / "pool", endpoint, ("a",)))
    assert first.ok == 1 and first.counts[("loopback-test", "http_503")] == 1

    plain = harvest_keywords(keywords_config(tmp_path / "pool", endpoint, ("a",)))
    assert (plain.rows, plain.known, plain.retried) == (0, 3, 0)  # resuming never re-fetches a failure by itself

    retried = harvest_keywords(keywords_config(tmp_path / "pool", endpoint, ("b",), retry_failed=True))
    assert (retried.rows, retried.ok, retried.retried) == (1, 1, 1)
    assert (web.hits("/img/flaky.jpg"), web.hits("/img/gone.jpg"), web.hits("/img/fine.jpg")) == (2, 1, 1)
    df = Pool.open(tmp_path / "pool").read_index().set_index("url")
    assert len(df) == 3 and df.index.is_unique  # the 503 row was replaced, not doubled
    assert df.loc[flaky, "status"] == "ok" and list(df.loc[flaky, "found_by"]) == ["loopback-test:a", "loopback-test:b"]
    assert df.loc[flaky, "query"] == "a"  # the term that first found it, though "b" fetched it
    assert df.loc[gone, "status"] == "http_404"  # a permanent failure is not retried

    again = harvest_keywords(keywords_config(tmp_path / "pool", endpoint, ("a",), retry_failed=True))
    assert (again.rows, again.retried) == (0, 0) and web.hits("/img/gone.jpg") == 1


def test_merge_keeps_the_latest_attempt_when_no_row_is_ok() -> None:
    df = pd.DataFrame({"url": ["u", "u"], "status": ["timeout", "http_503"], "id": [None, None],
                       "found_by": [["s:x"], ["s:y"]]})  # fmt: skip
    merged = merge_found_by(df, {})
    assert len(merged) == 1 and merged.loc[0, "status"] == "http_503" and merged.loc[0, "found_by"] == ["s:x", "s:y"]
    qbe = pd.DataFrame({"url": ["u", "u"], "status": ["timeout", "ok"], "source": ["knn", "lens"],
                        "query": ["IMG_1", "IMG_2"], "rank": [3, 1], "similarity": [0.8, float("nan")],
                        "found_by": [["knn:IMG_1"], ["lens:IMG_2"]]})  # fmt: skip
    row = merge_found_by(qbe, {}).iloc[0]
    assert (row["status"], row["source"], row["query"], row["rank"], row["similarity"]) == (
        "ok",
        "knn",
        "IMG_1",
        3,
        0.8,
    )


def test_merge_found_by_folds_repeated_urls_into_the_ok_row() -> None:
    df = pd.DataFrame(
        {
            "url": ["u1", "u2", "u1"],
            "status": ["timeout", "ok", "ok"],
            "id": [None, "b", "a"],
            "found_by": [["s:x"], ["s:y"], ["t:z", "s:x"]],
        }
    )
    merged = merge_found_by(df, {"u2": ["t:w", "s:y"]}).set_index("url")
    assert list(merged.index) == ["u2", "u1"]
    assert merged.loc["u1", "id"] == "a" and merged.loc["u1", "found_by"] == ["s:x", "t:z"]
    assert merged.loc["u2", "found_by"] == ["s:y", "t:w"]


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [({"terms": ()}, "--terms"), ({"sources": ("nope",)}, "--sources"), ({"per_term": 0}, "--per-term"),
     ({"endpoints": {"wikimedia": "http://x"}}, "--endpoint")],
)  # fmt: skip
def test_bad_keywords_config_names_the_flag(tmp_path, overrides: dict, flag: str) -> None:
    settings = {"out": tmp_path, "terms": ("a",), "sources": ("loopback-test",)} | overrides
    with pytest.raises(ConfigError, match=flag):
        KeywordsConfig(**settings)


KILLABLE_RUN = """
import sys
from harvest.collect import collect
from harvest.fetch import FetchConfig
from harvest.pool import Pool
from harvest.sources.base import Candidate

pool_dir, base, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
candidates = [Candidate(url=f"{base}/slow/{i}.jpg", source="test", query="kill") for i in range(n)]
config = FetchConfig(workers=2, host_rate=0, timeout=5, retries=0, min_side=8, allow_private_hosts=True,
                     show_progress=False, flush_rows=1)
collect(Pool.create(pool_dir), candidates, config)
"""


def test_a_run_killed_midway_and_rerun_loses_and_doubles_nothing(web, tmp_path) -> None:
    n, workers = 24, 2
    for i in range(n):
        web.route(f"/slow/{i}.jpg", handler=lambda _r, i=i: time.sleep(0.1) or Reply(200, jpeg(i), JPEG))
    pool_dir = tmp_path / "pool"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_RUN, str(pool_dir), web.base_url, str(n)], cwd=REPO, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if Pool.is_pool(pool_dir) and len(Pool(pool_dir).read_index()) >= 4:
                break
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    rows_at_kill = len(Pool.open(pool_dir).read_index())
    assert 4 <= rows_at_kill < n, "the kill should land mid-run"

    candidates = [Candidate(url=web.url(f"/slow/{i}.jpg"), source="test", query="kill") for i in range(n)]
    collect(Pool.open(pool_dir), candidates, fetch_config(workers=workers, flush_rows=1))

    df = Pool.open(pool_dir).read_index()
    assert len(df) == n and df["url"].is_unique and (df["status"] == "ok").all()
    assert len(stored_files(pool_dir)) == n
    hits = [web.hits(f"/slow/{i}.jpg") for i in range(n)]
    assert max(hits) <= 2
    # Only URLs whose fetch was in flight (not yet written as a row) when the kill came are fetched again.
    assert sum(hits) - n <= 2 * workers


def test_cli_keywords_is_wired_to_the_library(web, images, tmp_path) -> None:
    endpoint = serve_search(web, {"a": [images["0"], images["1"]]})
    args = ["keywords", "--terms", "a", "--sources", "loopback-test", "--endpoint", f"loopback-test={endpoint}",
            "--out", str(tmp_path / "pool"), "--allow-private-hosts", "--min-side", "8", "--workers", "2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and len(Pool.open(tmp_path / "pool").read_index()) == 2


def test_cli_keywords_rejects_a_malformed_endpoint(tmp_path) -> None:
    args = ["keywords", "--terms", "a", "--endpoint", "no-equals-sign", "--out", str(tmp_path / "pool")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 2 and "SOURCE=URL" in result.output


def test_cli_keywords_exits_1_when_every_search_failed(web, tmp_path) -> None:
    endpoint = serve_search(web, {"a": []})
    args = ["keywords", "--terms", "a", "--sources", "loopback-test", "--endpoint", f"loopback-test={endpoint}",
            "--out", str(tmp_path / "pool")]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 1 and "search failed" in result.output and "BlockedHostError" in result.output


def test_the_searches_of_a_run_keep_host_rate_between_requests_to_one_engine(web, images, tmp_path) -> None:
    asked: list[float] = []

    def answer(request: SeenRequest) -> Reply:
        asked.append(time.monotonic())
        return Reply(200, json.dumps([{"url": images["0"], "title": "t"}]).encode(), {"Content-Type": "text/json"})

    endpoint = web.route("/search", handler=answer)
    harvest_keywords(keywords_config(tmp_path / "pool", endpoint, ("a", "b", "c"), host_rate=5.0))
    gaps = [later - earlier for earlier, later in zip(asked, asked[1:], strict=False)]
    assert len(asked) == 3 and min(gaps) >= 0.18  # 1/5 s, less clock slack


def test_a_term_or_source_given_twice_is_searched_once(web, images, tmp_path) -> None:
    endpoint = serve_search(web, {"a": [images["0"]], "b": [images["1"]]})
    config = KeywordsConfig(
        out=tmp_path / "pool", terms=("a", " b", "a", "b "), sources=("loopback-test", "loopback-test"), per_term=10,
        endpoints={"loopback-test": endpoint}, fetch=fetch_config(),
    )  # fmt: skip
    assert (config.terms, config.sources) == (("a", "b"), ("loopback-test",))
    summary = harvest_keywords(config)
    assert web.hits("/search") == 2
    assert (summary.rows, summary.repeats) == (2, 0)


def test_retry_failed_help_names_every_status_that_retry_failed_fetches_again() -> None:
    from harvest.cli import RETRY_FAILED_HELP
    from harvest.writer import TRANSIENT_STATUSES

    for status in TRANSIENT_STATUSES:  # tls_error -> "tls", http_503 -> "503", connection_error -> "connection"
        word = status.removeprefix("http_").removesuffix("_error").split("_")[0]
        assert word in RETRY_FAILED_HELP.lower(), status


def test_retry_failed_fetches_again_a_picture_whose_stored_file_was_lost_or_damaged(web, tmp_path) -> None:
    from harvest.dedup_pool import DedupConfig, dedup_pool
    from tests.harvest.imagegen import encode, scene

    pictures = {name: encode(scene(seed, 64, 48)) for seed, name in enumerate(("lost", "damaged", "fine"))}

    lost = web.route("/img/lost.jpg", body=pictures["lost"], headers=JPEG)
    damaged = web.route("/img/damaged.jpg", body=pictures["damaged"], headers=JPEG)
    fine = web.route("/img/fine.jpg", body=pictures["fine"], headers=JPEG)
    endpoint = serve_search(web, {"a": [lost, damaged, fine]})
    pool_dir = tmp_path / "pool"
    harvest_keywords(keywords_config(pool_dir, endpoint, ("a",)))
    rows = Pool.open(pool_dir).read_index().set_index("url")
    (pool_dir / rows.loc[lost, "path"]).unlink()
    (pool_dir / rows.loc[damaged, "path"]).write_bytes(pictures["damaged"][:200])  # same name, cut short
    dedup_pool(DedupConfig(pool_dir, progress=False, workers=1))
    marked = Pool.open(pool_dir).read_index().set_index("url")["status"]
    assert (marked[lost], marked[damaged], marked[fine]) == ("decode_error", "decode_error", "ok")

    plain = harvest_keywords(keywords_config(pool_dir, endpoint, ("a",)))
    assert (plain.rows, plain.known) == (0, 3)  # without --retry-failed nothing is fetched again
    retried = harvest_keywords(keywords_config(pool_dir, endpoint, ("a",), retry_failed=True))
    assert (retried.rows, retried.ok, retried.retried, retried.retried_decode_errors) == (2, 2, 2, 2)
    assert "2 of them pictures whose stored file was" in _rendered(retried.table())
    assert retried.to_record()["retried_decode_errors"] == 2
    assert (web.hits("/img/lost.jpg"), web.hits("/img/damaged.jpg"), web.hits("/img/fine.jpg")) == (2, 2, 1)

    df = Pool.open(pool_dir).read_index().set_index("url")
    assert len(df) == 3 and df.index.is_unique and (df["status"] == "ok").all()
    assert (pool_dir / df.loc[lost, "path"]).read_bytes() == pictures["lost"]
    assert (pool_dir / df.loc[damaged, "path"]).read_bytes() == pictures["damaged"]  # the damaged file is rewritten
    summary = dedup_pool(DedupConfig(pool_dir, progress=False, workers=1))
    assert summary.decode_failures == 0 and bool(Pool.open(pool_dir).read_index()["kept"].all())


@pytest.mark.parametrize("new_bytes", [False, True], ids=["same-bytes", "other-bytes"])
def test_retry_failed_keeps_the_leak_mark_of_a_lost_picture_so_a_test_image_never_comes_back_kept(
    web, tmp_path, tiny_checkpoint, new_bytes: bool
) -> None:
    from harvest.clip_filter import FilterConfig, filter_pool
    from harvest.dedup_pool import DedupConfig, dedup_pool
    from harvest.pool import kept_and_unreviewed
    from tests.harvest.conftest import TINY
    from tests.harvest.imagegen import encode, scene, write_folder

    pictures = {"leak": encode(scene(3)), "fine": encode(scene(40))}
    leak = web.route("/img/leak.jpg", body=pictures["leak"], headers=JPEG)
    fine = web.route("/img/fine.jpg", body=pictures["fine"], headers=JPEG)
    endpoint = serve_search(web, {"a": [leak, fine]})
    pool_dir = tmp_path / "pool"
    harvest_keywords(keywords_config(pool_dir, endpoint, ("a",)))
    evaluation = write_folder(tmp_path / "eval", {"IMG_7": scene(3).resize((150, 112))})
    dedup_pool(DedupConfig(pool_dir, exclude_like=(str(evaluation),), progress=False, workers=1))
    marked = Pool.open(pool_dir).read_index().set_index("url").loc[leak]
    assert marked["leak_of"] == "eval/IMG_7"
    (pool_dir / marked["path"]).unlink()
    filter_pool(FilterConfig(pool_dir, model=TINY, checkpoint=tiny_checkpoint, device="cpu", workers=0, progress=False))
    dedup_pool(DedupConfig(pool_dir, progress=False, workers=1))  # dedup keeps the mark of a decode_error row
    assert Pool.open(pool_dir).read_index().set_index("url").loc[leak, ["status", "leak_of"]].tolist() == [
        "decode_error",
        "eval/IMG_7",
    ]
    if new_bytes:  # the site now serves a re-encoded copy: other bytes, other id, the same test picture
        web.route("/img/leak.jpg", body=encode(scene(3), quality=70), headers=JPEG)

    retried = harvest_keywords(keywords_config(pool_dir, endpoint, ("a",), retry_failed=True))
    assert (retried.ok, retried.retried_decode_errors) == (1, 1)
    row = Pool.open(pool_dir).read_index().set_index("url").loc[leak]
    assert row["status"] == "ok" and (row["id"] != marked["id"]) == new_bytes
    assert row["leak_of"] == "eval/IMG_7" and row["kept"] == False  # noqa: E712 (not null): refused at once, before any stage runs again
    assert row["leak_by"] == "dedup"  # who made the mark travels with it: dedup --clear-leaks may drop it
    kept, unreviewed = kept_and_unreviewed(Pool.open(pool_dir))
    assert {r["url"] for r in kept} == {fine} and unreviewed == []

    dedup_pool(DedupConfig(pool_dir, progress=False, workers=1))  # a later dedup without --exclude-like
    df = Pool.open(pool_dir).read_index().set_index("url")
    assert df.loc[leak, "leak_of"] == "eval/IMG_7" and not df.loc[leak, "kept"] and df.loc[fine, "kept"]
