"""Unlabeled real pictures for the self-supervised upside-down task (Liu, Durasov & Fua 2022) and pseudo-labels.

``data.unlabeled`` lists image folders or harvest pools. A pool is read through its declared file contract
(DESIGN.md, "The pool"): ``index/*.parquet`` rows with status ``ok``, a stored ``path`` and ``kept`` not false,
one per image id. Item (row, draw) of :class:`UpsideDownCrops` is a random square crop resized to the input
size, mirrored left-right with p = 1/2 and flipped vertically with p = 1/2; the label says whether it was
flipped vertically. Crops come from an RNG seeded with (seed, UNLABELED_STREAM, draw), like train.data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rankset.inputs import IMAGE_SUFFIX_LIST, IMAGE_SUFFIXES  # the pictures rankset build reads, read here too
from train.errors import DataError

UNLABELED_STREAM = 3
MAX_SUBSTITUTES = 16


@dataclass(frozen=True)
class UnlabeledImage:
    """One picture: a stable id (pool id or file stem) and its file."""

    image_id: str
    path: Path


def is_pool(path: Path) -> bool:
    """A harvest pool folder: ``pool.json`` beside an ``index/`` folder."""
    return (path / "pool.json").is_file() and (path / "index").is_dir()


def pool_images(pool: Path) -> list[UnlabeledImage]:
    """The pool's usable pictures (status ok, stored, kept not false), one per id, in index order."""
    import pandas as pd

    df = pd.read_parquet(pool / "index")
    df = df[(df["status"] == "ok") & df["path"].notna()]
    if "kept" in df.columns:
        df = df[df["kept"].isna() | df["kept"].astype("boolean").fillna(True)]
    df = df.drop_duplicates("id")
    return [UnlabeledImage(str(row["id"]), pool / str(row["path"])) for row in df.to_dict("records")]


def list_unlabeled(paths: list[str], key: str = "data.unlabeled") -> list[UnlabeledImage]:
    """Every picture of the folders (searched recursively, sorted) and pools named by ``paths``; a DataError naming
    each of them when none holds a picture (:func:`unlabeled_and_empty` also says which ones gave none)."""
    return unlabeled_and_empty(paths, key)[0]


def unlabeled_and_empty(paths: list[str], key: str = "data.unlabeled") -> tuple[list[UnlabeledImage], list[str]]:
    """What :func:`list_unlabeled` gives, and the folders and pools among ``paths`` that hold no pictures (the others
    still give some), from one pass over the inputs."""
    by_input = unlabeled_by_input(paths, key)
    images = [image for given in by_input.values() for image in given]
    if not images:
        raise DataError(
            f"{key} = {paths!r}: {', '.join(map(str, paths))} {'holds' if len(paths) == 1 else 'hold'} no pictures, "
            f"so there is nothing to read. {NO_PICTURES_FIX}"
        )
    return images, [name for name, given in by_input.items() if not given]


NO_PICTURES = "no_pictures"  # the row status of a folder or pool argument that gave no picture (predict, pseudo-label)
NO_PICTURES_FIX = (
    f"A folder contributes its files (subfolders too) ending in {IMAGE_SUFFIX_LIST} (any case), a harvest "
    "pool its rows with status ok and kept not false; pass folders, pictures or pools holding some"
)


def unlabeled_by_input(paths: list[str], key: str) -> dict[str, list[UnlabeledImage]]:
    """The pictures each of ``paths`` gives, by argument; a DataError for one that is none of folder, picture, pool."""
    found: dict[str, list[UnlabeledImage]] = {}
    for i, name in enumerate(paths):
        path = Path(name)
        images = found.setdefault(str(name), [])
        if is_pool(path):
            images += pool_images(path)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            images += [UnlabeledImage(p.stem, p) for p in files]
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(UnlabeledImage(path.stem, path))
        else:
            what = (
                "does not exist"
                if not path.exists()
                else "is neither an image folder, an image file nor a harvest pool"
            )
            raise DataError(
                f"{key}[{i}] = {name!r} {what}. Fix: name a folder of pictures ({IMAGE_SUFFIX_LIST}, searched "
                "recursively), one picture, or a harvest pool (`harvest local DIR --out POOL`, "
                "`harvest keywords ... --out POOL`)"
            )
    return found


class UpsideDownCrops:
    """Item (row, draw) -> (uint8 pixels (3, S, S), flipped 0/1, skipped); unreadable files are replaced."""

    def __init__(self, images: list[UnlabeledImage], input_size: int, crop: tuple[int, int], seed: int) -> None:
        self.images, self.input_size, self.crop, self.seed = images, input_size, crop, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Any, Any, Any]:
        import torch

        index, draw = item
        for skipped in range(min(MAX_SUBSTITUTES, len(self.images))):
            try:
                pixels, flipped = self._crop((index + skipped) % len(self.images), draw)
                return pixels, torch.tensor(float(flipped)), torch.tensor(skipped)
            except (OSError, ValueError, SyntaxError) as e:  # what PIL raises for a broken or truncated file
                last_error = e
        raise DataError(f"{MAX_SUBSTITUTES} unlabeled pictures in a row cannot be decoded; last: {last_error}")

    def _crop(self, index: int, draw: int) -> tuple[Any, bool]:
        import torch
        from PIL import Image

        from train.data import open_picture

        rng = np.random.default_rng([self.seed, UNLABELED_STREAM, draw])
        image = open_picture(self.images[index].path)  # as displayed, so "upright" means upright on screen
        width, height = image.size
        smallest = min(width, height)
        side = int(rng.integers(min(self.crop[0], smallest), min(self.crop[1], smallest) + 1))
        x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        patch = image.crop((x0, y0, x0 + side, y0 + side)).resize((self.input_size,) * 2, Image.BILINEAR)
        if rng.random() < 0.5:
            patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
        flipped = bool(rng.random() < 0.5)
        if flipped:
            patch = patch.transpose(Image.FLIP_TOP_BOTTOM)
        return torch.from_numpy(np.array(patch, dtype=np.uint8)).permute(2, 0, 1), flipped  # (3, S, S)


def upside_down_iterator(config: Any, start: int, pin_memory: bool, images: list[UnlabeledImage]) -> Any:
    """Batches of the upside-down task for the active steps from ``start`` on (None when the task is off), over
    ``images``: the pictures of ``data.unlabeled``, which :func:`train.sources.resolve_sources` lists once."""
    from train.data import DrawSampler, make_loader

    task = config.tasks.upside_down
    if task is None:
        return None
    done = sum(task.active(s) for s in range(start))
    remaining = sum(task.active(s) for s in range(start, config.schedule.steps))
    if remaining == 0:
        return None
    crops = UpsideDownCrops(images, config.data.input_size, tuple(config.data.crop), config.seed)
    sampler = DrawSampler(len(crops), task.batch, config.seed, UNLABELED_STREAM, done * task.batch, remaining)
    return iter(make_loader(crops, sampler, config.data.num_workers, pin_memory))
