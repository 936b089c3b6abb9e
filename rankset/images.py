"""Decoding pictures once, oriented and in RGB, and cutting resized patches out of them.

This is the only module of rankset's build path that touches pixels. A picture is decoded once for all
its patches; when every patch is downscaled by at least 2x, a JPEG is decoded at reduced resolution
(``draft``), which is several times cheaper than a full decode and loses nothing at the output size.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rankset.errors import ImageError

EXIF_ORIENTATION = 0x0112
TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}  # rotated by 90 degrees: width and height swap
TURNING_ORIENTATIONS = frozenset(range(2, 9))  # the values PIL's exif_transpose acts on (1: as stored)


def exif_orientation(value: object) -> int:
    """The EXIF orientation 2..8 that PIL's ``exif_transpose`` (which datasets applies on decode) acts on, else 1:
    it looks the raw tag value up in a table, so text, a tuple, 0 or 9 leave the picture as stored."""
    try:
        return int(value) if value in TURNING_ORIENTATIONS else 1  # type: ignore[call-overload]
    except TypeError:  # an unhashable value: PIL's lookup would fail too, but no tag of EXIF's types is one
        return 1


def bomb_message(name: str, error: Image.DecompressionBombError) -> str:
    """What to say about a picture Pillow refused as a decompression bomb, and what to do about it."""
    return (
        f"{name}: too many pixels to decode safely ({error}); a real photo this large is rare: cut it into parts "
        "or downscale it first"
    )


def open_quietly(source: Any) -> Image.Image:
    """``Image.open`` without Pillow's ``DecompressionBombWarning``, which it prints (once, raw) for a picture between
    its limit and twice it: pictures here were chosen by the user or admitted by harvest's own ``--max-pixels``.
    Over twice the limit Pillow still refuses, raised as :class:`ImageError` by :func:`bomb_message`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(source)
        except Image.DecompressionBombError as e:
            raise ImageError(bomb_message(str(source) if isinstance(source, str | PathLike) else "picture", e)) from e


def open_image(data: bytes, name: str = "<bytes>") -> Image.Image:
    """Open (lazily) an encoded picture; an empty or unidentifiable file raises ImageError with the reason."""
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # as open_quietly
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        raise ImageError(f"{name}: not an image Pillow can read") from e
    except Image.DecompressionBombError as e:
        raise ImageError(bomb_message(name, e)) from e
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({e})") from e


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """The size after applying the EXIF orientation tag, without decoding pixels."""
    try:
        orientation = exif_orientation(img.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block is no reason to lose the picture
        orientation = 1
    w, h = img.size
    return (h, w) if orientation in TRANSPOSED_ORIENTATIONS else (w, h)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha composited on white, 16/32-bit and float scaled to 0..255.

    Deep pictures keep their brightness where their white point is known: 16-bit modes and 32-bit integers within
    0..65535 (Pillow reads a 16-bit PGM as "I", scaled to 65535) have white at 65535, floats within 0..1 at 1.0.
    Only values outside those ranges, whose white point nothing says, are stretched from their minimum to maximum.
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = _value_range(img.mode, arr)
        scaled = np.clip((arr - lo) / max(hi - lo, 1e-12) * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(scaled, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _value_range(mode: str, arr: np.ndarray) -> tuple[float, float]:
    """Black and white of a deep single-channel picture (see :func:`to_rgb`)."""
    if arr.size == 0:
        return 0.0, 1.0
    lo, hi = float(arr.min()), float(arr.max())
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        return 0.0, 65535.0
    if mode == "F" and lo >= 0 and hi <= 1:
        return 0.0, 1.0
    return lo, hi


def decode_oriented(
    data: bytes, name: str = "<bytes>", plan: Callable[[int, int], int] | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode fully (with a completeness check), apply EXIF orientation, convert to RGB.

    ``plan(width, height) -> factor`` may ask for a reduced JPEG decode (1, 2, 4 or 8) given the oriented
    full size. Returns the RGB picture (possibly reduced) and the oriented full size in source pixels.
    """
    img = open_image(data, name)
    try:
        full = oriented_size(img)
        factor = plan(*full) if plan else 1
        if factor > 1 and img.format == "JPEG":
            w, h = img.size
            img.draft("RGB", (math.ceil(w / factor), math.ceil(h / factor)))
        img.load()
        img = ImageOps.exif_transpose(img) or img
        return to_rgb(img), full
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(bomb_message(name, e)) from e
    except (OSError, ValueError, SyntaxError, struct.error) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({e})") from e


def cut_patches(
    img: Image.Image,
    full_size: tuple[int, int],
    boxes: Sequence[tuple[float, float, float, float]],
    size: int,
) -> list[Image.Image]:
    """Each box (in full-size source pixels) resized to size x size from ``img`` (which may be reduced)."""
    sx, sy = img.width / full_size[0], img.height / full_size[1]
    patches = []
    for x0, y0, x1, y1 in boxes:
        box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
        patches.append(img.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0))
    return patches


def encode_jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()
