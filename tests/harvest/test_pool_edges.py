"""Pool edges: kills in the middle of an append or a rewrite lose nothing, the lock is released for real, and odd
values never cost a row."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harvest.errors import PoolError
from harvest.pool import Pool, kept_and_unreviewed, sha256_hex
from harvest.pool_lock import holds


class Killed(Exception):
    """Stands in for the kill (SIGKILL, a full disk) that stops a write half-way."""


def pool_of(tmp_path: Path, urls: list[str]) -> Pool:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows([{"url": url, "status": "http_404"} for url in urls])
    return pool


def urls_of(pool: Pool) -> list[str]:
    return sorted(Pool.open(pool.root).read_index()["url"])


def test_an_append_killed_while_writing_its_part_leaves_the_table_readable_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = pool_of(tmp_path, ["https://a.org/1.jpg"])

    def half_written(table: object, where: str | Path, **_: object) -> None:
        Path(where).write_bytes(b"PAR1 half a part")
        raise Killed

    monkeypatch.setattr(pq, "write_table", half_written)
    with pytest.raises(Killed):
        pool.append_rows([{"url": "https://a.org/2.jpg", "status": "ok"}])
    monkeypatch.undo()
    assert urls_of(pool) == ["https://a.org/1.jpg"]  # the half-written part never had a part's name
    assert [p.name for p in pool.index_dir.iterdir() if p.name.startswith(".")] == []  # removed on the next open


def test_a_rewrite_killed_before_its_parts_are_all_written_is_dropped_and_the_old_table_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = pool_of(tmp_path, [f"https://a.org/{i}.jpg" for i in range(5)])
    real_write, written = pq.write_table, []

    def killed_on_the_second_part(table: object, where: str | Path, **kwargs: object) -> None:
        if written:
            raise Killed
        written.append(where)
        real_write(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", killed_on_the_second_part)
    new = pd.DataFrame({"url": [f"https://b.org/{i}.jpg" for i in range(4)], "status": ["ok"] * 4})
    with pytest.raises(Killed):
        pool.rewrite(new, rows_per_part=2)
    monkeypatch.undo()
    assert len(written) == 1 and (pool.index_dir / "_rewrite").is_dir()  # killed with one new part written
    assert urls_of(pool) == [f"https://a.org/{i}.jpg" for i in range(5)]
    assert not (pool.index_dir / "_rewrite").exists()


def test_a_rewrite_killed_after_marking_its_parts_complete_is_finished_by_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = pool_of(tmp_path, [f"https://a.org/{i}.jpg" for i in range(5)])
    new = pd.DataFrame({"url": [f"https://b.org/{i}.jpg" for i in range(3)], "status": ["ok"] * 3})
    monkeypatch.setattr(Pool, "_swap_in", lambda self, staging: None)  # killed right after the mark
    pool.rewrite(new, rows_per_part=2)
    monkeypatch.undo()
    assert urls_of(pool) == sorted(new["url"])
    assert not (pool.index_dir / "_rewrite").exists() and len(pool.part_files()) == 2


def test_opening_a_pool_leaves_the_staging_of_a_rewrite_that_another_writer_is_running(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, ["https://a.org/1.jpg"])
    staging = pool.index_dir / "_rewrite"
    staging.mkdir()
    (staging / "part-new-00000.parquet").write_bytes(b"being written")
    with pool.lock("dedup"), ThreadPoolExecutor(1) as reader:
        opened = reader.submit(Pool.open, pool.root).result()  # e.g. `harvest report` while dedup runs
        assert (staging / "part-new-00000.parquet").exists()
        assert sorted(opened.read_index()["url"]) == ["https://a.org/1.jpg"]


def lock_in_another_thread(pool: Pool, command: str) -> None:
    """Take the pool's lock in a second thread (and leave it there: the tests expect this to fail)."""
    with ThreadPoolExecutor(1) as other:
        other.submit(lambda: pool.lock(command).__enter__()).result()


def test_a_released_lock_is_taken_again_for_real(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, [])
    with pool.lock("local"):
        assert holds(pool.root)
    assert not holds(pool.root)
    with pool.lock("dedup"), pytest.raises(PoolError, match="harvest dedup"):
        lock_in_another_thread(pool, "filter")


def test_the_busy_message_names_the_current_holder_after_a_longer_record(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, [])
    with pool.lock("a command with a much longer name than the next one " * 3):
        pass
    with pool.lock("dedup"), pytest.raises(PoolError) as caught:
        lock_in_another_thread(pool, "filter")
    assert "harvest dedup" in str(caught.value) and "longer name" not in str(caught.value)
    assert json.loads((pool.root / ".lock").read_text())["command"] == "dedup"


