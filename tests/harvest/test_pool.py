"""The pool on disk: typed parts that survive bad values, clear errors for broken parts, one writer at a time."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from harvest.cli import app
from harvest.dedup_pool import DedupConfig, dedup_pool
from harvest.errors import PoolError
from harvest.local import LocalConfig, ingest_local
from harvest.pool import Pool
from tests.harvest.conftest import Reply

REPO = Path(__file__).resolve().parents[2]


def test_a_value_of_the_wrong_type_is_converted_or_nulled_and_the_other_rows_are_kept(tmp_path: Path) -> None:
    rows = [
        {"url": "https://a.org/1.jpg", "status": "ok", "width": 40, "found_by": ["s:q"], "rank": 1},
        {"url": 5, "status": "bad_url", "width": "big", "found_by": "s:q", "rank": "first"},
        {"url": ["https://a.org/3.jpg"], "status": "ok", "width": np.int64(2**40), "kept": "yes", "rank": None},
    ]
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows(rows)
    df = pool.read_index()
    assert df["url"].tolist() == ["https://a.org/1.jpg", "5", "['https://a.org/3.jpg']"]
    assert df["width"].tolist()[0] == 40 and df["width"].isna().tolist() == [False, True, True]  # 2**40 overflows int32
    assert [None if tags is None else list(tags) for tags in df["found_by"]] == [["s:q"], ["s:q"], None]
    assert df["kept"].isna().tolist() == [True, True, True]
    assert df["rank"].tolist()[:2] == ["1", "first"] and df["rank"].isna().iloc[2]  # mixed types: kept as text


def pool_with_rows(tmp_path: Path, n: int = 3) -> Pool:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows([{"url": f"https://a.org/{i}.jpg", "status": "http_404"} for i in range(n)])
    return pool


def damage_garbage(part: Path) -> None:
    part.write_bytes(b"x\n")


def damage_truncate(part: Path) -> None:
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])


def damage_drop_status(part: Path) -> None:
    pq.write_table(pa.table({"url": ["https://a.org/x.jpg"], "id": [None], "path": [None]}), part)


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (damage_garbage, "cannot be read as Parquet"),
        (damage_truncate, "cannot be read as Parquet"),
        (damage_drop_status, "it has no status column"),
    ],
)
def test_a_damaged_index_part_is_a_pool_error_naming_the_part_and_the_fix(tmp_path: Path, damage, what: str) -> None:
    pool = pool_with_rows(tmp_path)
    broken = pool.index_dir / "part-zzz-broken.parquet"
    pool.append_rows([{"url": "https://a.org/x.jpg", "status": "ok"}]).rename(broken)
    damage(broken)
    with pytest.raises(PoolError) as caught:
        pool.read_index()
    message = str(caught.value)
    assert str(broken) in message and what in message and "Move it out of" in message
    broken.rename(tmp_path / "aside.parquet")
    assert len(Pool.open(tmp_path / "pool").read_index()) == 3  # nothing else was lost


def test_report_and_dedup_on_a_damaged_part_fail_cleanly_naming_it(tmp_path: Path) -> None:
    pool = pool_with_rows(tmp_path)
    damage_garbage(pool.index_dir / "part-zzz-broken.parquet")
    for command in (["report", str(pool.root)], ["dedup", str(pool.root)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1, result.output
        assert "part-zzz-broken.parquetisdamaged" in "".join(result.output.split())  # rich wraps long paths
        assert not isinstance(result.exception, KeyError | pa.ArrowException)


def test_an_extra_column_whose_type_differs_between_parts_is_read_as_text(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows([{"url": "https://a.org/1.jpg", "status": "ok", "rank": 1}])
    pool.append_rows([{"url": "https://a.org/2.jpg", "status": "ok", "rank": "first"}])
    assert sorted(pool.read_index()["rank"]) == ["1", "first"]


def test_pandas_reads_every_column_of_every_part_whatever_order_the_stages_added_them(tmp_path: Path) -> None:
    # DESIGN: pandas.read_parquet(POOL / "index") reads the whole table, so every part carries every column.
    # A qbe run into a harvest local pool wrote similarity/rank only into its own part, and pandas, which takes
    # the columns of the first part, dropped them; a later local part lacked them again.
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows([{"url": "file:///a.jpg", "status": "ok"}])  # harvest local
    pool.append_rows([{"url": "https://b.org/b.jpg", "status": "ok", "similarity": 0.9, "rank": 1}])  # qbe
    pool.append_rows([{"url": "file:///c.jpg", "status": "ok"}])  # harvest local again
    df = pd.read_parquet(pool.index_dir)
    assert df["url"].tolist() == ["file:///a.jpg", "https://b.org/b.jpg", "file:///c.jpg"]
    assert df["similarity"].isna().tolist() == [True, False, True]
    assert df["similarity"].tolist()[1] == pytest.approx(0.9)
    assert len({tuple(pq.read_schema(part).names) for part in pool.part_files()}) == 1
    assert pool.read_index()["rank"].tolist()[1] == 1


def test_one_pool_object_sees_columns_a_rewrite_added_and_never_reads_a_part_footer_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long run appends part after part through one Pool: each footer is read once (the run stays linear), yet
    the columns a rewrite brought (dedup's dhash) reach the parts appended after it."""
    pool = Pool.create(tmp_path / "pool")
    read: list[str] = []
    real_read_schema = pq.read_schema
    monkeypatch.setattr(pq, "read_schema", lambda part: read.append(Path(part).name) or real_read_schema(part))
    for k in range(3):
        pool.append_rows([{"url": f"file:///{k}.jpg", "status": "ok"}])
    assert len(read) == len(set(read)) == 2  # the first append had no part to read
    df = pool.read_index()
    df["dhash"] = "00ff00ff00ff00ff"
    pool.rewrite(df)  # new part names: what was read of the old ones no longer counts
    pool.append_rows([{"url": "file:///3.jpg", "status": "ok"}])
    assert len(pool.part_files()) == 2  # the rewritten table, then the new part
    last = pd.read_parquet(pool.part_files()[-1])
    assert last["url"].tolist() == ["file:///3.jpg"] and last["dhash"].isna().all()
    assert pd.read_parquet(pool.index_dir)["dhash"].notna().tolist() == [True, True, True, False]


