"""rankset build: ranked sets cut from folders, pools and datasets, exactly as DESIGN.md's schema says."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rankset.build import BuildConfig, build_ranked_sets
from rankset.errors import ConfigError, InputError
from rankset.inputs import SKIP_MISSING, SKIP_OUTSIDE_POOL, SKIP_UNREADABLE, SKIP_UNREVIEWED, UNREVIEWED
from rankset.schema import RANKED_FIELDS, decode_build_info


def gradient(width: int, height: int) -> Image.Image:
    """R grows with x, G with y: a pixel's colour tells where in the source it came from."""
    xs = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    ys = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([xs, ys, np.full_like(xs, 128)], -1).astype(np.uint8))


def save(img: Image.Image, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pics"
    for i, (w, h) in enumerate([(320, 240), (240, 320), (400, 300), (300, 300)]):
        save(gradient(w, h), root / f"img{i}.jpg", quality=95)
    return root


def build(src: Path | str, out: Path, **kwargs: object) -> tuple:
    cfg = BuildConfig(str(src), str(out), size=kwargs.pop("size", 32), **kwargs)  # type: ignore[arg-type]
    summary = build_ranked_sets(cfg, progress=False)
    return summary, datasets.load_from_disk(str(out))


def patch_array(image: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image["bytes"])).convert("RGB"), dtype=np.float64)


def test_folder_build_writes_the_ranked_schema_and_card(folder: Path, tmp_path: Path) -> None:
    summary, dsd = build(folder, tmp_path / "ds", k=4, s=0.5, r=4, sets_per_image=2, seed=3)
    ds = dsd["train"]
    assert tuple(ds.column_names) == RANKED_FIELDS
    assert len(ds) == 8 and summary.used == 4 and summary.sets == {"train": 8}
    assert summary.licenses == {"unknown": 8}  # the card's licence table counts sets
    row = ds[0]
    assert row["set_id"] == "img0-0" and row["source_id"] == "img0"
    assert len(row["images"]) == 4 and all(im.size == (32, 32) for im in row["images"])
    assert row["source_size"] == [320, 240]
    sides = [b[2] - b[0] for b in row["boxes"]]
    assert sides == pytest.approx([sides[0] * 0.5**j for j in range(4)], rel=1e-5)
    info = decode_build_info(ds.info.description)
    assert (info["k"], info["s"], info["r"], info["size"], info["seed"]) == (4, 0.5, 4, 32, 3)
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "| k (patches per set) | 4 |" in card and "| seed | 3 |" in card and "| train | 8 |" in card
    assert "| unknown | 8 |" in card
    assert row["source_url"].startswith("file://")


def test_patches_show_the_pixels_inside_their_boxes(folder: Path, tmp_path: Path) -> None:
    _, dsd = build(folder, tmp_path / "ds", size=64)
    for row in dsd["train"].cast_column("images", datasets.List(datasets.Image(decode=False))):
        w, h = row["source_size"]
        for image, (x0, y0, x1, y1) in zip(row["images"], row["boxes"], strict=True):
            mean = patch_array(image).mean(axis=(0, 1))
            # a linear gradient's mean over a box is its value at the box centre
            assert mean[0] == pytest.approx(255 * ((x0 + x1) / 2) / (w - 1), abs=4)
            assert mean[1] == pytest.approx(255 * ((y0 + y1) / 2) / (h - 1), abs=4)


def test_large_jpeg_uses_reduced_decode_without_moving_patches(tmp_path: Path) -> None:
    save(gradient(3200, 2400), tmp_path / "big" / "big.jpg", quality=92)
    summary, dsd = build(tmp_path / "big", tmp_path / "ds", k=3, s=0.8, r=8, size=64)
    assert summary.reduced_decodes == 1
    row = dsd["train"].cast_column("images", datasets.List(datasets.Image(decode=False)))[0]
    for image, (x0, _, x1, _) in zip(row["images"], row["boxes"], strict=True):
        assert patch_array(image).mean(axis=(0, 1))[0] == pytest.approx(255 * ((x0 + x1) / 2) / 3199, abs=4)


