"""Candidates into pool rows: dedup by URL, fetch in a thread pool, store the bytes, write the rows.

``collect`` is the engine behind ``harvest keywords`` (and ``harvest qbe``): it takes any iterator of
:class:`~harvest.sources.base.Candidate` (search results arrive lazily, while downloads run), fetches each URL
that is not in the pool yet exactly once, and records every outcome as a row. ``harvest_keywords`` feeds it
the results of every (term, source) search.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import requests

from harvest.errors import ConfigError
from harvest.fetch import FetchConfig, FetchResult, fetch_one
from harvest.images import pixel_limit
from harvest.net import HostRateLimiter, RobotsCache, make_session
from harvest.pool import COLUMNS, Pool
from harvest.schedule import run_by_host
from harvest.sources.base import DEFAULT_SOURCES, Candidate, SearchSource, create_source, list_sources
from harvest.writer import (
    PoolWriter,
    Summary,
    compact_pool,
    known_urls,
    lost_pictures,
    run_progress,
    transient_failures,
)


class _Downloader:
    """Fetches one URL and stores its bytes; one Session per worker thread, shared robots and rate limits."""

    def __init__(self, pool: Pool, config: FetchConfig) -> None:
        self.pool = pool
        self.config = config
        self.limiter = HostRateLimiter(config.host_rate)
        self.robots = RobotsCache(self.limiter, timeout=config.timeout)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = make_session(self.config.user_agent, self.config.allow_private_hosts, self.config.timeout)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def __call__(self, url: str) -> tuple[FetchResult, str | None, str | None]:
        try:
            result = fetch_one(self._session(), url, self.config, self.robots, self.limiter)
        except Exception as e:  # a bug must cost one row, not the run; the row says what happened
            return FetchResult(url, "internal_error", f"{type(e).__name__}: {e}"), None, None
        if not result.ok or result.data is None or result.check is None:
            return result, None, None
        image_id, path = self.pool.store_image(result.data, result.check.extension)
        result.data = None  # stored; do not keep every image of the run in memory
        return result, image_id, path

    def settled(self, host: str) -> bool:
        """Whether the host's pace is known: its robots.txt (and any Crawl-delay in it) has been read."""
        return self.config.ignore_robots or self.robots.has_read(host)

    def close(self) -> None:
        for session in self._sessions:
            session.close()


def make_search_session(config: FetchConfig) -> requests.Session:
    """The session search engines are asked through: the downloads' User-Agent, host guard and timeout, and
    ``--host-rate`` between two requests to one engine (the pages of a search used to follow each other at once)."""
    limiter = HostRateLimiter(config.host_rate)
    return make_session(config.user_agent, config.allow_private_hosts, config.timeout, limiter)


def fetch_row(
    candidate: Candidate, found_by: list[str], result: FetchResult, image_id: str | None, path: str | None
) -> dict[str, Any]:
    """The pool row of one fetched candidate (see DESIGN.md "The pool")."""
    row: dict[str, Any] = {k: str(v) for k, v in candidate.extra.items() if k not in COLUMNS and v is not None}
    row.update(
        url=candidate.url,
        final_url=result.final_url,
        page_url=candidate.page_url,
        source=candidate.source,
        mode=candidate.mode,
        query=candidate.query,
        found_by=list(found_by),
        title=candidate.title,
        author=candidate.author,
        license=candidate.license,
        license_url=candidate.license_url,
        status=result.status,
        error=result.error,
        fetched_at=result.fetched_at,
        id=image_id,
        path=path,
    )
    if result.check is not None:
        row.update(format=result.check.format, width=result.check.width, height=result.check.height)
    row["bytes"] = result.size
    return row


def collect(pool: Pool, candidates: Iterable[Candidate], config: FetchConfig, command: str = "collect") -> Summary:
    """Fetch every candidate URL the pool has not seen and write one row per URL; see the module docstring.

    Holds the pool's writer lock throughout: what the pool knows when the run starts stays true until it ends.
    """
    with pool.lock(command):
        return _collect(pool, candidates, config, command)


