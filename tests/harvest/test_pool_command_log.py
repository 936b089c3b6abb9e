"""pool.json logs every command run on the pool: a dedup or filter that fails or is interrupted is logged with
``failed``, and nothing that reads the log (build's "judged" rule, the stored-file check, the card) takes it for a
finished run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harvest import dedup_pool as dedup_module
from harvest.dedup_pool import DedupConfig, dedup_pool
from harvest.pool import Pool, kept_and_unreviewed
from rankset.card import pool_commands
from tests.harvest.imagegen import add_pictures, scene


@pytest.fixture
def pool(tmp_path: Path) -> Pool:
    pool = Pool.create(tmp_path / "pool")
    add_pictures(pool, {f"scene{seed}": scene(seed) for seed in range(3)})
    return pool


@pytest.mark.parametrize(
    ("error", "logged"),
    [(RuntimeError("disk on fire"), "RuntimeError: disk on fire"), (KeyboardInterrupt(), "KeyboardInterrupt")],
)
def test_a_dedup_that_fails_is_logged_as_failed_and_counts_as_no_dedup(
    pool: Pool, monkeypatch: pytest.MonkeyPatch, error: BaseException, logged: str
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(dedup_module, "near_duplicate_groups", fail)
    with pytest.raises(type(error)):
        dedup_pool(DedupConfig(pool=pool.root, workers=1))
    entries = json.loads((pool.root / "pool.json").read_text())["commands"]
    assert entries[-1]["stage"] == "dedup" and entries[-1]["failed"] == logged and "argv" in entries[-1]
    assert "files_checked_from" not in entries[-1]
    fresh = Pool.open(pool.root)
    assert fresh.finished_commands() == [] and fresh.files_checked_from() is None
    kept, unreviewed = kept_and_unreviewed(fresh)
    assert len(kept) == 3 and unreviewed == []  # as before any dedup: build uses every picture
    assert pool_commands(pool.root) == []  # the dataset card lists finished runs only

    monkeypatch.undo()
    dedup_pool(DedupConfig(pool=pool.root, workers=1))
    finished = Pool.open(pool.root).finished_commands()
    assert [e["stage"] for e in finished] == ["dedup"] and "files_checked_from" in finished[0]


def test_a_log_that_cannot_be_written_never_hides_the_runs_own_error(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        (pool.root / "pool.json").write_text("[]")  # damaged meanwhile: logging the failure fails too
        raise RuntimeError("the run's own error")

    monkeypatch.setattr(dedup_module, "near_duplicate_groups", fail)
    with pytest.raises(RuntimeError, match="the run's own error"):
        dedup_pool(DedupConfig(pool=pool.root, workers=1))


def test_a_filter_whose_model_cannot_be_loaded_is_logged_as_failed(pool: Pool, tmp_path: Path) -> None:
    from harvest.clip_filter import FilterConfig, filter_pool
    from harvest.errors import ModelUnavailableError

    (tmp_path / "empty.pt").write_bytes(b"")
    config = FilterConfig(pool=pool.root, checkpoint=tmp_path / "empty.pt", device="cpu", progress=False)
    with pytest.raises(ModelUnavailableError) as raised:
        filter_pool(config)
    entry = json.loads((pool.root / "pool.json").read_text())["commands"][-1]
    assert entry["stage"] == "filter" and entry["failed"] == f"ModelUnavailableError: {raised.value}"
    assert Pool.open(pool.root).finished_commands() == []
