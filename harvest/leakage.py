"""The leakage guard: find pool pictures that near-copy an evaluation image (`harvest dedup --exclude-like`).

Training on a resized or re-compressed copy of a test image inflates every reported number, so such pool
pictures get ``leak_of`` and are not kept. ``leak_of`` names the evaluation set and the image in it,
``SET/IMAGE``: for a folder its name and the picture's path inside it without the suffix (``eval/IMG_7``,
``ShanghaiTech_B/test_data/images/IMG_7``), for a labeled dataset its folder name or Hub id and the ``image_id``
(``shb/IMG_7``, ``user/shb/IMG_7``), so the parts of a benchmark, whose image names repeat, stay apart.
Evaluation images come from a folder of pictures or from the ``test`` split of a labeled dataset (folder or Hub id).

Who made a mark is in the optional column ``leak_by``: ``dedup`` (``harvest dedup --exclude-like``) or ``qbe`` (the
test-split guard of ``harvest qbe``). Pools written before it have no such column; :func:`leak_mark_origins` then
tells the origin where the pool says it (a mark on a row qbe did not fetch, or a pool where no qbe run guarded) and
leaves it unknown otherwise, which ``dedup --clear-leaks`` treats like the guard's: kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harvest.decisions import BY_EXCLUDE_LIKE, BY_QBE_GUARD, LEAK_BY
from harvest.dedup import cross_matches
from harvest.errors import ConfigError
from harvest.hashing import hash_bytes, hash_files, hex_to_uint64

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


@dataclass
class ExclusionSet:
    """Hashes of evaluation images: ``keys[k]`` (``SET/IMAGE``) has ``phash[k]`` and ``dhash[k]``."""

    keys: list[str] = field(default_factory=list)
    phash: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    dhash: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    failures: dict[str, str] = field(default_factory=dict)

    def extend(self, other: ExclusionSet) -> None:
        self.keys += other.keys
        self.phash = np.concatenate([self.phash, other.phash])
        self.dhash = np.concatenate([self.dhash, other.dhash])
        self.failures.update(other.failures)


def leak_mark_origins(df: pd.DataFrame, guard_ran: bool) -> dict[str, str | None]:
    """``id -> leak_by`` for every picture with a ``leak_of`` mark: :data:`BY_QBE_GUARD` when any of its rows has a
    guard mark, else None (unknown) when any has a mark of unknown origin, else :data:`BY_EXCLUDE_LIKE`.

    A mark without ``leak_by`` (a pool from before the column) is dedup's where it cannot be the guard's: on a row
    that qbe did not fetch (``mode`` other than ``qbe``), or in a pool where no qbe run had a guard (``guard_ran``).
    """
    if "leak_of" not in df.columns:
        return {}
    # astype(bool): on an empty frame map() keeps the column's string dtype, which `&` refuses (TypeError)
    is_text = df["leak_of"].map(lambda k: isinstance(k, str)).astype(bool)
    marked = df[is_text & df["id"].map(lambda i: isinstance(i, str)).astype(bool)]
    recorded = marked[LEAK_BY] if LEAK_BY in marked.columns else pd.Series(None, index=marked.index, dtype=object)
    modes = marked["mode"] if "mode" in marked.columns else pd.Series(None, index=marked.index, dtype=object)
    found: dict[str, set[str | None]] = {}
    for image_id, by, mode in zip(marked["id"], recorded, modes, strict=True):
        if not isinstance(by, str):
            by = BY_EXCLUDE_LIKE if mode != "qbe" or not guard_ran else None
        found.setdefault(image_id, set()).add(by)
    return {
        image_id: BY_QBE_GUARD if BY_QBE_GUARD in by else (None if None in by else BY_EXCLUDE_LIKE)
        for image_id, by in found.items()
    }


def refuse_the_pool_as_evaluation_set(specs: tuple[str, ...], pool: Path) -> None:
    """ConfigError when an ``--exclude-like`` folder is the pool, lies inside it or holds it: its pictures would
    all be taken for evaluation images, and every pool picture marked ``leak_of`` (marks stay until --clear-leaks)."""
    root = Path(pool).resolve()
    for spec in specs:
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            continue  # a dataset id or a missing folder: load_exclusion_set names the problem
        folder = folder.resolve()
        if folder == root or root in folder.parents or folder in root.parents:
            raise ConfigError(
                f"--exclude-like {spec} holds the pool's own pictures ({pool}); every one would be marked leak_of "
                "(marks stay until `harvest dedup --clear-leaks`): pass the evaluation pictures (a benchmark's test "
                "folder or labeled dataset), kept outside the pool"
            )


def _set_name(folder: Path) -> str:
    """The folder's own name (``.`` and ``..`` resolved), the SET part of ``leak_of``; never a whole local path."""
    return folder.resolve().name or "evaluation"


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_exclusion_set(spec: str | Path, workers: int = 0) -> ExclusionSet:
    """Hash the evaluation images named by ``spec``: a dataset folder or Hub id (its test split), or a folder."""
    from rankset.inputs import printable_name  # a non-UTF-8 name as storable text: the pool write refused it
    from rankset.io import is_dataset_folder, looks_like_hub_id

    path = Path(spec)
    if path.is_dir() and not is_dataset_folder(path):
        files = _folder_images(path)
        if not files:
            raise ConfigError(f"--exclude-like {spec} holds no pictures ({', '.join(sorted(IMAGE_SUFFIXES))})")
        name = _set_name(path)
        keys = [printable_name(f"{name}/{p.relative_to(path).with_suffix('').as_posix()}") for p in files]
        results = hash_files(list(zip(keys, files, strict=True)), workers=workers)
    elif is_dataset_folder(path):
        name = _set_name(path)
        results = [hash_bytes(f"{name}/{key}", data) for key, data in _test_split_images(spec)]
    elif looks_like_hub_id(str(spec)):
        results = [hash_bytes(f"{spec}/{key}", data) for key, data in _test_split_images(spec)]
    else:
        raise ConfigError(f"--exclude-like {spec} is neither a folder of pictures, a dataset folder nor a Hub id")
    good = [r for r in results if r.error is None]
    return ExclusionSet(
        keys=[r.key for r in good],
        phash=hex_to_uint64(r.phash for r in good),
        dhash=hex_to_uint64(r.dhash for r in good),
        failures={r.key: r.error for r in results if r.error is not None},
    )


