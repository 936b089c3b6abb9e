"""The pool on disk: content-addressed images plus an append-only Parquet index (see DESIGN.md).

```
POOL/
  pool.json                 format version, creation time, every command run on it
  index/part-*.parquet      one row per candidate URL or file, every part with the full column set
  images/ab/<sha256>.<ext>  original bytes
```

Every write is atomic: a part is written under a temporary name and renamed; a rewrite (dedup, filter)
writes the new parts into ``index/_rewrite/`` (ignored by Parquet readers), marks it complete, then swaps
it in. A rewrite interrupted before the mark is discarded on the next open; one interrupted after it is
finished. One command writes a pool at a time (:mod:`harvest.pool_lock`). This is the only module of harvest that
writes the pool's index.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harvest import __version__
from harvest.errors import PoolError
from harvest.pool_lock import exclusive, holds

POOL_FORMAT = "crowdrank-pool"
POOL_FORMAT_VERSION = 1

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
READ_ATTEMPTS = 3  # reads of the index that may start over because a rewrite swapped its parts meanwhile

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "MPO": "jpg"}


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


class Pool:
    """A pool folder. ``Pool.create`` makes one (or opens an existing one); ``Pool.open`` requires it."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.index_dir = self.root / "index"
        self.images_dir = self.root / "images"
        self.meta_path = self.root / "pool.json"

    # -- opening ---------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path) -> Pool:
        pool = cls(Path(root))
        if pool.meta_path.exists():
            return cls.open(root)
        if pool.root.exists() and any(pool.root.iterdir()):
            raise PoolError(
                f"{pool.root} exists and is not a pool (no pool.json); choose an empty or new folder for --out"
            )
        pool.index_dir.mkdir(parents=True, exist_ok=True)
        pool.images_dir.mkdir(parents=True, exist_ok=True)
        meta = {"format": POOL_FORMAT, "version": POOL_FORMAT_VERSION, "created_at": utc_now(), "commands": []}
        _atomic_write_bytes(pool.meta_path, json.dumps(meta, indent=2).encode())
        return pool

    @classmethod
    def open(cls, root: str | Path) -> Pool:
        pool = cls(Path(root))
        if not pool.meta_path.exists():
            raise PoolError(f"{pool.root} is not a pool: {pool.meta_path} is missing; make one with `harvest local`")
        meta = pool.meta
        if meta.get("format") != POOL_FORMAT or meta.get("version") != POOL_FORMAT_VERSION:
            raise PoolError(
                f"{pool.meta_path} has format {meta.get('format')!r} version {meta.get('version')!r}; "
                f"this crowdrank reads {POOL_FORMAT!r} version {POOL_FORMAT_VERSION}"
            )
        pool.index_dir.mkdir(exist_ok=True)
        pool.images_dir.mkdir(exist_ok=True)
        pool._recover()
        return pool

    @staticmethod
    def is_pool(path: str | Path) -> bool:
        return (Path(path) / "pool.json").is_file()

    @property
    def meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PoolError(f"cannot read {self.meta_path}: {e}") from e

    def log_command(self, argv: list[str] | None = None, **details: Any) -> None:
        """Record a command run on the pool in pool.json (argv, version, time)."""
        with self.lock():
            meta = self.meta
            entry = {"argv": list(sys.argv if argv is None else argv), "version": __version__, "at": utc_now()}
            entry.update(details)
            meta.setdefault("commands", []).append(entry)
            _atomic_write_bytes(self.meta_path, json.dumps(meta, indent=2).encode())

    @contextmanager
    def lock(self, command: str | None = None) -> Iterator[None]:
        """The pool's writer lock (see :mod:`harvest.pool_lock`): one writing command at a time, re-entrant in the
        thread that holds it; raises :class:`PoolError` naming the command that holds it elsewhere. Every command
        that writes holds it for its whole run, under its ``command`` name; each write takes it too.

        A run (``command`` given) that takes the lock first removes the temporary files a killed run left behind:
        while it holds the lock no other run can be writing them.
        """
        nested = holds(self.root)
        with exclusive(self.root, command):
            if command is not None and not nested:
                self._remove_stale_temp_files()
            yield

    def _remove_stale_temp_files(self) -> None:
        """Half-written images (``images/ab/.<sha>.<ext>.<uuid>.tmp``) and pool.json copies of killed runs."""
        for tmp in [*self.images_dir.glob("*/.*.tmp"), *self.root.glob(f".{self.meta_path.name}.*.tmp")]:
            tmp.unlink(missing_ok=True)

    # -- images ----------------------------------------------------------------------------------------------
    def image_relpath(self, sha: str, ext: str) -> str:
        return f"images/{sha[:2]}/{sha}.{ext.lstrip('.').lower()}"

    def store_image(self, data: bytes, ext: str) -> tuple[str, str]:
        """Store bytes under their sha256 (once: identical bytes are never written twice); return (id, path)."""
        sha = sha256_hex(data)
        rel = self.image_relpath(sha, ext)
        dest = self.root / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write_bytes(dest, data)
        return sha, rel

    def path_of(self, rel: str) -> Path:
        return self.root / rel

    # -- index -----------------------------------------------------------------------------------------------
    def part_files(self) -> list[Path]:
        return sorted(p for p in self.index_dir.glob("part-*.parquet") if p.is_file())

    def read_index(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The whole table; an empty pool gives an empty frame with the declared columns.

        A damaged part (not Parquet, cut short, without the ``id``/``url``/``status``/``path`` columns) raises
        :class:`PoolError` naming it and what to do. A part that vanishes while being read (a rewrite swapping in
        its new parts) makes the whole read start over.
        """
        for _attempt in range(READ_ATTEMPTS):
            parts = self.part_files()
            if not parts:
                return rows_to_table([]).to_pandas()
            try:
                tables = [self._read_part(p) for p in parts]
            except FileNotFoundError:
                continue
            break
        else:
            raise PoolError(
                f"the index of {self.root} kept changing while it was read (another command rewriting it?); "
                "run this command again when that one has finished"
            )
        df = _concat_parts(tables, parts).to_pandas()
        if columns is not None:
            df = df[columns]
        return df

    def _read_part(self, part: Path) -> pa.Table:
        """One part, its declared columns in their declared types; a damaged part raises :class:`PoolError`."""
        try:
            table = pq.read_table(part)
        except FileNotFoundError:
            raise
        except (pa.ArrowException, OSError) as e:
            raise PoolError(self._damaged(part, f"it cannot be read as Parquet ({e})")) from e
        missing = [name for name in REQUIRED_COLUMNS if name not in table.column_names]
        if missing:
            raise PoolError(self._damaged(part, f"it has no {', '.join(missing)} column"))
        for name, dtype in COLUMNS.items():
            if name not in table.column_names or table.schema.field(name).type in (dtype, pa.null()):
                continue
            position = table.column_names.index(name)
            try:
                table = table.set_column(position, pa.field(name, dtype), table.column(name).cast(dtype))
            except (pa.ArrowException, ValueError) as e:
                found = table.schema.field(name).type
                raise PoolError(self._damaged(part, f"its {name} column holds {found}, not {dtype}")) from e
        return table

    def _damaged(self, part: Path, what: str) -> str:
        return (
            f"pool index part {part} is damaged: {what}. Move it out of {self.index_dir} (say, to "
            f"{self.root / 'damaged'}) and run the command again; the other parts and every stored image are "
            "intact, and rerunning the harvest command that wrote its rows fetches them again"
        )

    def append_rows(self, rows: list[dict[str, Any]] | pd.DataFrame) -> Path | None:
        """Write rows as a new part, atomically. Returns its path (None when there were no rows)."""
        if len(rows) == 0:
            return None
        table = rows_to_table(rows)
        name = f"part-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
        dest = self.index_dir / name
        tmp = self.index_dir / f".{name}.tmp"
        with self.lock():
            pq.write_table(table, tmp)
            os.replace(tmp, dest)
        return dest

    def rewrite(self, df: pd.DataFrame, rows_per_part: int = 200_000) -> None:
        """Replace the whole table with ``df``: write new parts aside, mark them complete, then swap them in."""
        with self.lock():
            staging = self.index_dir / "_rewrite"
            if staging.exists():
                shutil.rmtree(staging)
            staging.mkdir()
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            for i, start in enumerate(range(0, max(len(df), 1), rows_per_part)):
                chunk = df.iloc[start : start + rows_per_part]
                if len(chunk) == 0 and i > 0:
                    break
                pq.write_table(rows_to_table(chunk.reset_index(drop=True)), staging / f"part-{stamp}-{i:05d}.parquet")
            (staging / "_COMPLETE").write_text(utc_now())
            self._swap_in(staging)

    def _swap_in(self, staging: Path) -> None:
        new = {p.name for p in staging.glob("part-*.parquet")}
        for old in self.part_files():
            if old.name not in new:
                old.unlink()
        for p in staging.glob("part-*.parquet"):
            os.replace(p, self.index_dir / p.name)
        shutil.rmtree(staging)

    def _recover(self) -> None:
        """Finish a rewrite that was marked complete; drop one that was not, and stray temporary parts.

        Only while no command writes the pool: a running writer's staging folder and temporary parts are its own.
        """
        with exclusive(self.root, required=False) as no_writer:
            if not no_writer:
                return
            staging = self.index_dir / "_rewrite"
            if staging.exists():
                if (staging / "_COMPLETE").exists():
                    self._swap_in(staging)
                else:
                    shutil.rmtree(staging)
            for tmp in self.index_dir.glob(".part-*.tmp"):
                tmp.unlink()


def _concat_parts(tables: list[pa.Table], parts: list[Path]) -> pa.Table:
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


def iter_kept_images(pool: Pool) -> Iterable[dict[str, Any]]:
    """Rows with stored bytes that later stages use: status ok and, where the column is set, kept."""
    df = pool.read_index()
    df = df[(df["status"] == "ok") & df["path"].notna()]
    if "kept" in df.columns:
        df = df[df["kept"].isna() | df["kept"].astype("boolean").fillna(True)]
    df = df.drop_duplicates("id")
    return df.to_dict("records")
