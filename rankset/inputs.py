"""Where ranked sets are cut from: a harvest pool, a folder of pictures, or a dataset with an ``image`` column.

Each input becomes a list of :class:`SourcePicture` (paths, or bytes for datasets), sorted so the same
input always gives the same order, with licence and attribution carried along.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rankset.errors import InputError

_IMAGE_SUFFIX_ORDER = (
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".jfif",
    ".mpo",
    ".ppm",
    ".pgm",
)
IMAGE_SUFFIXES = set(_IMAGE_SUFFIX_ORDER)
IMAGE_SUFFIX_LIST = ", ".join(_IMAGE_SUFFIX_ORDER)  # for messages, the common ones first
# Files that sit beside pictures and are never pictures themselves; anything else is tried and, if it is not
# a picture, reported as skipped.
SIDECAR_SUFFIXES = {".json", ".csv", ".txt", ".md", ".mat", ".toml", ".yaml", ".yml", ".xml", ".parquet", ".npy"}

# Why a picture was skipped, as the build summary counts them (the message beside each says which and the fix).
SKIP_MISSING = "file missing"
SKIP_UNREADABLE = "unreadable picture"
SKIP_TOO_SMALL = "too small for k and s"
SKIP_NOT_A_FILE = "not a regular file"
SKIP_BROKEN_LINK = "broken or looping link"
SKIP_NESTED_POOL = "a harvest pool inside the folder"
SKIP_UNREVIEWED = "not yet judged by dedup/filter"
SKIP_OUTSIDE_POOL = "pool row names a file outside the pool"


@dataclass(frozen=True)
class SourcePicture:
    source_id: str
    path: str | None = None
    data: bytes | None = None
    license: str | None = None
    author: str | None = None
    source_url: str | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None, "a SourcePicture has either bytes or a path"
        return Path(self.path).read_bytes()


def describe_input(path_or_id: str | Path) -> str:
    """``pool``, ``dataset``, ``folder`` or ``hub`` for an INPUT argument; raises InputError when it is none."""
    from rankset.io import is_dataset_folder, looks_like_hub_id, missing_path_message

    p = Path(path_or_id)
    if (p / "pool.json").is_file():
        return "pool"
    if is_dataset_folder(p):
        return "dataset"
    if p.is_dir():
        return "folder"
    if looks_like_hub_id(str(path_or_id)):
        return "hub"
    if p.exists():
        raise InputError(f"{p} is a file; INPUT must be a pool, a folder of pictures or a dataset folder")
    kinds = "a pool, a folder of pictures, a dataset folder or a Hub id"
    raise InputError(f"{missing_path_message(p)}; INPUT must be {kinds}")


def scan_folder(root: Path) -> tuple[list[SourcePicture], list[tuple[str, str, str, str]]]:
    """Every candidate picture below ``root`` (recursively, hidden files left out), in path order, and the entries
    that cannot be pictures as ``(id, path, reason, message)`` with a ``SKIP_*`` reason: FIFOs, devices and sockets
    (reading a FIFO would wait forever), and links that lead nowhere or in a loop. Those are never opened; the
    build lists them as skipped.

    Dataset folders and harvest pools below ``root`` (a build's own ``--out`` inside it, say) are left out whole:
    their Arrow files are not pictures, and a rebuild must read the same pictures as the first build."""
    from rankset.io import is_dataset_folder

    files: list[Path] = []
    refused: list[tuple[Path, str, str]] = []
    written: list[Path] = []  # dataset folders and pools, relative to root
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or f.suffix.lower() in SIDECAR_SUFFIXES:
            continue
        if any(folder in rel.parents for folder in written):
            continue
        if f.is_dir() and (is_dataset_folder(f) or (f / "pool.json").is_file()):
            written.append(rel)
            if (f / "pool.json").is_file():  # its pictures count only with the pool's dedup/filter verdicts
                refused.append(
                    (f, SKIP_NESTED_POOL, f"a harvest pool, not read as a folder: pass {f} as INPUT to build from it")
                )
            continue
        try:
            mode = f.stat().st_mode  # follows links: a link to a picture is a picture
        except OSError as e:  # a dangling link (ENOENT) or a loop (ELOOP)
            refused.append(
                (
                    f,
                    SKIP_BROKEN_LINK,
                    f"unreadable: {e.strerror or e} (a broken or looping link?); point the link at a picture or "
                    "remove it",
                )
            )
            continue
        if stat.S_ISREG(mode):
            files.append(f)
        elif not stat.S_ISDIR(mode):
            from harvest.local import file_kind  # the same words as harvest local's not_a_file rows

            refused.append(
                (f, SKIP_NOT_A_FILE, f"{file_kind(mode)}, not a regular file; only files are read, so it is left out")
            )
    ids = _unique_source_ids(root, files + [f for f, _, _ in refused])
    pictures = []
    for f in files:
        meta = _sidecar(f)
        pictures.append(
            SourcePicture(
                source_id=ids[f],
                path=str(f),
                license=meta.get("license"),
                author=meta.get("author"),
                source_url=meta.get("source_url") or f.resolve().as_uri(),
            )
        )
    return pictures, [(ids[f], printable_name(f), reason, message) for f, reason, message in refused]


def _unique_source_ids(root: Path, files: list[Path]) -> dict[Path, str]:
    """One distinct source id per file: its stem when every stem is unique, else its path below ``root`` without
    the suffix (``day-x``); a file whose path still collides (``x.jpg`` beside ``x.png``) keeps its suffix
    (``x.jpg``), and a name left equal after that (``a/b.png`` and ``a-b.png``) gets ``~2``, ``~3``, ... in path
    order. Two pictures under one id would share a set id, an attribution row and a split draw."""
    stems = [f.stem for f in files]
    if len(set(stems)) == len(stems):
        return {f: printable_name(f.stem) for f in files}

    def flat(rel: Path) -> str:
        return printable_name(rel.as_posix().replace("/", "-"))

    rels = {f: f.relative_to(root) for f in files}
    names = {f: flat(rels[f].with_suffix("")) for f in files}
    taken = Counter(names.values())
    names = {f: flat(rels[f]) if taken[name] > 1 else name for f, name in names.items()}
    seen: Counter[str] = Counter()
    ids = {}
    for f in sorted(files):
        seen[names[f]] += 1
        ids[f] = names[f] if seen[names[f]] == 1 else f"{names[f]}~{seen[names[f]]}"
    return ids


def printable_name(name: str | Path) -> str:
    """A file name or path as text that can be stored: bytes that are not UTF-8 (``caf\\xe9``) written as escapes.

    Python reads such names with surrogate escapes, which neither Arrow nor a UTF-8 writer accepts (a dataset
    column, ``counts.csv``). Valid names come back unchanged.
    """
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _sidecar(f: Path) -> dict[str, str]:
    """Attribution from ``<file>.json`` (or ``<stem>.json``) read as ``harvest local`` reads it: author and title as
    plain text, the licence in the pool's one spelling (``CC BY 4.0`` -> ``cc-by-4.0``). An unreadable one (not
    UTF-8 JSON) is ignored, as harvest local ignores it: the picture is still cut."""
    from harvest.local import read_attribution

    for sidecar in (f.with_name(f.name + ".json"), f.with_suffix(".json")):
        if sidecar.is_file():
            fields, _ = read_attribution(sidecar)
            return {k: v for k, v in fields.items() if v is not None}
    return {}


UNREVIEWED = (
    "added to the pool after harvest dedup/filter ran: not yet checked for duplicates, test-set leaks or crowd "
    "scenes; run harvest dedup (and harvest filter) on the pool again to use it"
)


def list_pool(root: Path) -> tuple[list[SourcePicture], list[tuple[str, str, str, str]]]:
    """The pool's stored pictures with status ok and, once dedup/filter have run, ``kept``; and those left out
    unread as ``(id, id, reason, message)`` (a pool row is named by its id, as scan_folder's entries by path):
    pictures a later harvest added that no dedup/filter has judged yet, and rows whose path leaves the pool."""
    from harvest.errors import PoolError
    from harvest.pool import Pool, kept_and_unreviewed

    pool = Pool.open(root)
    kept, unreviewed = kept_and_unreviewed(pool)
    pictures = []
    left_out = [(row["id"], row["id"], SKIP_UNREVIEWED, UNREVIEWED) for row in unreviewed]
    for row in sorted(kept, key=lambda r: r["id"]):
        try:
            path = pool.path_of(row["path"])
        except PoolError as e:  # never read a file the index points at outside the pool
            left_out.append((row["id"], row["id"], SKIP_OUTSIDE_POOL, str(e)))
            continue
        pictures.append(
            SourcePicture(
                source_id=row["id"],
                path=str(path),
                license=_text(row.get("license")),
                author=_text(row.get("author")),
                source_url=_text(row.get("page_url")) or _text(row.get("url")),
            )
        )
    return pictures, sorted(left_out)


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


def iter_dataset(path_or_id: str, split: str) -> tuple[int, Iterator[SourcePicture]]:
    """Rows of a dataset's ``split`` with an ``image`` column, as encoded bytes (never decoded here)."""
    import datasets

    from rankset.io import load_dataset_dict, quiet_datasets

    dsd = load_dataset_dict(path_or_id)
    if split not in dsd:
        raise InputError(f"{path_or_id} has no split {split!r}; its splits are {sorted(dsd)}; pass --split")
    ds = dsd[split]
    if "image" not in ds.column_names:
        raise InputError(
            f"{path_or_id} split {split!r} has no `image` column (columns: {ds.column_names}); "
            "a ranked-set dataset cannot be an INPUT of build"
        )
    with quiet_datasets():
        ds = ds.cast_column("image", datasets.Image(decode=False))
    has = set(ds.column_names)

    def rows() -> Iterator[SourcePicture]:
        for i, row in enumerate(ds):
            image = row["image"] or {}
            data, path = image.get("bytes"), image.get("path")
            yield SourcePicture(  # a row that names a file is read by the worker: a missing one is skipped, not a crash
                source_id=str(row["image_id"]) if "image_id" in has else f"{split}-{i:06d}",
                path=path if data is None and path else None,
                data=None if data is None and path else (data or b""),
                license=row.get("license") if "license" in has else None,
                author=row.get("author") if "author" in has else None,
                source_url=row.get("source_url") if "source_url" in has else None,
            )

    return len(ds), rows()
