"""`rankset import`: every benchmark layout built in tmp_path with known counts, then the real shared files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image, ImageOps
from typer.testing import CliRunner

from rankset.cli import app
from rankset.errors import ConfigError, InputError
from rankset.importers import (
    ImportConfig,
    Importer,
    create_importer,
    import_benchmark,
    list_importers,
    register_importer,
)
from rankset.importers.geometry import clamp_points, orient_points
from rankset.importers.ucf import ucf_cc_50_fold
from rankset.io import load_dataset_dict


def write_jpeg(
    path: Path, width: int = 32, height: int = 24, mode: str = "RGB", exif: Image.Exif | None = None
) -> bytes:
    """A small noisy JPEG at ``path``; returns its bytes so tests can compare what was stored."""
    rng = np.random.default_rng(len(path.name))
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    image = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80, **({"exif": exif} if exif is not None else {}))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def random_points(n: int, width: int = 32, height: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0, width - 1, n), rng.uniform(0, height - 1, n)], axis=1)


def write_shanghaitech_mat(path: Path, points: np.ndarray, number: int | None = None) -> None:
    """The real nesting: image_info is a 1x1 cell holding a 1x1 struct with fields location and number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    struct = np.zeros((1, 1), dtype=[("location", "O"), ("number", "O")])
    struct[0, 0]["location"] = points
    struct[0, 0]["number"] = np.array([[len(points) if number is None else number]], dtype=np.uint16)
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = struct
    scipy.io.savemat(str(path), {"image_info": cell})


def run_import(fmt: str, root: Path, out: Path, **kwargs: object):
    summary = import_benchmark(ImportConfig(fmt, root, out, **kwargs), progress=False)
    return summary, load_dataset_dict(out)


def by_id(split) -> dict[str, dict]:
    return {row["image_id"]: row for row in split}


# --- registry and pure geometry ---------------------------------------------------------------------------------


def test_registry_lists_every_benchmark_format() -> None:
    assert list_importers() == ["jhu-crowd", "mall", "nwpu-crowd", "points", "shanghaitech", "ucf-cc-50", "ucf-qnrf"]


def test_unknown_format_fails_with_the_known_list() -> None:
    with pytest.raises(ConfigError, match="known formats: jhu-crowd, mall"):
        create_importer("shanghai")


def test_registering_a_format_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_importer("mall")(type("AnotherMall", (Importer,), {}))


def test_clamp_moves_only_points_outside_and_counts_them() -> None:
    points = np.array([[5.0, 5.0], [-2.0, 3.0], [40.0, 30.0], [31.5, 23.9]])
    clamped, moved = clamp_points(points, width=32, height=24)
    assert moved == 2
    np.testing.assert_array_equal(clamped, [[5, 5], [0, 3], [31, 23], [31.5, 23.9]])


def exif_turned(array: np.ndarray, orientation: int) -> np.ndarray:
    """The grey picture ``array`` saved with an EXIF orientation tag, as PIL shows it after applying the tag."""
    image = Image.fromarray(array, mode="L")
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_points_follows_pil_exif_transpose(orientation: int) -> None:
    """A lone white pixel lands where the mapped point says, after PIL applies the EXIF orientation."""
    width, height, px, py = 7, 4, 5, 1
    array = np.zeros((height, width), dtype=np.uint8)
    array[py, px] = 255
    turned = exif_turned(array, orientation)
    ty, tx = np.argwhere(turned == 255)[0]
    mapped = orient_points(np.array([[px + 0.5, py + 0.5]]), width, height, orientation)[0]
    assert (int(mapped[0]), int(mapped[1])) == (tx, ty)


def test_ucf_cc_50_standard_folds_are_blocks_of_ten() -> None:
    assert [ucf_cc_50_fold(n) for n in (1, 10, 11, 20, 41, 50)] == [1, 1, 2, 2, 5, 5]


# --- ShanghaiTech -----------------------------------------------------------------------------------------------


def make_shanghaitech(root: Path, counts: dict[str, list[int]]) -> dict[str, bytes]:
    stored = {}
    for folder, per_image in counts.items():
        for number, count in enumerate(per_image, start=1):
            stored[f"{folder}/IMG_{number}"] = write_jpeg(root / folder / "images" / f"IMG_{number}.jpg")
            mat = root / folder / "ground-truth" / f"GT_IMG_{number}.mat"
            write_shanghaitech_mat(mat, random_points(count, seed=number))
    return stored


def test_shanghaitech_part_b_keeps_splits_counts_name_and_original_bytes(tmp_path: Path) -> None:
    root = tmp_path / "part_B"
    stored = make_shanghaitech(root, {"train_data": [3, 7], "test_data": [5]})
    summary, dsd = run_import("shanghaitech", root, tmp_path / "out")
    assert sorted(dsd) == ["test", "train"]
    train = by_id(dsd["train"].cast_column("image", dsd["train"].features["image"].__class__(decode=False)))
    assert {k: v["count"] for k, v in train.items()} == {"IMG_1": 3, "IMG_2": 7}
    assert train["IMG_2"]["image"]["bytes"] == stored["train_data/IMG_2"]
    assert dsd["test"][0]["dataset"] == "shanghaitech-b"
    assert dsd["test"][0]["split"] == "test"
    assert len(dsd["train"][1]["points"]) == 7
    assert summary.splits["train"].heads == 10
    assert json.loads((tmp_path / "out" / "import.json").read_text())["summary"]["splits"]["test"]["heads"] == 5