def _test_split_images(spec: str | Path) -> list[tuple[str, bytes]]:
    """(image_id, encoded bytes) of a labeled dataset's ``test`` split."""
    import datasets

    from rankset.io import empty_saved_splits, load_dataset_dict

    empty = empty_saved_splits(Path(spec))
    if "test" in empty:
        raise ConfigError(_empty_test_split(spec))
    try:  # datasets cannot load a folder with an empty split (it has no data file): load the test split alone
        dsd = {"test": datasets.load_from_disk(str(Path(spec) / "test"))} if empty else load_dataset_dict(spec)
    except Exception as e:  # rankset raises its own tree; to the user it is a bad --exclude-like value
        raise ConfigError(f"--exclude-like {spec}: {e}") from e
    if "test" not in dsd:
        raise ConfigError(f"--exclude-like {spec} has no test split (splits: {', '.join(dsd)}); pass a labeled set")
    test = dsd["test"]
    if len(test) == 0:
        raise ConfigError(_empty_test_split(spec))
    if "image" not in test.column_names or "image_id" not in test.column_names:
        raise ConfigError(f"--exclude-like {spec}: its test split lacks image/image_id; pass a labeled dataset")
    test = test.cast_column("image", datasets.Image(decode=False))
    images = []
    for row in test.select_columns(["image_id", "image"]):
        data = row["image"]["bytes"]
        if data is None and row["image"]["path"]:
            data = Path(row["image"]["path"]).read_bytes()
        images.append((str(row["image_id"]), data or b""))
    return images


def _empty_test_split(spec: str | Path) -> str:
    return (
        f"--exclude-like {spec}: its test split is empty, so it has no evaluation images to guard against; pass a "
        "labeled set whose test split holds them, or a folder of the evaluation pictures"
    )


def find_leaks(
    phash: np.ndarray, dhash: np.ndarray, exclusions: ExclusionSet, phash_threshold: int, dhash_threshold: int
) -> dict[int, str]:
    """Map pool position -> the key of the closest evaluation image it near-copies (by pHash distance; ties: the
    first evaluation image)."""
    pool_index, excl_index = cross_matches(
        phash, dhash, exclusions.phash, exclusions.dhash, phash_threshold, dhash_threshold, closest=True
    )
    return {int(i): exclusions.keys[int(j)] for i, j in zip(pool_index, excl_index, strict=True)}
