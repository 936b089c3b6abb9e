"""harvest local: a folder of pictures into the pool, with the downloader's checks; a rerun ingests nothing twice."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from harvest import local as local_module
from harvest.cli import app
from harvest.errors import ConfigError
from harvest.local import LocalConfig, ingest_local, iter_picture_files, read_sidecar
from harvest.pool import Pool


def encode(size: tuple[int, int], fmt: str = "JPEG", color: tuple[int, int, int] = (90, 120, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB" if fmt != "PNG-L" else "L", size, color if fmt != "PNG-L" else 0).save(
        buffer, "PNG" if fmt == "PNG-L" else fmt
    )
    return buffer.getvalue()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder with good pictures, a copy, faults, sidecars and a hidden file."""
    root = tmp_path / "photos"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "one.jpg").write_bytes(encode((40, 30)))
    (root / "a" / "one.jpg.json").write_text(
        json.dumps({"license": "CC BY 4.0", "author": "Ann", "title": "Square", "source_url": "https://example.org/1"})
    )
    (root / "copy-of-one.jpg.json").write_text(
        json.dumps({"license_url": "https://creativecommons.org/publicdomain/zero/1.0/", "author": "Ann"})
    )
    (root / "a" / "b" / "two.png").write_bytes(encode((32, 32), "PNG"))
    (root / "a" / "b" / "two.png.json").write_text("{not json")
    (root / "copy-of-one.jpg").write_bytes(encode((40, 30)))
    (root / "notes.txt").write_text("not a picture")
    (root / "counts.csv").write_text("image,count\none.jpg,12\n")  # annotations beside the pictures
    (root / "a" / "GT_one.MAT").write_bytes(b"MATLAB 5.0 MAT-file")
    (root / "fake.jpg").write_text("a picture's name, not a picture's bytes")
    (root / "cut.jpg").write_bytes(encode((64, 64), color=(1, 200, 3))[:200])
    (root / "tiny.jpg").write_bytes(encode((8, 8)))
    (root / "bomb.png").write_bytes(encode((1500, 1500), "PNG-L"))
    (root / ".hidden.jpg").write_bytes(encode((40, 30)))
    return root


def config(root: Path, out: Path, **overrides: object) -> LocalConfig:
    settings: dict[str, object] = dict(workers=2, min_side=16, max_pixels=1_000_000, show_progress=False)
    settings.update(overrides)
    return LocalConfig(root=root, out=out, **settings)  # type: ignore[arg-type]


