"""The importer contract: a registry of benchmark formats, the work plan each yields, and file-pairing helpers.

An importer does two things. :meth:`Importer.plan` scans ROOT (names only, no file contents) and returns a
:class:`Plan`: per split the (image, annotation) :class:`Pair` s to read, plus the files it could not pair as
:class:`Skipped`. :meth:`Importer.read` then parses one pair's annotation. Everything shared (reading image
bytes, clamping, EXIF orientation, counting, writing) lives in :mod:`rankset.importers.writer`, so a new format
is one small module with ``@register_importer("name")``.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from rankset.errors import ConfigError, InputError

if TYPE_CHECKING:
    from rankset.importers.writer import ImportConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Skipped:
    """A file that was not imported (or imported with a caveat), and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Pair:
    """One image to import: where its picture and annotation are, and per-image values known from the layout.

    ``annotation`` is None for images the benchmark ships without labels (NWPU-Crowd test); ``extra`` holds
    extra column values that come from the layout rather than the annotation file (UCF_CC_50 ``fold``).
    """

    image_id: str
    split: str
    image: Path
    annotation: Path | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Annotation:
    """What one annotation file says: raw head points (N, 2) as x, y in the file's pixel frame, and extras.

    ``stated_count`` is a total the benchmark states separately from the points (NWPU ``human_num``, Mall
    ``count``); the writer compares it with the points and reports a mismatch. ``boxes`` is (N, 4) x0, y0, x1, y1.
    """

    points: np.ndarray
    stated_count: int | None = None
    boxes: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """The work an importer found under ROOT, before any annotation is read.

    ``extra_columns`` maps an extra column name to its Arrow value type (``"int32"``, ``"string"``, ``"bool"``);
    ``optional`` names the optional schema fields this format fills (``boxes``, ``roi``); ``roi_png`` is a mask
    shared by every image (Mall); ``notes`` are sentences for the run summary.
    """

    dataset: str
    splits: dict[str, list[Pair]]
    skipped: list[Skipped] = field(default_factory=list)
    optional: tuple[str, ...] = ()
    extra_columns: dict[str, str] = field(default_factory=dict)
    roi_png: bytes | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(pairs) for pairs in self.splits.values())


class Importer:
    """Base class. Subclasses set ``layout`` (the expected files, for error messages) and implement the two steps."""

    name: ClassVar[str] = ""
    layout: ClassVar[str] = ""

    def plan(self, config: ImportConfig) -> Plan:
        """Pair images with annotations under ``config.root``; raise InputError when ROOT matches no layout."""
        raise NotImplementedError

    def read(self, pair: Pair) -> Annotation:
        """Parse one pair's annotation; raise AnnotationError (the writer records it and skips the image)."""
        raise NotImplementedError

    def no_layout(self, root: Path, detail: str = "") -> InputError:
        """The error for a ROOT that matches no known layout of this format: what was expected where."""
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:12] if root.is_dir() else []
        return InputError(
            f"{root} does not look like a {self.name} folder{': ' + detail if detail else ''}. Expected {self.layout}. "
            f"Found in ROOT: {', '.join(found) or 'nothing'}"
        )


_REGISTRY: dict[str, type[Importer]] = {}


def register_importer(name: str) -> Callable[[type[Importer]], type[Importer]]:
    """Class decorator: make ``cls`` available as ``rankset import NAME``. A name registered twice is an error."""

    def wrap(cls: type[Importer]) -> type[Importer]:
        if name in _REGISTRY:
            raise ValueError(f"importer {name!r} is registered twice ({_REGISTRY[name].__module__}, {cls.__module__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _import_all() -> None:
    import rankset.importers as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in ("base", "writer", "geometry", "matfile"):
            importlib.import_module(f"rankset.importers.{info.name}")


def list_importers() -> list[str]:
    """Names of every registered benchmark format, sorted."""
    _import_all()
    return sorted(_REGISTRY)


def create_importer(name: str) -> Importer:
    """A fresh importer for format ``name``; an unknown name fails with the list of known ones."""
    _import_all()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown benchmark format {name!r}; known formats: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def image_files(folder: Path, recursive: bool = False, skipped: list[Skipped] | None = None) -> dict[str, Path]:
    """Pictures in ``folder`` by file stem (the benchmark's image id); hidden files are ignored.

    Two pictures with one id (``IMG_22.jpg`` and ``IMG_22.png``): the first in name order is used and the other
    is appended to ``skipped``, so it is listed rather than silently lost.
    """
    if not folder.is_dir():
        return {}
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = [p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    by_id: dict[str, Path] = {}
    for path in sorted(files):
        if path.stem in by_id:
            if skipped is not None:
                skipped.append(Skipped(str(path), f"image id {path.stem!r} is taken by {by_id[path.stem].name}"))
            continue
        by_id[path.stem] = path
    return by_id


def pair_by_id(
    split: str,
    images: dict[str, Path],
    annotations: dict[str, Path],
    extra: Callable[[str], dict[str, Any]] | None = None,
) -> tuple[list[Pair], list[Skipped]]:
    """Pair pictures and annotations that share an image id; each one left over becomes a Skipped with a reason."""
    pairs, skipped = [], []
    for image_id in sorted(images, key=natural_key):
        if image_id in annotations:
            values = extra(image_id) if extra else {}
            pairs.append(Pair(image_id, split, images[image_id], annotations[image_id], values))
        else:
            skipped.append(
                Skipped(
                    str(images[image_id]),
                    f"no annotation file for image {image_id!r}; add it beside the other annotations, or move the "
                    "picture away",
                )
            )
    for image_id in sorted(set(annotations) - set(images), key=natural_key):
        skipped.append(
            Skipped(
                str(annotations[image_id]),
                f"no image for annotation of {image_id!r}; add the picture {image_id} (.jpg or .png) beside the other "
                "pictures, or move the annotation away",
            )
        )
    return pairs, skipped


def stated_count(value: object) -> int | None:
    """A head count a benchmark states beside its points (NWPU ``human_num``, Mall ``count``), or None when the value
    is not one: JSON and MATLAB allow NaN, inf (``1e400``), -3, 2.5, text, booleans and nested cells."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        return None
    if array.size != 1 or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        return None
    number = float(array.reshape(-1)[0])
    return int(number) if math.isfinite(number) and number >= 0 and number.is_integer() else None


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders ``IMG_2`` before ``IMG_10``: digit runs compare as numbers."""
    import re

    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def first_existing(folder: Path, names: Iterable[str]) -> Path | None:
    """The first child of ``folder`` whose name matches one of ``names`` case-insensitively, or None."""
    if not folder.is_dir():
        return None
    children = {p.name.lower(): p for p in folder.iterdir()}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None
