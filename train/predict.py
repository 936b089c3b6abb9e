"""``train predict``: counts for image files as CSV, and a density overlay PNG per image.

An unreadable file is a row with ``status`` and ``error``, counted in the summary; the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rankset.inputs import (
    IMAGE_SUFFIX_LIST,
    IMAGE_SUFFIXES,
    printable_name,
)  # the pictures rankset build reads, read here too
from train.errors import ConfigError
from train.unlabeled import NO_PICTURES

READ_SUFFIXES = f"A folder contributes its files (subfolders too) ending in {IMAGE_SUFFIX_LIST} (any case)"


@dataclass(frozen=True)
class PredictConfig:
    """A checkpoint, image files or folders (searched for images), an output folder and inference settings."""

    checkpoint: Path
    images: tuple[Path, ...]
    out: Path = Path("predict-out")
    device: str = "auto"
    tile: int = 1024
    overlays: bool = True

    def __post_init__(self) -> None:
        from train.hub import check_checkpoint_argument

        check_checkpoint_argument(self.checkpoint)  # a file, a `train push` folder or a Hub id
        if not self.images:
            raise ConfigError("IMAGES is empty; pass image files or folders holding them")
        missing = [str(p) for p in self.images if not Path(p).exists()]
        if missing:
            raise ConfigError(f"IMAGES not found: {', '.join(missing)}")
        from rankset.io import is_dataset_folder

        for path in self.images:
            if Path(path).is_dir() and is_dataset_folder(path):  # its pictures are in Arrow/Parquet files, not files
                raise ConfigError(
                    f"IMAGES {path} is a dataset folder, not a folder of pictures: for its images use "
                    f"`train eval CKPT --data {path} --split test --out DIR` (images.csv has each image's count)"
                )
        empty = [p for p in self.images if Path(p).is_dir() and not holds_pictures(Path(p), self.out)]
        if len(empty) == len(self.images):
            raise ConfigError(
                f"IMAGES: {', '.join(map(str, empty))} {'holds' if len(empty) == 1 else 'hold'} no pictures, so there "
                f"is nothing to predict. {READ_SUFFIXES}; pass folders or files holding such pictures"
            )
        if self.tile < 64:
            raise ConfigError(f"--tile {self.tile} is too small; use at least 64 pixels")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(f"--out {self.out} is a file; pass a folder for counts.csv and overlays/")


def earlier_overlay(picture: Path, folder: Path) -> bool:
    """Whether ``picture`` (found under ``folder``) is an overlay an earlier ``train predict`` wrote: it lies in an
    ``overlays/`` folder beside that run's ``counts.csv``."""
    for parent in picture.relative_to(folder).parents:
        if parent.name == "overlays" and (folder / parent.parent / "counts.csv").is_file():
            return True
    return False


def folder_pictures(folder: Path, out: Path | None = None) -> Iterator[Path]:
    """The image files of ``folder`` (by suffix, subfolders too), unsorted, leaving out earlier predict overlays and
    anything under ``out``. A subfolder named like a picture (``shots.jpg/``) is searched, not read as one."""
    skip = Path(out).resolve() if out is not None else None
    for p in folder.rglob("*"):
        wanted = p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir() and not earlier_overlay(p, folder)
        if wanted and (skip is None or not p.resolve().is_relative_to(skip)):
            yield p


def holds_pictures(folder: Path, out: Path | None = None) -> bool:
    """Whether :func:`expand_images` finds at least one picture in ``folder`` (stops at the first)."""
    return next(folder_pictures(folder, out), None) is not None


def no_pictures_row(folder: Path) -> dict[str, Any]:
    """The ``counts.csv`` row of a folder argument that holds no pictures: the run goes on with the others."""
    return {
        "path": printable_name(folder),
        "count": None,
        "status": NO_PICTURES,
        "error": f"folder {printable_name(folder)} holds no pictures. {READ_SUFFIXES}",
        "overlay": "",
    }


