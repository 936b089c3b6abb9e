"""The pool on disk: content-addressed images plus an append-only Parquet index (see DESIGN.md).

```
POOL/
  pool.json                 format version, creation time, every command run on it
  index/part-*.parquet      one row per candidate URL or file, every part with the full column set
  images/ab/<sha256>.<ext>  original bytes
  .lock                     the writer lock (:mod:`harvest.pool_lock`)
```

Every write is atomic: a part is written under a temporary name and renamed; a rewrite (dedup, filter)
writes the new parts into ``index/_rewrite/`` (ignored by Parquet readers), marks it complete, then swaps
it in. A rewrite interrupted before the mark is discarded on the next open; one interrupted after it is
finished. One command writes a pool at a time (:mod:`harvest.pool_lock`). This is the only module of harvest that
writes the pool's index.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harvest import __version__
from harvest.errors import PoolError
from harvest.pool_lock import LOCK_NAME, exclusive, holds
from harvest.pool_schema import COLUMNS, REQUIRED_COLUMNS, concat_parts, rows_to_table

POOL_FORMAT = "crowdrank-pool"
POOL_FORMAT_VERSION = 1

STAGING, COMPLETE_MARK = "_rewrite", "_COMPLETE"  # index/_rewrite/ holds a rewrite's new parts
READ_ATTEMPTS = 40  # reads of the index that start over because a rewrite was swapping its parts meanwhile
# A stored file written this many seconds before the last full check began is hashed again too: coarse mtimes
# (FAT: 2 s) and a file written in the same second as the check started.
MTIME_SLACK_S = 2.0
FILES_CHECKED_FROM = "files_checked_from"  # the pool.json command-log key of files_checked_from
SHA256_NAME = re.compile(r"[0-9a-f]{64}")
READ_RETRY_WAIT = 0.05  # seconds before a read starts over: a swap is renames only, done in milliseconds

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


class Pool:
    """A pool folder. ``Pool.create`` makes one (or opens an existing one); ``Pool.open`` requires it."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.index_dir = self.root / "index"
        self.images_dir = self.root / "images"
        self.meta_path = self.root / "pool.json"
        # columns of the parts read so far, by part name: a part (timestamped, uuid-named) never changes once written
        self._fields_read: tuple[frozenset[str], dict[str, pa.Field]] = (frozenset(), {})

    # -- opening ---------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path) -> Pool:
        """Make a pool in a new or empty folder, or open the pool already there.

        Creation holds the writer lock, so commands started at the same instant on one new folder make one pool
        between them (the others open it, or find it busy) instead of reading each other's half-made folder.
        """
        pool = cls(Path(root))
        if pool.meta_path.exists():
            return cls.open(root)
        if pool.root.exists() and not pool.root.is_dir():
            raise PoolError(f"{pool.root} is a file, not a folder; choose an empty or new folder for --out")
        if not (pool.root / LOCK_NAME).exists():  # a .lock: another command may be making the pool right now
            pool._refuse_foreign_folder()  # before the lock file is made: never leave a .lock in someone's folder
        try:
            pool.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where a parent folder should be, no permission, ...
            raise PoolError(f"cannot make the pool folder {pool.root}: {e}; choose another folder for --out") from e
        with exclusive(pool.root, "(creating the pool)"):
            if pool.meta_path.exists():  # made by another command while this one waited for the folder
                return cls.open(root)
            pool._refuse_foreign_folder()
            pool.index_dir.mkdir(exist_ok=True)
            pool.images_dir.mkdir(exist_ok=True)
            meta = {"format": POOL_FORMAT, "version": POOL_FORMAT_VERSION, "created_at": utc_now(), "commands": []}
            _atomic_write_bytes(pool.meta_path, json.dumps(meta, indent=2).encode())
        return pool

    def _refuse_foreign_folder(self) -> None:
        """PoolError unless the folder is missing, empty, what a creation that stopped half-way leaves, or a pool that
        another command has just made (the caller then opens it)."""
        if not self.root.exists():
            return
        ours = {LOCK_NAME, self.index_dir.name, self.images_dir.name}
        for entry in self.root.iterdir():
            if entry.name.startswith(f".{self.meta_path.name}."):  # another command writing pool.json right now
                continue
            foreign = entry.name not in ours or (entry.is_dir() and any(entry.iterdir()))
            if foreign and not self.meta_path.exists():
                raise PoolError(
                    f"{self.root} exists and is not a pool (no pool.json); choose an empty or new folder for --out"
                )

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
        for folder in (pool.index_dir, pool.images_dir):
            try:
                folder.mkdir(exist_ok=True)
            except OSError as e:  # a file of that name (FileExistsError), no permission, ...
                raise PoolError(
                    f"{folder} must be a folder of the pool and cannot be made one ({e}); move whatever is there "
                    "out of the way and run the command again"
                ) from e
        pool._recover()
        return pool

    @staticmethod
    def is_pool(path: str | Path) -> bool:
        return (Path(path) / "pool.json").is_file()

    @property
    def meta(self) -> dict[str, Any]:
        try:
            data = self.meta_path.read_bytes()
        except OSError as e:
            raise PoolError(f"cannot read {self.meta_path}: {e}") from e
        try:
            meta = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PoolError(f"{self.meta_path} is damaged: it is not valid JSON ({e}); {self._meta_repair()}") from e
        if not isinstance(meta, dict):
            raise PoolError(
                f"{self.meta_path} is damaged: it holds a JSON {type(meta).__name__}, not an object; "
                f"{self._meta_repair()}"
            )
        return meta

    def _meta_repair(self) -> str:
        """How to mend a damaged pool.json: the index and the images do not depend on it."""
        fresh = json.dumps({"format": POOL_FORMAT, "version": POOL_FORMAT_VERSION, "commands": []})
        return (
            f"restore it from a backup, or write {fresh} into it and run `harvest dedup {self.root}` (and `harvest "
            "filter`, if it had run) again: the index and every stored image are intact, only the log of the "
            "commands run on the pool is lost"
        )

    def log_command(self, argv: list[str] | None = None, **details: Any) -> None:
        """Record a command run on the pool in pool.json (argv, version, time)."""
        with self.lock():
            meta = self.meta
            entry = {"argv": list(sys.argv if argv is None else argv), "version": __version__, "at": utc_now()}
            entry.update(details)
            meta.setdefault("commands", []).append(entry)
            _atomic_write_bytes(self.meta_path, json.dumps(meta, indent=2).encode())

    @contextmanager
    def logged_if_failed(self, **details: Any) -> Iterator[None]:
        """Log a run that ends in an error or Ctrl-C as well, as ``details`` plus ``failed`` (the error): pool.json
        then holds every command run on the pool. A successful run logs itself (with what it checked); readers of
        the log take :meth:`finished_commands`. A failure to log never hides the run's own error."""
        try:
            yield
        except (Exception, KeyboardInterrupt) as e:
            with contextlib.suppress(Exception):  # a damaged pool.json, a full disk: the run's own error matters
                self.log_command(**details, failed=f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
            raise

    def finished_commands(self) -> list[dict[str, Any]]:
        """The entries of pool.json's command log, leaving out runs that failed (:meth:`logged_if_failed`)."""
        commands = self.meta.get("commands")
        entries = commands if isinstance(commands, list) else []
        return [e for e in entries if isinstance(e, dict) and "failed" not in e]

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
        if not self.holds_intact(sha, rel, len(data)):  # missing, or damaged since: the bytes in hand mend it
            dest.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write_bytes(dest, data)
        return sha, rel

    def holds_intact(self, image_id: str, rel: str, size: int | None = None) -> bool:
        """Whether the stored file ``rel`` holds the bytes whose sha256 is ``image_id``: not deleted, cut short or
        overwritten since (``size``, when known, spares reading a file of the wrong length)."""
        path = self.path_of(rel)
        try:
            if size is not None and path.stat().st_size != size:
                return False
            return sha256_hex(path.read_bytes()) == image_id
        except OSError:
            return False

    def stored_file_problem(self, rel: str, size: int | None = None, changed_since: float | None = None) -> str | None:
        """What is wrong with the stored file ``rel``, seen from one ``stat``: gone, or not the ``size`` bytes the
        index records; None when it looks intact. The cheap check a stage makes of every picture it would otherwise
        take on trust from stored hashes or cached embeddings.

        With ``changed_since`` (:meth:`files_checked_from`), a file modified since then is read and its sha256
        compared with its name: other bytes of the same size written over it are caught too. "Modified" is judged by
        the later of mtime and ctime: ``cp -p`` and ``touch -d`` put an old mtime back, but no user call sets ctime,
        so such an overwrite is caught as well (a ``chmod`` or a copy of the pool costs one re-hash of the files)."""
        try:
            found = self.path_of(rel).stat()
        except FileNotFoundError:
            return f"{rel} is gone"
        except OSError as e:
            return f"{rel} cannot be read ({e})"
        if size is not None and found.st_size != size:
            return f"{rel} holds {found.st_size:,} bytes, not the {size:,} stored"
        if changed_since is None or max(found.st_mtime, found.st_ctime) < changed_since - MTIME_SLACK_S:
            return None  # not modified since the last full check: the common case, decided from the stat alone
        sha = Path(rel).stem
        if SHA256_NAME.fullmatch(sha) and not self.holds_intact(sha, rel, size):
            return f"{rel} was written over since the last check: its bytes no longer have the sha256 in its name"
        return None

    def stored_file_check(self) -> tuple[Callable[[str, int | None], str | None], dict[str, float]]:
        """The check a dedup or filter run makes of every stored file it takes on trust (:meth:`stored_file_problem`,
        re-hashing the files modified since the last such run), and the entry that run logs with
        :meth:`log_command` once it has finished, recording when this check began."""
        started = time.time()
        since = self.files_checked_from()
        return functools.partial(self.stored_file_problem, changed_since=since), {FILES_CHECKED_FROM: started}

    def files_checked_from(self) -> float | None:
        """When (epoch seconds) the latest dedup or filter run that checked every stored file began: a file not
        modified since was checked by it or by one before. None before any such run."""
        times = [e.get(FILES_CHECKED_FROM) for e in self.finished_commands()]
        return max((float(t) for t in times if isinstance(t, (int, float)) and math.isfinite(t)), default=None)

    def path_of(self, rel: str) -> Path:
        """The stored file an index row's ``path`` names. harvest writes only ``images/ab/<sha256>.<ext>``; a path
        that is absolute or climbs out with ``..`` (a hand-edited or foreign index) raises :class:`PoolError`, so no
        stage ever reads, or puts into a dataset, a file outside the pool."""
        # string tests, not Path parsing: this runs once per row in every stage (a Path pair cost 14 us a call)
        if not isinstance(rel, str) or not rel or os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
            raise PoolError(
                f"the index of {self.root} names a stored file outside the pool: {rel!r}; harvest writes only "
                "paths under images/, so the index was edited by hand or by another tool: fix or remove that row"
            )
        return self.root / rel

    # -- index -----------------------------------------------------------------------------------------------
    def part_files(self) -> list[Path]:
        return sorted(p for p in self.index_dir.glob("part-*.parquet") if p.is_file())

    def read_index(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The whole table; an empty pool gives an empty frame with the declared columns.

        A damaged part (not Parquet, cut short, without the ``id``/``url``/``status``/``path`` columns) raises
        :class:`PoolError` naming it and what to do. Readers take no lock, so a read is checked instead: it starts
        over when a rewrite was swapping its parts in when the read began or ended, or removed a part meanwhile.
        Parts appended meanwhile do not matter: the read is the table as it was when it began.
        """
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                time.sleep(READ_RETRY_WAIT)
            if self._swapping():
                continue
            parts = self.part_files()
            try:
                tables = [self._read_part(p) for p in parts]
            except FileNotFoundError:
                continue
            if self._swapping() or not all(p.exists() for p in parts):
                continue
            break
        else:
            raise PoolError(
                f"the index of {self.root} kept changing while it was read (another command rewriting it?); "
                "run this command again when that one has finished"
            )
        table = concat_parts(tables, parts) if parts else rows_to_table([])
        for name, dtype in COLUMNS.items():  # a declared column that no part holds (parts from another tool)
            if name not in table.column_names:
                table = table.append_column(pa.field(name, dtype), pa.nulls(len(table), dtype))
        df = table.to_pandas()
        if columns is not None:
            df = df[columns]
        return df

    def _swapping(self) -> bool:
        """Whether a rewrite is moving its new parts in right now (or was killed doing it): the index is mixed."""
        return (self.index_dir / STAGING / COMPLETE_MARK).exists()

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
        """Write rows as a new part, atomically. Returns its path (None when there were no rows).

        Every part carries every column of the pool, so ``pandas.read_parquet(POOL / "index")`` (which takes its
        columns from one part) reads them all: the new part gets the columns earlier parts have (nulls), and rows
        that bring a column no earlier part has (qbe's ``similarity`` into a ``harvest local`` pool) are written
        by an atomic rewrite of the whole table instead, so the earlier parts get that column too.
        """
        if len(rows) == 0:
            return None
        table = rows_to_table(rows)
        name = f"part-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
        dest = self.index_dir / name
        tmp = self.index_dir / f".{name}.tmp"
        with self.lock():
            parts = self.part_files()
            known = self._part_fields(parts)
            for field_ in known.values():
                if field_.name not in table.column_names:
                    table = table.append_column(field_, pa.nulls(table.num_rows, type=field_.type))
            if parts and any(name not in known for name in table.column_names):
                self.rewrite(pd.concat([self.read_index(), table.to_pandas()], ignore_index=True))
                return self.part_files()[-1]
            pq.write_table(table, tmp)
            os.replace(tmp, dest)
        return dest

    def _part_fields(self, parts: list[Path]) -> dict[str, pa.Field]:
        """Every column the index ``parts`` have, by name, in the first type other than null found (footers only).

        Only parts not read before by this Pool are opened, so a long run appending part after part stays linear.
        """
        names = frozenset(part.name for part in parts)
        read, fields = self._fields_read
        if not read <= names:  # a rewrite replaced parts: start over
            read, fields = frozenset(), {}
        fields = dict(fields)
        for part in parts:
            if part.name in read:
                continue
            try:
                schema = pq.read_schema(part)
            except (pa.ArrowException, OSError):
                continue  # a damaged part is named by the next read_index
            for field_ in schema:
                if field_.name not in fields or pa.types.is_null(fields[field_.name].type):
                    fields[field_.name] = field_
            read |= {part.name}
        self._fields_read = (read, fields)
        return fields

    def rewrite(self, df: pd.DataFrame, rows_per_part: int = 200_000) -> None:
        """Replace the whole table with ``df``: write new parts aside, mark them complete, then swap them in."""
        with self.lock():
            staging = self.index_dir / STAGING
            if staging.exists():
                shutil.rmtree(staging)
            staging.mkdir()
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            names = []
            for i, start in enumerate(range(0, max(len(df), 1), rows_per_part)):
                chunk = df.iloc[start : start + rows_per_part]
                if len(chunk) == 0 and i > 0:
                    break
                names.append(f"part-{stamp}-{i:05d}.parquet")
                pq.write_table(rows_to_table(chunk.reset_index(drop=True)), staging / names[-1])
            mark = {"parts": names, "at": utc_now()}  # the mark names the new parts: see _swap_in
            _atomic_write_bytes(staging / COMPLETE_MARK, json.dumps(mark).encode())
            self._swap_in(staging)

    def _swap_in(self, staging: Path) -> None:
        """Delete the old parts, move the new ones in, drop the staging folder. A swap killed at any point is finished
        by running it again: the new parts are those the mark names, so the ones already moved into the index are not
        taken for old parts and deleted."""
        new = self._marked_parts(staging)
        for old in self.part_files():
            if old.name not in new:
                old.unlink()
        for name in sorted(new):
            if (staging / name).exists():
                os.replace(staging / name, self.index_dir / name)
        shutil.rmtree(staging)

    @staticmethod
    def _marked_parts(staging: Path) -> set[str]:
        """The part names a complete rewrite's mark lists; a mark of an older crowdrank (a bare time) names none, and
        its parts are then those still staged."""
        try:
            names = json.loads((staging / COMPLETE_MARK).read_text())["parts"]
        except (OSError, ValueError, TypeError, KeyError):
            names = None
        if not isinstance(names, list):
            return {p.name for p in staging.glob("part-*.parquet")}
        return {str(name) for name in names}

    def _recover(self) -> None:
        """Finish a rewrite that was marked complete; drop one that was not, and stray temporary parts.

        Only while no command writes the pool: a running writer's staging folder and temporary parts are its own.
        """
        with exclusive(self.root, required=False) as no_writer:
            if not no_writer:
                return
            staging = self.index_dir / STAGING
            if staging.exists():
                if (staging / COMPLETE_MARK).exists():
                    self._swap_in(staging)
                else:
                    shutil.rmtree(staging)
            for tmp in self.index_dir.glob(".part-*.tmp"):
                tmp.unlink()


def kept_and_unreviewed(pool: Pool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pictures later stages use, and those left out because no dedup/filter has judged them yet; one row each.

    A picture is one ``id`` (the same bytes found under several URLs has several rows). Until ``harvest dedup`` or
    ``harvest filter`` has run on the pool, every stored picture with status ok is used except those a stage refused
    (``kept`` false: a leak marked by qbe). Once one has run, each picture it judged is used when one of its rows is
    ``kept``; a picture with no verdict at all (added by a later harvest) is *unreviewed*: it has not been checked for
    duplicates, test-set leaks or crowd scenes, so it is left out until dedup/filter run again. A picture refused
    (only false verdicts: a leak, even re-found under another URL) stays refused.
    """
    df = pool.read_index()
    df = df[(df["status"] == "ok") & df["path"].notna()]
    verdict = (
        df["kept"].astype("boolean") if "kept" in df.columns else pd.Series(pd.NA, index=df.index, dtype="boolean")
    )
    accepted = set(df.loc[verdict.eq(True).fillna(False), "id"])
    judged = set(df.loc[verdict.notna(), "id"])
    first = df.drop_duplicates("id")
    if not _judged_by_a_stage(pool):
        return first[~first["id"].isin(judged - accepted)].to_dict("records"), []
    kept = first[first["id"].isin(accepted)]
    unreviewed = first[~first["id"].isin(judged)]
    return kept.to_dict("records"), unreviewed.to_dict("records")


def _judged_by_a_stage(pool: Pool) -> bool:
    """Whether dedup or filter has run on the pool (they set ``kept`` on every picture there was then)."""
    return any(entry.get("stage") in ("dedup", "filter") for entry in pool.finished_commands())
