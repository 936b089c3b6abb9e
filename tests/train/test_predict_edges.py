"""train predict at its edges: which files a folder contributes, one overlay per picture even when names repeat,
the --tile and --no-overlays settings reaching the work, and arguments refused before the checkpoint is read."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.train.test_pseudo_label import tiny_checkpoint
from train.errors import ConfigError
from train.predict import PredictConfig, expand_images, overlay_names, predict_images


def picture(path: Path, value: int, size: tuple[int, int] = (48, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("predict") / "ckpt.pt", masksembles=False)


def test_a_folder_contributes_its_images_in_subfolders_whatever_the_suffix_case_sorted(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "sub/c.jpeg", "sub/deeper/d.WebP"):
        picture(tmp_path / "in" / name, 0)
    (tmp_path / "in" / "notes.txt").write_text("not a picture")
    (tmp_path / "in" / "counts.csv").write_text("file,count\n")
    single = picture(tmp_path / "z.png", 1)
    found = expand_images((tmp_path / "in", single))
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "in/a.png",
        "in/b.JPG",
        "in/sub/c.jpeg",
        "in/sub/deeper/d.WebP",
        "z.png",
    ]


def test_a_subfolder_named_like_a_picture_is_searched_not_read_as_one(tmp_path: Path) -> None:
    picture(tmp_path / "in" / "shots.jpg" / "a.png", 0)
    (tmp_path / "in" / "empty.png").mkdir()
    assert [p.relative_to(tmp_path).as_posix() for p in expand_images((tmp_path / "in",))] == ["in/shots.jpg/a.png"]
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.jpg").mkdir()
    assert expand_images((tmp_path / "only",)) == []


def test_a_folder_contributes_every_picture_kind_rankset_build_reads(checkpoint: Path, tmp_path: Path) -> None:
    """A folder that rankset build turned into ranked sets (a .gif, a .jfif among them) is counted whole."""
    for name in ("a.gif", "b.jfif", "c.ppm"):
        picture(tmp_path / "in" / name, 0)
    rows = predict_images(PredictConfig(checkpoint, (tmp_path / "in",), tmp_path / "out"), False)
    assert [(Path(r["path"]).name, r["status"]) for r in rows] == [("a.gif", "ok"), ("b.jfif", "ok"), ("c.ppm", "ok")]


def test_overlays_of_an_earlier_predict_inside_a_folder_are_not_pictures_whatever_its_out(tmp_path: Path) -> None:
    """`train predict CKPT photos --out photos/p1`, then `--out photos/p2`: p1's overlays were counted as photos."""
    picture(tmp_path / "photos" / "a.jpg", 0)
    picture(tmp_path / "photos" / "p1" / "overlays" / "a.png", 1)
    (tmp_path / "photos" / "p1" / "counts.csv").write_text("path,count,status,error,overlay\n")
    picture(tmp_path / "photos" / "overlays" / "b.png", 2)  # a folder of photos that happens to be called overlays
    found = expand_images((tmp_path / "photos",), tmp_path / "photos" / "p2")
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["photos/a.jpg", "photos/overlays/b.png"]


def test_a_rerun_into_an_out_inside_the_folder_does_not_count_its_own_overlays(
    checkpoint: Path, tmp_path: Path
) -> None:
    picture(tmp_path / "photos" / "a.jpg", 1)
    picture(tmp_path / "photos" / "b.png", 2)
    config = PredictConfig(checkpoint, (tmp_path / "photos",), tmp_path / "photos" / "pred")
    first = predict_images(config, False)
    assert sorted(p.name for p in (tmp_path / "photos" / "pred" / "overlays").iterdir()) == ["a.png", "b.png"]
    second = predict_images(config, False)
    assert (
        [r["path"] for r in second]
        == [r["path"] for r in first]
        == [
            str(tmp_path / "photos" / "a.jpg"),
            str(tmp_path / "photos" / "b.png"),
        ]
    )