def test_a_pool_of_another_format_version_is_refused_naming_both_versions(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, [])
    meta = pool.meta | {"version": 2}
    pool.meta_path.write_text(json.dumps(meta))
    with pytest.raises(PoolError, match="version 2; this crowdrank reads 'crowdrank-pool' version 1"):
        Pool.open(pool.root)


@pytest.mark.parametrize("damage", [b"[]", b'"pool"', b"", b"{bad", b"\xff\xfe\x00"])
def test_a_damaged_pool_json_is_named_with_its_repair_and_the_repair_works(tmp_path: Path, damage: bytes) -> None:
    pool = pool_of(tmp_path, ["http://x/a.jpg"])
    pool.meta_path.write_bytes(damage)
    with pytest.raises(PoolError, match="pool.json is damaged") as caught:
        Pool.open(pool.root)  # not an AttributeError or a UnicodeDecodeError with a traceback
    repair = str(caught.value).split("write ", 1)[1].split(" into it", 1)[0]
    pool.meta_path.write_text(repair)
    assert urls_of(pool) == ["http://x/a.jpg"]


def test_a_folder_whose_images_subfolder_holds_files_is_not_taken_for_a_half_made_pool(tmp_path: Path) -> None:
    (tmp_path / "mine" / "images").mkdir(parents=True)
    (tmp_path / "mine" / "images" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(PoolError, match="exists and is not a pool"):
        Pool.create(tmp_path / "mine")
    assert not (tmp_path / "mine" / "pool.json").exists()


def test_stored_bytes_go_once_under_their_sha256_in_a_two_digit_folder(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, [])
    data = b"\xff\xd8\xff some picture bytes"
    sha = sha256_hex(data)
    assert pool.store_image(data, ".JPG") == (sha, f"images/{sha[:2]}/{sha}.jpg")
    assert pool.store_image(data, "jpg") == (sha, f"images/{sha[:2]}/{sha}.jpg")
    assert pool.path_of(f"images/{sha[:2]}/{sha}.jpg").read_bytes() == data
    assert [p for p in pool.images_dir.rglob("*") if p.is_file()] == [pool.root / "images" / sha[:2] / f"{sha}.jpg"]


def test_kept_pictures_are_each_usable_picture_once(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, [])
    rows = [
        {"id": "a", "url": "u/a", "status": "ok", "path": "images/a", "kept": None},  # no stage decided yet
        {"id": "b", "url": "u/b", "status": "ok", "path": "images/b", "kept": True},
        {"id": "b", "url": "u/b-again", "status": "ok", "path": "images/b", "kept": True},  # the same bytes re-found
        {"id": "c", "url": "u/c", "status": "ok", "path": "images/c", "kept": False},
        {"id": "c", "url": "u/c-again", "status": "ok", "path": "images/c", "kept": None},  # a leak re-found later
        {"id": "f", "url": "u/f", "status": "ok", "path": "images/f", "kept": True},
        {"id": "f", "url": "u/f-copy", "status": "ok", "path": "images/f", "kept": False},  # dedup: dup_of itself
        {"id": "d", "url": "u/d", "status": "decode_error", "path": "images/d", "kept": None},
        {"id": None, "url": "u/e", "status": "ok", "path": None, "kept": None},
    ]
    pool.append_rows(rows)
    assert [row["url"] for row in kept_and_unreviewed(pool)[0]] == ["u/a", "u/b", "u/f"]  # only qbe-style marks so far
    pool.log_command(stage="dedup")
    # Once dedup (or filter) has run, a picture it did not judge (added later) waits for the next run.
    kept, unreviewed = kept_and_unreviewed(pool)
    assert [row["url"] for row in kept] == ["u/b", "u/f"] and [row["url"] for row in unreviewed] == ["u/a"]


@pytest.mark.parametrize("stage", ["dedup", "filter"])
def test_either_stage_alone_holds_back_the_pictures_it_has_not_judged(tmp_path: Path, stage: str) -> None:
    pool = pool_of(tmp_path, [])
    pool.append_rows([{"id": "a", "url": "u/a", "status": "ok", "path": "images/a", "kept": True}])
    pool.log_command(stage="qbe")  # not a stage that judges every picture
    pool.append_rows([{"id": "b", "url": "u/b", "status": "ok", "path": "images/b", "kept": None}])
    assert [row["url"] for row in kept_and_unreviewed(pool)[0]] == ["u/a", "u/b"]
    pool.log_command(stage=stage)
    kept, unreviewed = kept_and_unreviewed(pool)
    assert [row["url"] for row in kept] == ["u/a"] and [row["url"] for row in unreviewed] == ["u/b"]


def test_before_any_stage_judged_every_stored_picture_is_used_once(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, [])
    rows = [
        {"id": "a", "url": "u/a", "status": "ok", "path": "images/a"},
        {"id": "a", "url": "u/a-again", "status": "ok", "path": "images/a"},
        {"id": "b", "url": "u/b", "status": "ok", "path": "images/b"},
        {"id": "d", "url": "u/d", "status": "decode_error", "path": "images/d"},
    ]
    pool.append_rows(rows)
    assert [row["url"] for row in kept_and_unreviewed(pool)[0]] == ["u/a", "u/b"]
    assert kept_and_unreviewed(pool)[1] == []


def test_integer_columns_take_whole_numbers_in_range_and_null_the_rest(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, [])
    widths = [2**31 - 1, 2**31, -(2**31), 40.0, 2.5, True, " 12", "12px", np.int16(7)]
    pool.append_rows([{"url": f"u/{k}", "status": "ok", "width": w} for k, w in enumerate(widths)])
    read = pool.read_index()["width"]
    assert [None if pd.isna(w) else int(w) for w in read] == [2**31 - 1, None, -(2**31), 40, None, None, 12, None, 7]


def test_nan_from_a_pandas_frame_is_null_not_the_text_nan(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, [])
    frame = pd.DataFrame({"url": ["u/1", "u/2"], "status": ["ok", "ok"], "title": [np.nan, "Square"]})
    frame["author"] = [float("nan"), "Ann"]
    pool.append_rows(frame)
    df = pool.read_index().set_index("url")
    assert pd.isna(df.loc["u/1", "title"]) and pd.isna(df.loc["u/1", "author"])
    assert df.loc["u/2", "title"] == "Square"


def test_a_part_written_by_another_tool_is_read_in_the_declared_types(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, ["https://a.org/1.jpg"])
    foreign = pa.table(
        {
            "id": [None],
            "url": ["https://a.org/2.jpg"],
            "status": ["ok"],
            "path": [None],
            "width": pa.array([40], pa.int64()),  # pandas' default integer
            "height": ["30"],  # a hand-edited CSV turned Parquet
            "kept": ["true"],
        }
    )
    pq.write_table(foreign, pool.index_dir / "part-zz-foreign.parquet")
    row = pool.read_index().set_index("url").loc["https://a.org/2.jpg"]
    assert (row["width"], row["height"], row["kept"]) == (40, 30, True)
    bad = foreign.set_column(foreign.column_names.index("width"), "width", pa.array(["big"]))
    pq.write_table(bad, pool.index_dir / "part-zz-foreign.parquet")
    with pytest.raises(PoolError, match="its width column holds string, not int32"):
        pool.read_index()


def test_extra_columns_that_agree_keep_their_type_when_another_extra_column_disagrees(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, [])
    pool.append_rows([{"url": "u/1", "status": "ok", "rank": 1, "note": 5}])
    pool.append_rows([{"url": "u/2", "status": "ok", "rank": 2, "note": "five"}])
    df = pool.read_index().set_index("url")
    assert df["rank"].tolist() == [1, 2] and df["note"].tolist() == ["5", "five"]


@pytest.mark.parametrize("moved", [0, 1, 2])
def test_a_swap_killed_after_moving_some_new_parts_in_is_finished_by_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moved: int
) -> None:
    """Killed after ``moved`` of the two new parts were renamed into the index (2: only the staging folder was left to
    remove): the next open must finish the swap and keep the new parts already moved in, not take them for old ones."""
    pool = pool_of(tmp_path, [f"https://a.org/{i}.jpg" for i in range(5)])
    real_replace, real_rmtree, renamed = os.replace, shutil.rmtree, []

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(src).parent.name == "_rewrite" and Path(src).name.startswith("part-"):
            if len(renamed) == moved:
                raise Killed
            renamed.append(src)
        real_replace(src, dst)

    def rmtree(path: str | Path, *args: object, **kwargs: object) -> None:
        if Path(path).name == "_rewrite":
            raise Killed
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    new = pd.DataFrame({"url": [f"https://b.org/{i}.jpg" for i in range(4)], "status": ["ok"] * 4})
    with pytest.raises(Killed):
        pool.rewrite(new, rows_per_part=2)
    monkeypatch.undo()
    assert len(renamed) == moved
    assert urls_of(pool) == sorted(new["url"])
    assert not (pool.index_dir / "_rewrite").exists() and len(pool.part_files()) == 2


def test_a_complete_rewrite_marked_by_an_older_crowdrank_is_still_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = pool_of(tmp_path, ["https://a.org/1.jpg"])
    monkeypatch.setattr(Pool, "_swap_in", lambda self, staging: None)
    pool.rewrite(pd.DataFrame({"url": ["https://b.org/1.jpg"], "status": ["ok"]}))
    monkeypatch.undo()
    (pool.index_dir / "_rewrite" / "_COMPLETE").write_text("2024-05-01T10:00:00+00:00")  # a bare time, no part list
    assert urls_of(pool) == ["https://b.org/1.jpg"]


def test_a_file_given_as_the_pool_folder_is_a_pool_error_and_stays_untouched(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(PoolError, match="notes.txt is a file, not a folder"):
        Pool.create(notes)
    with pytest.raises(PoolError, match="cannot make the pool folder .*notes.txt/pool"):
        Pool.create(notes / "pool")
    assert notes.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_read_only_pool_is_read_without_recovery_and_refused_to_writers_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tests may run as root, which ignores permissions, so the read-only folder is an ``open`` that refuses."""
    import builtins

    from harvest import pool_lock

    pool = pool_of(tmp_path, ["https://a.org/1.jpg"])

    def read_only_open(path: str | Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        if Path(path).name == ".lock":
            raise PermissionError(13, "Read-only file system", str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(pool_lock, "open", read_only_open, raising=False)
    assert urls_of(pool) == ["https://a.org/1.jpg"]  # `harvest report`, `rankset build`
    with pytest.raises(PoolError, match="cannot take the writer lock .*Read-only file system"):
        pool.append_rows([{"url": "https://a.org/2.jpg", "status": "ok"}])


LOCK_HOLDER_WITH_A_WORKER = """
import sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from harvest.pool import Pool

pool = Pool.create(sys.argv[1])
with pool.lock("dedup"):
    executor = ProcessPoolExecutor(max_workers=1, mp_context=get_context("fork"))  # as hash_files forks its workers
    executor.submit(time.sleep, 0).result()
    (worker,) = executor._processes  # a forked worker stays, waiting for work, after its parent is killed
    print(worker, flush=True)
    time.sleep(600)
"""


def test_a_run_killed_while_its_forked_workers_live_does_not_leave_the_pool_locked(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo))
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER_WITH_A_WORKER, str(tmp_path / "pool")], env=env, stdout=subprocess.PIPE
    )
    worker = int(holder.stdout.readline())
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        os.kill(worker, 0)  # the worker outlives its parent (raises if it is gone)
        with Pool.open(tmp_path / "pool").lock("filter"):  # was: "pool is being written by harvest dedup"
            pass
    finally:
        os.kill(worker, signal.SIGKILL)
        holder.stdout.close()


@pytest.mark.parametrize("folder", ["index", "images"])
def test_a_file_where_a_pool_subfolder_belongs_is_a_pool_error_naming_it(tmp_path: Path, folder: str) -> None:
    """Opening the pool made the folder with mkdir(exist_ok=True), whose FileExistsError ended in a traceback."""
    pool = Pool.create(tmp_path / "pool")
    shutil.rmtree(pool.root / folder)
    (pool.root / folder).write_text("not a folder")
    with pytest.raises(PoolError, match=f"{folder} must be a folder of the pool"):
        Pool.open(pool.root)


def test_a_declared_column_that_no_part_holds_is_read_as_nulls(tmp_path: Path) -> None:
    """A pool whose only part lacks optional columns (written by another tool) ended in a KeyError traceback in
    harvest dedup and filter, which read width, height, bytes, phash ... by name."""
    pool = pool_of(tmp_path, [])
    minimal = pa.table({"id": [None], "url": ["https://a.org/2.jpg"], "status": ["not_image"], "path": [None]})
    pq.write_table(minimal, pool.index_dir / "part-zz-minimal.parquet")
    df = pool.read_index()
    assert {"width", "height", "bytes", "phash", "kept", "dup_of"} <= set(df.columns)
    assert df["width"].isna().all() and len(df) == 1
    from harvest.dedup_pool import DedupConfig, dedup_pool

    dedup_pool(DedupConfig(pool=pool.root, workers=1))
