"""The Mall dataset (Chen et al., BMVC 2012): 2000 frames of one surveillance camera.

```
mall_dataset/
  frames/seq_000001.jpg ... seq_002000.jpg
  mall_gt.mat            frame: 1x2000 cell of structs with loc (N, 2) x, y; count: 2000x1
  perspective_roi.mat    roi.mask: the region of interest (480x640), pMapN: the perspective map (optional)
```

The standard split is frames 1-800 train, 801-2000 test. When ``perspective_roi.mat`` is present its mask is
stored in every row's ``roi`` (an L-mode PNG, 255 inside).
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from rankset.errors import AnnotationError, InputError
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
from rankset.importers.matfile import load_mat, mat_points, mat_variable, struct_field

if TYPE_CHECKING:
    from rankset.importers.writer import ImportConfig

TRAIN_FRAMES = 800
FRAME_NAME = re.compile(r"seq_(\d+)$")


def roi_png(mask: Any) -> bytes:
    """A 2-D mask (any numbers, nonzero = inside) as L-mode PNG bytes with 255 inside, 0 outside."""
    from PIL import Image

    array = np.asarray(mask)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"the ROI mask must be a 2-D array, got shape {array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.where(array != 0, 255, 0).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@register_importer("mall")
class MallImporter(Importer):
    layout = "ROOT/frames/seq_XXXXXX.jpg with ROOT/mall_gt.mat (frame{i}.loc, count), optionally perspective_roi.mat"

    def __init__(self) -> None:
        self.frames: Any = None
        self.counts: np.ndarray | None = None

    def plan(self, config: ImportConfig) -> Plan:
        root = config.root
        gt_path = root / "mall_gt.mat"
        if not (root / "frames").is_dir() or not gt_path.is_file():
            raise self.no_layout(root)
        try:
            variables = load_mat(gt_path)
            self.frames = np.asarray(mat_variable(variables, "frame", gt_path), dtype=object).reshape(-1)
            if "count" in variables:
                self.counts = np.asarray(variables["count"]).reshape(-1)
        except AnnotationError as e:
            raise InputError(f"cannot import Mall: every frame's annotation is in {gt_path}, and {e}") from e
        plan = Plan(dataset="mall", splits={"train": [], "test": []})
        for image_id, path in image_files(root / "frames", skipped=plan.skipped).items():
            match = FRAME_NAME.match(image_id)
            if match is None:
                plan.skipped.append(Skipped(str(path), "not a Mall frame name (seq_XXXXXX)"))
                continue
            number = int(match.group(1))
            if not 1 <= number <= len(self.frames):
                reason = f"no annotation: mall_gt.mat holds frames 1..{len(self.frames)}"
                plan.skipped.append(Skipped(str(path), reason))
                continue
            split = "train" if number <= TRAIN_FRAMES else "test"
            plan.splits[split].append(Pair(image_id, split, path, gt_path, {"frame": number}))
        plan.notes.append(f"standard split: frames 1-{TRAIN_FRAMES} train, the rest test")
        roi_path = root / "perspective_roi.mat"
        if roi_path.is_file():
            try:
                roi = mat_variable(load_mat(roi_path), "roi", roi_path)
                plan.roi_png = roi_png(struct_field(roi, "mask", roi_path, "roi"))
                plan.optional = ("roi",)
            except (AnnotationError, ValueError) as e:
                plan.skipped.append(Skipped(str(roi_path), f"ROI not stored: {e}"))
        return plan

    def read(self, pair: Pair) -> Annotation:
        assert pair.annotation is not None and self.frames is not None, "plan() runs before read()"
        index = pair.extra["frame"] - 1
        where = f"frame{{{index + 1}}}"
        loc = struct_field(self.frames[index], "loc", pair.annotation, where)
        points = mat_points(loc, pair.annotation, f"{where}.loc")
        stated = None
        if self.counts is not None and index < len(self.counts):
            stated = stated_count(self.counts[index])  # NaN, text or a cell in `count`: not stated
        return Annotation(points=points, stated_count=stated)
