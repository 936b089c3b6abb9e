"""rankset.images.to_rgb: deep pictures keep their brightness where their white point is known."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from rankset.errors import ImageError
from rankset.images import decode_oriented, to_rgb


def _gray(img: Image.Image) -> np.ndarray:
    rgb = to_rgb(img)
    assert rgb.mode == "RGB"
    return np.asarray(rgb)[..., 0]


def test_a_dark_16_bit_pgm_stays_dark() -> None:
    # A 16-bit PGM (maxval 65535) of values a quarter of full scale; Pillow reads it as mode "I".
    values = np.array([[0, 16384], [8192, 16384]], dtype=">u2")
    data = b"P5\n2 2\n65535\n" + values.tobytes()
    img, _ = decode_oriented(data, "dark.pgm")
    assert np.asarray(img)[..., 0].tolist() == [[0, 64], [32, 64]]  # not stretched to [[0, 255], [128, 255]]


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_values_map_to_8_bits_with_white_at_65535(mode: str) -> None:
    arr = np.array([[0, 257 * 10], [257 * 100, 65535]])
    dtypes = {"I;16": np.uint16, "I;16B": ">u2"}
    img = Image.fromarray(arr.astype(dtypes[mode])) if mode in dtypes else Image.fromarray(arr.astype(np.int32), "I")
    assert img.mode == mode
    assert _gray(img).tolist() == [[0, 10], [100, 255]]


@pytest.mark.parametrize(
    ("mode", "values", "gray"),
    [
        ("I", [[257 * 50, 65535]], [[50, 255]]),  # full white is still within 0..65535: not stretched from 50
        ("I;16B", [[257 * 50, 65535]], [[50, 255]]),  # big-endian 16-bit, as a PNG or TIFF may decode
        ("F", [[0.25, 1.0]], [[64, 255]]),  # full white is still within 0..1: not stretched from 0.25
    ],
)
def test_a_picture_reaching_its_white_point_keeps_its_darkest_value(mode: str, values: list, gray: list) -> None:
    arr = np.array(values, dtype={"I": np.int32, "I;16B": ">u2", "F": np.float32}[mode])
    img = Image.fromarray(arr) if mode == "I;16B" else Image.fromarray(arr, mode)
    assert img.mode == mode
    assert _gray(img).tolist() == gray


@pytest.mark.parametrize("mode", ["I", "F"])
def test_an_empty_deep_picture_converts_to_an_empty_rgb_one(mode: str) -> None:
    rgb = to_rgb(Image.new(mode, (0, 0)))
    assert rgb.mode == "RGB" and rgb.size == (0, 0)


def test_floats_within_0_and_1_have_white_at_1() -> None:
    img = Image.fromarray(np.array([[0.0, 0.25], [0.5, 0.5]], dtype=np.float32), "F")
    assert _gray(img).tolist() == [[0, 64], [128, 128]]  # not stretched: 0.5 is mid-grey, not white


@pytest.mark.parametrize(
    ("mode", "values"),
    [("I", [[-1000, 0], [500, 100_000]]), ("F", [[-2.0, 0.0], [1.0, 3.0]])],
)
def test_values_with_no_known_white_point_are_stretched_from_minimum_to_maximum(mode: str, values: list) -> None:
    dtype = np.int32 if mode == "I" else np.float32
    gray = _gray(Image.fromarray(np.array(values, dtype=dtype), mode))
    assert gray.min() == 0 and gray.max() == 255


def test_an_8_bit_picture_with_alpha_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    assert np.asarray(to_rgb(rgba)).tolist() == [[[255, 255, 255], [10, 20, 30]]]


def test_a_16_bit_png_round_trips_through_decode() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), 257 * 200, dtype=np.uint16)).save(buffer, "PNG")
    img, size = decode_oriented(buffer.getvalue(), "deep.png")
    assert size == (4, 4) and np.asarray(img).max() == 200


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_picture_between_pillows_limit_and_twice_it_decodes_without_its_raw_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x30 = 1200 pixels: over the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would fail here
        image, size = decode_oriented(png_bytes(40, 30), "wide.png")
    assert size == (40, 30) and image.size == (40, 30)


def test_a_picture_over_twice_pillows_limit_is_an_image_error_naming_it_and_the_way_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match=r"huge.png: too many pixels to decode safely .*2500 pixels.*downscale"):
        decode_oriented(png_bytes(50, 50), "huge.png")
