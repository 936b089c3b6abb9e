"""Dedup decisions on chosen hashes: which copy is kept, how leaks spread through a group, both thresholds, and
the ``kept`` rule shared with the filter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harvest import leakage
from harvest.decisions import LOST_FILE, kept_mask, mark_decode_failures, mark_lost_files
from harvest.dedup_pool import DedupConfig, dedup_pool
from harvest.errors import ConfigError
from harvest.hashing import image_hashes, uint64_to_hex
from harvest.leakage import ExclusionSet, find_leaks, load_exclusion_set
from harvest.pool import Pool
from harvest.writer import lost_pictures
from tests.harvest.imagegen import add_pictures, edited_copies, encode, scene, write_folder

FAR = 0xFFFF_FFFF_0000_0000  # 32 bits from 0 and from any hash of the low 32 bits: never near them


def hashed_pool(tmp_path: Path, pictures: dict[str, tuple[int, int, int, int, int]]) -> Pool:
    """A pool whose rows already carry pHash and dHash (name -> phash, dhash, width, height, bytes): dedup groups
    them without decoding, so each test picks its distances bit by bit."""
    pool = Pool.create(tmp_path / "pool")
    rows = []
    for name, (phash, dhash, width, height, size) in pictures.items():
        # never decoded (the hashes are stored); as long as the index says, or dedup takes the file for lost
        assert len(name) <= size, f"{name}: a stored file of {size} bytes cannot hold its name"
        image_id, path = pool.store_image(name.encode().ljust(size, b"."), "jpg")
        rows.append({"id": image_id, "url": f"file:///{name}.jpg", "status": "ok", "path": path, "width": width,
                     "height": height, "bytes": size, "phash": uint64_to_hex([phash])[0],
                     "dhash": uint64_to_hex([dhash])[0]})  # fmt: skip
    pool.append_rows(rows)
    return pool


def by_name(pool: Pool) -> pd.DataFrame:
    df = pool.read_index()
    return df.assign(name=[url.removeprefix("file:///").removesuffix(".jpg") for url in df["url"]]).set_index("name")


def run(pool: Pool, **options: object) -> None:
    dedup_pool(DedupConfig(pool.root, progress=False, workers=1, **options))  # type: ignore[arg-type]


def test_the_largest_picture_is_kept_before_the_one_with_most_bytes(tmp_path: Path) -> None:
    pool = hashed_pool(
        tmp_path,
        {
            "big-but-light": (0, 0, 800, 600, 10_000),
            "small-but-heavy": (0b11, 0, 400, 300, 90_000),
            "same-size-lighter": (0b101, 0, 800, 600, 9_000),
        },
    )
    run(pool)
    df = by_name(pool)
    assert df.loc["big-but-light", "kept"] and pd.isna(df.loc["big-but-light", "dup_of"])
    for name in ("small-but-heavy", "same-size-lighter"):
        assert df.loc[name, "dup_of"] == df.loc["big-but-light", "id"] and not df.loc[name, "kept"]


def test_the_dhash_threshold_is_its_own_and_defaults_to_the_phash_threshold(tmp_path: Path) -> None:
    pool = hashed_pool(tmp_path, {"a": (0, 0, 100, 100, 10), "b": (0b1, 0b11_1111, 90, 90, 10)})  # dHash 6 bits off
    run(pool, threshold=8)
    assert by_name(pool).loc["b", "dup_of"] == by_name(pool).loc["a", "id"]
    run(pool, threshold=8, dhash_threshold=5)
    assert by_name(pool)["dup_of"].isna().all() and by_name(pool)["kept"].all()


def test_a_leak_found_through_one_member_marks_the_whole_group_and_its_kept_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """a - b - c are a chain of copies (6 bits a step, a and c 12 apart); the evaluation image is near c alone, yet
    a, the largest and so the kept picture, is the same photo and must not be trained on."""
    a, b, c = 0, 0b11_1111, 0b1111_1111_1111
    evaluation = c ^ 0xF000  # 4 bits from c, 10 from b, 16 from a
    pool = hashed_pool(
        tmp_path,
        {"a": (a, 0, 400, 300, 10), "b": (b, 0, 200, 150, 10), "c": (c, 0, 100, 75, 10), "other": (FAR, FAR, 9, 9, 9)},
    )
    exclusions = ExclusionSet(["IMG_9"], np.array([evaluation], np.uint64), np.array([0], np.uint64))
    monkeypatch.setattr(leakage, "load_exclusion_set", lambda spec, workers=0: exclusions)
    run(pool, threshold=8, exclude_like=("eval",))
    df = by_name(pool)
    assert df.loc[["a", "b", "c"], "leak_of"].tolist() == ["IMG_9"] * 3
    assert not df.loc[["a", "b", "c"], "kept"].any() and df.loc["other", "kept"]


def test_a_leak_names_the_closest_evaluation_image_not_the_last_one_matched() -> None:
    pool_hash = np.array([0], np.uint64)
    exclusions = ExclusionSet(["near", "farther"], np.array([0b1, 0b1111], np.uint64), np.zeros(2, np.uint64))
    assert find_leaks(pool_hash, pool_hash, exclusions, 10, 10) == {0: "near"}
    swapped = ExclusionSet(["farther", "near"], exclusions.phash[::-1].copy(), exclusions.dhash)
    assert find_leaks(pool_hash, pool_hash, swapped, 10, 10) == {0: "near"}


def test_evaluation_folders_take_upper_case_suffixes_and_report_undecodable_pictures(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "eval", {"IMG_1": scene(1, 64, 48)})
    (folder / "IMG_1.jpg").rename(folder / "IMG_1.JPG")  # as cameras name them
    (folder / "IMG_2.jpeg").write_bytes(encode(scene(2, 64, 48))[:100])
    (folder / "notes.txt").write_text("not evaluated")
    loaded = load_exclusion_set(folder, workers=1)
    assert loaded.keys == ["eval/IMG_1"] and list(loaded.failures) == ["eval/IMG_2"]


def test_kept_needs_stored_bytes_and_no_mark_and_unscored_rows_pass_the_clip_test() -> None:
    df = pd.DataFrame(
        {
            "status": ["ok", "ok", "ok", "ok", "ok", "ok", "timeout"],
            "id": ["a", "b", "c", "d", "e", "f", None],
            "path": ["p", "p", "p", None, "p", "p", None],
            "dup_of": [None, "a", None, None, None, None, None],
            "leak_of": [None, None, "IMG_1", None, None, None, None],
            "clip_kept": [True, True, True, True, None, False, None],  # e: added after the last filter run
        }
    )
    assert kept_mask(df).tolist() == [True, False, False, False, True, False, False]


def test_an_exact_duplicate_count_leaves_out_failed_rows_with_a_known_id(tmp_path: Path) -> None:
    pool = hashed_pool(tmp_path, {"a": (0, 0, 100, 100, 10)})
    row = pool.read_index().iloc[0]
    pool.append_rows([{"id": row["id"], "url": "http://b/a-again.jpg", "status": "ok", "path": row["path"]},
                      {"id": row["id"], "url": "http://b/a-cut.jpg", "status": "truncated"}])  # fmt: skip
    summary = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    df = pool.read_index().set_index("url")
    assert summary.exact_duplicate_rows == 1 and df.loc["http://b/a-again.jpg", "dup_of"] == row["id"]
    assert pd.isna(df.loc["http://b/a-cut.jpg", "dup_of"]) and summary.kept == 1


def test_thresholds_take_the_whole_documented_range() -> None:
    for bits in (0, 32):
        assert DedupConfig(Path("p"), threshold=bits, dhash_threshold=bits).dhash_bits == bits
    for flag, options in (("--threshold", {"threshold": 33}), ("--dhash-threshold", {"dhash_threshold": 33})):
        with pytest.raises(ConfigError, match=f"{flag} 33 is out of range"):
            DedupConfig(Path("p"), **options)  # type: ignore[arg-type]


def test_a_picture_with_a_stored_phash_but_no_dhash_is_hashed_again_and_grouped(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    ids = add_pictures(pool, {"big": scene(0), "small": edited_copies(scene(0))["resized"]})
    df = pool.read_index()
    df["phash"] = [image_hashes(scene(0))[0]] * 2  # an older run stored pHash alone
    pool.rewrite(df)
    summary = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    after = pool.read_index().set_index("id")
    assert summary.hashed == 2 and after["dhash"].notna().all()
    assert after.loc[ids["small"], "dup_of"] == ids["big"]


def test_an_undecodable_stored_file_gets_status_decode_error_and_the_reason(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    image_id, path = pool.store_image(b"\xff\xd8\xff\xe0 not really a jpeg", "jpg")
    pool.append_rows([{"id": image_id, "url": "http://b/broken.jpg", "status": "ok", "path": path}])
    summary = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    row = pool.read_index().iloc[0]
    assert (row["status"], row["error"], row["kept"]) == ("decode_error", summary.failures[image_id], False)
    assert row["error"].startswith(("UnidentifiedImageError", "OSError", "SyntaxError"))


def test_the_pool_itself_or_a_folder_holding_it_is_refused_as_the_evaluation_set(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pools" / "keyword")
    add_pictures(pool, {"a": scene(1, 64, 48)})
    for spec in (pool.root, pool.root / "images", tmp_path / "pools"):
        with pytest.raises(ConfigError, match=f"--exclude-like {spec} holds the pool's own pictures"):
            DedupConfig(pool.root, exclude_like=(str(spec),))
    evaluation = tmp_path / "sha-test"
    evaluation.mkdir()
    assert DedupConfig(pool.root, exclude_like=(str(evaluation), "user/hub-dataset")).exclude_like  # others pass


def test_a_decode_error_picture_whose_file_is_put_back_is_judged_again_and_keeps_its_leak_mark(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    ids = add_pictures(pool, {"crowd": scene(1), "leak": scene(2), "other": scene(3)})
    evaluation = write_folder(tmp_path / "eval", {"test7": edited_copies(scene(2))["resized"]})
    run(pool, exclude_like=(str(evaluation),))
    files = {name: pool.path_of(by_name(pool).loc[name, "path"]) for name in ("crowd", "leak")}
    backup = {name: path.read_bytes() for name, path in files.items()}
    files["crowd"].unlink()
    files["leak"].write_bytes(backup["leak"][:100])
    # What `harvest filter` does when it cannot embed them (dedup reuses the stored hashes and reads no file).
    failed = {ids["crowd"]: "missing", ids["leak"]: "cut short"}
    pool.rewrite(mark_decode_failures(pool.read_index(), failed, pool.holds_intact))
    run(pool)  # no --exclude-like this time
    df = by_name(pool)
    assert list(df.loc[["crowd", "leak"], "status"]) == ["decode_error", "decode_error"]
    assert df.loc["leak", "leak_of"] == "eval/test7"  # the mark outlives the damage
    assert df.loc["crowd", "error"] == "stored file missing or damaged: missing"

    for name, path in files.items():
        path.write_bytes(backup[name])  # put back from a backup
    summary = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    df = by_name(pool)
    assert (summary.revived, summary.decode_failures) == (2, 0)
    assert list(df["status"]) == ["ok", "ok", "ok"] and df["error"].isna().all()
    assert df.loc["crowd", "kept"] and df.loc["crowd", "phash"] is not None
    assert df.loc["leak", "leak_of"] == "eval/test7" and not df.loc["leak", "kept"]
    assert ids["leak"] == df.loc["leak", "id"]


def test_a_decode_error_picture_whose_file_is_still_damaged_stays_a_failure(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    add_pictures(pool, {"a": scene(1), "b": scene(2)})
    path = pool.path_of(by_name(pool).loc["a", "path"])
    path.write_bytes(b"\xff\xd8\xff damaged")
    run(pool)
    assert by_name(pool).loc["a", "status"] == "decode_error"
    summary = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    df = by_name(pool)
    assert df.loc["a", "status"] == "decode_error" and not df.loc["a", "kept"] and summary.revived == 0


def test_a_picture_deleted_after_dedup_is_no_longer_kept_and_retry_failed_will_fetch_it(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    add_pictures(pool, {"gone": scene(1), "stays": scene(2)})
    run(pool)
    path = pool.path_of(by_name(pool).loc["gone", "path"])
    backup = path.read_bytes()
    path.unlink()  # after its hashes were stored: the next dedup decodes nothing
    summary = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    df = by_name(pool)
    assert (df.loc["gone", "status"], bool(df.loc["gone", "kept"]), summary.hashed) == ("decode_error", False, 0)
    assert df.loc["gone", "error"].startswith(f"{LOST_FILE}: {df.loc['gone', 'path']} is gone")
    assert summary.lost_files == 1 and "--retry-failed" in summary.notes()[0]
    assert lost_pictures(pool) == {"file:///gone.jpg"} and df.loc["stays", "kept"]

    again = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))  # counted once, when found
    assert (again.lost_files, again.notes()) == (0, [])
    path.write_bytes(backup)
    back = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    assert back.revived == 1 and by_name(pool).loc["gone", "kept"] and by_name(pool)["status"].eq("ok").all()


def test_a_stored_file_replaced_by_bytes_of_another_size_is_taken_for_lost(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    add_pictures(pool, {"replaced": scene(1), "stays": scene(2)})
    run(pool)
    row = by_name(pool).loc["replaced"]
    pool.path_of(row["path"]).write_bytes(encode(scene(7)))  # another picture under this one's name
    summary = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    df = by_name(pool)
    assert summary.lost_files == 1 and df.loc["replaced", "status"] == "decode_error" and not df.loc["replaced", "kept"]
    assert f"not the {row['bytes']:,} stored" in df.loc["replaced", "error"]


def test_a_stored_file_of_unknown_size_is_lost_only_when_it_is_gone() -> None:
    df = pd.DataFrame(
        {"id": ["a", "b", "c"], "status": ["ok", "ok", "http_404"], "path": ["p/a", "p/b", None], "error": None}
    )
    seen: list[tuple[str, int | None]] = []

    def problem(path: str, size: int | None) -> str | None:
        seen.append((path, size))
        return f"{path} is gone" if path == "p/b" else None

    df, lost = mark_lost_files(df, problem)
    assert lost == 1 and seen == [("p/a", None), ("p/b", None)]  # no bytes column: existence alone; failed rows skipped
    assert df["status"].tolist() == ["ok", "decode_error", "http_404"]


def test_cli_dedup_names_the_fix_for_lost_pictures(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harvest.cli import app

    pool = Pool.create(tmp_path / "pool")
    add_pictures(pool, {"gone": scene(1), "stays": scene(2)})
    run(pool)
    pool.path_of(by_name(pool).loc["gone", "path"]).unlink()
    result = CliRunner().invoke(app, ["dedup", str(pool.root)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "1 row(s) lost their stored picture" in result.output and "--retry-failed" in result.output


@pytest.mark.parametrize("guard_ran", [True, False])
def test_clear_leaks_on_a_pool_without_leak_by_keeps_only_marks_qbes_guard_may_have_made(
    tmp_path: Path, guard_ran: bool
) -> None:
    pool = Pool.create(tmp_path / "pool")
    add_pictures(pool, {"fetched-by-qbe": scene(1)}, mode="qbe")
    add_pictures(pool, {"from-a-folder": scene(2)})
    df = pool.read_index()  # marks as a crowdrank without the leak_by column left them
    df["leak_of"], df["kept"] = ["shb/IMG_1", "eval/IMG_2"], False
    pool.rewrite(df)
    if guard_ran:
        pool.log_command(command="qbe", leakage_guard=["shb"])
    summary = dedup_pool(DedupConfig(pool.root, clear_leaks=True, progress=False, workers=1))
    df = by_name(pool)
    assert pd.isna(df.loc["from-a-folder", "leak_of"]) and df.loc["from-a-folder", "kept"]  # dedup's, whatever ran
    assert (df.loc["fetched-by-qbe", "leak_of"] == "shb/IMG_1") is guard_ran
    assert (summary.leaks_cleared, summary.leaks_kept_guard) == ((1, 1) if guard_ran else (2, 0))


def test_cli_dedup_clear_all_leaks_is_wired_and_says_what_it_cleared(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harvest.cli import app

    pool = Pool.create(tmp_path / "pool")
    add_pictures(pool, {"a": scene(1)}, mode="qbe", leak_of="shb/IMG_1", leak_by="qbe", kept=False)
    result = CliRunner().invoke(app, ["dedup", str(pool.root), "--clear-all-leaks"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--clear-all-leaks cleared 1 earlier leak_of mark(s) and kept 0" in result.output
    assert by_name(pool).loc["a", "kept"] and pool.meta["commands"][-1]["clear_all_leaks"] is True


def test_dedup_of_a_pool_without_rows_reports_nothing_to_do(tmp_path: Path) -> None:
    """`harvest local` of an empty folder makes such a pool; dedup ended in a TypeError traceback from pandas (`&` of
    two empty string-typed masks in leak_mark_origins)."""
    pool = Pool.create(tmp_path / "pool")
    summary = dedup_pool(DedupConfig(pool=pool.root, workers=1))
    assert pool.read_index().empty and summary.kept == 0


def test_a_stored_picture_written_over_by_other_bytes_of_the_same_size_is_caught_by_the_next_run(
    tmp_path: Path,
) -> None:
    """The size check alone took it on trust (its stored hashes and cached embeddings): a file modified since the
    last dedup/filter run began is hashed again and compared with the sha256 in its name."""
    pool = Pool.create(tmp_path / "pool")
    ids = add_pictures(pool, {"a": scene(1), "b": scene(2)})
    assert dedup_pool(DedupConfig(pool=pool.root, workers=1)).lost_files == 0
    assert pool.files_checked_from() is not None
    stored = pool.path_of(pool.image_relpath(ids["a"], "jpg"))
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed: the same size, other bytes
    stored.write_bytes(bytes(data))
    summary = dedup_pool(DedupConfig(pool=pool.root, workers=1))
    df = pool.read_index().set_index("id")
    assert summary.lost_files == 1
    assert df.loc[ids["a"], "status"] == "decode_error" and "written over" in df.loc[ids["a"], "error"]
    assert df.loc[ids["b"], "status"] == "ok"


def test_an_overwrite_that_puts_the_old_mtime_back_is_caught_by_its_ctime(tmp_path: Path) -> None:
    """``cp -p`` or ``touch -d`` after an overwrite restores the old mtime, so a check of mtime alone took the new
    bytes on trust; no user call sets ctime, which the check now reads too."""
    import os
    import time

    pool = Pool.create(tmp_path / "pool")
    ids = add_pictures(pool, {"a": scene(1), "b": scene(2)})
    stored = pool.path_of(pool.image_relpath(ids["a"], "jpg"))
    old = time.time() - 3600  # an hour before the first check, far outside its slack
    for path in (stored, pool.path_of(pool.image_relpath(ids["b"], "jpg"))):
        os.utime(path, (old, old))
    assert dedup_pool(DedupConfig(pool=pool.root, workers=1)).lost_files == 0
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    os.utime(stored, (old, old))  # what cp -p does after writing
    assert stored.stat().st_mtime < pool.files_checked_from() - 60
    summary = dedup_pool(DedupConfig(pool=pool.root, workers=1))
    df = pool.read_index().set_index("id")
    assert summary.lost_files == 1 and df.loc[ids["a"], "status"] == "decode_error"
    assert df.loc[ids["b"], "status"] == "ok"


def test_an_evaluation_picture_whose_name_is_not_utf8_marks_its_copy_with_a_storable_key(tmp_path: Path) -> None:
    """The surrogate-escaped name went into leak_of and dedup ended in a UnicodeEncodeError traceback from pyarrow
    when it rewrote the index (which stayed as it was)."""
    import os

    pool = Pool.create(tmp_path / "pool")
    ids = add_pictures(pool, {"a": scene(1)})
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9.jpg")).write_bytes(encode(scene(1)))  # a Latin-1 name
    dedup_pool(DedupConfig(pool=pool.root, exclude_like=(str(folder),), workers=1))
    assert pool.read_index().set_index("id").loc[ids["a"], "leak_of"] == "eval/caf\\xe9"


def test_clear_leaks_counts_only_marks_not_made_again_and_its_table_row_says_so(tmp_path: Path) -> None:
    """A mark --clear-leaks cleared and this run's --exclude-like made again is not counted: the summary showed
    "earlier leak_of marks cleared 0" for a pool whose one mark had been cleared and re-made, which read as a bug."""
    from rich.console import Console

    pool = Pool.create(tmp_path / "pool")
    add_pictures(pool, {"a": scene(1), "b": scene(2)})
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "IMG_1.jpg").write_bytes(encode(scene(1)))  # a copy of a
    dedup_pool(DedupConfig(pool.root, exclude_like=(str(evaluation),), workers=1, progress=False))
    assert by_name(pool).loc["a", "leak_of"] == "eval/IMG_1"
    summary = dedup_pool(
        DedupConfig(pool.root, exclude_like=(str(evaluation),), clear_leaks=True, workers=1, progress=False)
    )
    assert by_name(pool).loc["a", "leak_of"] == "eval/IMG_1" and summary.leaks_cleared == 0
    console = Console(record=True, width=200)
    console.print(summary.table())
    line = next(line for line in console.export_text().splitlines() if "earlier leak_of marks" in line)
    assert "less those made again" in line and line.rstrip(" │|").endswith("0")