def by_name(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(name=[Path(url).name for url in df["url"]]).set_index("name")


def test_local_ingests_every_file_with_the_right_status(photos: Path, tmp_path: Path) -> None:
    summary = ingest_local(config(photos, tmp_path / "pool"))
    df = by_name(pd.read_parquet(tmp_path / "pool" / "index"))
    expected = {
        "one.jpg": "ok",
        "two.png": "ok",
        "copy-of-one.jpg": "ok",
        "fake.jpg": "not_image",
        "cut.jpg": "truncated",
        "tiny.jpg": "too_small",
        "bomb.png": "decompression_bomb",
    }
    assert df["status"].to_dict() == expected
    assert summary.rows == 7 and summary.ok == 3
    # The annotations and sidecars are no failure rows: the summary says they were seen and left out.
    assert summary.notes[-1] == "skipped 6 non-picture files (1 .csv, 3 .json, 1 .mat, 1 .txt): no rows"
    assert set(df["source"]) == {"local"} and set(df["mode"]) == {"local"}
    assert df.loc["one.jpg", "url"] == (photos / "a" / "one.jpg").resolve().as_uri()
    assert list(df.loc["one.jpg", "found_by"]) == [f"local:{photos.resolve()}"]


def test_symlink_loops_pipes_and_devices_are_rows_and_nothing_blocks(tmp_path: Path) -> None:
    root = tmp_path / "special"
    root.mkdir()
    (root / "good.jpg").write_bytes(encode((40, 30)))
    (root / "selfloop.jpg").symlink_to("selfloop.jpg")
    (root / "null.jpg").symlink_to("/dev/null")
    os.mkfifo(root / "pipe.jpg")
    outcome: list[object] = []
    run = threading.Thread(target=lambda: outcome.append(ingest_local(config(root, tmp_path / "pool"))), daemon=True)
    run.start()
    run.join(60)
    if run.is_alive():  # the old code blocks opening the FIFO: give it a writer so the test ends, then fail
        with open(root / "pipe.jpg", "wb"):
            pass
        run.join()
        pytest.fail("harvest local blocked on a FIFO")
    df = by_name(pd.read_parquet(tmp_path / "pool" / "index"))
    assert df["status"].to_dict() == {
        "good.jpg": "ok",
        "selfloop.jpg": "unreadable",
        "null": "not_a_file",  # a symlink's row has the URI of its target
        "pipe.jpg": "not_a_file",
    }
    assert "a named pipe (FIFO), not a regular file" in df.loc["pipe.jpg", "error"]
    assert "a character device" in df.loc["null", "error"]
    assert "symbolic links" in df.loc["selfloop.jpg", "error"]


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc")
def test_a_file_longer_than_its_st_size_says_is_read_only_up_to_max_bytes(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    root.mkdir()
    (root / "maps.jpg").symlink_to("/proc/self/maps")  # st_size 0, a few KB of text
    ingest_local(config(root, tmp_path / "pool", max_bytes=1024))
    row = pd.read_parquet(tmp_path / "pool" / "index").iloc[0]
    assert row["status"] == "too_large" and "--max-bytes 1024" in row["error"]


@pytest.mark.parametrize("side", [1200, 1500])  # Pillow warns over its limit and refuses over twice the limit
def test_a_decompression_bomb_message_quotes_the_max_pixels_the_user_set(tmp_path: Path, side: int) -> None:
    root = tmp_path / "bombs"
    root.mkdir()
    (root / "bomb.png").write_bytes(encode((side, side), "PNG-L"))
    ingest_local(config(root, tmp_path / "pool", max_pixels=1_000_000))
    row = pd.read_parquet(tmp_path / "pool" / "index").iloc[0]
    assert row["status"] == "decompression_bomb"
    assert row["error"] == f"{side * side} pixels is over the --max-pixels limit of 1000000"


def test_identical_files_are_two_rows_but_one_stored_image(photos: Path, tmp_path: Path) -> None:
    ingest_local(config(photos, tmp_path / "pool"))
    df = by_name(Pool.open(tmp_path / "pool").read_index())
    assert df.loc["one.jpg", "id"] == df.loc["copy-of-one.jpg", "id"]
    stored = [p for p in (tmp_path / "pool" / "images").rglob("*") if p.is_file()]
    assert len(stored) == 2
    assert (tmp_path / "pool" / df.loc["two.png", "path"]).read_bytes() == (photos / "a" / "b" / "two.png").read_bytes()


def test_sidecars_give_attribution_and_a_broken_one_is_noted(photos: Path, tmp_path: Path) -> None:
    summary = ingest_local(config(photos, tmp_path / "pool"))
    assert summary.notes[0] == (
        "1 sidecar .json files ignored, so their pictures have no attribution (the error column says why), e.g. "
        "sidecar two.png.json ignored: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )  # in the run summary, not only in a column nobody reads
    df = by_name(Pool.open(tmp_path / "pool").read_index())
    one = df.loc["one.jpg"]
    assert (one["license"], one["author"], one["title"], one["page_url"]) == (
        "cc-by-4.0",
        "Ann",
        "Square",
        "https://example.org/1",
    )
    assert df.loc["copy-of-one.jpg", "license"] == "cc0-1.0"  # read from the URL when no name is given
    assert pd.isna(df.loc["tiny.jpg", "license"])
    assert df.loc["two.png", "status"] == "ok" and "two.png.json" in df.loc["two.png", "error"]


def test_a_rerun_ingests_nothing_twice_and_picks_up_new_files(photos: Path, tmp_path: Path) -> None:
    ingest_local(config(photos, tmp_path / "pool"))
    again = ingest_local(config(photos, tmp_path / "pool"))
    assert (again.rows, again.known) == (0, 7)
    (photos / "new.jpg").write_bytes(encode((50, 50), color=(7, 7, 7)))
    later = ingest_local(config(photos, tmp_path / "pool"))
    df = Pool.open(tmp_path / "pool").read_index()
    assert later.rows == 1 and len(df) == 8 and df["url"].is_unique
    commands = json.loads((tmp_path / "pool" / "pool.json").read_text())["commands"]
    assert [c["command"] for c in commands] == ["local", "local", "local"]


def test_iter_picture_files_skips_hidden_files_and_sidecars(photos: Path) -> None:
    names = [p.name for p in iter_picture_files(photos)]
    assert names == ["bomb.png", "copy-of-one.jpg", "cut.jpg", "fake.jpg", "tiny.jpg", "one.jpg", "two.png"]


def test_read_sidecar_without_a_file_gives_nulls(tmp_path: Path) -> None:
    fields, error = read_sidecar(tmp_path / "x.jpg")
    assert set(fields.values()) == {None} and error is None


def test_an_output_inside_the_input_folder_is_refused(photos: Path) -> None:
    with pytest.raises(ConfigError, match="--out"):
        LocalConfig(root=photos, out=photos / "pool")


def test_cli_local_is_wired_to_the_library(photos: Path, tmp_path: Path) -> None:
    args = ["local", str(photos), "--out", str(tmp_path / "pool"), "--min-side", "16", "--workers", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "local" in result.output and len(Pool.open(tmp_path / "pool").read_index()) == 7


def test_cli_local_rejects_a_missing_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["local", str(tmp_path / "nowhere"), "--out", str(tmp_path / "pool")], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 2 and "not a folder" in result.output


def test_a_file_of_exactly_max_bytes_is_ingested_and_one_byte_more_is_too_large(tmp_path: Path) -> None:
    root = tmp_path / "sized"
    root.mkdir()
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    data = buffer.getvalue()
    (root / "exact.png").write_bytes(data)
    (root / "over.png").write_bytes(data + b"\0")  # PNG ignores bytes after its end
    (root / "text.png").write_bytes(b"read, checked, not stored")
    summary = ingest_local(config(root, tmp_path / "pool", max_bytes=len(data)))
    df = by_name(Pool.open(tmp_path / "pool").read_index())
    assert df["status"].to_dict() == {"exact.png": "ok", "over.png": "too_large", "text.png": "not_image"}
    assert f"{len(data) + 1} bytes is over --max-bytes {len(data)}" == df.loc["over.png", "error"]
    assert summary.stored_bytes == len(data)  # only what was stored counts


def test_hidden_folders_are_not_walked(tmp_path: Path) -> None:
    root = tmp_path / "walk"
    (root / ".thumbnails").mkdir(parents=True)
    (root / ".thumbnails" / "a.jpg").write_bytes(encode((40, 30)))
    (root / "a.jpg").write_bytes(encode((40, 30)))
    assert [p.relative_to(root).as_posix() for p in iter_picture_files(root)] == ["a.jpg"]


def test_a_symlinked_picture_is_one_row_under_its_target_and_a_rerun_skips_it(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "real.jpg").write_bytes(encode((40, 30)))
    root = tmp_path / "links"
    root.mkdir()
    (root / "link.jpg").symlink_to(elsewhere / "real.jpg")
    first = ingest_local(config(root, tmp_path / "pool"))
    again = ingest_local(config(root, tmp_path / "pool"))
    df = Pool.open(tmp_path / "pool").read_index()
    assert (first.ok, again.rows, again.known) == (1, 0, 1)
    assert df["url"].tolist() == [(elsewhere / "real.jpg").as_uri()]


def test_a_bug_while_checking_one_file_is_an_internal_error_row_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "two"
    root.mkdir()
    (root / "a.jpg").write_bytes(encode((40, 30)))
    (root / "b.jpg").write_bytes(encode((50, 30)))
    real_check = local_module.check_image

    def broken_on_b(data: bytes, *args: object) -> object:
        if Image.open(io.BytesIO(data)).width == 50:
            raise KeyError("a bug")
        return real_check(data, *args)

    monkeypatch.setattr(local_module, "check_image", broken_on_b)
    summary = ingest_local(config(root, tmp_path / "pool", workers=1))
    df = by_name(Pool.open(tmp_path / "pool").read_index())
    assert df["status"].to_dict() == {"a.jpg": "ok", "b.jpg": "internal_error"}
    assert df.loc["b.jpg", "error"] == "KeyError: 'a bug'" and summary.rows == 2


def test_the_input_folder_itself_is_refused_as_the_pool(photos: Path) -> None:
    with pytest.raises(ConfigError, match="lies inside DIR"):
        LocalConfig(root=photos, out=photos)


def test_sidecar_attribution_is_stored_as_plain_text(tmp_path: Path) -> None:
    picture = tmp_path / "x.jpg"
    artist = '<a href="https://commons.wikimedia.org/wiki/User:Ann">Ann</a> &amp; <b>Bob</b>'  # as Commons gives it
    (tmp_path / "x.jpg.json").write_text(json.dumps({"author": artist, "title": "Square<br>at noon", "license": None}))
    fields, error = read_sidecar(picture)
    assert (fields["author"], fields["title"], fields["license"], error) == ("Ann & Bob", "Square at noon", None, None)


@pytest.mark.parametrize(
    ("sidecar", "named"),
    [('{"license": 5}', "license is int"), ('{"license": NaN, "title": "t"}', "license is float"),
     ('{"author": ["Ann", "Bob"]}', "author is list"), ('{"title": {"en": "x"}, "source_url": true}', "title is dict")],
)  # fmt: skip
def test_a_sidecar_field_that_is_not_text_ignores_the_sidecar_and_names_the_field(
    tmp_path: Path, sidecar: str, named: str
) -> None:
    """str() of them stored the licence '5' or 'nan' and the author "['Ann', 'Bob']" as if the sidecar said so."""
    (tmp_path / "x.jpg.json").write_text(sidecar)
    fields, error = read_sidecar(tmp_path / "x.jpg")
    assert set(fields.values()) == {None}
    assert error is not None and named in error and "is a string or null" in error


def test_retry_failed_reads_failed_files_again_and_the_new_row_replaces_the_old(photos: Path, tmp_path: Path) -> None:
    pool_dir = tmp_path / "pool"
    first = ingest_local(config(photos, pool_dir, min_side=35))  # a --min-side typo: every picture is too_small
    assert first.counts[("local", "too_small")] == 4 and first.ok == 0
    (photos / "cut.jpg").write_bytes(encode((64, 64), color=(1, 200, 3)))  # the truncated file, copied again whole
    plain = ingest_local(config(photos, pool_dir))
    assert plain.rows == 0  # a rerun alone reads nothing again

    args = ["local", str(photos), "--out", str(pool_dir), "--min-side", "16", "--retry-failed"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "7 earlier failures fetched again (--retry-failed)" in result.output
    df = by_name(Pool.open(pool_dir).read_index())
    assert len(df) == 7 and df.index.is_unique
    assert (df.loc[["one.jpg", "copy-of-one.jpg", "two.png", "cut.jpg"], "status"] == "ok").all()
    assert df.loc["one.jpg", "license"] == "cc-by-4.0"  # the sidecar is read with the file
    assert df.loc["fake.jpg", "status"] == "not_image"
    assert list(df.loc["fake.jpg", "found_by"]) == [f"local:{photos}"]
    again = ingest_local(config(photos, pool_dir, retry_failed=True))
    assert (again.rows, again.retried, again.known) == (2, 2, 5)  # only tiny.jpg and fake.jpg still fail: read again


def test_ctrl_c_ends_with_a_line_saying_the_work_is_kept_and_how_to_go_on(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(config: LocalConfig) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(local_module, "ingest_local", interrupted)
    result = CliRunner().invoke(app, ["local", str(photos), "--out", str(tmp_path / "pool")], env={"COLUMNS": "300"})
    assert result.exit_code == 130
    assert "harvest local interrupted: what it had written is kept in the pool" in result.output
    assert "run the same command again" in result.output


def test_retry_failed_keeps_the_leak_mark_of_a_picture_whose_stored_file_was_lost(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    from harvest.clip_filter import FilterConfig, filter_pool
    from harvest.dedup_pool import DedupConfig, dedup_pool
    from tests.harvest.conftest import TINY
    from tests.harvest.imagegen import encode as encode_scene
    from tests.harvest.imagegen import scene, write_folder

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "leak.jpg").write_bytes(encode_scene(scene(3)))
    (photos / "fine.jpg").write_bytes(encode_scene(scene(40)))
    pool_dir = tmp_path / "pool"
    ingest_local(config(photos, pool_dir))
    evaluation = write_folder(tmp_path / "eval", {"IMG_7": scene(3).resize((150, 112))})
    dedup_pool(DedupConfig(pool_dir, exclude_like=(str(evaluation),), progress=False, workers=1))
    (pool_dir / by_name(Pool.open(pool_dir).read_index()).loc["leak.jpg", "path"]).unlink()
    filter_pool(FilterConfig(pool_dir, model=TINY, checkpoint=tiny_checkpoint, device="cpu", workers=0, progress=False))
    assert by_name(Pool.open(pool_dir).read_index()).loc["leak.jpg", "status"] == "decode_error"

    retried = ingest_local(config(photos, pool_dir, retry_failed=True))
    assert (retried.retried, retried.ok) == (1, 1)
    dedup_pool(DedupConfig(pool_dir, progress=False, workers=1))
    df = by_name(Pool.open(pool_dir).read_index())
    assert df.loc["leak.jpg", "status"] == "ok" and df.loc["leak.jpg", "leak_of"] == "eval/IMG_7"
    assert not df.loc["leak.jpg", "kept"] and df.loc["fine.jpg", "kept"]
