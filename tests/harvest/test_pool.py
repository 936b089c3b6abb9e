"""The pool on disk: typed parts that survive bad values, clear errors for broken parts, one writer at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from harvest.cli import app
from harvest.errors import PoolError
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


def pool_with_rows(tmp_path: Path, n: int = 3) -> Pool:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows([{"url": f"https://a.org/{i}.jpg", "status": "http_404"} for i in range(n)])
    return pool


def damage_garbage(part: Path) -> None:
    part.write_bytes(b"x\n")


def damage_truncate(part: Path) -> None:
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])


def damage_drop_status(part: Path) -> None:
    pq.write_table(pa.table({"url": ["https://a.org/x.jpg"], "id": [None], "path": [None]}), part)


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (damage_garbage, "cannot be read as Parquet"),
        (damage_truncate, "cannot be read as Parquet"),
        (damage_drop_status, "it has no status column"),
    ],
)
def test_a_damaged_index_part_is_a_pool_error_naming_the_part_and_the_fix(tmp_path: Path, damage, what: str) -> None:
    pool = pool_with_rows(tmp_path)
    broken = pool.index_dir / "part-zzz-broken.parquet"
    pool.append_rows([{"url": "https://a.org/x.jpg", "status": "ok"}]).rename(broken)
    damage(broken)
    with pytest.raises(PoolError) as caught:
        pool.read_index()
    message = str(caught.value)
    assert str(broken) in message and what in message and "Move it out of" in message
    broken.rename(tmp_path / "aside.parquet")
    assert len(Pool.open(tmp_path / "pool").read_index()) == 3  # nothing else was lost


def test_report_and_dedup_on_a_damaged_part_fail_cleanly_naming_it(tmp_path: Path) -> None:
    pool = pool_with_rows(tmp_path)
    damage_garbage(pool.index_dir / "part-zzz-broken.parquet")
    for command in (["report", str(pool.root)], ["dedup", str(pool.root)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1, result.output
        assert "part-zzz-broken.parquetisdamaged" in "".join(result.output.split())  # rich wraps long paths
        assert not isinstance(result.exception, KeyError | pa.ArrowException)


def test_an_extra_column_whose_type_differs_between_parts_is_read_as_text(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows([{"url": "https://a.org/1.jpg", "status": "ok", "rank": 1}])
    pool.append_rows([{"url": "https://a.org/2.jpg", "status": "ok", "rank": "first"}])
    assert sorted(pool.read_index()["rank"]) == ["1", "first"]
