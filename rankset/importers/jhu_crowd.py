"""JHU-Crowd++ v2.0 (Sindagi, Yasarla & Patel, TPAMI 2020).

```
jhu_crowd_v2.0/
  train/images/0001.jpg   train/gt/0001.txt   train/image_labels.txt
  val/...                 test/...
```

``gt/XXXX.txt`` has one head per line, ``x y w h o b``: the head centre, the head box's width and height, the
occlusion level (1 visible, 2 partial, 3 full) and blur (0/1). ``image_labels.txt`` has one line per image,
``XXXX,total-count,scene-type,weather,distractor`` with weather 0 none, 1 fog/haze, 2 rain, 3 snow. Head boxes go
in ``boxes``; ``scene_type``, ``weather`` and ``distractor`` become columns. Split ``val`` becomes ``validation``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rankset.errors import AnnotationError
from rankset.importers.base import Annotation, Importer, Pair, Plan, Skipped, image_files, pair_by_id, register_importer

if TYPE_CHECKING:
    from rankset.importers.writer import ImportConfig

SPLITS = {"train": "train", "val": "validation", "test": "test"}
WEATHER = {0: "none", 1: "fog/haze", 2: "rain", 3: "snow"}
GT_FIELDS = 6


def parse_gt_lines(text: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 2) and boxes (N, 4) x0, y0, x1, y1 from the lines of a JHU ``gt/XXXX.txt`` file."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.replace(",", " ").split()
        try:
            values = [float(v) for v in fields]
        except ValueError as e:
            raise AnnotationError(f"{name} line {number}: not numbers: {line.strip()!r}") from e
        if len(values) < GT_FIELDS or not np.isfinite(values[:4]).all():
            raise AnnotationError(f"{name} line {number}: expected 'x y w h o b', got {line.strip()!r}")
        rows.append(values[:4])
    if not rows:
        return np.zeros((0, 2)), np.zeros((0, 4))
    x, y, w, h = np.asarray(rows, dtype=np.float64).T
    return np.stack([x, y], axis=1), np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)


def parse_image_labels(text: str) -> dict[str, dict[str, Any]]:
    """Per image id: ``stated_count``, ``scene_type``, ``weather`` (a name), ``distractor`` (bool).

    Malformed lines are ignored; the image then gets null labels rather than being dropped.
    """
    labels: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 5:
            continue
        image_id = Path(fields[0]).stem
        try:
            count, weather, distractor = int(float(fields[1])), int(fields[3]), int(fields[4])
        except (ValueError, OverflowError):  # "nan" is a ValueError, "inf" an OverflowError: both malformed
            continue
        labels[image_id] = {
            "stated_count": count,
            "scene_type": fields[2],
            "weather": WEATHER.get(weather, str(weather)),
            "distractor": bool(distractor),
        }
    return labels


@register_importer("jhu-crowd")
class JhuCrowdImporter(Importer):
    layout = "ROOT/{train,val,test}/images/XXXX.jpg with ROOT/{split}/gt/XXXX.txt and ROOT/{split}/image_labels.txt"

    def __init__(self) -> None:
        self.labels: dict[tuple[str, str], dict[str, Any]] = {}

    def plan(self, config: ImportConfig) -> Plan:
        root = config.root
        folders = {split: root / folder for folder, split in SPLITS.items() if (root / folder / "images").is_dir()}
        if not folders:
            raise self.no_layout(root)
        plan = Plan(
            dataset="jhu-crowd",
            splits={},
            optional=("boxes",),
            extra_columns={"scene_type": "string", "weather": "string", "distractor": "bool"},
        )
        for split, folder in folders.items():
            if not (folder / "gt").is_dir():
                raise self.no_layout(root, f"{folder / 'images'} has no sibling folder {folder / 'gt'}")
            annotations = {p.stem: p for p in sorted((folder / "gt").glob("*.txt"))}
            pairs, skipped = pair_by_id(split, image_files(folder / "images", skipped=plan.skipped), annotations)
            plan.splits[split] = pairs
            plan.skipped.extend(skipped)
            labels_file = folder / "image_labels.txt"
            try:
                labels = parse_image_labels(labels_file.read_text(errors="replace"))
            except OSError as e:
                plan.skipped.append(Skipped(str(labels_file), f"cannot read ({e.strerror or e}); labels left null"))
                labels = {}
            self.labels.update({(split, image_id): value for image_id, value in labels.items()})
        return plan

    def read(self, pair: Pair) -> Annotation:
        assert pair.annotation is not None, "JHU-Crowd pairs always carry an annotation"
        try:
            text = pair.annotation.read_text(errors="strict")
        except (OSError, UnicodeDecodeError) as e:
            raise AnnotationError(f"cannot read {pair.annotation.name}: {e}") from e
        points, boxes = parse_gt_lines(text, pair.annotation.name)
        labels = dict(self.labels.get((pair.split, pair.image_id), {}))
        stated = labels.pop("stated_count", None)
        return Annotation(points=points, stated_count=stated, boxes=boxes, extra=labels)
