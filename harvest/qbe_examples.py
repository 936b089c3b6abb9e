"""The example pictures of ``harvest qbe``: a folder of pictures, or the ``train`` split of a labeled dataset.

A folder gives every picture in it (recursively); the example id is the path under the folder without its
suffix (``IMG_12`` for ``IMG_12.jpg``). A dataset (folder written by rankset, or a Hub id) gives its ``train``
split only: its ``test`` split is what the run must never copy, so it goes to the leakage guard instead
(:attr:`ExampleSet.test_split_of`). Dataset pictures are written to a temporary folder for the run, so every
backend reads an example the same way: from a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harvest.errors import ConfigError
from harvest.images import sniff_format
from harvest.leakage import IMAGE_SUFFIXES
from harvest.pool import EXTENSIONS
from harvest.sources.by_example import Example

try:
    import fcntl
except ImportError:  # Windows: no flock; a killed run's folder stays, as before
    fcntl = None  # type: ignore[assignment]

WORKDIR_PREFIX = "crowdrank-qbe-"
WORKDIR_OWNER = ".owner"  # flock'ed by the run using the folder: the kernel drops it when that run dies


@dataclass
class ExampleSet:
    """The examples of a run; ``test_split_of`` is the dataset whose test split the leakage guard must load."""

    examples: list[Example]
    test_split_of: str | None = None
    notes: list[str] = field(default_factory=list)


def public_url(prefix: str | None, file_name: str) -> str | None:
    """``prefix`` joined with a file name (each path segment URL-quoted); None without a prefix."""
    if not prefix:
        return None
    return (prefix if prefix.endswith("/") else prefix + "/") + quote(os.fsencode(file_name))  # its bytes, as served


def folder_examples(folder: Path, prefix: str | None) -> list[Example]:
    """Every picture under ``folder`` (hidden files and folders left out), in a stable order; a name that is not
    UTF-8 is stored with its odd bytes written ``\\xNN`` (:func:`rankset.inputs.printable_name`)."""
    from rankset.inputs import printable_name  # harvest imports nothing of ours at module level

    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    examples = []
    for path in files:
        relative = path.relative_to(folder)
        example_id = printable_name(relative.with_suffix("").as_posix())
        name = relative.as_posix()
        examples.append(Example(example_id, path, printable_name(name), public_url(prefix, name)))
    return examples


def _safe_name(image_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_id) or "example"


def dataset_examples(spec: str, prefix: str | None, workdir: Path) -> ExampleSet:
    """The ``train`` split of a labeled dataset, each picture written to ``workdir``; bad rows become notes."""
    import datasets

    from rankset.io import load_dataset_dict

    try:
        dsd = load_dataset_dict(spec)
    except Exception as e:  # rankset raises its own tree; to the user it is a bad --examples value
        raise ConfigError(f"--examples {spec}: {e}") from e
    if "train" not in dsd:
        raise ConfigError(f"--examples {spec} has no train split (splits: {', '.join(dsd)}); pass a labeled dataset")
    train = dsd["train"]
    missing = {"image", "image_id"} - set(train.column_names)
    if missing:
        raise ConfigError(f"--examples {spec}: its train split lacks {', '.join(sorted(missing))}; pass a labeled set")
    columns = ["image_id", "image"] + (["source_url"] if "source_url" in train.column_names else [])
    train = train.cast_column("image", datasets.Image(decode=False)).select_columns(columns)
    result = ExampleSet([], test_split_of=spec if "test" in dsd else None)
    if result.test_split_of is None:
        result.notes.append(f"--examples {spec} has no test split: the leakage guard has only --exclude-like")
    used: set[str] = set()
    for row in train:
        image_id = str(row["image_id"])
        data = _row_bytes(row["image"])
        fmt = sniff_format(data[:16]) if data else None
        if fmt is None:
            result.notes.append(f"example {image_id!r} skipped: its image bytes are not a known picture format")
            continue
        file_name = f"{image_id}.{EXTENSIONS.get(fmt, fmt.lower())}"
        stored = _safe_name(Path(file_name).stem)
        while stored in used:  # two ids that differ only in unsafe characters
            stored += "_"
        used.add(stored)
        path = workdir / f"{stored}.{EXTENSIONS.get(fmt, fmt.lower())}"
        path.write_bytes(data)
        url = public_url(prefix, file_name) or row.get("source_url")  # an explicit prefix wins
        result.examples.append(Example(image_id, path, file_name, url))
    return result


def _row_bytes(image: dict[str, Any] | None) -> bytes:
    if not image:
        return b""
    if image.get("bytes"):
        return image["bytes"]
    path = image.get("path")
    try:
        return Path(path).read_bytes() if path else b""
    except OSError:
        return b""


def _readable_pictures(examples: list[Example]) -> tuple[list[Example], list[str]]:
    """The examples whose files start as a known picture format, and a note for each one left out: an empty or
    unreadable file, or text under a picture's name, is no query (and would cost a paid search), as a dataset row
    whose bytes are no picture is not."""
    readable, notes = [], []
    for example in examples:
        try:
            with open(example.path, "rb") as f:
                head = f.read(16)
        except OSError as e:
            notes.append(f"example {example.example_id!r} skipped: cannot read {example.path}: {e.strerror or e}")
            continue
        if sniff_format(head) is None:
            what = "it is empty (0 bytes)" if not head else "its bytes are not a known picture format"
            notes.append(f"example {example.example_id!r} skipped: {what}")
            continue
        readable.append(example)
    return readable, notes


@contextmanager
def open_examples(spec: str, prefix: str | None = None) -> Iterator[ExampleSet]:
    """The examples named by ``--examples`` (folder or dataset); a dataset's pictures live until the block ends."""
    from rankset.io import is_dataset_folder, looks_like_hub_id

    path = Path(spec).expanduser()
    if path.is_dir() and not is_dataset_folder(path):
        examples = folder_examples(path, prefix)
        if not examples:
            raise ConfigError(f"--examples {spec} holds no pictures ({', '.join(sorted(IMAGE_SUFFIXES))})")
        readable, notes = _readable_pictures(examples)
        if not readable:
            raise ConfigError(f"--examples {spec}: none of its pictures can be read ({'; '.join(notes[:3])})")
        yield ExampleSet(readable, notes=notes)
        return
    if not (is_dataset_folder(path) or looks_like_hub_id(str(spec))):
        raise ConfigError(f"--examples {spec} is neither a folder of pictures, a dataset folder nor a Hub id user/name")
    with _example_workdir() as workdir:
        example_set = dataset_examples(str(spec), prefix, workdir)
        if not example_set.examples:
            raise ConfigError(f"--examples {spec}: its train split holds no readable pictures")
        yield example_set


