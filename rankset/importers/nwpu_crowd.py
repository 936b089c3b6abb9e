"""NWPU-Crowd (Wang et al., TPAMI 2020).

```
NWPU-Crowd/
  images/0001.jpg ... 5109.jpg
  jsons/0001.json ... 3609.json     {"img_id": "0001.jpg", "human_num": N, "points": [[x, y], ...],
                                     "boxes": [[x0, y0, x1, y1], ...]}
  train.txt  val.txt  test.txt      one image per line: "id illumination scene-level"
```

The test split ships without annotations: those images are imported with ``labeled = False``, ``count = -1``
and no points. ``illumination`` and ``scene_level`` from the split lists become int32 columns (-1 when a line
does not give them). Split ``val`` becomes ``validation``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rankset.errors import AnnotationError
from rankset.importers.base import (
    Annotation,
    Importer,
    Pair,
    Plan,
    Skipped,
    image_files,
    register_importer,
    stated_count,
)
from rankset.importers.geometry import as_points

if TYPE_CHECKING:
    from rankset.importers.writer import ImportConfig

SPLIT_LISTS = {"train.txt": "train", "val.txt": "validation", "test.txt": "test"}


def parse_split_list(text: str) -> dict[str, dict[str, int]]:
    """Image id -> {illumination, scene_level} from a split list; ids are zero-padded to four digits."""
    entries: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        image_id = Path(fields[0]).stem
        image_id = image_id.zfill(4) if image_id.isdigit() else image_id
        numbers = [int(f) if f.lstrip("-").isdigit() and abs(int(f)) < 2**31 else -1 for f in fields[1:3]]  # int32
        numbers += [-1] * (2 - len(numbers))
        entries[image_id] = {"illumination": numbers[0], "scene_level": numbers[1]}
    return entries


def parse_annotation_json(text: str, name: str) -> Annotation:
    """Points, boxes and ``human_num`` from one NWPU json; AnnotationError when it is not that shape."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{name} is not valid JSON ({e})") from e
    if not isinstance(value, dict) or "points" not in value:
        raise AnnotationError(f"{name} has no 'points' list (expected keys img_id, human_num, points, boxes)")
    try:
        points = as_points(value["points"], "points")
        boxes = np.asarray(value.get("boxes") or [], dtype=np.float64).reshape(-1, 4)
    except (ValueError, TypeError) as e:
        raise AnnotationError(f"{name}: {e}") from e
    stated = stated_count(value.get("human_num"))
    usable = len(boxes) == len(points) and bool(np.isfinite(boxes).all())  # NaN would survive clamping into the row
    return Annotation(points=points, stated_count=stated, boxes=boxes if usable else None)


@register_importer("nwpu-crowd")
class NwpuCrowdImporter(Importer):
    layout = "ROOT/images/XXXX.jpg, ROOT/jsons/XXXX.json and split lists ROOT/train.txt, val.txt, test.txt"

    def plan(self, config: ImportConfig) -> Plan:
        root = config.root
        lists = {name: root / name for name in SPLIT_LISTS if (root / name).is_file()}
        if not (root / "images").is_dir() or not lists:
            raise self.no_layout(root)
        duplicates: list[Skipped] = []
        images = image_files(root / "images", skipped=duplicates)
        annotations = {p.stem: p for p in sorted((root / "jsons").glob("*.json"))} if (root / "jsons").is_dir() else {}
        plan = Plan(
            dataset="nwpu-crowd",
            splits={},
            optional=("boxes",),
            extra_columns={"labeled": "bool", "illumination": "int32", "scene_level": "int32"},
            skipped=duplicates,
        )
        listed: dict[str, str] = {}  # image id -> the split list that put it in a split first
        for list_name, path in lists.items():
            split = SPLIT_LISTS[list_name]
            pairs = []
            for image_id, levels in parse_split_list(path.read_text(errors="replace")).items():
                if image_id in listed:  # one picture in two splits would leak training images into the evaluation
                    plan.skipped.append(
                        Skipped(
                            str(images.get(image_id, root / "images" / f"{image_id}.jpg")),
                            f"listed in {list_name} and in {listed[image_id]}; kept in {listed[image_id]} only. "
                            f"Remove it from one of the lists",
                        )
                    )
                    continue
                listed[image_id] = list_name
                annotation = annotations.get(image_id)
                if image_id not in images:
                    missing = root / "images" / f"{image_id}.jpg"
                    plan.skipped.append(Skipped(str(missing), f"listed in {list_name}, no image"))
                elif annotation is None and split != "test":
                    plan.skipped.append(Skipped(str(images[image_id]), f"no annotation jsons/{image_id}.json"))
                else:
                    extra = {**levels, "labeled": annotation is not None}
                    pairs.append(Pair(image_id, split, images[image_id], annotation, extra))
            plan.splits[split] = pairs
            unlabeled = sum(1 for p in pairs if p.annotation is None)
            if unlabeled:
                plan.notes.append(
                    f"{split}: {unlabeled} images have no annotation (NWPU keeps them private): "
                    "imported with labeled = false, count = -1, no points"
                )
        for image_id in sorted(set(images) - set(listed)):
            plan.skipped.append(Skipped(str(images[image_id]), "not listed in train.txt, val.txt or test.txt"))
        for image_id in sorted(set(annotations) - set(images)):
            plan.skipped.append(Skipped(str(annotations[image_id]), f"no image for annotation of {image_id!r}"))
        return plan

    def read(self, pair: Pair) -> Annotation:
        assert pair.annotation is not None, "the writer reads only labeled NWPU pairs"
        try:
            text = pair.annotation.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise AnnotationError(f"cannot read {pair.annotation.name}: {e}") from e
        return parse_annotation_json(text, pair.annotation.name)
