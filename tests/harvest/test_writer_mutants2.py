"""Resume and flushing where hand-made mutants of harvest.writer survived: exactly which failures --retry-failed
fetches again, and the time-based flush that bounds what a killed run loses."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import harvest.writer as writer_module
from harvest.pool import Pool
from harvest.writer import PoolWriter, failed_urls, transient_failures

# The failures README.md promises --retry-failed fetches again: they may pass on a later try.
RETRIED = [
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
]
# Failures that come back the same on every try (or that the site asked for): never fetched again.
NOT_RETRIED = ["http_404", "http_403", "robots", "noai", "blocked_host", "bad_url", "too_large", "too_many_redirects"]


def test_retry_failed_fetches_again_exactly_the_failures_that_may_pass(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows([{"url": f"u/{status}", "status": status} for status in RETRIED + NOT_RETRIED])
    assert transient_failures(pool) == {f"u/{status}" for status in RETRIED}


def test_failed_urls_counts_no_row_without_a_status_as_a_failure(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows(
        [
            {"url": "u/gone", "status": "http_404"},
            {"url": "u/half", "status": "http_404"},
            {"url": "u/half", "status": None},
            {"url": "u/fine", "status": "ok"},
        ]
    )
    assert failed_urls(pool) == {"u/gone"}


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_rows_are_flushed_once_flush_seconds_have_passed_however_few_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _FakeClock()
    monkeypatch.setattr(writer_module, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    pool = Pool.create(tmp_path / "pool")
    writer = PoolWriter(pool, flush_rows=1000, flush_seconds=30.0)
    writer.add({"url": "u/1", "status": "ok"})
    clock.now += 29.0
    writer.add({"url": "u/2", "status": "ok"})
    assert pool.part_files() == []  # neither limit reached yet
    clock.now += 1.0
    writer.add({"url": "u/3", "status": "ok"})
    assert len(pool.part_files()) == 1 and writer.written == 3  # a kill now loses nothing
    clock.now += 10.0
    writer.add({"url": "u/4", "status": "ok"})
    assert len(pool.part_files()) == 1  # the 30 s count again from the last flush
    writer.flush()
    assert sorted(pool.read_index()["url"]) == ["u/1", "u/2", "u/3", "u/4"]
