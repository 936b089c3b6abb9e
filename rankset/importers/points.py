"""The generic point-list format: ``img.jpg`` beside ``img.txt`` holding one ``x y`` per line (P2PNet style).

Splits come from subfolders named ``train``, ``test``, ``val`` or ``validation`` when ROOT has them (searched
recursively inside each), else every picture under ROOT is split ``train``. The annotation of ``a/img.jpg`` is
``a/img.txt``, or ``labels/img.txt`` beside an ``images/`` folder. Coordinates may be separated by spaces or
commas; extra numbers on a line are ignored; ``#`` starts a comment.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rankset.errors import AnnotationError
from rankset.importers.base import Annotation, Importer, Pair, Plan, Skipped, image_files, register_importer

if TYPE_CHECKING:
    from rankset.importers.writer import ImportConfig

SPLIT_FOLDERS = {"train": "train", "test": "test", "val": "validation", "validation": "validation"}
LABEL_FOLDERS = ("labels", "gt", "annotations")


def parse_point_lines(text: str, name: str) -> np.ndarray:
    """(N, 2) points from ``x y`` lines; AnnotationError names the first bad line."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].replace(",", " ").split()
        if not content:
            continue
        try:
            x, y = float(content[0]), float(content[1])
        except (ValueError, IndexError) as e:
            raise AnnotationError(f"{name} line {number}: expected 'x y', got {line.strip()!r}") from e
        if not (np.isfinite(x) and np.isfinite(y)):
            raise AnnotationError(f"{name} line {number}: non-finite coordinate in {line.strip()!r}")
        rows.append((x, y))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def annotation_for(image: Path) -> Path:
    """Where the point list of ``image`` lives: beside it, else in a labels/gt folder beside its images/ folder."""
    beside = image.with_suffix(".txt")
    if beside.is_file() or image.parent.name.lower() != "images":
        return beside
    for folder in LABEL_FOLDERS:
        candidate = image.parent.parent / folder / f"{image.stem}.txt"
        if candidate.is_file():
            return candidate
    return beside


@register_importer("points")
class PointListImporter(Importer):
    layout = (
        "pictures with same-stem .txt point lists (one 'x y' per line) under ROOT, "
        "optionally in subfolders train/, test/, val/ or validation/"
    )

    def plan(self, config: ImportConfig) -> Plan:
        root = config.root
        folders = {}
        for child in sorted(p for p in root.iterdir() if p.is_dir()):
            split = SPLIT_FOLDERS.get(child.name.lower())
            if split is not None:
                if split in folders:
                    raise self.no_layout(root, f"both {folders[split].name}/ and {child.name}/ would be split {split}")
                folders[split] = child
        if not folders:
            folders = {"train": root}
        plan = Plan(dataset=root.resolve().name or "points", splits={})
        used: set[Path] = set()
        for split, folder in folders.items():
            pairs = []
            for image_id, image in image_files(folder, recursive=True, skipped=plan.skipped).items():
                annotation = annotation_for(image)
                if annotation.is_file():
                    pairs.append(Pair(image_id, split, image, annotation))
                    used.add(annotation.resolve())
                else:
                    plan.skipped.append(Skipped(str(image), f"no point list {annotation.name} beside it"))
            plan.splits[split] = pairs
        if not any(plan.splits.values()) and not plan.skipped:
            raise self.no_layout(root)
        for folder in folders.values():
            for orphan in sorted(p for p in folder.rglob("*.txt") if p.resolve() not in used):
                plan.skipped.append(Skipped(str(orphan), "point list without a picture of the same name"))
        return plan

    def read(self, pair: Pair) -> Annotation:
        assert pair.annotation is not None, "point-list pairs always carry an annotation"
        try:
            text = pair.annotation.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise AnnotationError(f"cannot read {pair.annotation.name}: {e}") from e
        return Annotation(points=parse_point_lines(text, pair.annotation.name))
