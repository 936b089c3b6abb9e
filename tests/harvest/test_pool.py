"""The pool on disk: typed parts that survive bad values, clear errors for broken parts, one writer at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harvest.pool import Pool


def test_a_value_of_the_wrong_type_is_converted_or_nulled_and_the_other_rows_are_kept(tmp_path: Path) -> None:
    rows = [
        {"url": "https://a.org/1.jpg", "status": "ok", "width": 40, "found_by": ["s:q"], "rank": 1},
        {"url": 5, "status": "bad_url", "width": "big", "found_by": "s:q", "rank": "first"},
        {"url": ["https://a.org/3.jpg"], "status": "ok", "width": np.int64(2**40), "kept": "yes", "rank": None},
    ]
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows(rows)
    df = pool.read_index()
    assert df["url"].tolist() == ["https://a.org/1.jpg", "5", "['https://a.org/3.jpg']"]
    assert df["width"].tolist()[0] == 40 and df["width"].isna().tolist() == [False, True, True]  # 2**40 overflows int32
    assert [None if tags is None else list(tags) for tags in df["found_by"]] == [["s:q"], ["s:q"], None]
    assert df["kept"].isna().tolist() == [True, True, True]
    assert df["rank"].tolist()[:2] == ["1", "first"] and df["rank"].isna().iloc[2]  # mixed types: kept as text