def test_exif_orientation_is_applied_before_cutting(tmp_path: Path) -> None:
    upright = gradient(200, 300)  # what the viewer should see: 200 wide, 300 tall
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 means: rotate 270 to display
    exif = Image.Exif()
    exif[0x0112] = 6
    save(stored, tmp_path / "rot" / "rot.jpg", exif=exif.tobytes(), quality=95)
    _, dsd = build(tmp_path / "rot", tmp_path / "ds", size=48)
    row = dsd["train"].cast_column("images", datasets.List(datasets.Image(decode=False)))[0]
    assert row["source_size"] == [200, 300]
    x0, y0, x1, y1 = row["boxes"][0]
    mean = patch_array(row["images"][0]).mean(axis=(0, 1))
    assert mean[0] == pytest.approx(255 * ((x0 + x1) / 2) / 199, abs=5)
    assert mean[1] == pytest.approx(255 * ((y0 + y1) / 2) / 299, abs=5)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_every_pixel_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    img = gradient(96, 64)
    converted = (
        Image.fromarray(np.asarray(img)[..., 0].astype(np.uint16) * 257) if mode == "I;16" else img.convert(mode)
    )
    ext = "tif" if mode == "CMYK" else "png"
    save(converted, tmp_path / "m" / f"x.{ext}")
    summary, dsd = build(tmp_path / "m", tmp_path / "ds")
    assert summary.skipped == [] and len(dsd["train"]) == 1
    assert all(im.mode == "RGB" for im in dsd["train"][0]["images"])


def test_bad_files_are_skipped_with_reasons_and_the_run_goes_on(folder: Path, tmp_path: Path) -> None:
    good = (folder / "img0.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "words.jpg").write_bytes(b"this is not a picture")
    (folder / "notes.csv").write_text("a,b\n")  # a sidecar, never treated as a picture
    summary, dsd = build(folder, tmp_path / "ds")
    reasons = dict(summary.skipped)
    assert set(reasons) == {"truncated", "empty", "words"}
    assert "empty file" in reasons["empty"]
    assert "truncated" in reasons["truncated"] or "corrupt" in reasons["truncated"]
    assert "not an image" in reasons["words"]
    assert all("move it out of the folder" in reason for reason in reasons.values())  # each names its fix
    assert summary.skipped_by_reason == {SKIP_UNREADABLE: 3}
    assert len(dsd["train"]) == 4


def make_pool(root: Path, n: int) -> tuple[object, list[dict]]:
    from harvest.pool import Pool

    pool = Pool.create(root)
    rows = []
    for i in range(n):
        buf = io.BytesIO()
        gradient(120 + i, 90).save(buf, "JPEG")
        sha, rel = pool.store_image(buf.getvalue(), "jpg")
        rows.append({"id": sha, "url": f"http://example.org/{i}.jpg", "status": "ok", "path": rel})
    pool.append_rows(rows)
    return pool, rows


def test_a_pool_row_whose_path_leaves_the_pool_is_skipped_and_never_read(tmp_path: Path) -> None:
    outside = tmp_path / "private.jpg"  # a readable picture outside the pool: it must not end up in a dataset
    gradient(140, 100).save(outside, "JPEG")
    pool, rows = make_pool(tmp_path / "pool", 2)
    pool.append_rows([{"id": "f" * 64, "url": "http://example.org/x.jpg", "status": "ok", "path": "../private.jpg"}])
    summary, dsd = build(tmp_path / "pool", tmp_path / "ds")
    assert summary.used == 2 and sorted(dsd["train"]["source_id"]) == sorted(r["id"] for r in rows)
    [(source_id, message)] = summary.skipped
    assert source_id == "f" * 64 and "'../private.jpg'" in message and "outside the pool" in message
    assert summary.skipped_by_reason == {SKIP_OUTSIDE_POOL: 1}


def test_a_pool_picture_deleted_after_harvest_is_skipped_naming_its_row_path_and_the_fix(tmp_path: Path) -> None:
    pool, rows = make_pool(tmp_path / "pool", 3)
    lost = pool.path_of(rows[1]["path"])
    lost.unlink()
    summary, dsd = build(tmp_path / "pool", tmp_path / "ds")
    assert summary.used == 2 and len(dsd["train"]) == 2
    [(source_id, message)] = summary.skipped
    assert source_id == rows[1]["id"] and str(lost) in message
    assert "No such file" not in message and "does not exist" in message
    assert f"harvest dedup {tmp_path / 'pool'}" in message and "--retry-failed" in message and "Restore" in message
    assert summary.skipped_by_reason == {SKIP_MISSING: 1}


def test_a_pool_picture_damaged_after_harvest_is_skipped_with_the_same_fix(tmp_path: Path) -> None:
    pool, rows = make_pool(tmp_path / "pool", 2)
    pool.path_of(rows[0]["path"]).write_bytes(b"overwritten")
    summary, _ = build(tmp_path / "pool", tmp_path / "ds")
    [(source_id, message)] = summary.skipped
    assert source_id == rows[0]["id"] and "not an image" in message and "--retry-failed" in message
    assert summary.skipped_by_reason == {SKIP_UNREADABLE: 1}


def test_fifos_and_broken_or_looping_links_are_listed_as_skipped_without_being_opened(
    folder: Path, tmp_path: Path
) -> None:
    os.mkfifo(folder / "pipe.jpg")  # opening it to read would wait for a writer forever
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / "link.jpg").symlink_to(folder / "img0.jpg")  # a link to a picture is a picture
    summary, dsd = build(folder, tmp_path / "ds")
    reasons = dict(summary.skipped)
    assert set(reasons) == {"pipe", "loop", "gone"}
    assert "FIFO" in reasons["pipe"]
    assert "link" in reasons["loop"] and "link" in reasons["gone"]
    assert summary.sources == 5 + 3 and summary.used == 5
    assert sorted(dsd["train"]["source_id"]) == ["img0", "img1", "img2", "img3", "link"]