def _collect(pool: Pool, candidates: Iterable[Candidate], config: FetchConfig, command: str) -> Summary:
    summary = Summary(command)
    started = time.monotonic()
    known, doubled = known_urls(pool)  # doubled: rows a killed run left for the compaction it never reached
    lost = lost_pictures(pool) if config.retry_failed else set()
    again = transient_failures(pool) | lost if config.retry_failed else set()
    for url in again:
        known.pop(url, None)  # fetched once more; the old row's tags join the new row when the pool is compacted
    late_tags: dict[str, list[str]] = {}
    waiting: dict[str, tuple[Candidate, list[str]]] = {}
    fetched: set[str] = set()  # fetched by this run: found again later, it is a repeat, not "already in the pool"
    downloader = _Downloader(pool, config)

    def urls_to_fetch(progress: Any) -> Iterator[str]:
        for candidate in candidates:
            summary.candidates += 1
            tag = f"{candidate.source}:{candidate.query}"
            url = candidate.url
            if url in known:
                if url in fetched:
                    summary.repeats += 1
                else:
                    summary.known += 1
                if tag not in known[url]:
                    known[url].append(tag)
                    late_tags.setdefault(url, []).append(tag)
            elif url in waiting:
                summary.repeats += 1
                if tag not in waiting[url][1]:
                    waiting[url][1].append(tag)
            else:
                waiting[url] = (candidate, [tag])
                summary.retried += int(url in again)
                summary.retried_decode_errors += int(url in lost)
                progress.add_total()
                yield url

    try:
        with (
            pixel_limit(config.max_pixels),
            run_progress(config.show_progress, f"harvest {command}") as progress,
            PoolWriter(pool, config.flush_rows, config.flush_seconds) as writer,
        ):
            fetched_urls = run_by_host(
                downloader, urls_to_fetch(progress), config.workers, downloader.limiter, settled=downloader.settled
            )
            for result, image_id, path in fetched_urls:
                candidate, tags = waiting.pop(result.url)
                known[result.url] = list(tags)
                fetched.add(result.url)
                writer.add(fetch_row(candidate, tags, result, image_id, path))
                summary.add(candidate.source, result.status, result.size if image_id else None)
                progress.advance()
    finally:
        downloader.close()
    compact_pool(pool, late_tags, repeated=summary.retried > 0 or doubled)
    summary.elapsed_s = time.monotonic() - started
    return summary


@dataclass(frozen=True)
class KeywordsConfig:
    """``harvest keywords``: search every term in every source and fetch the results into the pool at ``out``."""

    out: Path
    terms: tuple[str, ...]
    sources: tuple[str, ...] = DEFAULT_SOURCES
    per_term: int = 50
    endpoints: dict[str, str] = field(default_factory=dict)
    fetch: FetchConfig = field(default_factory=FetchConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        # A term or source given twice ("crowd,beach,crowd") is searched once: a second search of the same pair
        # would spend the engine's quota and the host's rate on answers the first one already gave.
        object.__setattr__(self, "terms", tuple(dict.fromkeys(t.strip() for t in self.terms)))
        object.__setattr__(self, "sources", tuple(dict.fromkeys(s.strip() for s in self.sources)))
        if not self.terms or not all(self.terms):
            raise ConfigError(f"--terms needs at least one non-empty term, got {list(self.terms)!r}")
        if not self.sources:
            raise ConfigError(f"--sources needs at least one source; known sources: {', '.join(list_sources())}")
        unknown = [s for s in self.sources if s not in list_sources()]
        if unknown:
            raise ConfigError(f"--sources: unknown {', '.join(unknown)}; known sources: {', '.join(list_sources())}")
        if not 1 <= self.per_term <= 10_000:
            raise ConfigError(f"--per-term must be between 1 and 10000, got {self.per_term}")
        for name, url in self.endpoints.items():
            if name not in self.sources:
                raise ConfigError(f"--endpoint {name}={url}: {name!r} is not one of --sources {','.join(self.sources)}")
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"--endpoint {name}={url}: the endpoint must be an http(s) URL")

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["out"] = str(self.out)
        return record


def harvest_keywords(config: KeywordsConfig) -> Summary:
    """Run every (term, source) search and fetch what they find into the pool; returns the run summary."""
    search_session = make_search_session(config.fetch)
    sources = [  # a source that needs a missing API key fails here, before the pool is touched
        create_source(name, endpoint=config.endpoints.get(name), session=search_session, timeout=config.fetch.timeout)
        for name in config.sources
    ]
    try:
        pool = Pool.create(config.out)
        with pool.lock("keywords"):  # one writer at a time: a second run into this pool fails at once
            pool.log_command(command="keywords", config=config.to_record())
            failures: list[tuple[str, str, str]] = []
            candidates = _search_all(sources, config.terms, config.per_term, failures)
            summary = collect(pool, candidates, config.fetch, command="keywords")
    finally:
        search_session.close()
    for source_name, term, message in failures:
        summary.counts[(source_name, "search_error")] += 1
        summary.search_failures.append(f"{source_name} {term!r}: {message}")
    summary.add_source_counts(sources)
    return summary


def _search_all(
    sources: list[SearchSource], terms: tuple[str, ...], per_term: int, failures: list[tuple[str, str, str]]
) -> Iterator[Candidate]:
    """Every source's results for every term, at most ``per_term`` each; a failed search is recorded, not raised."""
    for term in terms:
        for source in sources:
            try:
                yield from islice(source.search(term, per_term), per_term)
            except Exception as e:  # one engine failing (offline, refused, changed format) must not end the run
                failures.append((source.name, term, f"{type(e).__name__}: {e}"))