def one_picture_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 10)).save(buffer, "JPEG")
    (folder / "a.jpg").write_bytes(buffer.getvalue())
    return folder


def local_config(folder: Path, out: Path) -> LocalConfig:
    return LocalConfig(root=folder, out=out, workers=1, min_side=8, show_progress=False)


def test_a_writer_in_another_thread_fails_at_once_and_the_holder_can_still_write(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    folder = one_picture_folder(tmp_path)
    with pool.lock("dedup"), ThreadPoolExecutor(1) as other:
        with pytest.raises(PoolError, match="harvest dedup"):
            other.submit(ingest_local, local_config(folder, pool.root)).result()
        pool.append_rows([{"url": "https://a.org/1.jpg", "status": "http_404"}])  # re-entrant for the holder
    assert len(pool.read_index()) == 1  # the refused run wrote nothing
    assert ingest_local(local_config(folder, pool.root)).ok == 1  # once released, the next writer goes ahead


def test_commands_creating_one_new_pool_at_the_same_instant_make_one_pool_and_never_call_it_foreign(
    tmp_path: Path,
) -> None:
    def create_and_write(root: Path, barrier: threading.Barrier) -> str:
        barrier.wait()
        try:
            with Pool.create(root).lock("local"):
                return "wrote"
        except PoolError as e:
            return "busy" if "being written" in str(e) else f"wrong error: {e}"

    for trial in range(8):
        root, barrier = tmp_path / f"pool{trial}", threading.Barrier(6)
        with ThreadPoolExecutor(6) as threads:
            outcomes = list(threads.map(create_and_write, [root] * 6, [barrier] * 6))
        assert set(outcomes) <= {"wrote", "busy"} and "wrote" in outcomes, outcomes
        assert Pool.open(root).meta["commands"] == []


def test_a_folder_with_other_files_is_refused_and_gets_no_lock_file(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(PoolError, match="exists and is not a pool"):
        Pool.create(tmp_path / "photos")
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["holiday.jpg"]
    half_made = tmp_path / "half"  # what a creation killed before pool.json leaves: made into a pool on the next run
    (half_made / "index").mkdir(parents=True)
    (half_made / ".lock").write_text("")
    assert Pool.create(half_made).meta["commands"] == []


def test_a_read_during_a_rewrite_swap_waits_for_the_whole_new_table_instead_of_seeing_part_of_it(
    tmp_path: Path,
) -> None:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows([{"url": f"https://a.org/{i}.jpg", "status": "http_404"} for i in range(6)])
    new_rows = pd.DataFrame({"url": [f"https://b.org/{i}.jpg" for i in range(4)], "status": ["http_404"] * 4})
    swaps: list[Path] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Pool, "_swap_in", lambda self, staging: swaps.append(staging))  # stop once marked complete
        pool.rewrite(new_rows, rows_per_part=2)
    staging = swaps[0]
    for old in pool.part_files():  # the swap half done: the old part gone, the first of two new parts in place
        old.unlink()
    first_new = sorted(staging.glob("part-*.parquet"))[0]
    shutil.copy(first_new, pool.index_dir / first_new.name)
    finisher = threading.Timer(0.3, pool._swap_in, args=(staging,))  # the writer finishing its swap
    finisher.start()
    try:
        urls = sorted(Pool(pool.root).read_index()["url"])  # a reader: no lock, and no recovery on open
    finally:
        finisher.join()
    assert urls == sorted(new_rows["url"])


KEYWORDS_RUN = "from harvest.cli import app; app()"


@pytest.mark.parametrize("ending", ["finishes", "is killed"])
def test_a_second_command_on_a_pool_being_written_fails_naming_it_and_a_killed_writer_frees_the_pool(
    web, tmp_path: Path, ending: str
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def blocked_image(_request: object) -> Reply:
        arrived.set()
        release.wait(120)
        buffer = io.BytesIO()
        Image.new("RGB", (40, 30), (10, 40, 200)).save(buffer, "JPEG")
        return Reply(200, buffer.getvalue(), {"Content-Type": "image/jpeg"})

    image = web.route("/img/held.jpg", handler=blocked_image)
    page = {"pageid": 1, "title": "File:held.jpg", "index": 1, "imageinfo": [{"url": image, "mime": "image/jpeg"}]}
    api = web.route(
        "/w/api.php", body=json.dumps({"query": {"pages": [page]}}), headers={"Content-Type": "application/json"}
    )
    pool_dir = tmp_path / "pool"
    args = ["keywords", "--terms", "x", "--sources", "wikimedia", "--endpoint", f"wikimedia={api}", "--out",
            str(pool_dir), "--allow-private-hosts", "--min-side", "8", "--timeout", "120"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", KEYWORDS_RUN, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    try:
        assert arrived.wait(120), "the keywords run never asked for its image"
        folder = one_picture_folder(tmp_path)
        with pytest.raises(PoolError) as caught:
            ingest_local(local_config(folder, pool_dir))
        message = str(caught.value)
        assert f"pool {pool_dir} is being written by" in message and "harvest keywords" in message
        assert f"pid {child.pid}" in message
        with pytest.raises(PoolError, match="harvest keywords"):
            dedup_pool(DedupConfig(pool=pool_dir))
        if ending == "is killed":
            child.send_signal(signal.SIGKILL)
            child.wait()
        release.set()
        child.wait()
    finally:
        release.set()
        if child.poll() is None:
            child.kill()
        child.wait()
    rows_before = len(Pool.open(pool_dir).read_index())
    assert rows_before == (1 if ending == "finishes" else 0)
    assert ingest_local(local_config(folder, pool_dir)).ok == 1  # the lock died with its process
    assert len(Pool.open(pool_dir).read_index()) == rows_before + 1


def test_a_writing_run_removes_the_temporary_files_a_killed_run_left(tmp_path: Path) -> None:
    folder = one_picture_folder(tmp_path)
    pool = Pool.create(tmp_path / "pool")
    (pool.images_dir / "ab").mkdir()
    stale = [pool.images_dir / "ab" / f".ab{'0' * 62}.jpg.{'1' * 32}.tmp", pool.root / f".pool.json.{'2' * 32}.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    Pool.open(pool.root)  # a reader leaves them: it cannot know no writer is busy with them
    assert all(path.exists() for path in stale)
    assert ingest_local(local_config(folder, pool.root)).ok == 1
    assert not any(path.exists() for path in stale)
    stored = [p for p in pool.images_dir.rglob("*") if p.is_file()]
    assert len(stored) == 1 and not stored[0].name.startswith(".")


def test_storing_bytes_again_mends_a_stored_file_that_was_damaged_or_deleted(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    image_id, rel = pool.store_image(b"\xff\xd8\xff original bytes", "jpg")
    pool.path_of(rel).write_bytes(b"\xff\xd8\xff original byteZ")  # same length, one byte changed
    assert not pool.holds_intact(image_id, rel)
    assert pool.store_image(b"\xff\xd8\xff original bytes", "jpg") == (image_id, rel)
    assert pool.path_of(rel).read_bytes() == b"\xff\xd8\xff original bytes" and pool.holds_intact(image_id, rel)
    pool.path_of(rel).unlink()
    pool.store_image(b"\xff\xd8\xff original bytes", "jpg")
    assert pool.holds_intact(image_id, rel)


@pytest.mark.parametrize("path", ["../outside.jpg", "images/../../outside.jpg", "/etc/hostname", ""])
def test_a_row_path_leaving_the_pool_is_refused_and_dedup_marks_that_row_instead_of_reading_it(
    tmp_path: Path, path: str
) -> None:
    pool = Pool.create(tmp_path / "pool")
    with pytest.raises(PoolError, match="outside the pool"):
        pool.path_of(path)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "JPEG")
    (tmp_path / "outside.jpg").write_bytes(buf.getvalue())  # readable: a stage that followed the path would use it
    good_id, good_rel = pool.store_image(buf.getvalue(), "jpg")
    bad_id = "e" * 64
    pool.append_rows(
        [
            {"id": good_id, "url": "http://example.org/a.jpg", "status": "ok", "path": good_rel},
            {"id": bad_id, "url": "http://example.org/b.jpg", "status": "ok", "path": path},
        ]
    )
    dedup_pool(DedupConfig(pool=tmp_path / "pool"))
    rows = Pool.open(tmp_path / "pool").read_index().set_index("id")
    assert rows.loc[good_id, "kept"] == True  # noqa: E712 (a pandas boolean)
    assert rows.loc[bad_id, "status"] == "decode_error" and "outside the pool" in rows.loc[bad_id, "error"]