def read_skipped_csv(out: Path) -> list[list[str]]:
    import csv

    with open(out / "skipped.csv", encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def test_every_skipped_picture_is_a_sorted_row_of_skipped_csv_with_its_path_reason_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rankset.inputs import SKIP_TOO_SMALL
    from rankset.io import check_replaceable, load_dataset_dict, saved_kind
    from rankset.report import print_build_summary
    from rankset.schema import ranked_features

    pics = tmp_path / "pics"
    save(gradient(320, 240), pics / "good.jpg", quality=95)
    save(gradient(20, 20), pics / "small.png")  # k=5, s=0.5: its smallest patch would be about 1 px
    good = (pics / "good.jpg").read_bytes()
    (pics / "damaged.jpg").write_bytes(good[: len(good) // 3])
    (pics / os.fsdecode(b"caf\xe9.jpg")).write_bytes(b"not a picture")  # a name that is not UTF-8
    summary, dsd = build(pics, tmp_path / "ds", k=5, s=0.5)
    header, *rows = read_skipped_csv(tmp_path / "ds")
    assert header == ["source", "reason", "message"]
    assert [(source, reason) for source, reason, _ in rows] == [
        (f"{pics}/caf\\xe9.jpg", SKIP_UNREADABLE),
        (f"{pics}/damaged.jpg", SKIP_UNREADABLE),
        (f"{pics}/small.png", SKIP_TOO_SMALL),
    ]
    messages = {Path(source).name: message for source, _, message in rows}
    assert "move it out of the folder" in messages["damaged.jpg"] and "short side of 37 px" in messages["small.png"]
    assert summary.used == 1 and len(dsd["train"]) == 1  # the dataset beside it still loads, as a ranked-set one
    assert len(load_dataset_dict(tmp_path / "ds")["train"]) == 1 and saved_kind(tmp_path / "ds") == "ranked"
    check_replaceable(tmp_path / "ds", [pics], ranked_features(5))
    assert "`skipped.csv`" in (tmp_path / "ds" / "README.md").read_text()
    build(pics, tmp_path / "again", k=5, s=0.5)
    assert (tmp_path / "again" / "skipped.csv").read_bytes() == (tmp_path / "ds" / "skipped.csv").read_bytes()
    monkeypatch.setenv("COLUMNS", "1000")  # one line, however long tmp_path is
    print_build_summary(summary, str(tmp_path / "ds"))
    assert f"all 3 skipped pictures: {tmp_path / 'ds' / 'skipped.csv'}" in capsys.readouterr().out


def test_a_build_that_skips_nothing_writes_a_skipped_csv_with_the_header_alone(folder: Path, tmp_path: Path) -> None:
    summary, _ = build(folder, tmp_path / "ds")
    assert summary.skipped == []
    assert (tmp_path / "ds" / "skipped.csv").read_bytes() == b"source,reason,message\n"


def test_same_seed_same_bytes_and_num_proc_does_not_change_output(folder: Path, tmp_path: Path) -> None:
    _, a = build(folder, tmp_path / "a", seed=5, sets_per_image=2)
    _, b = build(folder, tmp_path / "b", seed=5, sets_per_image=2, num_proc=2)
    _, c = build(folder, tmp_path / "c", seed=6, sets_per_image=2)
    assert a["train"].data.equals(b["train"].data)
    assert a["train"]["anchor"] != c["train"]["anchor"]


def test_validation_split_is_by_picture_with_the_exact_fraction(folder: Path, tmp_path: Path) -> None:
    summary, dsd = build(folder, tmp_path / "ds", val_fraction=0.25, sets_per_image=3)
    assert summary.sets == {"train": 9, "validation": 3}
    assert set(dsd["train"]["source_id"]).isdisjoint(dsd["validation"]["source_id"])


def test_pool_input_uses_only_kept_rows_and_carries_attribution(tmp_path: Path) -> None:
    from harvest.pool import Pool

    pool = Pool.create(tmp_path / "pool")
    rows = []
    for i, kept in enumerate([True, False, None]):
        buf = io.BytesIO()
        gradient(120 + i, 90).save(buf, "JPEG")
        sha, rel = pool.store_image(buf.getvalue(), "jpg")
        rows.append(
            {
                "id": sha,
                "url": f"http://example.org/{i}.jpg",
                "page_url": f"http://example.org/p{i}",
                "status": "ok",
                "path": rel,
                "license": "cc-by-4.0",
                "author": f"A{i}",
                "kept": kept,
            }
        )
    rows.append({"url": "http://example.org/broken.jpg", "status": "http_404", "error": "404"})
    # The refused picture found again under another URL by a later harvest: no verdict on this row, still refused.
    rows.append({**rows[1], "url": "http://example.org/again.jpg", "kept": None})
    pool.append_rows(rows)
    pool.log_command(stage="dedup")  # as harvest dedup logs itself once it has judged every picture
    summary, dsd = build(tmp_path / "pool", tmp_path / "ds")
    ds = dsd["train"]
    assert summary.input_kind == "pool" and len(ds) == 1
    assert ds["source_id"] == [rows[0]["id"]] and ds["author"] == ["A0"] and ds["license"] == ["cc-by-4.0"]
    assert ds["source_url"] == ["http://example.org/p0"]
    # The picture added after dedup/filter ran was never checked for leaks: left out, saying why and what to run.
    assert summary.skipped == [(rows[2]["id"], UNREVIEWED)] and "harvest dedup" in UNREVIEWED
    assert summary.skipped_by_reason == {SKIP_UNREVIEWED: 1}
    assert summary.sources == 2


def test_a_pool_no_dedup_or_filter_has_judged_gives_every_stored_picture(tmp_path: Path) -> None:
    from harvest.pool import Pool

    pool = Pool.create(tmp_path / "pool")
    for i in range(2):
        buf = io.BytesIO()
        gradient(120 + i, 90).save(buf, "JPEG")
        sha, rel = pool.store_image(buf.getvalue(), "jpg")
        pool.append_rows([{"id": sha, "url": f"http://example.org/{i}.jpg", "status": "ok", "path": rel}])
    summary, dsd = build(tmp_path / "pool", tmp_path / "ds")
    assert summary.used == 2 and summary.skipped == [] and len(dsd["train"]) == 2


def test_dataset_input_reads_the_image_column_of_the_chosen_split(tmp_path: Path) -> None:
    from rankset.io import write_dataset_dict
    from rankset.schema import labeled_features

    def rows(split: str, n: int):
        for i in range(n):
            buf = io.BytesIO()
            gradient(80, 60).save(buf, "JPEG")
            yield {
                "image_id": f"{split}_{i}",
                "image": {"bytes": buf.getvalue(), "path": None},
                "points": [],
                "count": 0,
                "dataset": "t",
                "split": split,
            }

    write_dataset_dict(tmp_path / "lab", {"train": rows("train", 3), "test": rows("test", 2)}, labeled_features())
    summary, dsd = build(tmp_path / "lab", tmp_path / "ds")
    assert summary.input_kind == "dataset"
    assert sorted(dsd["train"]["source_id"]) == ["train_0", "train_1", "train_2"]
    with pytest.raises(Exception, match="no split 'validation'"):
        build(tmp_path / "lab", tmp_path / "ds2", split="validation")


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"k": 1}, "--k"),
        ({"s": 1.0}, "--s"),
        ({"s": 0.0}, "--s"),
        ({"r": 0.5}, "--r"),
        ({"size": 8}, "--size"),
        ({"size": 100_000}, "--size"),
        ({"seed": -1}, "--seed"),
        ({"sets_per_image": 0}, "--sets-per-image"),
        ({"val_fraction": 1.0}, "--val-fraction"),
    ],
)
def test_invalid_parameters_fail_before_work_naming_the_flag(kwargs: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        BuildConfig("in", "out", **kwargs)


def test_a_build_that_dies_midway_leaves_the_old_dataset_untouched(folder: Path, tmp_path: Path, monkeypatch) -> None:
    import rankset.build as build_module

    build(folder, tmp_path / "ds")
    before = (tmp_path / "ds" / "train" / "dataset_info.json").read_bytes()
    calls = {"n": 0}
    real = build_module.cut_sets

    def dying(picture, cfg):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(picture, cfg)

    monkeypatch.setattr(build_module, "cut_sets", dying)
    with pytest.raises(KeyboardInterrupt):
        build(folder, tmp_path / "ds", seed=9)
    assert (tmp_path / "ds" / "train" / "dataset_info.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")] == []


