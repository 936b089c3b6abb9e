"""rankset import, pinned where a hand-made mutant survived test_importers.py: which files each benchmark's plan
imports and into which split. Plans read file names only, so the files here are empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankset.importers import ImportConfig, create_importer


def touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def plan_of(fmt: str, root: Path, tmp_path: Path, **kwargs: object):
    return create_importer(fmt).plan(ImportConfig(fmt, root, tmp_path / "out", **kwargs))  # type: ignore[arg-type]


def test_ucf_cc_50_numbers_outside_1_to_50_are_skipped_not_given_a_fold(tmp_path: Path) -> None:
    """Image 0 is no UCF_CC_50 image: it has no fold, so it is listed as skipped like 51 (not a crash of the plan)."""
    root = tmp_path / "UCF_CC_50"
    touch(root, "0.jpg", "0_ann.mat", "1.jpg", "1_ann.mat", "50.jpg", "50_ann.mat", "51.jpg", "51_ann.mat")
    plan = plan_of("ucf-cc-50", root, tmp_path)
    assert [(p.image_id, p.extra["fold"]) for p in plan.splits["train"]] == [("1", 1), ("50", 5)]
    assert sorted(Path(s.path).name for s in plan.skipped) == ["0.jpg", "51.jpg"]
    assert all("1..50" in s.reason for s in plan.skipped)


def two_frame_mall(tmp_path: Path, **extra: object) -> Path:
    """A Mall folder whose mall_gt.mat annotates 2 frames with one head each (``extra``: more .mat variables)."""
    import numpy as np
    import scipy.io

    root = tmp_path / "mall_dataset"
    frames = np.empty((1, 2), dtype=object)
    for index in range(2):
        struct = np.zeros((1, 1), dtype=[("loc", "O")])
        struct[0, 0]["loc"] = np.array([[1.0, 2.0]])
        frames[0, index] = struct
    root.mkdir()
    scipy.io.savemat(str(root / "mall_gt.mat"), {"frame": frames, **extra})
    return root


def test_mall_frames_past_the_last_annotated_one_are_skipped_saying_so(tmp_path: Path) -> None:
    """mall_gt.mat holding 2 frames: seq_000003 has no annotation and is skipped, never read past the cell array."""
    root = two_frame_mall(tmp_path)
    touch(root, "frames/seq_000001.jpg", "frames/seq_000002.jpg", "frames/seq_000003.jpg")
    plan = plan_of("mall", root, tmp_path)
    assert [p.image_id for p in plan.splits["train"]] == ["seq_000001", "seq_000002"]
    assert [(Path(s.path).name, s.reason) for s in plan.skipped] == [
        ("seq_000003.jpg", "no annotation: mall_gt.mat holds frames 1..2")
    ]


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_a_head_lands_on_its_pixel_in_the_picture_as_decoded_whatever_the_exif_orientation(
    tmp_path: Path, orientation: int
) -> None:
    """A white pixel at stored (5, 7) of a black 40x30 PNG, annotated there: after import the point lies on the white
    pixel of the decoded (EXIF-turned) picture, for every orientation, not only the common 6."""
    import io

    import numpy as np
    from PIL import Image

    from rankset.importers import import_benchmark
    from rankset.io import load_dataset_dict

    pixels = np.zeros((30, 40), dtype=np.uint8)
    pixels[7, 5] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", exif=exif.tobytes())
    root = tmp_path / "pts"
    root.mkdir()
    (root / "a.png").write_bytes(buffer.getvalue())
    (root / "a.txt").write_text("5.5 7.5\n")
    import_benchmark(ImportConfig("points", root, tmp_path / "out"), progress=False)
    row = load_dataset_dict(tmp_path / "out")["train"][0]
    decoded = np.asarray(row["image"])
    ((x, y),) = row["points"]
    assert decoded[int(y), int(x)] == 255
    assert decoded.shape == ((40, 30) if orientation >= 5 else (30, 40))


def shanghaitech_mat(path: Path, points: object, number: object) -> None:
    import numpy as np
    import scipy.io

    path.parent.mkdir(parents=True, exist_ok=True)
    struct = np.zeros((1, 1), dtype=[("location", "O"), ("number", "O")])
    struct[0, 0]["location"] = np.asarray(points, dtype=np.float64)
    struct[0, 0]["number"] = np.array([[number]], dtype=np.float64)
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = struct
    scipy.io.savemat(str(path), {"image_info": cell})


def test_shanghaitech_ground_truth_names_match_their_prefix_in_any_case(tmp_path: Path) -> None:
    root = tmp_path / "part_B" / "train_data"
    touch(root, "images/IMG_1.jpg", "images/IMG_2.jpg", "ground-truth/gt_IMG_1.mat", "ground-truth/GT_IMG_2.mat")
    plan = plan_of("shanghaitech", root, tmp_path)
    assert [(p.image_id, p.annotation.name) for p in plan.splits["train"]] == [  # type: ignore[union-attr]
        ("IMG_1", "gt_IMG_1.mat"),
        ("IMG_2", "GT_IMG_2.mat"),
    ]
    assert plan.skipped == []


@pytest.mark.parametrize("number", [float("nan"), -3.0, 2.5])
def test_shanghaitech_number_that_is_not_a_count_is_not_stated(tmp_path: Path, number: float) -> None:
    """A NaN, negative or fractional ``number`` states no count: the points are read, with no warning and no crash."""
    from PIL import Image

    from rankset.importers import import_benchmark
    from rankset.io import load_dataset_dict

    root = tmp_path / "sh"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (32, 24)).save(root / "images" / "IMG_1.jpg")
    shanghaitech_mat(root / "ground-truth" / "GT_IMG_1.mat", [[1.0, 2.0], [3.0, 4.0]], number)
    summary = import_benchmark(ImportConfig("shanghaitech", root, tmp_path / "out"), progress=False)
    assert load_dataset_dict(tmp_path / "out")["train"]["count"] == [2]
    assert summary.warnings == [] and summary.skipped == []


def test_ucf_qnrf_hidden_annotation_files_are_ignored_not_listed_as_orphans(tmp_path: Path) -> None:
    """macOS leaves ``._img_0001_ann.mat`` beside each file it unpacks: no annotations, and no skipped rows."""
    root = tmp_path / "UCF-QNRF"
    touch(root, "Train/img_0001.jpg", "Train/img_0001_ann.mat", "Train/._img_0001_ann.mat", "Train/._img_0001.jpg")
    plan = plan_of("ucf-qnrf", root, tmp_path)
    assert [(p.image_id, p.annotation.name) for p in plan.splits["train"]] == [  # type: ignore[union-attr]
        ("img_0001", "img_0001_ann.mat")
    ]
    assert plan.skipped == []


def test_pictures_with_upper_case_suffixes_are_imported(tmp_path: Path) -> None:
    """Cameras and Windows tools write ``IMG_1.JPG``: it is a picture like ``IMG_1.jpg``, not a file to pass over."""
    root = tmp_path / "train_data"
    touch(root, "images/IMG_1.JPG", "images/IMG_2.Png", "ground-truth/GT_IMG_1.mat", "ground-truth/GT_IMG_2.mat")
    plan = plan_of("shanghaitech", root, tmp_path)
    names = [(p.image_id, p.image.name) for p in plan.splits["train"]]
    assert names == [("IMG_1", "IMG_1.JPG"), ("IMG_2", "IMG_2.Png")]
    assert plan.skipped == []


def test_ucf_cc_50_files_not_named_by_a_number_are_passed_over(tmp_path: Path) -> None:
    root = tmp_path / "UCF_CC_50"
    touch(root, "1.jpg", "1_ann.mat", "cover.jpg", "notes_ann.mat")
    plan = plan_of("ucf-cc-50", root, tmp_path)
    assert [p.image_id for p in plan.splits["train"]] == ["1"] and plan.skipped == []


def test_jhu_crowd_image_labels_name_images_with_or_without_their_suffix() -> None:
    from rankset.importers.jhu_crowd import parse_image_labels

    labels = parse_image_labels("0001.jpg,2,stadium,2,0\n0002,5,street,3,1\n")
    assert labels["0001"] == {"stated_count": 2, "scene_type": "stadium", "weather": "rain", "distractor": False}
    assert labels["0002"] == {"stated_count": 5, "scene_type": "street", "weather": "snow", "distractor": True}


@pytest.mark.parametrize("line", ["10 12", "10 12 4 6", "10 12 4 6 1"])
def test_jhu_crowd_gt_lines_need_all_six_fields(line: str) -> None:
    """A short line is an AnnotationError naming it (the image is skipped), never two numbers read as a head box."""
    from rankset.errors import AnnotationError
    from rankset.importers.jhu_crowd import parse_gt_lines

    with pytest.raises(AnnotationError, match="line 2: expected 'x y w h o b'"):
        parse_gt_lines(f"1 2 3 4 1 0\n{line}\n", "0001.txt")


def test_the_mall_roi_mask_is_inside_wherever_it_is_nonzero() -> None:
    import io

    import numpy as np
    from PIL import Image

    from rankset.importers.mall import roi_png

    mask = np.array([[0, 1, -1], [2.5, 0, 0]])
    assert np.asarray(Image.open(io.BytesIO(roi_png(mask)))).tolist() == [[0, 255, 255], [255, 0, 0]]


def test_the_last_mall_frame_has_its_stated_count(tmp_path: Path) -> None:
    """``count`` is checked against the points for every frame, the last one included."""
    import numpy as np

    root = two_frame_mall(tmp_path, count=np.array([[1.0], [7.0]]))
    touch(root, "frames/seq_000001.jpg", "frames/seq_000002.jpg")
    importer = create_importer("mall")
    plan = importer.plan(ImportConfig("mall", root, tmp_path / "out"))
    assert [importer.read(pair).stated_count for pair in plan.splits["train"]] == [1, 7]


@pytest.mark.parametrize("value", [True, False, "3", 2.5, -1, float("nan"), [1, 2]])
def test_a_stated_count_must_be_one_whole_non_negative_number(value: object) -> None:
    from rankset.importers.base import stated_count

    assert stated_count(value) is None
    assert stated_count(3) == 3 and stated_count(4.0) == 4


@pytest.mark.parametrize("line", ["nan 3", "4 inf", "-inf 1"])
def test_a_point_list_with_a_non_finite_coordinate_is_an_annotation_error(line: str) -> None:
    """Clamping leaves NaN where it is: a NaN head would be stored and counted."""
    from rankset.errors import AnnotationError
    from rankset.importers.points import parse_point_lines

    with pytest.raises(AnnotationError, match="line 2: non-finite"):
        parse_point_lines(f"1 2\n{line}\n", "a.txt")


@pytest.mark.parametrize("fold", [0, -1, 6])
def test_a_fold_outside_1_to_5_is_refused_by_the_config(tmp_path: Path, fold: int) -> None:
    from rankset.errors import ConfigError

    (tmp_path / "ucf").mkdir()
    with pytest.raises(ConfigError, match=r"--fold must be 1\.\.5"):
        ImportConfig("ucf-cc-50", tmp_path / "ucf", tmp_path / "out", fold=fold)


def test_a_split_the_layout_leaves_empty_is_not_reported_as_every_image_skipped(tmp_path: Path) -> None:
    """UCF_CC_50 without --fold plans an empty test split: nothing was skipped from it, so no note says so."""
    import numpy as np
    import scipy.io
    from PIL import Image

    from rankset.importers import import_benchmark

    root = tmp_path / "UCF_CC_50"
    root.mkdir()
    Image.new("L", (32, 24)).save(root / "1.jpg")
    scipy.io.savemat(str(root / "1_ann.mat"), {"annPoints": np.array([[1.0, 2.0]])})
    summary = import_benchmark(ImportConfig("ucf-cc-50", root, tmp_path / "out"), progress=False)
    assert list(summary.splits) == ["train"]
    assert not any("every image was skipped" in note for note in summary.notes)


def test_nwpu_split_lists_name_images_with_or_without_suffix_and_padding() -> None:
    from rankset.importers.nwpu_crowd import parse_split_list

    entries = parse_split_list("0001.jpg 1 2\n12 0 3\n3109\n")
    assert entries == {
        "0001": {"illumination": 1, "scene_level": 2},
        "0012": {"illumination": 0, "scene_level": 3},
        "3109": {"illumination": -1, "scene_level": -1},
    }


def test_nwpu_annotations_without_a_picture_are_listed_as_skipped(tmp_path: Path) -> None:
    root = tmp_path / "NWPU-Crowd"
    touch(root, "images/0001.jpg", "jsons/0001.json", "jsons/0005.json")
    (root / "train.txt").write_text("0001 0 1\n")
    plan = plan_of("nwpu-crowd", root, tmp_path)
    assert [p.image_id for p in plan.splits["train"]] == ["0001"]
    assert [(Path(s.path).name, s.reason) for s in plan.skipped] == [("0005.json", "no image for annotation of '0005'")]
