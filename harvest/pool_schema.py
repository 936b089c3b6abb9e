"""The pool index's columns and how rows become Parquet tables that never lose a row to one bad value.

Every part carries every declared column (:data:`COLUMNS`) in its declared type, nulls where unknown; stages may
add more. A value of the wrong type is converted where that is faithful and left null where not, and parts whose
extra columns disagree in type are read with those columns as text: one engine's odd answer never costs the rows
written beside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from harvest.errors import PoolError

# The declared columns, in order. Every part carries all of them (nulls where unknown); stages may add more.
COLUMNS: dict[str, pa.DataType] = {
    "id": pa.string(),
    "url": pa.string(),
    "final_url": pa.string(),
    "page_url": pa.string(),
    "source": pa.string(),
    "mode": pa.string(),
    "query": pa.string(),
    "found_by": pa.list_(pa.string()),
    "title": pa.string(),
    "author": pa.string(),
    "license": pa.string(),
    "license_url": pa.string(),
    "status": pa.string(),
    "error": pa.string(),
    "path": pa.string(),
    "width": pa.int32(),
    "height": pa.int32(),
    "bytes": pa.int64(),
    "format": pa.string(),
    "fetched_at": pa.string(),
    "phash": pa.string(),
    "dup_of": pa.string(),
    "leak_of": pa.string(),
    "clip_score": pa.float32(),
    "clip_model": pa.string(),
    "kept": pa.bool_(),
}

# Columns every part must have: without them a row cannot be told apart, judged or found on disk.
REQUIRED_COLUMNS = ("id", "url", "status", "path")


def rows_to_table(rows: list[dict[str, Any]] | pd.DataFrame) -> pa.Table:
    """A table with every declared column (typed, nulls where absent) followed by any extra columns.

    Never fails on a value: one of the wrong type (a source answering ``"url": 5``, a width of ``"big"``) is
    converted to the column's type where that is lossless (``5`` -> ``"5"``) or else left null, so one bad value
    cannot lose the other rows of a part.
    """
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(rows)
    arrays, fields = [], []
    for name, dtype in COLUMNS.items():
        if name in df.columns:
            arrays.append(_typed_array(df[name].tolist(), dtype))
        else:
            arrays.append(pa.nulls(len(df), type=dtype))
        fields.append(pa.field(name, dtype))
    for name in df.columns:
        if name in COLUMNS:
            continue
        values = [None if _is_missing(v) else v for v in df[name].tolist()]
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):  # mixed types: keep them all as text
            arr = pa.array([None if v is None else _as_text(v) for v in values], type=pa.string())
        arrays.append(arr)
        fields.append(pa.field(name, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _typed_array(values: list[Any], dtype: pa.DataType) -> pa.Array:
    """``values`` as an array of a declared column's type; values of another type are converted one by one."""
    values = [None if _is_missing(v) else v for v in values]
    if pa.types.is_list(dtype):
        values = [None if v is None else _as_tags(v) for v in values]
    try:
        return pa.array(values, type=dtype)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array([_coerce(v, dtype) for v in values], type=dtype)


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value.item() if isinstance(value, np.generic) else value)


def _as_tags(value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return [_as_text(value)]
    return [_as_text(tag) for tag in value if not _is_missing(tag)]


def _coerce(value: Any, dtype: pa.DataType) -> Any:
    """``value`` in a declared column's type, or None where it has no faithful conversion."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if pa.types.is_string(dtype):
        return _as_text(value)
    if pa.types.is_list(dtype):
        return value if isinstance(value, list) else _as_tags(value)
    if pa.types.is_boolean(dtype):
        return value if isinstance(value, bool) else None
    if pa.types.is_integer(dtype):
        whole_float = isinstance(value, float) and value.is_integer()
        if whole_float or (isinstance(value, str) and value.strip().lstrip("+-").isdigit()):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        bound = 2 ** (dtype.bit_width - 1)
        return value if -bound <= value < bound else None
    if pa.types.is_floating(dtype):
        if isinstance(value, bool):
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return None


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN
        return True
    return value is pd.NA or value is pd.NaT


def concat_parts(tables: list[pa.Table], parts: list[Path]) -> pa.Table:
    """One table from every part; an extra (undeclared) column whose type differs between parts becomes text."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowException, TypeError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field_ in table.schema:
            if field_.type != pa.null():
                types.setdefault(field_.name, set()).add(field_.type)
    mixed = {name for name, found in types.items() if len(found) > 1 and name not in COLUMNS}
    as_text = []
    for table in tables:
        for name in mixed & set(table.column_names):
            position = table.column_names.index(name)
            text = pa.array([None if v is None else _as_text(v) for v in table.column(name).to_pylist()], pa.string())
            table = table.set_column(position, pa.field(name, pa.string()), text)
        as_text.append(table)
    try:
        return pa.concat_tables(as_text, promote_options="permissive")
    except (pa.ArrowException, TypeError) as e:
        names = ", ".join(str(p) for p in parts)
        raise PoolError(f"the index parts of {parts[0].parent} do not fit together ({e}); parts: {names}") from e
