"""rankset build's EXIF handling, pinned where a hand-made mutant survived: every orientation that turns the picture
by 90 degrees (5 transpose and 7 transverse as well as 6 and 8) swaps the source size the sets are planned on, and
each patch shows the pixels of its box in the picture as displayed."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from rankset.build import BuildConfig, cut_sets
from rankset.inputs import SourcePicture

# the transpose that undoes what exif_transpose does for each orientation: stored = UNDO(displayed)
UNDO = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def displayed_gradient(width: int, height: int) -> Image.Image:
    """Red grows with x, green with y: a patch's mean colour says where its box lies."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, axis=0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, axis=1)
    return Image.fromarray(np.stack([x, y, np.zeros_like(x)], axis=-1).round().astype(np.uint8))


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_every_exif_orientation_gives_the_displayed_size_and_the_displayed_pixels(orientation: int) -> None:
    shown = displayed_gradient(120, 200)
    stored = shown if orientation == 1 else shown.transpose(UNDO[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif.tobytes())
    data = buffer.getvalue()
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == (120, 200)  # the picture is what we meant

    cfg = BuildConfig("in", "out", k=2, s=0.5, r=2.0, size=16, sets_per_image=3)
    rows, skip, _ = cut_sets(SourcePicture("p", data=data), cfg)
    assert skip is None
    for row in rows:
        assert row["source_size"] == [120, 200]
        for image, (x0, y0, x1, y1) in zip(row["images"], row["boxes"], strict=True):
            assert 0 <= x0 < x1 <= 120 and 0 <= y0 < y1 <= 200
            mean = np.asarray(Image.open(io.BytesIO(image["bytes"])).convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
            assert mean[0] == pytest.approx(255 * ((x0 + x1) / 2 - 0.5) / 119, abs=6)
            assert mean[1] == pytest.approx(255 * ((y0 + y1) / 2 - 0.5) / 199, abs=6)


def test_a_palette_picture_with_a_transparent_colour_is_composited_on_white() -> None:
    from rankset.images import to_rgb

    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 0  # palette entry 0 (black) is transparent
    assert np.asarray(to_rgb(img)).tolist() == [[[255, 255, 255], [200, 0, 0]]]