def test_shanghaitech_single_split_folder_imports_as_train_and_name_overrides(tmp_path: Path) -> None:
    root = tmp_path / "my-photos"
    make_shanghaitech(root, {".": [4, 2]})
    summary, dsd = run_import("shanghaitech", root / ".", tmp_path / "out", name="mine")
    assert list(dsd) == ["train"]
    assert sorted(dsd["train"]["count"]) == [2, 4]
    assert set(dsd["train"]["dataset"]) == {"mine"}
    assert summary.dataset == "mine"


def test_shanghaitech_bad_files_are_skipped_with_reasons_and_the_rest_imported(tmp_path: Path) -> None:
    root = tmp_path / "part_A"
    make_shanghaitech(root, {"train_data": [2, 3, 4, 5, 6]})
    train = root / "train_data"
    (train / "ground-truth" / "GT_IMG_2.mat").write_bytes(b"not a mat file at all")
    (train / "images" / "IMG_3.jpg").write_bytes((train / "images" / "IMG_3.jpg").read_bytes()[:200])
    (train / "ground-truth" / "GT_IMG_4.mat").unlink()
    write_shanghaitech_mat(train / "ground-truth" / "GT_IMG_9.mat", random_points(1))
    write_jpeg(train / "images" / "IMG_5.png")  # a second picture for one image id
    v73 = train / "ground-truth" / "GT_IMG_1.mat"
    v73.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    summary, dsd = run_import("shanghaitech", root, tmp_path / "out")
    assert dsd["train"]["image_id"] == ["IMG_5"]
    reasons = {Path(s.path).name: s.reason for s in summary.skipped}
    assert set(reasons) == {"GT_IMG_1.mat", "GT_IMG_2.mat", "IMG_3.jpg", "IMG_4.jpg", "GT_IMG_9.mat", "IMG_5.png"}
    assert reasons["IMG_5.png"] == "image id 'IMG_5' is taken by IMG_5.jpg"
    assert "v7.3" in reasons["GT_IMG_1.mat"]
    assert "not a readable MATLAB file" in reasons["GT_IMG_2.mat"] and "download it again" in reasons["GT_IMG_2.mat"]
    assert "not a decodable image" in reasons["IMG_3.jpg"] and "download that file again" in reasons["IMG_3.jpg"]
    assert "no annotation" in reasons["IMG_4.jpg"] and "add it beside the other annotations" in reasons["IMG_4.jpg"]
    assert "no image" in reasons["GT_IMG_9.mat"] and "add the picture IMG_9" in reasons["GT_IMG_9.mat"]
    assert summary.splits["train"].images == 1


def test_shanghaitech_location_saved_transposed_reads_as_the_stated_number_of_points(tmp_path: Path) -> None:
    root = tmp_path / "part_B"
    make_shanghaitech(root, {"train_data": [3, 3, 3]})
    points = random_points(5, seed=7)
    write_shanghaitech_mat(root / "train_data" / "ground-truth" / "GT_IMG_1.mat", points.T, number=5)  # (2, 5)
    write_shanghaitech_mat(root / "train_data" / "ground-truth" / "GT_IMG_2.mat", points[:4], number=7)
    summary, dsd = run_import("shanghaitech", root, tmp_path / "out")
    rows = by_id(dsd["train"])
    assert rows["IMG_1"]["count"] == 5
    np.testing.assert_allclose(rows["IMG_1"]["points"], points, atol=1e-4)  # x, y as saved, not 2 points
    assert rows["IMG_2"]["count"] == 4 and rows["IMG_3"]["count"] == 3
    warnings = {Path(w.path).name: w.reason for w in summary.warnings}
    assert warnings == {"GT_IMG_2.mat": "states 7 heads but lists 4 points; count = points"}


