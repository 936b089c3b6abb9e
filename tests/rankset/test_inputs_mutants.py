"""Which files a folder or pool contributes to rankset build, pinned where a hand-made mutant survived: side files are
known by their suffix in any case, and a pool's missing (NaN) licence stays missing rather than becoming "nan"."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from rankset.inputs import _text, scan_folder


def test_side_files_with_upper_case_suffixes_are_not_tried_as_pictures(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    for name in ("NOTES.TXT", "counts.CSV", "a.JSON", "gt.Mat"):
        (tmp_path / name).write_text("not a picture")
    pictures, refused = scan_folder(tmp_path)
    assert [Path(p.path).name for p in pictures if p.path] == ["a.jpg"]
    assert refused == []


def test_a_missing_pool_value_read_as_nan_is_no_value() -> None:
    assert _text(float("nan")) is None and _text(None) is None
    assert _text("cc-by-4.0") == "cc-by-4.0" and _text(3) == "3"
