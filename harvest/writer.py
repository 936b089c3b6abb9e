"""Rows into the pool, safely: buffered atomic parts, the end-of-run compaction, the run summary and progress.

Shared by every stage that adds rows (``keywords``, ``qbe``, ``local``). Rows are flushed as a new part every
``flush_rows`` rows or ``flush_seconds`` seconds, so a killed run loses only the rows in memory; their URLs
have no row yet and are simply fetched again by the next run. A URL found again later (another term, source
or run) does not get a second row: its new ``source:query`` tags are merged into ``found_by`` by
:func:`compact_pool` at the end of the run, which rewrites the table through ``Pool.rewrite``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harvest.decisions import FAILED_DECODE, LEAK_BY
from harvest.pool import Pool

MAX_PARTS = 64  # more parts than this after a run and the compaction merges them into few


class PoolWriter:
    """Buffers rows and appends them to the pool as atomic parts; use as a context manager to flush at exit."""

    def __init__(self, pool: Pool, flush_rows: int, flush_seconds: float) -> None:
        self.pool = pool
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.rows: list[dict[str, Any]] = []
        self.written = 0
        self._last_flush = time.monotonic()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.pool.append_rows(self.rows)
            self.written += len(self.rows)
            self.rows = []
        self._last_flush = time.monotonic()

    def __enter__(self) -> PoolWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()  # also on Ctrl-C: what was fetched is kept


# Failures that may pass: ``--retry-failed`` fetches URLs whose every row has one of these statuses again (and
# those whose stored picture was lost, :func:`lost_pictures`).
# ``tls_error`` (a certificate that does not verify) is not retried within a run, but sites renew certificates.
TRANSIENT_STATUSES = frozenset(
    {
        "timeout",
        "connection_error",
        "truncated",
        "tls_error",
        "http_408",
        "http_429",
        "http_500",
        "http_502",
        "http_503",
        "http_504",
    }
)


# What the search that first found a URL said about it; a later fetch of the URL (--retry-failed) keeps these.
FIRST_FOUND_COLUMNS = ("source", "mode", "query", "rank", "similarity")


def known_found_by(pool: Pool) -> dict[str, list[str]]:
    """``url -> found_by`` for every row already in the pool: these URLs are never fetched again."""
    return known_urls(pool)[0]


def known_urls(pool: Pool) -> tuple[dict[str, list[str]], bool]:
    """:func:`known_found_by`, and whether some URL has more than one row: a run killed after it flushed a new row
    for a URL (``--retry-failed``) but before its compaction folded the old one in. A run that finds such rows
    passes ``repeated`` to :func:`compact_pool`, so that the pool is one row per URL again when it ends."""
    df = pool.read_index(columns=["url", "found_by"])
    known = {url: _tags(tags) for url, tags in zip(df["url"], df["found_by"], strict=True) if isinstance(url, str)}
    return known, bool(df["url"].dropna().duplicated().any())


def transient_failures(pool: Pool) -> set[str]:
    """URLs whose every row failed for a reason that may pass (:data:`TRANSIENT_STATUSES`): worth one more try."""
    return failed_urls(pool, TRANSIENT_STATUSES)


def lost_pictures(pool: Pool) -> set[str]:
    """URLs whose every row is ``decode_error``: dedup or filter found the stored picture missing or damaged, and
    only fetching the URL again brings its bytes back (``--retry-failed``)."""
    return failed_urls(pool, {FAILED_DECODE})


def failed_urls(pool: Pool, statuses: Collection[str] | None = None) -> set[str]:
    """URLs whose every row failed, each for one of ``statuses`` (None: for any reason, every status but ok)."""
    df = pool.read_index(columns=["url", "status"])
    failed = df["status"].isin(statuses) if statuses is not None else df["status"].ne("ok") & df["status"].notna()
    settled = set(df.loc[~failed, "url"])
    return {url for url in df.loc[failed, "url"] if isinstance(url, str) and url not in settled}


def _tags(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    return [str(tag) for tag in value]


def merge_found_by(df: pd.DataFrame, extra_found_by: dict[str, list[str]]) -> pd.DataFrame:
    """One row per URL: add the extra tags to ``found_by`` and fold repeated URLs into their best row.

    The row kept for a repeated URL is its first ``ok`` row, else its last row (the latest attempt, e.g. of
    ``--retry-failed``); ``found_by`` becomes the union of all its rows' tags, in the order they were found, and
    the search that first found the URL (:data:`FIRST_FOUND_COLUMNS`) stays the first row's, and so does a
    ``leak_of`` mark of any of its rows (:func:`_carry_leak_marks`).
    """
    df = df.reset_index(drop=True)
    identity = [column for column in FIRST_FOUND_COLUMNS if column in df]
    found = [_tags(tags) for tags in df["found_by"]]
    urls = df["url"].tolist()
    for i, url in enumerate(urls):
        for tag in extra_found_by.get(url, ()):
            if tag not in found[i]:
                found[i].append(tag)
    keep: dict[str, int] = {}
    for i, url in enumerate(urls):
        if url not in keep:
            keep[url] = i
            continue
        first = keep[url]
        merged = found[first] + [tag for tag in found[i] if tag not in found[first]]
        if df.at[first, "status"] != "ok":  # a later row replaces a failure: ok, or the newer attempt
            keep[url] = i
            for column in identity:
                df.at[i, column] = df.at[first, column]
        found[keep[url]] = merged
    df["found_by"] = found
    _carry_leak_marks(df, urls, keep)
    return df.loc[sorted(keep.values())].reset_index(drop=True)


def _carry_leak_marks(df: pd.DataFrame, urls: list[Any], keep: dict[Any, int]) -> None:
    """Give the row kept for each URL the ``leak_of`` mark of any of its rows, with ``kept`` false.

    A mark (``harvest dedup --exclude-like`` or qbe's guard) is on the row of the picture it judged; when that
    row is a ``decode_error`` and ``--retry-failed`` fetches the URL again, the new row replaces it. Without the
    mark the new row would come back kept (dedup keeps only the marks it finds in the pool), and a test picture
    would leak into training. The mark stays even when the new bytes differ from those judged: a URL that served a
    near-copy of an evaluation image is not trusted again silently; ``harvest dedup --clear-leaks --exclude-like``
    judges afresh.
    """
    if "leak_of" not in df.columns:
        return
    by = df[LEAK_BY] if LEAK_BY in df.columns else pd.Series(None, index=df.index, dtype=object)
    mark: dict[Any, tuple[str, Any]] = {}
    for url, leak, made_by in zip(urls, df["leak_of"], by, strict=True):
        if isinstance(leak, str):
            mark.setdefault(url, (leak, made_by if isinstance(made_by, str) else None))
    carried = [keep[url] for url in mark if not isinstance(df.at[keep[url], "leak_of"], str)]
    if not carried:
        return
    df["leak_of"] = df["leak_of"].astype(object)
    df.loc[carried, "leak_of"] = [mark[urls[i]][0] for i in carried]
    if LEAK_BY in df.columns:  # who made the mark travels with it (dedup --clear-leaks keeps qbe's guard marks)
        df[LEAK_BY] = df[LEAK_BY].astype(object)
        df.loc[carried, LEAK_BY] = [mark[urls[i]][1] for i in carried]
    df["kept"] = df["kept"].astype(object) if "kept" in df.columns else None
    df.loc[carried, "kept"] = False  # refused until a stage judges again, as qbe's guard leaves its marks


def compact_pool(
    pool: Pool, extra_found_by: dict[str, list[str]], max_parts: int = MAX_PARTS, repeated: bool = False
) -> bool:
    """Merge late ``found_by`` tags and repeated URLs (``repeated``: the run wrote some URL again), and fold many
    small parts; returns whether it rewrote."""
    parts = pool.part_files()
    if not parts or (not extra_found_by and not repeated and len(parts) <= max_parts):
        return False
    df = pool.read_index()
    merged = merge_found_by(df, extra_found_by)
    if len(parts) <= max_parts and len(merged) == len(df) and _same_tags(df["found_by"], merged["found_by"]):
        return False
    pool.rewrite(merged)
    return True


def _same_tags(before: pd.Series, after: pd.Series) -> bool:
    return all(_tags(a) == _tags(b) for a, b in zip(before, after, strict=True))


@dataclass
class Summary:
    """Counts of one run: rows by (source, status), URLs skipped as already known, search failures."""

    command: str
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    candidates: int = 0
    known: int = 0  # already in the pool before this run: not fetched
    repeats: int = 0  # returned again after this run had fetched it or while it was fetching it: not fetched
    retried: int = 0  # had only transient failures in the pool and were fetched again (--retry-failed)
    retried_decode_errors: int = 0  # of those, rows whose stored picture was missing or damaged (decode_error)
    stored_bytes: int = 0
    search_failures: list[str] = field(default_factory=list)
    # Search results left out before any fetch (no image URL, not a raster picture, a malformed result), by
    # (source, reason): they have no URL to record a row under, so this is the only place they are counted.
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)  # what a source did that the counts do not say (a fallback)
    elapsed_s: float = 0.0

    def add(self, source: str, status: str, size: int | None = None) -> None:
        self.counts[(source, status)] += 1
        self.stored_bytes += size or 0

    def add_source_counts(self, sources: Iterable[Any]) -> None:
        """Each search source's ``skipped`` counts and ``notes`` (see :class:`harvest.sources.base.SearchSource`)."""
        for source in sources:
            for reason, count in source.skipped.items():
                self.skipped[(source.name, reason)] += count
            self.notes += [f"{source.name}: {note}" for note in source.notes]

    @property
    def rows(self) -> int:
        return sum(count for (_, status), count in self.counts.items() if status != "search_error")

    @property
    def ok(self) -> int:
        return sum(count for (_, status), count in self.counts.items() if status == "ok")

    def to_record(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "rows": self.rows,
            "ok": self.ok,
            "candidates": self.candidates,
            "known": self.known,
            "repeats": self.repeats,
            "retried": self.retried,
            "retried_decode_errors": self.retried_decode_errors,
            "stored_bytes": self.stored_bytes,
            "elapsed_s": round(self.elapsed_s, 3),
            "by_source_status": {f"{src}/{status}": n for (src, status), n in sorted(self.counts.items())},
            "search_failures": list(self.search_failures),
            "skipped_results": {f"{src}/{reason}": n for (src, reason), n in sorted(self.skipped.items())},
            "notes": list(self.notes),
        }

    def table(self) -> Any:
        """A rich table (one line per source and status), then the totals as a line of its own."""
        from rich.table import Table

        table = Table(title=f"harvest {self.command}: {self.rows} new rows, {self.ok} ok")
        table.add_column("source")
        table.add_column("status")
        table.add_column("rows", justify="right")
        for (source, status), count in sorted(self.counts.items()):
            table.add_row(source, status, str(count), style=None if status == "ok" else "yellow")
        totals = (
            f"{self.candidates} candidates: {self.known} already in the pool, {self.repeats} found again this run "
            f"(not fetched twice); {_human_bytes(self.stored_bytes)} in {self.elapsed_s:.1f} s"
        )
        if self.retried:
            totals += f"; {self.retried} earlier failures fetched again (--retry-failed)"
        if self.retried_decode_errors:
            totals += (
                f", {self.retried_decode_errors} of them pictures whose stored file was missing or damaged "
                "(decode_error)"
            )
        if self.skipped:
            left_out = ", ".join(f"{src} {n} {reason}" for (src, reason), n in sorted(self.skipped.items()))
            totals += f"\nsearch results left out (nothing to fetch): {left_out}"
        totals += "".join(f"\n{note}" for note in self.notes)
        return with_notes(table, totals)


def with_notes(table: Any, notes: str | None) -> Any:
    """``table`` then ``notes`` as plain lines at the console's width. A table's own title and caption wrap to the
    table's width, which squeezed a sentence into a 26-column block under a three-column table."""
    from rich.console import Group
    from rich.text import Text

    table.min_width = len(str(table.title or "")) + 2
    return Group(table, Text(notes)) if notes else table


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable: the loop returns at GB")


class _Progress:
    """A rich progress bar whose total grows as work is queued (search results arrive lazily)."""

    def __init__(self, progress: Any, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=0) if progress is not None else None

    def add_total(self, n: int = 1) -> None:
        if self._progress is not None:
            total = self._progress.tasks[0].total or 0
            self._progress.update(self._task, total=total + n)

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)


@contextmanager
def run_progress(show: bool, description: str) -> Iterator[_Progress]:
    """A progress bar (``show``) or a silent stand-in with the same methods."""
    if not show:
        yield _Progress(None, description)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        yield _Progress(progress, description)