def test_a_root_matching_no_layout_fails_at_once_saying_what_was_expected(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "root" / "photo.jpg")
    with pytest.raises(InputError, match="ground-truth/GT_IMG_N.mat"):
        import_benchmark(ImportConfig("shanghaitech", tmp_path / "root", tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def test_the_whole_shanghaitech_download_as_root_says_to_import_one_part_at_a_time(tmp_path: Path) -> None:
    make_shanghaitech(tmp_path / "ShanghaiTech" / "part_A", {"train_data": [1]})
    make_shanghaitech(tmp_path / "ShanghaiTech" / "part_B", {"train_data": [1]})
    with pytest.raises(InputError) as refused:
        import_benchmark(ImportConfig("shanghaitech", tmp_path / "ShanghaiTech", tmp_path / "out"), progress=False)
    message = str(refused.value)
    assert "it holds part_A/, part_B/: import each part on its own" in message
    assert f"rankset import shanghaitech {tmp_path / 'ShanghaiTech' / 'part_B'} --out data/shb" in message
    assert not (tmp_path / "out").exists()


# --- UCF_CC_50 and UCF-QNRF -------------------------------------------------------------------------------------


def make_ucf_cc_50(root: Path, numbers: list[int]) -> None:
    for number in numbers:
        write_jpeg(root / f"{number}.jpg", mode="L")
        scipy.io.savemat(str(root / f"{number}_ann.mat"), {"annPoints": random_points(number % 7 + 1, seed=number)})


def test_ucf_cc_50_records_folds_and_fold_option_makes_that_fold_test(tmp_path: Path) -> None:
    root = tmp_path / "UCF_CC_50"
    make_ucf_cc_50(root, [1, 2, 11, 15, 50])
    _, all_train = run_import("ucf-cc-50", root, tmp_path / "all")
    assert list(all_train) == ["train"]
    assert dict(zip(all_train["train"]["image_id"], all_train["train"]["fold"], strict=True)) == {
        "1": 1,
        "2": 1,
        "11": 2,
        "15": 2,
        "50": 5,
    }
    _, dsd = run_import("ucf-cc-50", root, tmp_path / "fold2", fold=2)
    assert sorted(dsd["test"]["image_id"]) == ["11", "15"]
    assert sorted(dsd["train"]["image_id"]) == ["1", "2", "50"]
    assert dsd["test"][0]["image"].mode == "L"


def test_ucf_cc_50_fold_without_any_of_its_images_is_refused_not_written_without_a_test_split(tmp_path: Path) -> None:
    root = tmp_path / "UCF_CC_50"
    make_ucf_cc_50(root, [1, 21, 50])
    write_jpeg(root / "35.jpg", mode="L")  # fold 4's only picture, without its annotation
    with pytest.raises(InputError, match=r"--fold 4: .* holds no image of fold 4 \(images 31-40\) with its annotation"):
        import_benchmark(ImportConfig("ucf-cc-50", root, tmp_path / "out", fold=4), progress=False)
    assert not (tmp_path / "out").exists()


def test_ucf_cc_50_clamps_points_outside_and_keeps_the_count(tmp_path: Path) -> None:
    root = tmp_path / "ucf"
    write_jpeg(root / "3.jpg", width=32, height=24, mode="L")
    scipy.io.savemat(str(root / "3_ann.mat"), {"annPoints": np.array([[1.0, 1.0], [35.0, 5.0], [4.0, -3.0]])})
    summary, dsd = run_import("ucf-cc-50", root, tmp_path / "out")
    row = dsd["train"][0]
    assert row["count"] == 3
    assert row["points"] == [[1.0, 1.0], [31.0, 5.0], [4.0, 0.0]]
    assert summary.splits["train"].clamped_points == 2


def test_ucf_cc_50_point_array_saved_transposed_is_skipped_with_the_fix_not_read_as_two_heads(tmp_path: Path) -> None:
    root = tmp_path / "ucf"
    make_ucf_cc_50(root, [1])
    write_jpeg(root / "2.jpg", width=32, height=24, mode="L")
    transposed = random_points(9, seed=2).T  # (2, 9): a row of x and a row of y
    scipy.io.savemat(str(root / "2_ann.mat"), {"annPoints": transposed})
    summary, dsd = run_import("ucf-cc-50", root, tmp_path / "out")
    assert dsd["train"]["image_id"] == ["1"]
    reasons = {Path(s.path).name: s.reason for s in summary.skipped}
    assert "shape (2, 9)" in reasons["2_ann.mat"] and "saved transposed" in reasons["2_ann.mat"]
    assert "9 rows of x, y" in reasons["2_ann.mat"]


def test_as_points_names_text_values_and_the_fix_for_non_finite_ones() -> None:
    from rankset.importers.geometry import as_points

    with pytest.raises(ValueError, match="must be numbers"):
        as_points(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="fix or delete those rows"):
        as_points([[np.inf, 2.0]])
    assert as_points(np.ones((2, 6))).shape == (2, 2)  # two JHU-style rows of six columns stay two heads


def test_ucf_qnrf_train_and_test_folders_become_splits(tmp_path: Path) -> None:
    root = tmp_path / "UCF-QNRF_ECCV18"
    for split, numbers in (("Train", [1, 2]), ("Test", [1])):
        for number in numbers:
            write_jpeg(root / split / f"img_{number:04d}.jpg")
            pts = random_points(number * 4, seed=number)
            scipy.io.savemat(str(root / split / f"img_{number:04d}_ann.mat"), {"annPoints": pts})
    summary, dsd = run_import("ucf-qnrf", root, tmp_path / "out")
    assert sorted(dsd["train"]["count"]) == [4, 8]
    assert dsd["test"]["image_id"] == ["img_0001"]
    assert summary.splits["test"].heads == 4


# --- JHU-Crowd++ ------------------------------------------------------------------------------------------------


def test_jhu_crowd_reads_boxes_and_image_labels_and_renames_val(tmp_path: Path) -> None:
    root = tmp_path / "jhu_crowd_v2.0"
    for split in ("train", "val"):
        write_jpeg(root / split / "images" / "0001.jpg")
        (root / split / "gt").mkdir(parents=True)
        (root / split / "image_labels.txt").write_text("0001,2,stadium,2,0\n")
    (root / "train" / "gt" / "0001.txt").write_text("10 12 4 6 1 0\n20 5 2 2 2 1\n")
    (root / "val" / "gt" / "0001.txt").write_text("10 12 4 6 1 0\nbroken line\n")
    summary, dsd = run_import("jhu-crowd", root, tmp_path / "out")
    assert list(dsd) == ["train"]
    row = dsd["train"][0]
    assert row["count"] == 2
    assert row["points"] == [[10.0, 12.0], [20.0, 5.0]]
    assert row["boxes"][0] == [8.0, 9.0, 12.0, 15.0]
    assert (row["scene_type"], row["weather"], row["distractor"]) == ("stadium", "rain", False)
    assert [Path(s.path).parts[-3:] for s in summary.skipped] == [("val", "gt", "0001.txt")]
    assert "line 2" in summary.skipped[0].reason


@pytest.mark.parametrize("count", ["inf", "-inf", "nan", "1e400"])
def test_jhu_crowd_image_label_with_a_non_finite_count_is_ignored_not_a_crash(tmp_path: Path, count: str) -> None:
    """`int(float("inf"))` raised OverflowError out of the plan: a traceback before any image was read."""
    root = tmp_path / "jhu_crowd_v2.0"
    write_jpeg(root / "train" / "images" / "0001.jpg")
    (root / "train" / "gt").mkdir(parents=True)
    (root / "train" / "gt" / "0001.txt").write_text("10 12 4 6 1 0\n")
    (root / "train" / "image_labels.txt").write_text(f"0001,{count},stadium,2,0\n")
    summary, dsd = run_import("jhu-crowd", root, tmp_path / "out")
    row = dsd["train"][0]
    assert (row["count"], row["scene_type"]) == (1, None)  # the malformed line is ignored whole, as documented
    assert summary.warnings == []


# --- NWPU-Crowd -------------------------------------------------------------------------------------------------


def test_nwpu_crowd_imports_unlabeled_test_split_marked_with_count_minus_one(tmp_path: Path) -> None:
    root = tmp_path / "NWPU-Crowd"
    for image_id in ("0001", "0002", "0003", "0004"):
        write_jpeg(root / "images" / f"{image_id}.jpg")
    (root / "jsons").mkdir()
    points = [[3.0, 4.0], [10.0, 11.0], [20.0, 2.0]]
    boxes = [[1.0, 2.0, 5.0, 6.0], [8.0, 9.0, 12.0, 13.0], [18.0, 0.0, 22.0, 4.0]]
    (root / "jsons" / "0001.json").write_text(
        json.dumps({"img_id": "0001.jpg", "human_num": 3, "points": points, "boxes": boxes})
    )
    (root / "jsons" / "0002.json").write_text("{broken")
    (root / "train.txt").write_text("0001 0 1\n0002 1 2\n")
    (root / "test.txt").write_text("0003 1 3\n")
    summary, dsd = run_import("nwpu-crowd", root, tmp_path / "out")
    train, test = dsd["train"][0], dsd["test"][0]
    assert (train["count"], train["labeled"], train["illumination"], train["scene_level"]) == (3, True, 0, 1)
    assert train["boxes"][2] == [18.0, 0.0, 22.0, 4.0]
    assert (test["count"], test["labeled"], test["points"], test["scene_level"]) == (-1, False, [], 3)
    assert summary.splits["test"].unlabeled == 1
    assert any("count = -1" in note for note in summary.notes)
    reasons = {Path(s.path).name: s.reason for s in summary.skipped}
    assert "not valid JSON" in reasons["0002.json"]
    assert "not listed" in reasons["0004.jpg"]


# --- Mall -------------------------------------------------------------------------------------------------------


def test_mall_splits_at_frame_800_and_stores_the_roi_mask(tmp_path: Path) -> None:
    root = tmp_path / "mall_dataset"
    frames = np.empty((1, 802), dtype=object)
    for index in range(802):
        struct = np.zeros((1, 1), dtype=[("loc", "O")])
        struct[0, 0]["loc"] = random_points(index % 5 + 1, seed=index)
        frames[0, index] = struct
    counts = np.array([[index % 5 + 1] for index in range(802)], dtype=np.float64)
    root.mkdir()
    scipy.io.savemat(str(root / "mall_gt.mat"), {"frame": frames, "count": counts})
    for number in (799, 800, 801, 802):
        write_jpeg(root / "frames" / f"seq_{number:06d}.jpg", width=32, height=24)
    mask = np.zeros((24, 32), dtype=np.uint8)
    mask[:, 16:] = 1
    roi = np.zeros((1, 1), dtype=[("mask", "O")])
    roi[0, 0]["mask"] = mask
    scipy.io.savemat(str(root / "perspective_roi.mat"), {"roi": roi, "pMapN": np.ones((24, 1))})
    summary, dsd = run_import("mall", root, tmp_path / "out")
    assert dsd["train"]["image_id"] == ["seq_000799", "seq_000800"]
    assert dsd["test"]["image_id"] == ["seq_000801", "seq_000802"]
    assert dsd["test"]["count"] == [(801 - 1) % 5 + 1, (802 - 1) % 5 + 1]  # frame N is cell N - 1
    roi_image = np.asarray(dsd["train"][0]["roi"])
    assert roi_image[0, 0] == 0 and roi_image[0, 31] == 255
    assert summary.warnings == []


@pytest.mark.parametrize(
    "count",
    [np.array([[np.nan]]), np.array([[np.inf]]), np.array(["abc"]), np.array([[np.array([1, 2])]], dtype=object)],
    ids=["nan", "inf", "text", "cell"],
)
def test_mall_count_that_is_not_a_number_is_not_stated_and_the_frame_imported(
    tmp_path: Path, count: np.ndarray
) -> None:
    """int(count[i]) raised ValueError/OverflowError/TypeError out of the writer: the import died with a traceback."""
    root = tmp_path / "mall_dataset"
    frame = np.zeros((1, 1), dtype=[("loc", "O")])
    frame[0, 0]["loc"] = np.array([[1.0, 2.0]])
    frames = np.empty((1, 1), dtype=object)
    frames[0, 0] = frame
    root.mkdir()
    scipy.io.savemat(str(root / "mall_gt.mat"), {"frame": frames, "count": count})
    write_jpeg(root / "frames" / "seq_000001.jpg", width=32, height=24)
    summary, dsd = run_import("mall", root, tmp_path / "out")
    assert dsd["train"]["count"] == [1]
    assert summary.warnings == [] and summary.skipped == []


def test_import_json_is_in_place_as_soon_as_the_dataset_is(tmp_path: Path, monkeypatch) -> None:
    """It was written after the dataset was renamed into place: a kill (or a full disk) between the two left a
    finished-looking dataset without its list of skipped files, which the summary points to."""
    import rankset.io

    root = tmp_path / "pts"
    write_jpeg(root / "a.jpg")
    (root / "a.txt").write_text("1 2\n")
    write_jpeg(root / "b.jpg")  # no point list: a skipped row that import.json must hold
    written = rankset.io.write_dataset_dict

    def killed_right_after(*args: object, **kwargs: object) -> None:
        written(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(rankset.io, "write_dataset_dict", killed_right_after)
    with pytest.raises(KeyboardInterrupt):
        import_benchmark(ImportConfig("points", root, tmp_path / "out"), progress=False)
    summary = json.loads((tmp_path / "out" / "import.json").read_text())["summary"]
    assert summary["splits"]["train"]["images"] == 1
    assert [Path(s["path"]).name for s in summary["skipped"]] == ["b.jpg"]


def test_every_skipped_file_is_a_row_of_skipped_csv_beside_the_dataset_and_push_leaves_it(tmp_path: Path) -> None:
    import csv

    from rankset.publish import PublishConfig, publish_dataset

    root = tmp_path / "pts"
    write_jpeg(root / "a.jpg")
    (root / "a.txt").write_text("1 2\n")
    write_jpeg(root / "b10.jpg")  # no point lists: skipped, listed in natural order
    write_jpeg(root / "b9.jpg")
    summary = import_benchmark(ImportConfig("points", root, tmp_path / "out"), progress=False)
    with open(tmp_path / "out" / "skipped.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["path"]).name for r in rows] == ["b9.jpg", "b10.jpg"] and len(summary.skipped) == 2
    assert all(r["reason"] == s.reason for r, s in zip(rows, summary.skipped, strict=True))
    dry_run = PublishConfig(str(tmp_path / "out"), "me/pts", dry_run=tmp_path / "dry", allow_unknown_license=True)
    publish_dataset(dry_run, progress=False)
    assert not (tmp_path / "dry" / "skipped.csv").exists()  # it names files on the importer's disk

    (root / "b9.jpg").unlink()
    (root / "b10.jpg").unlink()
    import_benchmark(ImportConfig("points", root, tmp_path / "none"), progress=False)
    assert (tmp_path / "none" / "skipped.csv").read_text() == "path,reason\n"  # a header alone: nothing skipped


# --- generic point lists ----------------------------------------------------------------------------------------


def test_points_format_uses_train_val_subfolders_and_reports_orphans(tmp_path: Path) -> None:
    root = tmp_path / "my-crowds"
    write_jpeg(root / "train" / "scene1" / "a.jpg")
    (root / "train" / "scene1" / "a.txt").write_text("1 2\n3,4\n# comment\n5 6 extra\n")
    write_jpeg(root / "val" / "b.jpg")
    (root / "val" / "b.txt").write_text("7 8\n")
    (root / "val" / "lonely.txt").write_text("1 1\n")
    write_jpeg(root / "train" / "unlabeled.jpg")
    summary, dsd = run_import("points", root, tmp_path / "out")
    assert dsd["train"][0]["points"] == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert dsd["validation"]["count"] == [1]
    assert dsd["train"][0]["dataset"] == "my-crowds"
    assert sorted(Path(s.path).name for s in summary.skipped) == ["lonely.txt", "unlabeled.jpg"]


def test_points_without_split_folders_all_go_to_train(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "flat" / "x.jpg")
    (tmp_path / "flat" / "x.txt").write_text("")
    _, dsd = run_import("points", tmp_path / "flat", tmp_path / "out")
    assert list(dsd) == ["train"] and dsd["train"]["count"] == [0]


def test_exif_rotated_picture_gets_points_in_the_decoded_frame(tmp_path: Path) -> None:
    """datasets applies EXIF orientation when decoding, so the stored points must follow it."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    write_jpeg(tmp_path / "pts" / "r.jpg", width=32, height=24, exif=exif)
    (tmp_path / "pts" / "r.txt").write_text("30 2\n")
    summary, dsd = run_import("points", tmp_path / "pts", tmp_path / "out")
    row = dsd["train"][0]
    assert row["image"].size == (24, 32)
    assert row["points"] == [[22.0, 30.0]]
    assert summary.splits["train"].reoriented == 1


# --- config and CLI wiring --------------------------------------------------------------------------------------


def test_config_rejects_fold_outside_ucf_cc_50_and_out_equal_to_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--fold applies only to ucf-cc-50"):
        ImportConfig("shanghaitech", tmp_path, tmp_path / "o", fold=1)
    with pytest.raises(ConfigError, match="--fold must be 1..5"):
        ImportConfig("ucf-cc-50", tmp_path, tmp_path / "o", fold=6)
    with pytest.raises(ConfigError, match="would replace the benchmark folder"):
        ImportConfig("points", tmp_path / ".", tmp_path)


def test_cli_import_writes_dataset_and_unknown_format_is_a_bad_parameter(tmp_path: Path) -> None:
    make_ucf_cc_50(tmp_path / "ucf", [4])
    result = CliRunner().invoke(app, ["import", "ucf-cc-50", str(tmp_path / "ucf"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "skipped: none" in result.output
    assert load_dataset_dict(tmp_path / "o")["train"]["count"] == [4 % 7 + 1]
    bad = CliRunner().invoke(app, ["import", "qnrf", str(tmp_path / "ucf"), "--out", str(tmp_path / "p")])
    assert bad.exit_code == 2 and "ucf-qnrf" in bad.output


# --- the real files in ../shared/fixtures/real ------------------------------------------------------------------


def test_real_shanghaitech_format_files_import_with_readme_counts(real_fixtures: Path, tmp_path: Path) -> None:
    summary, dsd = run_import("shanghaitech", real_fixtures / "shanghaitech-format-mit", tmp_path / "out")
    rows = by_id(dsd["train"])
    assert {k: v["count"] for k, v in rows.items()} == {
        "IMG_1": 21,
        "IMG_2": 58,
        "IMG_3": 11,
        "IMG_4": 222,
        "IMG_5": 256,
    }
    assert rows["IMG_4"]["image"].size == (1600, 1067)
    assert rows["IMG_5"]["image"].size == (1049, 721)
    assert summary.skipped == []


def test_real_ucf_cc_50_files_import_with_readme_counts_and_two_clamped(real_fixtures: Path, tmp_path: Path) -> None:
    summary, dsd = run_import("ucf-cc-50", real_fixtures / "ucf-cc-50", tmp_path / "out")
    rows = by_id(dsd["train"])
    assert {k: v["count"] for k, v in rows.items()} == {"1": 4633, "4": 96, "21": 376}
    assert summary.splits["train"].clamped_points == 2
    assert rows["21"]["image"].size == (680, 1024)
    assert {row["image"].mode for row in rows.values()} == {"L"}
    assert {row["fold"] for row in rows.values()} == {1, 3}
    width, height = rows["1"]["image"].size
    points = np.asarray(rows["1"]["points"])
    assert points[:, 0].max() < width and points[:, 1].max() < height and points.min() >= 0


def test_probe_names_empty_and_unknown_files_and_decodes_large_benchmark_pictures_without_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import warnings

    from PIL import Image

    from rankset.errors import ImageError
    from rankset.importers.writer import probe_image

    with pytest.raises(ImageError, match=r"the file is empty \(0 bytes\)"):
        probe_image(b"")
    with pytest.raises(ImageError, match=r"not a format Pillow knows \(b'hello wo'"):
        probe_image(b"hello world")
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buffer, "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 pixels: over the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert probe_image(buffer.getvalue()) == (40, 30, 1)


# --- edges the tests above do not reach ---------------------------------------------------------------------------


def test_clamp_treats_the_right_and_bottom_edges_as_outside() -> None:
    """Pixel (i, j) covers [i, i+1): x == W is past the last pixel, x == W - 1 is on it."""
    points = np.array([[32.0, 5.0], [5.0, 24.0], [31.0, 23.0]])
    clamped, moved = clamp_points(points, width=32, height=24)
    assert moved == 2
    np.testing.assert_array_equal(clamped, [[31, 5], [5, 23], [31, 23]])


def test_clamp_boxes_clips_each_axis_to_its_own_side() -> None:
    from rankset.importers.geometry import clamp_boxes

    boxes = np.array([[-2.0, -3.0, 40.0, 30.0], [1.0, 2.0, 5.0, 6.0]])
    np.testing.assert_array_equal(clamp_boxes(boxes, width=32, height=24), [[0, 0, 32, 24], [1, 2, 5, 6]])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_boxes_cover_the_same_pixels_after_pil_exif_transpose(orientation: int) -> None:
    from rankset.importers.geometry import orient_boxes

    width, height, box = 7, 4, (1, 0, 3, 3)  # pixels x 1..2, y 0..2
    array = np.zeros((height, width), dtype=np.uint8)
    array[box[1] : box[3], box[0] : box[2]] = 255
    turned = exif_turned(array, orientation)
    ys, xs = np.nonzero(turned == 255)
    mapped = orient_boxes(np.array([box], dtype=np.float64), width, height, orientation)[0]
    assert mapped.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_as_points_keeps_x_y_of_wider_rows_and_refuses_non_finite_ones() -> None:
    from rankset.importers.geometry import as_points

    np.testing.assert_array_equal(as_points([[1.0, 2.0, 9.0], [3.0, 4.0, 9.0]]), [[1, 2], [3, 4]])
    assert as_points([]).shape == (0, 2)
    with pytest.raises(ValueError, match="1 non-finite"):
        as_points([[1.0, 2.0], [np.nan, 4.0]])


def test_shanghaitech_points_keep_their_x_y_order(tmp_path: Path) -> None:
    root = tmp_path / "part_A" / "train_data"
    write_jpeg(root / "images" / "IMG_1.jpg", width=32, height=24)
    points = np.array([[30.0, 2.0], [3.5, 20.25]])  # x beyond the height: a swap would clamp it
    write_shanghaitech_mat(root / "ground-truth" / "GT_IMG_1.mat", points)
    summary, dsd = run_import("shanghaitech", root, tmp_path / "out")
    assert dsd["train"][0]["points"] == [[30.0, 2.0], [3.5, 20.25]]
    assert summary.splits["train"].clamped_points == 0


def test_shanghaitech_split_folder_as_root_keeps_its_split_and_the_part_of_its_parent(tmp_path: Path) -> None:
    make_shanghaitech(tmp_path / "part_A_final", {"test_data": [2]})
    summary, dsd = run_import("shanghaitech", tmp_path / "part_A_final" / "test_data", tmp_path / "out")
    assert list(dsd) == ["test"] and dsd["test"]["split"] == ["test"]
    assert summary.dataset == "shanghaitech-a" and dsd["test"]["dataset"] == ["shanghaitech-a"]


def test_rows_and_skipped_files_come_in_natural_order(tmp_path: Path) -> None:
    root = tmp_path / "part_B"
    make_shanghaitech(root, {"train_data": [1] * 10})
    for number in (2, 10):  # two pictures without annotation: skipped, listed IMG_2 before IMG_10
        (root / "train_data" / "ground-truth" / f"GT_IMG_{number}.mat").unlink()
    (root / "train_data" / "ground-truth" / "GT_IMG_3.mat").write_bytes(b"broken")  # found unreadable later
    summary, dsd = run_import("shanghaitech", root, tmp_path / "out")
    assert dsd["train"]["image_id"] == [f"IMG_{n}" for n in (1, 4, 5, 6, 7, 8, 9)]
    skipped = [Path(s.path).relative_to(root / "train_data").as_posix() for s in summary.skipped]
    assert skipped == ["ground-truth/GT_IMG_3.mat", "images/IMG_2.jpg", "images/IMG_10.jpg"]  # by path, naturally
    make_shanghaitech(tmp_path / "many", {".": [1] * 11})
    _, dsd = run_import("shanghaitech", tmp_path / "many", tmp_path / "out-many")
    assert dsd["train"]["image_id"][:3] == ["IMG_1", "IMG_2", "IMG_3"] and dsd["train"]["image_id"][-1] == "IMG_11"


def test_jhu_crowd_val_becomes_validation_with_its_own_labels_and_boxes_clipped(tmp_path: Path) -> None:
    root = tmp_path / "jhu_crowd_v2.0"
    for split, labels in (("train", "0001,1,street,0,0\n"), ("val", "0001,1,stadium,3,1\n")):
        write_jpeg(root / split / "images" / "0001.jpg", width=32, height=24)
        (root / split / "gt").mkdir(parents=True)
        (root / split / "image_labels.txt").write_text(labels)
        (root / split / "gt" / "0001.txt").write_text("30 22 8 6 1 0\n")  # box 26..34 x 19..25: past both edges
    _, dsd = run_import("jhu-crowd", root, tmp_path / "out")
    assert sorted(dsd) == ["train", "validation"]
    row = dsd["validation"][0]
    labels = (row["split"], row["scene_type"], row["weather"], row["distractor"])
    assert labels == ("validation", "stadium", "snow", True)
    assert dsd["train"][0]["scene_type"] == "street"
    assert row["boxes"] == [[26.0, 19.0, 32.0, 24.0]]


def test_nwpu_crowd_counts_the_points_warns_on_another_stated_count_and_pads_listed_ids(tmp_path: Path) -> None:
    root = tmp_path / "NWPU-Crowd"
    for image_id in ("0007", "0012"):
        write_jpeg(root / "images" / f"{image_id}.jpg")
    (root / "jsons").mkdir()
    two = {"img_id": "0007.jpg", "human_num": 5, "points": [[3.0, 4.0], [10.0, 11.0]], "boxes": [[1, 2, 5, 6]]}
    (root / "jsons" / "0007.json").write_text(json.dumps(two))  # one box for two points: boxes cannot be paired
    (root / "jsons" / "0012.json").write_text(json.dumps({"human_num": 1, "points": [[1.0, 1.0]]}))
    (root / "train.txt").write_text("7 2 1\n12 0 0\n")  # ids as numbers, without the zero padding
    summary, dsd = run_import("nwpu-crowd", root, tmp_path / "out")
    rows = by_id(dsd["train"])
    assert sorted(rows) == ["0007", "0012"]
    assert (rows["0007"]["count"], rows["0007"]["illumination"], rows["0007"]["boxes"]) == (2, 2, None)
    assert [(Path(w.path).name, w.reason) for w in summary.warnings] == [
        ("0007.json", "states 5 heads but lists 2 points; count = points")
    ]


def make_nwpu(root: Path, annotation: str, lists: dict[str, str]) -> None:
    write_jpeg(root / "images" / "0001.jpg")
    (root / "jsons").mkdir()
    (root / "jsons" / "0001.json").write_text(annotation)
    for name, text in lists.items():
        (root / name).write_text(text)


@pytest.mark.parametrize("human_num", ["NaN", "Infinity", "1e400", "-3", "2.5", "true", '"7"'])
def test_nwpu_crowd_human_num_that_is_not_a_count_is_ignored_not_a_crash(tmp_path: Path, human_num: str) -> None:
    """int(NaN) and int(inf) raised out of the writer: the whole import died with a traceback."""
    root = tmp_path / "NWPU-Crowd"
    make_nwpu(root, f'{{"points": [[1.0, 2.0]], "human_num": {human_num}}}', {"train.txt": "0001 1 1\n"})
    summary, dsd = run_import("nwpu-crowd", root, tmp_path / "out")
    assert dsd["train"][0]["count"] == 1
    assert summary.warnings == [] and summary.skipped == []


def test_nwpu_crowd_boxes_with_a_non_finite_value_are_left_out_like_unpairable_ones(tmp_path: Path) -> None:
    """NaN and inf boxes were stored as they came (clamping keeps NaN): a box of NaN size in the dataset."""
    root = tmp_path / "NWPU-Crowd"
    annotation = '{"points": [[1.0, 2.0], [3.0, 4.0]], "boxes": [[0, 1, 2, 3], [NaN, 1, Infinity, 3]]}'
    make_nwpu(root, annotation, {"train.txt": "0001 1 1\n"})
    _, dsd = run_import("nwpu-crowd", root, tmp_path / "out")
    row = dsd["train"][0]
    assert (row["count"], row["boxes"]) == (2, None)


def test_nwpu_crowd_split_list_levels_outside_int32_are_unknown_not_a_crash(tmp_path: Path) -> None:
    """99999999999 does not fit the int32 column: Arrow raised and the import died with DatasetGenerationError."""
    root = tmp_path / "NWPU-Crowd"
    make_nwpu(root, '{"points": [[1.0, 2.0]], "human_num": 1}', {"train.txt": "0001 99999999999 -2147483649\n"})
    _, dsd = run_import("nwpu-crowd", root, tmp_path / "out")
    row = dsd["train"][0]
    assert (row["illumination"], row["scene_level"]) == (-1, -1)


def test_nwpu_crowd_image_in_two_split_lists_is_imported_once_and_the_second_listing_reported(tmp_path: Path) -> None:
    """It was imported into both train and validation: a training image in the evaluation split, said nowhere."""
    root = tmp_path / "NWPU-Crowd"
    make_nwpu(root, '{"points": [[1.0, 2.0]], "human_num": 1}', {"train.txt": "0001 1 1\n", "val.txt": "1 1 1\n"})
    summary, dsd = run_import("nwpu-crowd", root, tmp_path / "out")
    assert list(dsd) == ["train"] and dsd["train"]["image_id"] == ["0001"]
    [skipped] = summary.skipped
    assert Path(skipped.path).name == "0001.jpg"
    assert "listed in val.txt and in train.txt; kept in train.txt only" in skipped.reason


@pytest.mark.parametrize("orientation", [0, 9])
def test_an_exif_orientation_outside_1_to_8_is_read_as_upright(tmp_path: Path, orientation: int) -> None:
    """PIL's exif_transpose (what datasets applies) leaves such a picture as stored, so must the points."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    write_jpeg(tmp_path / "pts" / "r.jpg", width=32, height=24, exif=exif)
    (tmp_path / "pts" / "r.txt").write_text("30 2\n")
    summary, dsd = run_import("points", tmp_path / "pts", tmp_path / "out")
    assert dsd["train"][0]["points"] == [[30.0, 2.0]] and dsd["train"][0]["image"].size == (32, 24)
    assert summary.splits["train"].reoriented == 0


def test_points_format_finds_lists_in_a_labels_folder_beside_images_and_ignores_hidden_pictures(
    tmp_path: Path,
) -> None:
    root = tmp_path / "crowds"
    write_jpeg(root / "images" / "a.jpg")
    write_jpeg(root / "images" / "._a.jpg")  # macOS metadata beside a picture copied from a Mac
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("1 2\n3 4\n")
    summary, dsd = run_import("points", root, tmp_path / "out")
    assert dsd["train"]["image_id"] == ["a"] and dsd["train"]["count"] == [2]
    assert summary.skipped == []


def test_config_refuses_an_out_that_holds_the_benchmark_root(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    with pytest.raises(ConfigError, match="would replace the benchmark folder"):
        ImportConfig("points", tmp_path / "bench", tmp_path)


def test_an_out_that_would_be_refused_is_refused_before_any_image_is_read(tmp_path: Path, monkeypatch) -> None:
    from rankset.importers import writer

    def no_reading(self, split: str) -> bool:
        raise AssertionError(f"split {split} was read before --out was checked")

    make_ucf_cc_50(tmp_path / "UCF_CC_50", [1, 2])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    monkeypatch.setattr(writer._ImportRun, "prime", no_reading)
    with pytest.raises(InputError, match="holds files that are not a dataset"):
        import_benchmark(ImportConfig("ucf-cc-50", tmp_path / "UCF_CC_50", tmp_path / "notes"), progress=False)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def jpeg_with_raw_orientation_tag(path: Path, tag_type: int, count: int, value: bytes) -> None:
    """A 32x24 JPEG whose EXIF orientation entry has the given TIFF type and (up to 4 bytes of) value."""
    import struct

    entry = struct.pack("<HHI", 0x0112, tag_type, count) + value.ljust(4, b"\0")
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), "gray").save(path, "JPEG", exif=b"Exif\x00\x00" + tiff)


def test_a_picture_whose_orientation_tag_is_text_is_imported_as_stored_not_skipped(tmp_path: Path) -> None:
    root = tmp_path / "part_B" / "train_data"
    jpeg_with_raw_orientation_tag(root / "images" / "IMG_1.jpg", 2, 4, b"abc\0")  # ASCII: PIL leaves it as stored
    (root / "ground-truth").mkdir()
    write_shanghaitech_mat(root / "ground-truth" / "GT_IMG_1.mat", np.array([[3.0, 20.0], [30.0, 2.0]]))
    summary, dsd = run_import("shanghaitech", tmp_path / "part_B", tmp_path / "out")
    assert summary.skipped == []
    row = dsd["train"][0]
    assert row["image"].size == (32, 24) and summary.splits["train"].reoriented == 0
    np.testing.assert_array_equal(row["points"], [[3.0, 20.0], [30.0, 2.0]])
