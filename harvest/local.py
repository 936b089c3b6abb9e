"""``harvest local``: a folder of pictures (searched recursively) into the pool, with the downloader's checks.

Each file becomes one row (mode and source ``local``, url its ``file://`` URI) whatever its fate, except hidden files
and files whose suffix says they are never pictures (annotations such as ``.mat``, ``.csv``, ``.txt``, ``.json``
sidecars: counted in the summary, no row): magic bytes,
a full decode under the bomb guard and the size floor decide ``ok`` or a failure class. A name that is no regular
file (a FIFO, a device, a socket, even behind a symlink) is ``not_a_file`` and is never read; a symlink loop is
``unreadable``; reads stop at ``--max-bytes``. Attribution comes from
a sidecar ``<file>.json`` (``license``, ``author``, ``title``, ``source_url``, optional ``license_url``) when
there is one: author and title as plain text (HTML copied from Commons is stripped), the licence in the pool's
one spelling (``CC BY 4.0`` -> ``cc-by-4.0``). Files whose URI
is already in the pool are skipped, so a rerun ingests nothing twice. Decode checks run in a thread pool (Pillow
releases the GIL while decoding).
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harvest.errors import ConfigError
from harvest.images import DEFAULT_MAX_PIXELS, check_image, pixel_limit
from harvest.pool import Pool, utc_now
from harvest.schedule import run_unordered
from harvest.sources.text import normalize_license, strip_html
from harvest.writer import PoolWriter, Summary, compact_pool, failed_urls, known_urls, run_progress

SIDECAR_FIELDS = ("license", "author", "title", "source_url", "license_url")


@dataclass(frozen=True)
class LocalConfig:
    """``harvest local DIR --out POOL``: which folder, which pool, and the same checks as the downloader."""

    root: Path
    out: Path
    workers: int = 4
    min_side: int = 224
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = 50 * 1024 * 1024
    flush_rows: int = 256
    flush_seconds: float = 30.0
    show_progress: bool = True
    retry_failed: bool = False  # read again the files whose rows all failed (replaced since, or other limits now)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())
        object.__setattr__(self, "out", Path(self.out))
        if not self.root.is_dir():
            raise ConfigError(f"DIR {self.root} is not a folder; pass the folder of pictures to ingest")
        if self.out.resolve() == self.root or self.root in self.out.resolve().parents:
            raise ConfigError(f"--out {self.out} lies inside DIR {self.root}; choose a pool folder outside it")
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"--workers must be between 1 and 64, got {self.workers}")
        if self.min_side < 0:
            raise ConfigError(f"--min-side must be >= 0 pixels, got {self.min_side}")
        if self.max_pixels < 1:
            raise ConfigError(f"--max-pixels must be >= 1, got {self.max_pixels}")
        if self.max_bytes < 1024:
            raise ConfigError(f"--max-bytes must be at least 1024, got {self.max_bytes}")
        if self.flush_rows < 1 or self.flush_seconds <= 0:
            raise ConfigError(
                f"flush_rows must be >= 1 and flush_seconds > 0, got {self.flush_rows} and {self.flush_seconds}"
            )

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.update(root=str(self.root), out=str(self.out))
        return record


# Files that sit beside crowd pictures and are never pictures: annotations (ShanghaiTech's .mat, UCF-QNRF's
# counts.csv, JHU's .txt, NWPU's .json, VOC-style .xml), sidecars, notes and archives. They are left out without a
# row; a file with any other name (a picture suffix, an unknown one, none) is read, and its bytes decide.
NON_PICTURE_SUFFIXES = frozenset(
    {
        ".csv", ".tsv", ".json", ".jsonl", ".mat", ".txt", ".xml", ".yaml", ".yml", ".npy", ".npz", ".h5", ".hdf5",
        ".pkl", ".pickle", ".pt", ".pth", ".parquet", ".md", ".rst", ".pdf", ".html", ".htm", ".log", ".ini", ".py",
        ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".mp4", ".avi", ".mov", ".mkv", ".webm",
    }
)  # fmt: skip


def iter_picture_files(root: Path, left_out: Counter[str] | None = None) -> Iterator[Path]:
    """Every file under ``root`` in a stable order, except hidden files and files that are never pictures
    (:data:`NON_PICTURE_SUFFIXES`: ``.json`` sidecars, annotations), which are counted by suffix in ``left_out``."""
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            suffix = os.path.splitext(name)[1].lower()
            if suffix in NON_PICTURE_SUFFIXES:
                if left_out is not None:
                    left_out[suffix] += 1
                continue
            yield Path(folder) / name


class NotARegularFile(OSError):
    """A pipe, a device, a socket or a folder: nothing to ingest, and reading it could block or never end."""


_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words, from its ``st_mode`` (``a named pipe (FIFO)``)."""
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def _require_regular(mode: int, path: Path) -> None:
    if not stat.S_ISREG(mode):
        raise NotARegularFile(f"{path} is {file_kind(mode)}, not a regular file; only picture files are ingested")