def expand_images(paths: tuple[Path, ...], out: Path | None = None) -> list[Path]:
    """Files as given; folders become their image files (by suffix), sorted, leaving out those under ``out`` (the
    overlays of an earlier run whose --out lies inside a given folder) and the ``overlays/`` of any other earlier
    predict output inside it (a rerun with another --out would otherwise count them as pictures)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(folder_pictures(path, out))
        else:
            files.append(path)
    return files


def overlay_names(paths: list[Path]) -> list[str]:
    """One overlay file name per picture: ``<stem>.png``, then ``<stem>-2.png``, ``-3``… for a stem met before.

    Pictures of the same name in different folders (``a/img.jpg``, ``b/img.jpg``) or with different suffixes
    (``img.jpg``, ``img.png``) would otherwise overwrite each other's overlay. Compared without case, so the names
    stay distinct on case-insensitive file systems too; ``counts.csv`` names each row's overlay. A stem that is not
    UTF-8 is written with the escapes of :func:`printable_name` (``caf\\xe9.png``), so the ``overlay`` column, which
    a UTF-8 CSV cannot hold otherwise, names the very file written.
    """
    used: set[str] = set()
    names = []
    for path in paths:
        stem = printable_name(path.stem)
        name, n = f"{stem}.png", 1
        while name.lower() in used:
            n += 1
            name = f"{stem}-{n}.png"
        used.add(name.lower())
        names.append(name)
    return names


def save_overlay(image: np.ndarray, density: np.ndarray, cell: int, count: float, path: Path) -> None:
    """The picture with its predicted density on top (jet, half transparent) under a band with the count.

    Drawn with Pillow and matplotlib's colormap rather than a matplotlib figure: about 20x faster (a figure took
    ~100 ms an image, longer than the network on a GPU)."""
    import io

    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    from rankset.io import write_file_atomic

    height, width = image.shape[:2]
    low, high = float(density.min()), float(density.max())
    norm = (density - low) / (high - low) if high > low else np.zeros_like(density)
    colours = Image.fromarray((colormaps["jet"](norm)[..., :3] * 255).astype(np.uint8))
    covered = (min(width, density.shape[1] * cell), min(height, density.shape[0] * cell))
    heat = colours.resize((density.shape[1] * cell, density.shape[0] * cell), Image.BILINEAR).crop((0, 0, *covered))
    picture = Image.fromarray(image)
    region = picture.crop((0, 0, *covered))
    picture.paste(Image.blend(region, heat, 0.5), (0, 0))
    band = 24
    canvas = Image.new("RGB", (width, height + band), "white")
    canvas.paste(picture, (0, band))
    ImageDraw.Draw(canvas).text((6, 6), f"{path.stem}: {count:.1f} people", fill="black")
    buffer = io.BytesIO()  # encoded first, then renamed into place: a kill never leaves a torn PNG under its name
    canvas.save(buffer, format="PNG")
    write_file_atomic(path, buffer.getvalue(), clean=False)  # predict_images cleans overlays/ once, not per picture


def predict_images(config: PredictConfig, show_progress: bool = True) -> list[dict[str, Any]]:
    """Predict every image; writes ``counts.csv`` and ``overlays/<stem>.png`` (see :func:`overlay_names`) under
    ``out``; returns the rows. A folder argument holding no pictures is a ``no_pictures`` row first (a config whose
    every argument is such a folder is refused before this)."""
    from rich.progress import track

    from rankset.io import remove_stale_staging
    from train.checkpoint import model_from_checkpoint
    from train.data import read_rgb
    from train.device import resolve_device
    from train.evaluate import failure_line, predict_density
    from train.runlog import make_out_folder, write_rows_csv

    device = resolve_device(config.device)
    model, state, run_config = model_from_checkpoint(config.checkpoint, device)
    stride, scale = int(state["output_stride"]), float(state["density_scale"])
    out = Path(config.out)
    make_out_folder(out / "overlays")
    # an earlier run's counts.csv goes first: a kill while this run replaces overlays leaves no counts.csv that looks
    # like the result of this run's pictures, only overlays without one (an unfinished --out)
    (out / "counts.csv").unlink(missing_ok=True)
    remove_stale_staging(out / "overlays", arrow_caches=False)  # the overlays killed runs were writing
    rows = [no_pictures_row(p) for p in map(Path, config.images) if p.is_dir() and not holds_pictures(p, out)]
    paths = expand_images(config.images, out)
    named = list(zip(paths, overlay_names(paths), strict=True))
    for path, overlay in track(named, description="predict", disable=not show_progress):
        row: dict[str, Any] = {"path": printable_name(path), "count": None, "status": "ok", "error": "", "overlay": ""}
        try:
            image = read_rgb(path)  # as displayed: after EXIF orientation, like rankset's points and boxes
        except Exception as e:  # PIL raises many types for a broken file; the row records it
            rows.append({**row, "status": "unreadable_image", "error": f"{type(e).__name__}: {e}"})
            continue
        try:
            density = predict_density(model, image, stride, config.tile, device, run_config.schedule.amp, scale)
        except (RuntimeError, MemoryError) as e:  # out of memory on this picture's tiles: lower --tile, go on
            error = f"{failure_line(e)} (a {image.shape[1]}x{image.shape[0]} picture)"
            rows.append({**row, "status": "prediction_failed", "error": error})
            continue
        row["count"] = float(density.sum())
        if config.overlays:
            row["overlay"] = f"overlays/{overlay}"
            save_overlay(image, density, stride, row["count"], out / row["overlay"])
        rows.append(row)
    write_rows_csv(out / "counts.csv", rows)
    return rows
