"""Pictures already in a pool were admitted under the collecting run's --max-pixels: dedup, filter and report read
them without Pillow's raw DecompressionBombWarning, and one over twice Pillow's limit is a failure with a reason."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harvest.embed import PictureFiles
from harvest.hashing import hash_file
from harvest.report import _thumbnail


@pytest.fixture
def pictures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A 40x30 picture (over a lowered limit of 1000 pixels, under twice it) and a 50x50 one (over twice it)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    rng = np.random.default_rng(0)
    wide, huge = tmp_path / "wide.png", tmp_path / "huge.png"
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(wide)
    Image.fromarray(rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)).save(huge)
    return wide, huge


def test_dedup_hashes_a_picture_over_pillows_limit_quietly_and_one_over_twice_it_is_a_decode_error(
    pictures: tuple[Path, Path],
) -> None:
    wide, huge = pictures
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert hash_file("wide", wide).error is None
        error = hash_file("huge", huge).error
    assert error is not None and "too many pixels to decode safely" in error


def test_the_report_thumbnail_and_the_filter_read_a_picture_over_pillows_limit_quietly(
    pictures: tuple[Path, Path],
) -> None:
    wide, _ = pictures
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert _thumbnail(wide, 16).shape[2] == 3 and _thumbnail(wide, 16).std() > 0  # not the grey failure square
        _, tensor, error = PictureFiles([str(wide)], lambda image: np.asarray(image), 16)[0]
    assert error == ""
