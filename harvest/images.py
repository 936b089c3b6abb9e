"""Is this really a usable picture? Magic-byte sniffing, a full decode under Pillow's bomb guard, a size floor.

The type comes from the bytes, never from a ``Content-Type`` header or a file extension: servers lie, and
an HTML error page served as ``image/jpeg`` must not enter the pool. Pure functions on bytes; nothing here
opens files or sockets.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from harvest.pool import EXTENSIONS

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default for Image.MAX_IMAGE_PIXELS
_PILLOW_PIXELS = re.compile(r"\((\d+) pixels\)")  # "Image size (9000000 pixels) exceeds limit of ..."
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class ImageCheck:
    """The verdict on some bytes: ``status`` ``ok`` or a failure class, with what was learned about them."""

    status: str
    error: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def extension(self) -> str:
        """File extension to store the bytes under (``jpg``, ``png``, …)."""
        fmt = (self.format or "bin").upper()
        return EXTENSIONS.get(fmt, fmt.lower())


def sniff_format(head: bytes) -> str | None:
    """The Pillow format name the leading bytes announce, or None when they are not a known picture format."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "AVIF"
    return None


def check_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 0) -> ImageCheck:
    """Sniff, fully decode and measure ``data``.

    Status is ``ok``, ``not_image`` (unknown magic bytes or undecodable), ``truncated`` (the data ends early),
    ``decompression_bomb`` (more than ``max_pixels`` pixels) or ``too_small`` (shorter side under
    ``min_side``, measured after EXIF orientation). Width and height are reported after EXIF orientation,
    as later stages see the picture.
    """
    if not data:  # a zero-byte file or body: say so, not "the bytes start with b''"
        return ImageCheck("not_image", "not a picture: it is empty (0 bytes)")
    sniffed = sniff_format(data[:16])
    if sniffed is None:
        return ImageCheck("not_image", f"not a picture: the bytes start with {data[:12]!r}")
    try:
        with Image.open(io.BytesIO(data), formats=[sniffed]) as im:
            width, height = im.size
            if width * height > max_pixels:
                return _bomb(width, height, max_pixels, sniffed)
            im.load()  # full decode: catches truncated and corrupt data that the header alone hides
            fmt = im.format or sniffed
            orientation = im.getexif().get(_EXIF_ORIENTATION)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's message quotes its own limit (twice --max-pixels for the error): say the user's instead.
        found = _PILLOW_PIXELS.search(str(e))
        size = f"{found.group(1)} pixels" if found else "the picture"
        return ImageCheck("decompression_bomb", f"{size} is over the --max-pixels limit of {max_pixels}", sniffed)
    except UnidentifiedImageError as e:
        if _shorter_than_declared(data, sniffed):
            return _cut_short(data, sniffed)
        return ImageCheck("not_image", f"looks like {sniffed} but Pillow cannot identify it: {e}", sniffed)
    except EOFError as e:
        return ImageCheck("truncated", f"{sniffed} data ends early: {e or 'unexpected end of data'}", sniffed)
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        if "truncated" in str(e).lower():
            return ImageCheck("truncated", f"{sniffed} data ends early: {e}", sniffed)
        if _shorter_than_declared(data, sniffed):
            return _cut_short(data, sniffed)
        return ImageCheck("not_image", f"{sniffed} data does not decode: {e}", sniffed)
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    if min(width, height) < min_side:
        return ImageCheck("too_small", f"{width}x{height} is smaller than --min-side {min_side}", fmt, width, height)
    return ImageCheck("ok", None, fmt, width, height)


def _shorter_than_declared(data: bytes, fmt: str) -> bool:
    """Whether a container that states its own length holds fewer bytes than it says (WebP: the RIFF size). Pillow's
    WebP decoder only says "could not create decoder object" for a cut file, which would make a download cut short a
    permanent ``not_image`` instead of a ``truncated`` that ``--retry-failed`` fetches again."""
    return fmt == "WEBP" and len(data) >= 8 and len(data) < 8 + int.from_bytes(data[4:8], "little")


def _cut_short(data: bytes, fmt: str) -> ImageCheck:
    declared = 8 + int.from_bytes(data[4:8], "little")
    return ImageCheck("truncated", f"{fmt} data ends early: {len(data)} of the {declared} bytes it declares", fmt)


def _bomb(width: int, height: int, max_pixels: int, fmt: str) -> ImageCheck:
    return ImageCheck(
        "decompression_bomb",
        f"{width}x{height} = {width * height} pixels is over the --max-pixels limit of {max_pixels}",
        fmt,
        width,
        height,
    )


@contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Set Pillow's decompression-bomb limit for a run and make its warning an error, then restore both.

    Pillow's guard is process-wide (``Image.MAX_IMAGE_PIXELS``), so it is set once around a whole run
    rather than per image; :func:`check_image` also compares the size itself, so it is safe without this.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous
