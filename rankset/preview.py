"""``rankset preview``: a PNG of a few ranked sets — the source with its nested boxes, beside its k patches.

The ranked dataset does not store the source pictures. When a set's ``source_url`` is a ``file://`` URI that
still exists, the source is drawn with the boxes on it; otherwise patch 0 (the largest square) stands in for
it, with the inner boxes drawn in its frame, which shows the same nesting.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
from PIL import Image

from rankset.errors import ConfigError, InputError, RanksetError
from rankset.io import out_folder_problem, write_figure

BOX_COLOURS = ("#e6194b", "#f58231", "#ffe119", "#3cb44b", "#4363d8", "#911eb4", "#42d4f4", "#f032e6")


def local_source(source_url: str | None) -> Path | None:
    """The file behind a ``file://`` source URL, when it still exists."""
    if not source_url or not source_url.startswith("file://"):
        return None
    path = Path(unquote(urlsplit(source_url).path))
    return path if path.is_file() else None


def frame_boxes(row: dict[str, Any]) -> tuple[Image.Image, list[tuple[float, float, float, float]], bool]:
    """The picture to draw the boxes on, and the boxes in its pixel frame; True when it is the real source."""
    from rankset.images import decode_oriented

    boxes = [tuple(b) for b in row["boxes"]]
    path = local_source(row.get("source_url"))
    if path is not None:
        try:
            img, full = decode_oriented(path.read_bytes(), str(path))
            if list(full) == list(row["source_size"]):
                return img, boxes, True
        except OSError:
            pass
    patch0 = _decode(row["images"][0])
    x0, y0, x1, y1 = boxes[0]
    scale = patch0.width / (x1 - x0)
    mapped = [((a - x0) * scale, (b - y0) * scale, (c - x0) * scale, (d - y0) * scale) for a, b, c, d in boxes]
    return patch0, mapped, False


def _decode(image: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(image["bytes"])).convert("RGB")


def render_preview(dataset: str, out: str | Path, n: int = 4, split: str = "train", seed: int = 0) -> Path:
    """Draw ``n`` sets chosen with ``seed`` from ``split`` of a ranked-set dataset into a PNG at ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from rankset.io import load_dataset_dict
    from rankset.schema import dataset_kind

    if n < 1:
        raise ConfigError(f"--n {n} is out of range: expected an integer >= 1")
    if seed < 0:  # numpy's SeedSequence refuses it, with a traceback after the dataset is loaded
        raise ConfigError(f"--seed {seed} is out of range: expected an integer >= 0")
    if Path(out).suffix.lower() != ".png":  # matplotlib would add .png to a bare name, or fail after the drawing
        raise ConfigError(f"--out {out} must end in .png (the preview is written as a PNG)")
    problem = out_folder_problem(Path(out), "--out")  # a folder of it is a file: said before drawing, not "File exists"
    if problem is not None:
        raise ConfigError(problem)
    dsd = load_dataset_dict(dataset)
    if split not in dsd:
        raise InputError(f"{dataset} has no split {split!r}; its splits are {sorted(dsd)}")
    ds = dsd[split]
    if dataset_kind(ds.features) != "ranked":
        raise InputError(f"{dataset} is not a ranked-set dataset (columns: {ds.column_names}); build one first")
    if len(ds) == 0:
        raise InputError(f"{dataset} split {split!r} is empty: nothing to preview")
    ds = ds.with_format("arrow")  # rows as stored: images stay encoded, and no cast writes a cache file into DATASET
    chosen = sorted(np.random.default_rng(seed).choice(len(ds), size=min(n, len(ds)), replace=False).tolist())
    k = len(ds[0]["images"][0])

    fig, axes = plt.subplots(len(chosen), k + 1, figsize=(2.2 * (k + 1) + 1.2, 2.4 * len(chosen)), squeeze=False)
    for row_axes, index in zip(axes, chosen, strict=True):
        row = ds[int(index)].to_pylist()[0]
        frame, boxes, real = frame_boxes(row)
        row_axes[0].imshow(frame)
        for j, (x0, y0, x1, y1) in enumerate(boxes):
            colour = BOX_COLOURS[j % len(BOX_COLOURS)]
            row_axes[0].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.5, ec=colour))
        where = "source" if real else "patch 0 (source not at hand)"
        set_id = row["set_id"] if len(row["set_id"]) <= 24 else f"{row['set_id'][:10]}…{row['set_id'][-6:]}"
        row_axes[0].set_title(f"{set_id}\n{where}", fontsize=8)
        for j, image in enumerate(row["images"]):
            ax = row_axes[j + 1]
            ax.imshow(_decode(image))
            for spine in ax.spines.values():
                spine.set_edgecolor(BOX_COLOURS[j % len(BOX_COLOURS)])
                spine.set_linewidth(3)
            side = boxes[j][2] - boxes[j][0] if real else row["boxes"][j][2] - row["boxes"][j][0]
            ax.set_title(f"patch {j} ({side:.0f} px)", fontsize=8)
        for ax in row_axes:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{Path(str(dataset)).name}: {len(ds)} sets of k={k}, largest first (count never increases)")
    fig.tight_layout()
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_figure(fig, out, dpi=90)
    except OSError as e:
        raise RanksetError(f"cannot write {out}: {e.strerror or e}; pass --out PNG, a writable path") from e
    finally:
        plt.close(fig)
    return out
