"""`rankset import`: turn a benchmark folder into a labeled dataset (DESIGN.md, "Labeled sets").

The format's importer plans the work (which image goes with which annotation, in which split); this module
reads each pair, checks the picture decodes, maps points into the picture (EXIF orientation, clamping), and
streams rows into :func:`rankset.io.write_dataset_dict`, which saves atomically. A broken picture or
annotation is a :class:`Skipped` with a reason in the summary, never a crash. The picture's original bytes are
stored as shipped (grayscale stays grayscale, nothing is re-encoded).
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rankset.build import SKIPPED_CSV
from rankset.errors import AnnotationError, ConfigError, ImageError, InputError
from rankset.images import EXIF_ORIENTATION, exif_orientation
from rankset.importers.base import Importer, Pair, Plan, Skipped, create_importer, list_importers, natural_key
from rankset.importers.geometry import clamp_boxes, clamp_points, orient_boxes, orient_points, oriented_size
from rankset.inputs import printable_name
from rankset.progress import progress_bar

UCF_CC_50_FOLDS = 5
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ImportConfig:
    """What `rankset import FORMAT ROOT --out DIR [--name NAME] [--fold F]` asks for."""

    format: str
    root: Path
    out: Path
    name: str | None = None
    fold: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "out", Path(self.out))
        known = list_importers()
        if self.format not in known:
            raise ConfigError(f"FORMAT {self.format!r} is not a known benchmark format; choose one of {known}")
        if not self.root.is_dir():
            raise ConfigError(f"ROOT {self.root} is not a folder; pass the folder the benchmark was unpacked into")
        root, out = self.root.resolve(), self.out.resolve()
        if out == root or out in root.parents:
            raise ConfigError(f"--out {self.out} would replace the benchmark folder ROOT {self.root}; choose another")
        if self.fold is not None:
            if self.format != "ucf-cc-50":
                raise ConfigError(f"--fold applies only to ucf-cc-50 (got FORMAT {self.format!r}); drop --fold")
            if not 1 <= self.fold <= UCF_CC_50_FOLDS:
                raise ConfigError(
                    f"--fold must be 1..{UCF_CC_50_FOLDS} (the standard UCF_CC_50 folds); got {self.fold}"
                )
        if self.name is not None and not DATASET_NAME.fullmatch(self.name):
            raise ConfigError(f"--name {self.name!r} must be letters, digits, '.', '_' or '-' (e.g. shanghaitech-b)")


@dataclass
class SplitStats:
    """Counts for one split: images written, heads, per-image counts of labeled images, points moved."""

    images: int = 0
    unlabeled: int = 0
    clamped_points: int = 0
    reoriented: int = 0
    counts: list[int] = field(default_factory=list)

    @property
    def heads(self) -> int:
        return sum(self.counts)

    def count_range(self) -> tuple[int, float, int] | None:
        """(min, median, max) of per-image counts over labeled images, or None when there are none."""
        if not self.counts:
            return None
        return min(self.counts), float(statistics.median(self.counts)), max(self.counts)


@dataclass
class ImportSummary:
    """The end-of-run account: per-split counts, every skipped file with its reason, warnings and notes."""

    format: str
    dataset: str
    root: str
    out: str
    splits: dict[str, SplitStats] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (per-image counts left out; they are in the dataset)."""
        splits = {}
        for name, stats in self.splits.items():
            low_mid_high = stats.count_range()
            splits[name] = {
                "images": stats.images,
                "unlabeled": stats.unlabeled,
                "heads": stats.heads,
                "clamped_points": stats.clamped_points,
                "reoriented": stats.reoriented,
                "min_median_max": list(low_mid_high) if low_mid_high else None,
            }
        return {
            "format": self.format,
            "dataset": self.dataset,
            "root": self.root,
            "out": self.out,
            "splits": splits,
            "skipped": [asdict(s) for s in self.skipped],
            "warnings": [asdict(s) for s in self.warnings],
            "notes": self.notes,
        }

    def sort_skipped(self) -> None:
        """Put the skipped files in natural path order (``IMG_2`` before ``IMG_10``), the order of import.json and
        skipped.csv; called once every row is read."""
        self.skipped.sort(key=lambda s: natural_key(s.path))

    def skipped_csv(self) -> bytes:
        """Every file not imported as a CSV row (``path``, ``reason`` with the fix), a header alone when none was:
        the same per-item record ``rankset build`` keeps in its ``skipped.csv``. Call it once the run is complete."""
        self.sort_skipped()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(("path", "reason"))
        writer.writerows((printable_name(s.path), s.reason) for s in self.skipped)
        return buffer.getvalue().encode("utf-8")