@contextmanager
def _example_workdir() -> Iterator[Path]:
    """A temporary folder for a dataset's example pictures, removed when the block ends.

    A run killed with SIGKILL cannot remove its folder (a copy of the whole train split), so each folder holds an
    ``.owner`` file locked while its run lives, and every run first removes the folders whose owner is gone.
    """
    _remove_orphaned_workdirs(Path(tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix=WORKDIR_PREFIX) as name:
        workdir = Path(name)
        owner = None
        if fcntl is not None:
            # locked under a temporary name, then renamed: a sweeper never sees an ``.owner`` that is not locked yet
            owner = open(workdir / f"{WORKDIR_OWNER}.new", "w")  # noqa: SIM115 - held open for the whole block
            fcntl.flock(owner.fileno(), fcntl.LOCK_EX)
            os.replace(workdir / f"{WORKDIR_OWNER}.new", workdir / WORKDIR_OWNER)
        try:
            yield workdir
        finally:
            if owner is not None:
                owner.close()


def _remove_orphaned_workdirs(tmp: Path) -> None:
    """Remove the example folders of killed runs: those whose ``.owner`` lock nobody holds any more."""
    import shutil

    if fcntl is None:
        return
    for folder in tmp.glob(f"{WORKDIR_PREFIX}*"):
        try:
            with open(folder / WORKDIR_OWNER) as owner:
                fcntl.flock(owner.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a live run's folder, left alone
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # no owner file (not ours, or an older crowdrank's), or its run is alive
            continue
