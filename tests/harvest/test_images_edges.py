"""Picture checks at their edges: every sniffed format, exact limits, EXIF orientation, odd pixel modes, and the
process-wide bomb guard put back after a run."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from harvest.images import check_image, pixel_limit
from tests.harvest.imagegen import scene


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "mode", "extension"),
    [("JPEG", "RGB", "jpg"), ("PNG", "RGBA", "png"), ("GIF", "P", "gif"), ("WEBP", "RGB", "webp"),
     ("BMP", "RGB", "bmp"), ("TIFF", "CMYK", "tif"), ("JPEG", "CMYK", "jpg"), ("PNG", "LA", "png"),
     ("PNG", "1", "png"), ("TIFF", "F", "tif"), ("PNG", "I;16", "png")],
)  # fmt: skip
def test_every_sniffed_format_and_odd_pixel_mode_is_ok_with_its_size_and_extension(
    fmt: str, mode: str, extension: str
) -> None:
    image = scene(3, 40, 30).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 200)  # a 16-bit grey PNG
    check = check_image(encoded(image, fmt), min_side=30)
    assert (check.status, check.format, check.width, check.height, check.extension) == ("ok", fmt, 40, 30, extension)


def test_gif87a_is_sniffed_as_gif() -> None:
    data = encoded(Image.new("P", (40, 30)), "GIF")
    assert data[:6] == b"GIF87a" and check_image(data).status == "ok"
    assert check_image(b"GIF89a" + data[6:]).status == "ok"


def test_the_pixel_limit_and_the_size_floor_are_inclusive() -> None:
    data = encoded(Image.new("RGB", (40, 30)), "PNG")
    assert check_image(data, max_pixels=1200).ok and check_image(data, min_side=30).ok
    over = check_image(data, max_pixels=1199)
    assert over.status == "decompression_bomb" and "40x30 = 1200 pixels" in over.error and "1199" in over.error
    small = check_image(data, min_side=31)
    assert small.status == "too_small" and (small.width, small.height) == (40, 30)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_width_height_and_the_size_floor_are_measured_after_exif_orientation(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(Image.new("RGB", (40, 30), (20, 90, 160)), "JPEG", exif=exif)
    turned = orientation >= 5  # 5..8 swap the sides
    check = check_image(data, min_side=30)
    assert (check.width, check.height) == ((30, 40) if turned else (40, 30))
    assert check_image(data, min_side=35).status == "too_small"  # the short side is 30 either way


def test_pixel_limit_makes_pillows_warning_an_error_for_the_run_and_puts_everything_back() -> None:
    import warnings

    before = Image.MAX_IMAGE_PIXELS
    with pixel_limit(1000):
        assert Image.MAX_IMAGE_PIXELS == 1000
        with pytest.raises(Image.DecompressionBombWarning):
            warnings.warn("too big", Image.DecompressionBombWarning, stacklevel=1)
    assert before == Image.MAX_IMAGE_PIXELS
    with pytest.raises(RuntimeError), pixel_limit(1000):
        raise RuntimeError("a run that fails")
    assert before == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_a_picture_cut_in_half_is_truncated_in_every_format(fmt: str) -> None:
    """``truncated`` is a transient status (``--retry-failed`` fetches it again); ``not_image`` is final."""
    image = scene(4, 48, 36)
    data = encoded(image.convert("P") if fmt == "GIF" else image, fmt)
    check = check_image(data[: len(data) // 2])
    assert (check.status, check.format) == ("truncated", fmt), check.error


def test_a_webp_shorter_than_its_riff_header_says_is_truncated_and_one_with_extra_bytes_is_fine() -> None:
    data = encoded(scene(4, 48, 36), "WEBP")
    for cut in (12, 30, len(data) - 1):
        check = check_image(data[:cut])
        assert check.status == "truncated" and f"{cut} of the {len(data)} bytes" in check.error, cut
    assert check_image(data + b"trailing junk").ok
    assert check_image(b"RIFF\x04\x00\x00\x00WEBPVP8 ").status == "not_image"  # complete as declared, not a picture


def test_an_empty_file_is_not_a_picture_and_the_error_says_it_is_empty() -> None:
    check = check_image(b"")
    assert (check.status, check.error) == ("not_image", "not a picture: it is empty (0 bytes)")