def read_capped(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file, at most ``max_bytes + 1`` of them (so "over the limit" can be told).

    Anything but a regular file (after symlinks) raises :class:`NotARegularFile` before a byte is read: a FIFO
    would block forever and ``/dev/zero`` never ends. The file is opened without blocking and checked again on
    the open descriptor, so one swapped for a pipe after the first check is refused too; the read is capped
    because ``st_size`` says nothing for some files (``/proc``) and a file may grow while it is read.
    """
    _require_regular(os.stat(path).st_mode, path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as f:
        _require_regular(os.fstat(fd).st_mode, path)
        return f.read(max_bytes + 1)


def file_uri(path: Path) -> str:
    """The ``file://`` URI of the file a path names (symlinks resolved); the path itself when they loop."""
    try:
        return path.resolve().as_uri()
    except (RuntimeError, OSError):  # a symlink loop: Python 3.11 raises RuntimeError, 3.13 OSError
        return path.absolute().as_uri()


def read_sidecar(path: Path) -> tuple[dict[str, str | None], str | None]:
    """Attribution of the picture at ``path`` from ``<file>.json``: see :func:`read_attribution`."""
    return read_attribution(path.with_name(path.name + ".json"))


def read_attribution(sidecar: Path) -> tuple[dict[str, str | None], str | None]:
    """Attribution from a sidecar JSON file (nulls when absent) and a message when it is unreadable: author and
    title as plain text, the licence in the pool's one spelling (``CC BY 4.0`` -> ``cc-by-4.0``)."""
    fields: dict[str, str | None] = dict.fromkeys(SIDECAR_FIELDS)
    if not sidecar.is_file():
        return fields, None
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return fields, f"sidecar {sidecar.name} ignored: {e}"
    if not isinstance(data, dict):
        return fields, f"sidecar {sidecar.name} ignored: expected a JSON object, got {type(data).__name__}"
    wrong = [f"{key} is {type(data[key]).__name__}" for key in SIDECAR_FIELDS if not _text_or_null(data.get(key))]
    if wrong:  # str() of them stored licence '5' or 'nan' and author "['a', 'b']"
        expected = f"each of {', '.join(SIDECAR_FIELDS)} is a string or null"
        return fields, f"sidecar {sidecar.name} ignored: {', '.join(wrong)}; {expected}"
    for key in SIDECAR_FIELDS:
        fields[key] = data.get(key)
    for key in ("author", "title"):  # the pool keeps attribution as plain text, as the web sources store it
        fields[key] = strip_html(fields[key])
    fields["license"] = normalize_license(fields["license"], fields["license_url"])
    return fields, None


def _text_or_null(value: object) -> bool:
    return value is None or isinstance(value, str)


def _ingest_file(pool: Pool, path: Path, config: LocalConfig, query: str) -> dict[str, Any]:
    """The pool row of one file; its bytes are stored when they pass every check."""
    url = file_uri(path)
    attribution, sidecar_error = read_sidecar(path)
    row: dict[str, Any] = {
        "url": url,
        "page_url": attribution["source_url"],
        "source": "local",
        "mode": "local",
        "query": query,
        "found_by": [f"local:{query}"],
        "title": attribution["title"],
        "author": attribution["author"],
        "license": attribution["license"],
        "license_url": attribution["license_url"],
        "fetched_at": utc_now(),
    }
    try:
        size = path.stat().st_size
        if size > config.max_bytes:
            return row | {"status": "too_large", "error": f"{size} bytes is over --max-bytes {config.max_bytes}"}
        data = read_capped(path, config.max_bytes)
    except NotARegularFile as e:
        return row | {"status": "not_a_file", "error": str(e)}
    except OSError as e:
        return row | {"status": "unreadable", "error": f"cannot read the file: {e}"}
    if len(data) > config.max_bytes:  # st_size said less: a /proc file, or one still being written
        return row | {"status": "too_large", "error": f"more than --max-bytes {config.max_bytes} bytes (read stopped)"}
    check = check_image(data, config.max_pixels, config.min_side)
    row.update(status=check.status, error=check.error, format=check.format, width=check.width, height=check.height)
    row["bytes"] = len(data)
    if check.ok:
        row["id"], row["path"] = pool.store_image(data, check.extension)
        row["error"] = sidecar_error
    return row


def _ingest_safely(pool: Pool, path: Path, config: LocalConfig, query: str) -> dict[str, Any]:
    """:func:`_ingest_file`, where a bug costs one row (``internal_error``), not the run."""
    try:
        return _ingest_file(pool, path, config, query)
    except Exception as e:
        return {
            "url": file_uri(path), "source": "local", "mode": "local", "query": query, "found_by": [f"local:{query}"],
            "status": "internal_error", "error": f"{type(e).__name__}: {e}", "fetched_at": utc_now(),
        }  # fmt: skip


def ingest_local(config: LocalConfig) -> Summary:
    """Ingest every picture under ``config.root`` not yet in the pool; returns the run summary."""
    started = time.monotonic()
    pool = Pool.create(config.out)
    with pool.lock("local"):  # one writer at a time: a second run into this pool fails at once, naming this one
        pool.log_command(command="local", config=config.to_record())
        summary = _ingest_new_files(pool, config)
    summary.elapsed_s = time.monotonic() - started
    return summary


def _ingest_new_files(pool: Pool, config: LocalConfig) -> Summary:
    """One row per picture file whose URI the pool has not seen yet, or (``retry_failed``) whose rows all failed."""
    summary = Summary("local")
    known, doubled = known_urls(pool)  # doubled: rows a killed run left for the compaction it never reached
    again = failed_urls(pool) if config.retry_failed else set()
    ignored_sidecars: list[str] = []
    for url in again:
        del known[url]  # read once more; the new row replaces the failed one when the pool is compacted
    query = str(config.root)

    left_out: Counter[str] = Counter()

    def new_files(progress: Any) -> Iterator[Path]:
        for path in iter_picture_files(config.root, left_out):
            summary.candidates += 1
            uri = file_uri(path)
            if uri in known:
                summary.known += 1
                continue
            summary.retried += int(uri in again)
            progress.add_total()
            yield path

    with (
        pixel_limit(config.max_pixels),
        run_progress(config.show_progress, "harvest local") as progress,
        PoolWriter(pool, config.flush_rows, config.flush_seconds) as writer,
    ):
        rows = run_unordered(lambda p: _ingest_safely(pool, p, config, query), new_files(progress), config.workers)
        for row in rows:
            writer.add(row)
            summary.add("local", row["status"], row["bytes"] if row.get("id") else None)
            if row["status"] == "ok" and row.get("error"):  # stored, but its sidecar could not be read
                ignored_sidecars.append(row["error"])
            progress.advance()
    compact_pool(pool, {}, repeated=summary.retried > 0 or doubled)
    if ignored_sidecars:  # the picture is in, without the licence and author its sidecar was meant to give
        summary.notes.append(
            f"{len(ignored_sidecars)} sidecar .json files ignored, so their pictures have no attribution (the "
            f"error column says why), e.g. {ignored_sidecars[0]}"
        )
    if left_out:  # annotations and sidecars beside the pictures: no row, but the user should see they were seen
        suffixes = ", ".join(f"{n} {suffix}" for suffix, n in sorted(left_out.items()))
        summary.notes.append(f"skipped {left_out.total()} non-picture files ({suffixes}): no rows")
    return summary
