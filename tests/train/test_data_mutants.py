"""Gaps in the train/data.py and train/sources.py tests found by hand-made mutants.

- ``ranked_set_size`` refused sets of one patch, but nothing checked that a dataset whose sets have *different* k
  is refused: dropping the ``low != high`` test passed every test, and such a dataset reached the ranked batches.
- The draw order of the labeled and ranked streams was never shown to differ: seeding the per-epoch permutation
  without the stream number passed, and the two streams then walked their rows in lockstep.
- Nothing checked which split of ``data.eval`` becomes the test rows: taking its ``train`` split passed
  test_sources_edges and test_data, and eval.json would then score images the model trained on.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from train.data import LABELED_STREAM, RANKED_STREAM, draw_indices, open_dataset, ranked_set_size
from train.errors import DataError
from train.manifest import config_from_dict
from train.sources import resolve_sources

from .conftest import _rows, build_labeled, ranked_set_row


def _patch(shade: int) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (shade, shade, shade)).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def build_mixed_k(out: Path, sizes: list[int]) -> Path:
    """A ranked dataset written without a fixed k: set i holds ``sizes[i]`` patches."""
    from rankset.io import write_dataset_dict
    from rankset.schema import ranked_features

    rows = []
    for i, k in enumerate(sizes):
        rows.append(
            ranked_set_row(
                i, [_patch(40 * j) for j in range(k)], [[0.0, 0.0, 16.0 - j, 16.0 - j] for j in range(k)], 16
            )
        )
    write_dataset_dict(out, {"train": (_rows, {"rows": rows})}, ranked_features(None))
    return out


def test_a_ranked_dataset_whose_sets_differ_in_k_is_refused(tmp_path: Path) -> None:
    ds = open_dataset(str(build_mixed_k(tmp_path / "mixed", [3, 2, 3])), "data.ranked[0]", "ranked")["train"]
    with pytest.raises(DataError, match=r"data.ranked\[0\] has sets of 2 to 3 patches; every set needs the same k"):
        ranked_set_size(ds, "data.ranked[0]")
    same = open_dataset(str(build_mixed_k(tmp_path / "same", [3, 3])), "data.ranked[0]", "ranked")["train"]
    assert ranked_set_size(same, "data.ranked[0]") == 3


def test_the_labeled_and_ranked_streams_draw_in_different_orders() -> None:
    labeled = [draw_indices(24, 0, LABELED_STREAM, d) for d in range(24)]
    ranked = [draw_indices(24, 0, RANKED_STREAM, d) for d in range(24)]
    assert sorted(labeled) == sorted(ranked) == list(range(24))
    assert labeled != ranked


def test_the_test_rows_are_the_eval_benchmarks_test_split_and_nothing_else(tmp_path: Path) -> None:
    data = build_labeled(tmp_path / "bench", {"train": 5, "validation": 3, "test": 2})
    table = {"data": {"labeled": [str(data)], "eval": str(data)}, "schedule": {"paradigm": "count-only", "batch": 2}}
    sources = resolve_sources(config_from_dict(table))
    test_ids = [sources.test[0].dataset[i]["image_id"] for i in sources.test[0].indices]
    val_ids = [sources.validation[0].dataset[i]["image_id"] for i in sources.validation[0].indices]
    assert test_ids == ["test-0", "test-1"]
    assert val_ids == ["validation-0", "validation-1", "validation-2"]
