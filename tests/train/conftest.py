"""Builders of tiny labeled and ranked datasets in tmp_path, written through rankset.io like the real ones.

Labeled images are dark noise with one bright disc per head, so a density network can learn to count them
in a few dozen CPU steps. Ranked sets are k nested square crops of such images, largest first.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw


def blob_image(rng: np.random.Generator, width: int, height: int, heads: int) -> tuple[bytes, list[list[float]]]:
    """A JPEG of ``heads`` bright discs on dark noise, and the disc centres as points."""
    pixels = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    points = []
    for _ in range(heads):
        x, y = float(rng.uniform(2, width - 2)), float(rng.uniform(2, height - 2))
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(250, 240, 200))
        points.append([x, y])
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue(), points


def _rows(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from rows


def build_labeled(
    out: Path, splits: dict[str, int], seed: int = 0, size: tuple[int, int] = (64, 48), max_heads: int = 12
) -> Path:
    """A labeled DatasetDict at ``out`` with ``splits[name]`` blob images per split."""
    from rankset.io import write_dataset_dict
    from rankset.schema import labeled_features

    rng = np.random.default_rng(seed)
    tables = {}
    for split, n in splits.items():
        rows = []
        for i in range(n):
            data, points = blob_image(rng, *size, heads=int(rng.integers(0, max_heads + 1)))
            rows.append(
                {
                    "image_id": f"{split}-{i}",
                    "image": {"bytes": data, "path": None},
                    "points": points,
                    "count": len(points),
                    "dataset": "blobs",
                    "split": split,
                }
            )
        tables[split] = (_rows, {"rows": rows})
    write_dataset_dict(out, tables, labeled_features())
    return out


def build_ranked(out: Path, sets: int, k: int = 3, patch: int = 32, seed: int = 1, scale: float = 0.75) -> Path:
    """A ranked-set DatasetDict at ``out``: ``sets`` sets of k nested centred crops of blob images."""
    from rankset.io import write_dataset_dict
    from rankset.schema import ranked_features

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(sets):
        data, _ = blob_image(rng, 64, 64, heads=int(rng.integers(4, 16)))
        image = Image.open(io.BytesIO(data))
        images, boxes = [], []
        for j in range(k):
            half = 32 * scale**j
            box = [32 - half, 32 - half, 32 + half, 32 + half]
            buffer = io.BytesIO()
            image.crop(tuple(round(v) for v in box)).resize((patch, patch)).save(buffer, format="JPEG")
            images.append({"bytes": buffer.getvalue(), "path": None})
            boxes.append(box)
        rows.append(ranked_set_row(i, images, boxes, 64))
    write_dataset_dict(out, {"train": (_rows, {"rows": rows})}, ranked_features(k))
    return out


def ranked_set_row(i: int, images: list[dict[str, Any]], boxes: list[list[float]], side: int) -> dict[str, Any]:
    """Ranked-set row ``img{i}-0`` of a ``side`` x ``side`` CC0 source picture, anchored at its centre."""
    return {
        "set_id": f"img{i}-0",
        "source_id": f"img{i}",
        "images": images,
        "boxes": boxes,
        "anchor": [side / 2, side / 2],
        "source_size": [side, side],
        "license": "cc0",
        "author": "test",
        "source_url": "",
    }


def blob_data_table(blobs: dict[str, Path], **overrides: Any) -> dict[str, Any]:
    """The ``[data]`` table of the tests' tiny manifests on the blob sets: 24–48 px crops to 32 px, no workers."""
    table: dict[str, Any] = {
        "labeled": [str(blobs["labeled"])],
        "eval": str(blobs["labeled"]),
        "crop": [24, 48],
        "input_size": 32,
        "sigma": 3.0,
        "workers": 0,
        "val_fraction": 0.125,
    }
    return {**table, **overrides}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: the suite shares two cores with other test runs, and tiny convs gain nothing from more."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def blob_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One labeled set (train 16, test 4) and one ranked set (k=3), built once per session."""
    root = tmp_path_factory.mktemp("train-data")
    return {
        "labeled": build_labeled(root / "labeled", {"train": 16, "test": 4}),
        "ranked": build_ranked(root / "ranked", sets=12, k=3),
        "root": root,
    }
