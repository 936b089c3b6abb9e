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


def test_mall_frames_past_the_last_annotated_one_are_skipped_saying_so(tmp_path: Path) -> None:
    """mall_gt.mat holding 2 frames: seq_000003 has no annotation and is skipped, never read past the cell array."""
    import numpy as np
    import scipy.io

    root = tmp_path / "mall_dataset"
    frames = np.empty((1, 2), dtype=object)
    for index in range(2):
        struct = np.zeros((1, 1), dtype=[("loc", "O")])
        struct[0, 0]["loc"] = np.array([[1.0, 2.0]])
        frames[0, index] = struct
    root.mkdir()
    scipy.io.savemat(str(root / "mall_gt.mat"), {"frame": frames})
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