def test_a_dataset_folder_is_refused_pointing_at_train_eval(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "shb"
    picture(folder / "info.png", 0)  # what `rankset info` leaves in a dataset folder
    (folder / "dataset_dict.json").write_text('{"splits": ["test"]}')
    with pytest.raises(ConfigError, match=r"shb is a dataset folder.*train eval CKPT --data .*shb --split test"):
        PredictConfig(checkpoint, (folder,), tmp_path / "out")


def test_overlay_names_never_repeat_whatever_the_folder_suffix_or_case() -> None:
    paths = [Path("a/img.jpg"), Path("b/img.jpg"), Path("img.png"), Path("IMG.jpg"), Path("img-2.jpg"), Path("x.jpg")]
    assert overlay_names(paths) == ["img.png", "img-2.png", "img-3.png", "IMG-4.png", "img-2-2.png", "x.png"]


def test_pictures_of_the_same_name_get_one_overlay_each_named_in_counts_csv(checkpoint: Path, tmp_path: Path) -> None:
    first, second = picture(tmp_path / "a" / "img.jpg", 1), picture(tmp_path / "b" / "img.jpg", 2, (64, 40))
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    rows = predict_images(PredictConfig(checkpoint, (first, second, tmp_path / "broken.jpg"), tmp_path / "out"), False)
    with (tmp_path / "out" / "counts.csv").open(newline="") as f:
        written = list(csv.DictReader(f))
    assert [r["overlay"] for r in written] == ["overlays/img.png", "overlays/img-2.png", ""]
    assert [r["status"] for r in rows] == ["ok", "ok", "unreadable_image"] and written[2]["count"] == ""
    sizes = [Image.open(tmp_path / "out" / r["overlay"]).size for r in written[:2]]
    assert sizes == [(48, 40 + 24), (64, 40 + 24)]  # each picture under its count band: neither overwrote the other


def test_no_overlays_writes_counts_only_and_tile_reaches_the_tiled_inference(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from train.checkpoint import model_from_checkpoint
    from train.evaluate import predict_density

    image = picture(tmp_path / "wide.png", 3, (200, 72))
    config = PredictConfig(checkpoint, (image,), tmp_path / "out", device="cpu", tile=64, overlays=False)
    (row,) = predict_images(config, False)
    assert list((tmp_path / "out" / "overlays").iterdir()) == [] and row["overlay"] == ""
    model, state, _ = model_from_checkpoint(checkpoint, torch.device("cpu"))
    pixels = np.array(Image.open(image).convert("RGB"))

    def count(tile: int) -> float:
        return float(predict_density(model, pixels, 4, tile, torch.device("cpu"), False, state["density_scale"]).sum())

    assert row["count"] == pytest.approx(count(64), rel=1e-6)
    assert count(64) == pytest.approx(count(1024), rel=1e-5)  # tiles with context: the tile size never changes a count
    import train.evaluate

    seen: list[tuple[int, int, int]] = []
    real_spans = train.evaluate.tile_spans

    def spans(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
        seen.append((length, tile, margin))
        return real_spans(length, tile, margin)

    monkeypatch.setattr(train.evaluate, "tile_spans", spans)
    predict_images(config, False)
    assert (200, 64, 8) in seen  # --tile 64 reached the tiling (test-tiny: 8 px of context for its 15-px field)


def test_missing_images_and_a_tiny_tile_are_refused_naming_them(checkpoint: Path, tmp_path: Path) -> None:
    here = picture(tmp_path / "here.png", 0)
    with pytest.raises(ConfigError, match=r"IMAGES not found: .*gone.png, .*lost$"):
        PredictConfig(checkpoint, (here, tmp_path / "gone.png", tmp_path / "lost"))
    with pytest.raises(ConfigError, match=r"--tile 32 is too small; use at least 64"):
        PredictConfig(checkpoint, (here,), tile=32)
    with pytest.raises(ConfigError, match="IMAGES is empty"):
        PredictConfig(checkpoint, ())


def test_a_name_that_is_not_utf8_names_its_overlay_file_with_the_escapes_of_its_path(
    checkpoint: Path, tmp_path: Path
) -> None:
    import os

    folder = tmp_path / "in"
    latin1 = Path(os.fsdecode(bytes(picture(folder / "a.png", 1).parent) + b"/caf\xe9.jpg"))  # a lone surrogate
    picture(latin1, 2)
    predict_images(PredictConfig(checkpoint, (folder,), tmp_path / "out", device="cpu"), False)
    with (tmp_path / "out" / "counts.csv").open(newline="", encoding="utf-8") as f:
        written = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert written["caf\\xe9.jpg"]["overlay"] == "overlays/caf\\xe9.png"  # as the path column escapes it
    assert (tmp_path / "out" / written["caf\\xe9.jpg"]["overlay"]).is_file()  # the column names the file written


def test_an_out_that_is_a_file_is_refused_before_the_checkpoint_is_read(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"--out .*taken is a file; pass a folder for counts.csv and overlays/"):
        PredictConfig(checkpoint, (picture(tmp_path / "a.png", 1),), tmp_path / "taken")


def test_pictures_are_counted_as_displayed_exif_turned_16_bit_scaled_and_alpha_on_white(
    checkpoint: Path, tmp_path: Path
) -> None:
    """Each odd file is counted exactly like the plain 8-bit RGB picture a viewer shows: an EXIF orientation 6 JPEG
    like its turned pixels (rankset's points and boxes are in that frame), a 16-bit PNG like its 8-bit values (not
    clipped to white), an RGBA PNG like its pixels on white (as rankset.images.to_rgb makes patches)."""
    rng = np.random.default_rng(5)
    shown = rng.integers(0, 255, size=(72, 40, 3), dtype=np.uint8)  # displayed: 40 wide, 72 high
    pairs = {}
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the stored pixels are the shown ones turned back
    Image.fromarray(np.rot90(shown, k=1).copy()).save(tmp_path / "turned.png", exif=exif.tobytes())
    pairs["turned.png"] = shown
    gray = rng.integers(0, 255, size=(40, 56), dtype=np.uint8)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit: v * 257 is v at 8 bits
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    pairs["deep.png"] = np.repeat(gray[..., None], 3, axis=2)
    rgba = np.concatenate([shown, np.full((72, 40, 1), 255, dtype=np.uint8)], axis=2)
    rgba[:, :20, 3] = 0  # the left half fully transparent: white on screen
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    on_white = shown.copy()
    on_white[:, :20] = 255
    pairs["clear.png"] = on_white
    for name, pixels in pairs.items():
        Image.fromarray(pixels).save(tmp_path / f"plain-{name}")
    files = tuple(tmp_path / n for n in pairs) + tuple(tmp_path / f"plain-{n}" for n in pairs)
    rows = predict_images(PredictConfig(checkpoint, files, tmp_path / "out", device="cpu"), show_progress=False)
    counts = {Path(r["path"]).name: r["count"] for r in rows}
    assert all(r["status"] == "ok" for r in rows)
    for name in pairs:
        assert counts[name] == pytest.approx(counts[f"plain-{name}"], rel=1e-6), name
    assert Image.open(tmp_path / "out" / "overlays" / "turned.png").size == (40, 72 + 24)  # the band is 24 px


def test_a_picture_whose_prediction_fails_is_a_row_and_the_others_are_counted(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import train.evaluate

    real = train.evaluate.predict_density

    def out_of_memory_on_wide_pictures(model: Any, image: np.ndarray, *args: Any) -> np.ndarray:
        if image.shape[1] > 100:
            raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB\nmore detail")
        return real(model, image, *args)

    monkeypatch.setattr(train.evaluate, "predict_density", out_of_memory_on_wide_pictures)
    files = (picture(tmp_path / "small.png", 1), picture(tmp_path / "wide.png", 2, size=(160, 40)))
    rows = predict_images(PredictConfig(checkpoint, files, tmp_path / "out", device="cpu"), show_progress=False)
    assert [(Path(r["path"]).name, r["status"]) for r in rows] == [
        ("small.png", "ok"),
        ("wide.png", "prediction_failed"),
    ]
    assert rows[1]["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 9.00 GiB (a 160x40 picture)"
    with (tmp_path / "out" / "counts.csv").open() as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok", "prediction_failed"]


def test_folders_that_all_hold_no_pictures_are_refused_naming_them_and_the_suffixes_read(
    checkpoint: Path, tmp_path: Path
) -> None:
    """`train predict CKPT empty/ --out DIR` wrote a counts.csv of 0 rows and exited 0 without a word."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes" / "sub").mkdir(parents=True)
    (tmp_path / "notes" / "sub" / "readme.txt").write_text("not a picture")
    with pytest.raises(ConfigError, match=r"empty, .*notes hold no pictures.*\.jpg, \.jpeg, \.png"):
        PredictConfig(checkpoint, (tmp_path / "empty", tmp_path / "notes"), tmp_path / "out")


def test_a_folder_whose_only_pictures_are_this_runs_own_overlays_holds_no_pictures(
    checkpoint: Path, tmp_path: Path
) -> None:
    picture(tmp_path / "photos" / "pred" / "overlays" / "a.png", 0)
    (tmp_path / "photos" / "pred" / "counts.csv").write_text("path,count,status,error,overlay\n")
    with pytest.raises(ConfigError, match="photos holds no pictures"):
        PredictConfig(checkpoint, (tmp_path / "photos",), tmp_path / "photos" / "pred")


def test_an_empty_folder_beside_a_good_one_is_a_no_pictures_row_and_the_others_are_counted(
    checkpoint: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    picture(tmp_path / "good" / "a.jpg", 0)
    rows = predict_images(PredictConfig(checkpoint, (tmp_path / "empty", tmp_path / "good"), tmp_path / "out"), False)
    assert [(Path(r["path"]).name, r["status"]) for r in rows] == [("empty", "no_pictures"), ("a.jpg", "ok")]
    assert "holds no pictures" in rows[0]["error"] and ".tiff" in rows[0]["error"]
    with (tmp_path / "out" / "counts.csv").open() as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["no_pictures", "ok"]


def test_the_predict_summary_warns_about_an_empty_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from train.predict import no_pictures_row
    from train.report import print_predict_summary

    print_predict_summary([no_pictures_row(tmp_path / "empty")], tmp_path)
    captured = capsys.readouterr()
    assert "folders with no pictures" in captured.out
    assert "warning: folder" in captured.err and "empty holds no pictures" in captured.err


def test_an_out_that_cannot_be_made_is_a_data_error_naming_it_for_predict_and_before_eval_evaluates(
    checkpoint: Path, blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--out under a file (or on a read-only mount) was a NotADirectoryError traceback; `train eval` raised it only
    after evaluating every image, losing the whole evaluation."""
    import train.evaluate
    from train.errors import DataError
    from train.evaluate import EvalConfig, evaluate_checkpoint

    (tmp_path / "afile").write_text("")
    image = picture(tmp_path / "a.png", 200)
    with pytest.raises(DataError, match=r"--out .*afile/sub/overlays cannot be written to \(NotADirectoryError: .*Fix"):
        predict_images(PredictConfig(checkpoint, (image,), tmp_path / "afile" / "sub"), show_progress=False)
    evaluated = []
    monkeypatch.setattr(train.evaluate, "evaluate_sources", lambda *a, **k: evaluated.append(1))
    config = EvalConfig(checkpoint, str(blob_data["labeled"]), "test", tmp_path / "afile" / "sub")
    with pytest.raises(DataError, match=r"--out .*afile/sub cannot be written to \(NotADirectoryError: "):
        evaluate_checkpoint(config, show_progress=False)
    assert evaluated == []


def test_pictures_over_pillows_limit_are_counted_quietly_and_over_twice_it_are_a_row_saying_what_to_do(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x30 over the limit, 48x48 over twice it
    wide, huge = picture(tmp_path / "wide.png", 0, (40, 30)), picture(tmp_path / "huge.png", 1, (48, 48))
    config = PredictConfig(checkpoint=checkpoint, images=(wide, huge), out=tmp_path / "out", overlays=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        rows = {Path(r["path"]).name: r for r in predict_images(config, show_progress=False)}
    assert rows["wide.png"]["status"] == "ok"
    assert rows["huge.png"]["status"] == "unreadable_image"
    assert "too many pixels to decode safely" in rows["huge.png"]["error"] and "downscale" in rows["huge.png"]["error"]
