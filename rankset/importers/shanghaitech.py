"""ShanghaiTech Part A / Part B (Zhang et al., CVPR 2016), and any folder in the same layout.

```
part_A/ (or part_A_final/, part_B/ ...)
  train_data/images/IMG_1.jpg   train_data/ground-truth/GT_IMG_1.mat
  test_data/images/IMG_1.jpg    test_data/ground-truth/GT_IMG_1.mat
```

ROOT may also be one split folder (``images/`` + ``ground-truth/``). Points are ``image_info[0,0][0,0][0]``,
an (N, 2) array of x, y; ``number``, the stated head count, is checked against the points, and a location saved
transposed, (2, N), is read as N points when ``number`` says N. The dataset is named ``shanghaitech-a`` / ``-b``
when ROOT or its parent is named part_A / part_B, else ``shanghaitech``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rankset.errors import AnnotationError
from rankset.importers.base import Annotation, Importer, Pair, Plan, image_files, pair_by_id, register_importer
from rankset.importers.matfile import load_mat, mat_points, mat_variable

if TYPE_CHECKING:
    from rankset.importers.writer import ImportConfig

SPLIT_FOLDERS = {"train_data": "train", "test_data": "test"}
PART = re.compile(r"part_?([ab])(?:_final)?$", re.IGNORECASE)


@register_importer("shanghaitech")
class ShanghaiTechImporter(Importer):
    layout = (
        "ROOT/train_data/images/IMG_N.jpg with ROOT/train_data/ground-truth/GT_IMG_N.mat (and test_data/ alike), "
        "or a single split folder ROOT/images/IMG_N.jpg with ROOT/ground-truth/GT_IMG_N.mat"
    )

    def plan(self, config: ImportConfig) -> Plan:
        root = config.root
        split_dirs = {split: root / folder for folder, split in SPLIT_FOLDERS.items() if (root / folder).is_dir()}
        if not split_dirs and (root / "images").is_dir():
            split_dirs = {SPLIT_FOLDERS.get(root.name.lower(), "train"): root}
        if not split_dirs:
            parts = sorted(p for p in root.iterdir() if p.is_dir() and PART.match(p.name)) if root.is_dir() else []
            if parts:  # the whole download (ShanghaiTech/part_A, part_B): one dataset per part
                raise self.no_layout(
                    root,
                    f"it holds {', '.join(p.name + '/' for p in parts)}: import each part on its own, e.g. "
                    f"rankset import shanghaitech {parts[-1]} --out data/sh{PART.match(parts[-1].name)[1].lower()}",
                )
            raise self.no_layout(root)
        plan = Plan(dataset=dataset_name(root), splits={})
        for split, folder in split_dirs.items():
            if not (folder / "ground-truth").is_dir():
                raise self.no_layout(root, f"{folder / 'images'} has no sibling folder {folder / 'ground-truth'}")
            annotations = {
                p.stem[len("GT_") :]: p
                for p in sorted((folder / "ground-truth").glob("*.mat"))
                if p.stem.upper().startswith("GT_")
            }
            pairs, skipped = pair_by_id(split, image_files(folder / "images", skipped=plan.skipped), annotations)
            plan.splits[split] = pairs
            plan.skipped.extend(skipped)
        return plan

    def read(self, pair: Pair) -> Annotation:
        assert pair.annotation is not None, "ShanghaiTech pairs always carry an annotation"
        info = mat_variable(load_mat(pair.annotation), "image_info", pair.annotation)
        try:
            record = info[0, 0][0, 0]
            location = record[0]
        except (IndexError, TypeError, ValueError, KeyError) as e:
            raise AnnotationError(
                f"{pair.annotation.name}: image_info is not the ShanghaiTech struct (image_info[0,0][0,0][0] = points)"
            ) from e
        number = stated_number(record)
        shape = np.shape(location)
        if number is not None and number != 2 and shape == (2, number):
            location = np.transpose(location)  # saved as (2, N) rows of x and y: the stated number says which
        return Annotation(points=mat_points(location, pair.annotation, "image_info location"), stated_count=number)


def stated_number(record: Any) -> int | None:
    """The struct's ``number`` field (the head count the file states), or None when absent or not one integer."""
    names = getattr(getattr(record, "dtype", None), "names", None) or ()
    if "number" not in names:
        return None
    value = np.asarray(record["number"])
    if value.size != 1 or not np.issubdtype(value.dtype, np.number):
        return None
    number = float(value.reshape(-1)[0])
    return int(number) if number.is_integer() and number >= 0 else None


def dataset_name(root: Path) -> str:
    """``shanghaitech-a``/``-b`` when ROOT or its parent is a part_A/part_B folder, else ``shanghaitech``."""
    for folder in (root.resolve(), root.resolve().parent):
        match = PART.match(folder.name)
        if match:
            return f"shanghaitech-{match.group(1).lower()}"
    return "shanghaitech"