def probe_image(data: bytes) -> tuple[int, int, int]:
    """(stored width, stored height, EXIF orientation 1..8) of encoded bytes, after checking they decode fully.

    JPEGs are decoded at 1/8 scale (``draft``): every byte is still read, so truncation is caught, at a fraction
    of the cost of a full decode of a 6000x9000 UCF-QNRF picture.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError("not a decodable image: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():  # a benchmark's own large pictures: decoded at 1/8 scale, no warning due
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                orientation = exif_orientation(image.getexif().get(EXIF_ORIENTATION, 1))
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
                image.load()
    except UnidentifiedImageError as e:
        raise ImageError(
            f"not a decodable image: not a format Pillow knows ({data[:8]!r}…); replace it with a JPEG or PNG"
        ) from e
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(
            f"not a decodable image ({type(e).__name__}: {e}); download that file again or remove it"
        ) from e
    return width, height, orientation


class _ImportRun:
    """The state of one import while datasets pulls rows from it: the plan, the summary, the progress hook."""

    def __init__(self, importer: Importer, plan: Plan, summary: ImportSummary, advance: Callable[[], None]):
        self.importer = importer
        self.plan = plan
        self.summary = summary
        self.advance = advance
        self._primed: dict[str, tuple[dict[str, Any], Iterator[dict[str, Any]]]] = {}

    def prime(self, split: str) -> bool:
        """Read ``split`` up to its first importable image; False when every image of it is skipped.

        datasets cannot save a split with no rows, so a split is only handed to the writer once it has one.
        """
        attempts = self._attempts(split)
        first = next(attempts, None)
        if first is None:
            return False
        self._primed[split] = (first, attempts)
        return True

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        """The rows of a primed split: the first importable one, then the rest as they are read."""
        first, attempts = self._primed.pop(split)
        yield first
        yield from attempts

    def _attempts(self, split: str) -> Iterator[dict[str, Any]]:
        stats = self.summary.splits.setdefault(split, SplitStats())
        seen: dict[str, Path] = {}
        for pair in self.plan.splits[split]:
            try:
                if pair.image_id in seen:
                    raise ImageError(f"image id {pair.image_id!r} already imported from {seen[pair.image_id]}")
                row = self._row(pair, stats)
            except (ImageError, AnnotationError) as e:
                culprit = pair.annotation if isinstance(e, AnnotationError) and pair.annotation else pair.image
                self.summary.skipped.append(Skipped(str(culprit), str(e)))
            else:
                seen[pair.image_id] = pair.image
                yield row
            finally:
                self.advance()

    def _row(self, pair: Pair, stats: SplitStats) -> dict[str, Any]:
        try:
            data = pair.image.read_bytes()
        except OSError as e:
            raise ImageError(f"cannot read the image: {e.strerror or e}") from e
        width, height, orientation = probe_image(data)
        annotation = self.importer.read(pair) if pair.annotation is not None else None
        out_w, out_h = oriented_size(width, height, orientation)
        row: dict[str, Any] = {
            "image_id": pair.image_id,
            "image": {"bytes": data, "path": None},
            "dataset": self.summary.dataset,
            "split": pair.split,
        }
        boxes = None
        if annotation is None:
            row["points"], row["count"] = [], -1
            stats.unlabeled += 1
        else:
            points = annotation.points
            boxes = annotation.boxes
            if orientation != 1:
                points = orient_points(points, width, height, orientation)
                boxes = None if boxes is None else orient_boxes(boxes, width, height, orientation)
                stats.reoriented += 1
            points, moved = clamp_points(points, out_w, out_h)
            stats.clamped_points += moved
            row["points"], row["count"] = points.astype(np.float32).tolist(), len(points)
            stats.counts.append(len(points))
            if annotation.stated_count is not None and annotation.stated_count != len(points):
                self.summary.warnings.append(
                    Skipped(
                        str(pair.annotation),
                        f"states {annotation.stated_count} heads but lists {len(points)} points; count = points",
                    )
                )
        if "boxes" in self.plan.optional:
            row["boxes"] = None if boxes is None else clamp_boxes(boxes, out_w, out_h).astype(np.float32).tolist()
        if "roi" in self.plan.optional:
            row["roi"] = {"bytes": self.plan.roi_png, "path": None}
        extra_values = {**(annotation.extra if annotation else {}), **pair.extra}
        for column in self.plan.extra_columns:
            row[column] = extra_values.get(column)
        stats.images += 1
        return row


# Runs in progress, by token. datasets fingerprints the generator and its kwargs by pickling them; the run holds
# a live progress bar that cannot be pickled, so the generator receives only the token and looks the run up.
_RUNS: dict[str, _ImportRun] = {}


def _generate_split(run_token: str, split: str) -> Iterator[dict[str, Any]]:
    yield from _RUNS[run_token].rows(split)


def import_benchmark(config: ImportConfig, progress: bool = True) -> ImportSummary:
    """Import the benchmark at ``config.root`` into a labeled dataset at ``config.out``; return the summary.

    Fails before any work (InputError) when ROOT matches no layout of ``config.format`` or holds nothing to
    import. Writes ``out/import.json`` (the config and this summary) beside the dataset.
    """
    from rankset.io import check_replaceable, write_dataset_dict
    from rankset.schema import encode_build_info

    importer = create_importer(config.format)
    plan = importer.plan(config)
    plan.splits = {name: pairs for name, pairs in plan.splits.items() if pairs}
    if plan.total == 0:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in plan.skipped[:5])
        raise InputError(f"found nothing to import in {config.root} as {config.format}. {reasons}".strip())
    dataset = config.name or plan.dataset
    summary = ImportSummary(config.format, dataset, str(config.root), str(config.out), notes=list(plan.notes))
    summary.skipped.extend(plan.skipped)
    features = _features(plan)
    check_replaceable(Path(config.out), [config.root], features)  # before any image is read; the write checks again
    description = encode_build_info(
        {"kind": "labeled", "format": config.format, "dataset": dataset, "root": str(config.root), "fold": config.fold}
    )
    token = uuid.uuid4().hex
    with progress_bar(progress, plan.total, f"import {config.format}") as advance:
        run = _ImportRun(importer, plan, summary, advance)
        splits = [name for name in plan.splits if run.prime(name)]
        for name in plan.splits:
            if name not in splits:
                summary.notes.append(f"split {name}: every image was skipped, so the split is left out")
                summary.splits.pop(name, None)
        if not splits:
            reasons = "; ".join(f"{s.path}: {s.reason}" for s in summary.skipped[:5])
            raise InputError(f"nothing in {config.root} could be imported as {config.format}: {reasons}")

        def import_json() -> bytes:  # called once every row is read, so the summary is complete
            summary.sort_skipped()
            value = {"config": _config_json(config), "summary": summary.to_json()}
            return (json.dumps(value, indent=2) + "\n").encode()

        _RUNS[token] = run
        try:
            write_dataset_dict(
                config.out,
                {name: (_generate_split, {"run_token": token, "split": name}) for name in splits},
                features,
                description=description,
                # in the staging folder: in place with the dataset or not at all
                extra_files={"import.json": import_json, SKIPPED_CSV: summary.skipped_csv},
                inputs=[config.root],
                notes=summary.notes,
            )
        finally:
            del _RUNS[token]
    return summary


def _features(plan: Plan) -> Any:
    import datasets

    from rankset.schema import labeled_features

    extra = {name: datasets.Value(dtype) for name, dtype in plan.extra_columns.items()}
    return labeled_features(plan.optional, extra)


def _config_json(config: ImportConfig) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()}
