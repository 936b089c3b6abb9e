"""Perceptual hashes of pictures: pHash and dHash (64 bits each, via imagehash), stored as 16-digit hex.

Hashes are computed once per image id and stored in the pool (``phash`` and ``dhash`` columns), so that
dedup with another threshold never decodes images again. This module decodes images; the grouping
maths on the resulting integers lives in :mod:`harvest.dedup`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

# JPEGs are decoded at reduced scale (libjpeg DCT scaling): both hashes shrink the picture to 32x32 or 9x8
# anyway, and a 4000 px photo then decodes in a tenth of the time.
DECODE_DRAFT_SIZE = (256, 256)
HASH_BITS = 64
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class HashResult:
    """The hashes of one file, or the reason it could not be hashed."""

    key: str
    phash: str | None
    dhash: str | None
    error: str | None = None


def load_for_hashing(path: str | Path | BinaryIO) -> Image.Image:
    """Open a picture upright (EXIF orientation applied) and in RGB, decoding JPEGs at reduced scale."""
    from rankset.images import open_quietly  # a stored picture was admitted under the collecting run's --max-pixels

    image = open_quietly(path)
    image.draft("RGB", DECODE_DRAFT_SIZE)
    image = ImageOps.exif_transpose(image)
    return image.convert("RGB")


def image_hashes(image: Image.Image) -> tuple[str, str]:
    """(pHash, dHash) of a decoded picture as 16-digit hex strings."""
    import imagehash

    return str(imagehash.phash(image)), str(imagehash.dhash(image))


def hash_file(key: str, path: str | Path | BinaryIO) -> HashResult:
    """Hash one file; a file that cannot be decoded gives a result with ``error`` set instead of raising."""
    from rankset.images import open_quietly

    try:
        with open_quietly(path) as probe:
            probe.verify()  # catches truncated files that a reduced-scale decode would silently accept
        if hasattr(path, "seek"):
            path.seek(0)
        phash, dhash = image_hashes(load_for_hashing(path))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return HashResult(key, None, None, f"{type(e).__name__}: {e}")
    return HashResult(key, phash, dhash)


def hash_bytes(key: str, data: bytes) -> HashResult:
    """Hash encoded image bytes (e.g. a dataset's image column) the same way as a file."""
    import io

    return hash_file(key, io.BytesIO(data))


def die_with_parent(parent: int | None) -> None:
    """Process-pool initializer: end this worker when the process that started it dies (Linux; elsewhere a no-op).

    A worker waits on its task queue, whose write end it holds itself (fork), so after ``kill -9`` of
    ``harvest dedup`` it waited for ever, one orphan per core. ``PR_SET_PDEATHSIG`` has the kernel send it SIGTERM
    when its parent goes; a parent that died before the call (``parent`` is no longer ours) ends it at once.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl (an unusual libc): the parent check below still holds
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _hash_batch(items: Sequence[tuple[str, str]]) -> list[HashResult]:
    return [hash_file(key, path) for key, path in items]


def hash_files(
    items: Sequence[tuple[str, str | Path]],
    workers: int = 0,
    on_progress: Callable[[int], None] | None = None,
    chunk: int = 64,
) -> list[HashResult]:
    """Hash ``(key, path)`` pairs, in ``workers`` processes (0: one per core, 1: in this process).

    ``on_progress(n)`` is called after each finished chunk with the number of files it held.
    """
    items = [(key, str(path)) for key, path in items]
    workers = workers or max(1, (os.cpu_count() or 1))
    batches = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    results: list[HashResult] = []
    if workers == 1 or len(batches) <= 1:
        for batch in batches:
            results.extend(_hash_batch(batch))
            if on_progress:
                on_progress(len(batch))
        return results
    context = multiprocessing.get_context()
    parent = os.getpid() if context.get_start_method() in ("fork", "spawn") else None  # forkserver: not its parent
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=die_with_parent, initargs=(parent,)
    ) as executor:
        for batch, done in zip(batches, executor.map(_hash_batch, batches), strict=True):
            results.extend(done)
            if on_progress:
                on_progress(len(batch))
    return results


def hex_to_uint64(hexes: Iterable[str]) -> np.ndarray:
    """Hex hash strings to a uint64 array (the bit order imagehash prints: first hex digit = highest bits)."""
    return np.array([int(h, 16) for h in hexes], dtype=np.uint64)


def uint64_to_hex(values: Iterable[int]) -> list[str]:
    """Inverse of :func:`hex_to_uint64`: zero-padded 16-digit lowercase hex."""
    return [f"{int(v):016x}" for v in values]