def test_a_build_with_no_sets_fails_saying_why_and_keeps_the_old_dataset(folder: Path, tmp_path: Path) -> None:
    build(folder, tmp_path / "ds")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "ds").rglob("*"))
    with pytest.raises(InputError, match=r"no ranked sets for split 'train'.*too small for k=30.*left as it was"):
        build(folder, tmp_path / "ds", k=30)
    with pytest.raises(InputError, match=r"split 'train': 0 pictures.*smaller --val-fraction"):
        build(folder, tmp_path / "ds", val_fraction=0.95)  # all four pictures go to validation
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "ds").rglob("*")) == before
    assert datasets.load_from_disk(str(tmp_path / "ds"))["train"].num_rows == 4


def test_out_that_is_or_holds_the_input_or_other_files_is_refused_before_any_work(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is or holds the input"):
        build(folder, folder)
    with pytest.raises(InputError, match="is or holds the input"):
        build(folder, tmp_path)  # tmp_path holds pics/
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match=r"holds files that are not a dataset \(mine.txt\)"):
        build(folder, tmp_path / "notes")
    assert sorted(p.name for p in folder.iterdir()) == [f"img{i}.jpg" for i in range(4)]
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    assert build(folder, tmp_path / "empty")[1]["train"].num_rows == 4  # an empty folder is fine


def test_preview_draws_sets_to_a_png(folder: Path, tmp_path: Path) -> None:
    from rankset.preview import render_preview

    build(folder, tmp_path / "ds", k=3)
    before = sorted((tmp_path / "ds").rglob("*"))
    out = render_preview(str(tmp_path / "ds"), tmp_path / "p.png", n=2)
    with Image.open(out) as img:
        # one row per set, k + 1 panels each (source and k patches): (2.2 * 4 + 1.2) x (2.4 * 2) inches at 90 dpi
        assert img.format == "PNG" and img.size == (900, 432)
    assert sorted((tmp_path / "ds").rglob("*")) == before  # reading never writes cache files into the dataset


@pytest.mark.parametrize("name", ["preview", "preview.txt", "preview.jpg"])
def test_preview_out_that_is_not_a_png_is_refused_before_drawing(folder: Path, tmp_path: Path, name: str) -> None:
    from rankset.errors import ConfigError
    from rankset.preview import render_preview

    build(folder, tmp_path / "ds")
    with pytest.raises(ConfigError, match=rf"--out .*{name} must end in .png"):
        render_preview(str(tmp_path / "ds"), tmp_path / name, n=1)
    assert not list(tmp_path.glob("preview*"))  # nothing written, under this name or another


def test_preview_that_cannot_be_written_fails_naming_the_path(folder: Path, tmp_path: Path) -> None:
    from rankset.errors import RanksetError
    from rankset.preview import render_preview

    build(folder, tmp_path / "ds")
    (tmp_path / "taken.png").mkdir()  # stands for an unwritable path: a read-only mount, a missing permission
    with pytest.raises(RanksetError, match=r"cannot write .*taken.png: Is a directory; pass --out PNG"):
        render_preview(str(tmp_path / "ds"), tmp_path / "taken.png", n=1)


def test_cli_build_and_preview_wiring(folder: Path, tmp_path: Path) -> None:
    from rankset.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["build", str(folder), "--out", str(tmp_path / "ds"), "--size", "32", "--k", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ds" / "dataset_dict.json").read_text())["splits"] == ["train"]
    bad = runner.invoke(app, ["build", str(folder), "--out", str(tmp_path / "x"), "--k", "1"])
    assert bad.exit_code == 2 and "--k" in bad.output
    missing = runner.invoke(app, ["build", str(tmp_path / "nope"), "--out", str(tmp_path / "y")])
    assert missing.exit_code == 1
    result = runner.invoke(app, ["preview", str(tmp_path / "ds"), "--out", str(tmp_path / "p.png"), "--n", "1"])
    assert result.exit_code == 0 and (tmp_path / "p.png").is_file()


def _sigint_handler(_: object) -> object:
    import signal

    return signal.getsignal(signal.SIGINT)


def test_build_workers_leave_ctrl_c_to_the_main_process() -> None:
    """A worker killed by Ctrl-C mid-task loses its result and Pool.map waits forever; workers must ignore it."""
    import signal

    from rankset.build import _worker_pool

    with _worker_pool(2) as pool:
        assert pool.map(_sigint_handler, range(4)) == [signal.SIG_IGN] * 4


def test_a_file_name_that_is_not_utf8_is_built_under_an_escaped_id(folder: Path, tmp_path: Path) -> None:
    import os

    os.rename(folder / "img0.jpg", os.fsencode(folder) + b"/caf\xe9.jpg")  # Latin-1 bytes, as old cameras write
    summary, dsd = build(folder, tmp_path / "ds")
    assert summary.used == 4 and "caf\\xe9" in dsd["train"]["source_id"]
    assert any(url.endswith("/caf%E9.jpg") for url in dsd["train"]["source_url"])


def test_cli_build_on_a_pool_with_a_damaged_index_part_fails_naming_it(folder: Path, tmp_path: Path) -> None:
    from harvest.local import LocalConfig, ingest_local
    from rankset.cli import app

    ingest_local(LocalConfig(root=folder, out=tmp_path / "pool", min_side=16, show_progress=False))
    (tmp_path / "pool" / "index" / "part-zz-damaged.parquet").write_bytes(b"not parquet")
    result = CliRunner().invoke(app, ["build", str(tmp_path / "pool"), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 1 and "part-zz-damaged.parquet" in result.output
    assert not (tmp_path / "ds").exists()


def test_patches_are_stored_largest_first_and_anchored_at_the_common_centre(folder: Path, tmp_path: Path) -> None:
    """All patches share a centre, so only their spread of colour tells patch 0 (largest) from patch k-1."""
    _, dsd = build(folder, tmp_path / "ds", k=3, s=0.6, size=40, sets_per_image=2)
    for row in dsd["train"].cast_column("images", datasets.List(datasets.Image(decode=False))):
        w, _ = row["source_size"]
        spreads = []
        for image, (x0, y0, x1, y1) in zip(row["images"], row["boxes"], strict=True):
            assert row["anchor"] == pytest.approx([(x0 + x1) / 2, (y0 + y1) / 2], abs=1e-3)
            red = patch_array(image)[..., 0]
            assert red.shape == (40, 40)  # every patch resized to --size
            spreads.append(red[:, -4:].mean() - red[:, :4].mean())  # right edge minus left edge
            # R = 255 x / (w - 1): the centres of the 4-column edge bands lie 36/40 of the side apart
            assert spreads[-1] == pytest.approx(255 * (x1 - x0) * 36 / 40 / (w - 1), abs=6)
        assert spreads[0] > spreads[1] > spreads[2]


def test_the_sets_of_one_picture_are_drawn_independently(folder: Path, tmp_path: Path) -> None:
    _, dsd = build(folder, tmp_path / "ds", k=2, sets_per_image=3)
    for source_id in ("img0", "img1", "img2", "img3"):
        anchors = [
            tuple(a) for a, s in zip(dsd["train"]["anchor"], dsd["train"]["source_id"], strict=True) if s == source_id
        ]
        assert len(anchors) == 3 and len(set(anchors)) == 3


def test_rebuilding_into_the_same_out_replaces_the_dataset_without_doubling_it(folder: Path, tmp_path: Path) -> None:
    build(folder, tmp_path / "ds", seed=1)
    _, dsd = build(folder, tmp_path / "ds", seed=2)
    assert dsd["train"].num_rows == 4 and sorted(dsd["train"]["set_id"]) == [f"img{i}-0" for i in range(4)]
    assert decode_build_info(dsd["train"].info.description)["seed"] == 2


def test_an_out_that_holds_the_input_is_refused_before_the_input_is_read(
    folder: Path, tmp_path: Path, monkeypatch
) -> None:
    import rankset.build as build_module

    def never(*args):
        raise AssertionError("the input was read before --out was checked")

    monkeypatch.setattr(build_module, "list_sources", never)  # a pool's index or a dataset can be large
    monkeypatch.setattr(build_module, "cut_sets", never)
    with pytest.raises(InputError, match="is or holds the input"):
        build(folder, tmp_path)


def test_preview_frames_patch_zero_when_the_source_is_gone_and_the_source_when_it_is_at_hand(tmp_path: Path) -> None:
    from rankset.preview import frame_boxes

    buf = io.BytesIO()
    gradient(32, 32).save(buf, "JPEG")
    source = save(gradient(100, 90), tmp_path / "src.png")
    row = {
        "boxes": [[10.0, 20.0, 70.0, 80.0], [25.0, 35.0, 55.0, 65.0]],
        "images": [{"bytes": buf.getvalue(), "path": None}],
        "source_size": [100, 90],
        "source_url": source.as_uri(),
    }
    frame, boxes, real = frame_boxes(row)
    assert real and frame.size == (100, 90) and boxes == [tuple(b) for b in row["boxes"]]
    (tmp_path / "junk.png").write_bytes(b"not a picture any more")
    gone = ({"source_url": None}, {"source_size": [200, 180]}, {"source_url": (tmp_path / "junk.png").as_uri()})
    for changed in gone:  # no file, a file of another size, or one that no longer decodes
        frame, boxes, real = frame_boxes({**row, **changed})
        # patch 0 (60 source px drawn as 32) stands in: its own box fills it, the next is 15..45 px into it
        assert not real and frame.size == (32, 32)
        assert boxes == [pytest.approx((0, 0, 32, 32)), pytest.approx((8, 8, 24, 24))]


def test_preview_of_no_sets_is_refused_naming_the_flag(tmp_path: Path) -> None:
    from rankset.preview import render_preview

    with pytest.raises(ConfigError, match="--n 0"):
        render_preview(str(tmp_path / "ds"), tmp_path / "p.png", n=0)


def test_preview_with_a_negative_seed_is_refused_naming_the_flag(folder: Path, tmp_path: Path) -> None:
    """numpy raised ValueError: expected non-negative integer, as a traceback, once the dataset was loaded."""
    from rankset.cli import app

    build(folder, tmp_path / "ds")
    result = CliRunner().invoke(
        app, ["preview", str(tmp_path / "ds"), "--out", str(tmp_path / "p.png"), "--seed", "-1"]
    )
    assert result.exit_code == 2 and "--seed -1 is out of range" in result.output
    assert not (tmp_path / "p.png").exists()


def test_a_build_removes_the_staging_folder_of_a_killed_build_and_notes_it(folder: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from rankset.io import HOST

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    left = tmp_path / f".sets.tmp-{HOST}-{child.pid}-0123abcd"
    (left / "cache").mkdir(parents=True)
    summary, _ = build(folder, tmp_path / "sets", k=2, s=0.5)
    assert not left.exists()
    assert len(summary.notes) == 1 and str(left) in summary.notes[0]
