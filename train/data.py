"""Training data: labeled crops with density targets, ranked patch sets, and their seeded, resumable loaders.

Every batch is a pure function of (seed, stream, draw number): the i-th item ever drawn from a stream is
row ``perm_epoch[i % n]`` with ``perm_epoch`` a seeded permutation per epoch, and its crop and flip come
from an RNG seeded with (seed, stream, i). So a resumed run that starts drawing at the right draw number
sees exactly the batches an uninterrupted run would, whatever the number of DataLoader workers.
This is the one module of train that opens dataset files.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from train.errors import DataError
from train.targets import adaptive_sigmas, density_map, points_in_box

LABELED_STREAM = 1
RANKED_STREAM = 2
MAX_SUBSTITUTES = 16  # an unreadable row is replaced by the next readable one, at most this many rows on


@dataclass(frozen=True)
class RowSource:
    """Rows ``indices`` of one split of one dataset (an HF ``Dataset`` whose images are not decoded)."""

    name: str
    dataset: Any
    indices: list[int]


LABELED_FORMATS = "shanghaitech, ucf-cc-50, ucf-qnrf, jhu-crowd, nwpu-crowd, mall, points"


def make_hint(path_or_id: str, key: str, kind: str) -> str:
    """The commands that make a ``kind`` dataset at ``path_or_id`` (``DIR`` where it reads as a Hub id)."""
    out = path_or_id if Path(path_or_id).parent.is_dir() else "DIR"
    if kind == "labeled":
        hint = (
            f"Make it with `rankset import FORMAT ROOT --out {out}` (FORMAT: {LABELED_FORMATS}) "
            f"or `rankset synth --n N --out {out}`"
        )
    else:
        hint = f"Make it with `rankset build POOL_OR_FOLDER --k 5 --s 0.75 --out {out}`"
    if key.startswith("data."):
        hint += "; each manifest in manifests/ lists the exact commands for its datasets in its header comment"
    return hint


def open_dataset(path_or_id: str, key: str, kind: str) -> Any:
    """Load the DatasetDict named by manifest ``key``; any failure is a DataError naming the key and the fix."""
    from rankset.errors import EmptySplitError
    from rankset.io import load_dataset_dict
    from rankset.schema import dataset_kind

    fix = "rankset import/synth" if kind == "labeled" else "rankset build"
    try:
        dsd = load_dataset_dict(path_or_id)
    except Exception as e:  # InputError, PublishError, Arrow errors: all "this dataset cannot be used"
        if isinstance(e, EmptySplitError):
            empty = e.splits
            example = "; e.g. --splits train=0.7,validation=0.1,test=0.2" if kind == "labeled" else ""
            raise DataError(
                f"{key} = {path_or_id!r} has an empty split ({', '.join(empty)}: 0 rows), which cannot be loaded "
                f"and leaves nothing to {'train on' if 'train' in empty else 'evaluate'}. Fix: remake it with rows "
                f"in every split (`{fix} ... --out DIR`{example}), or "
                "delete the empty split's folder and its name in dataset_dict.json"
            ) from e
        raise DataError(f"{key} = {path_or_id!r} cannot be loaded: {e}. {make_hint(path_or_id, key, kind)}") from e
    for split, ds in dsd.items():
        found = dataset_kind(ds.features)
        if found != kind:
            raise DataError(
                f"{key} = {path_or_id!r} split {split!r} is a {found} dataset, expected {kind} "
                f"(columns {sorted(ds.features)})"
            )
    return dsd


def undecoded(ds: Any) -> Any:
    """A view of ``ds`` whose rows are plain Arrow values: images stay encoded ({"bytes", "path"}), so each
    worker decodes only what it uses."""
    return ds.with_format("arrow")


def raw_row(ds: Any, row: int) -> dict[str, Any]:
    """Row ``row`` of an :func:`undecoded` view as a dict of Python values."""
    return ds[row].to_pylist()[0]


def open_picture(source: Any, mode: str = "RGB") -> Any:
    """A PIL image in ``mode`` from a path or file object, as displayed: after its EXIF orientation.

    rankset stores points and boxes "after EXIF orientation" (HF datasets' own decode applies it), so every
    picture train reads is turned the same way. RGB goes through :func:`rankset.images.to_rgb`, as rankset's
    patches do: alpha composited on white and 16-bit pictures scaled to 0..255 (Pillow's ``convert("RGB")``
    clips a 16-bit value to 255, so a 16-bit PNG came out nearly white). A broken EXIF block leaves the picture
    as stored, as :func:`rankset.images.oriented_size` does. A picture over twice Pillow's decompression-bomb
    limit raises :class:`rankset.images.ImageError` saying so."""
    from PIL import ImageOps

    from rankset.images import open_quietly, to_rgb

    with open_quietly(source) as image:
        image.load()
        try:
            oriented = ImageOps.exif_transpose(image)
        except Exception:  # an unreadable orientation is no reason to lose the picture
            oriented = image.copy()  # the file closes with this block
        return to_rgb(oriented) if mode == "RGB" else oriented.convert(mode)


def read_rgb(source: Any) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a picture file as displayed (see :func:`open_picture`)."""
    return np.array(open_picture(source), dtype=np.uint8)


def decode_image(value: Any, mode: str = "RGB") -> Any:
    """A PIL image in ``mode`` from an HF image cell ({"bytes", "path"}), as displayed (:func:`open_picture`)."""
    source = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
    return open_picture(source, mode)


def ranked_set_size(ds: Any, key: str) -> int:
    """k, the number of patches per set, checked to be the same for every row of ``ds``."""
    import pyarrow.compute as pc

    column = ds.data.column("images")
    lengths = pc.list_value_length(column)
    low, high = pc.min(lengths).as_py(), pc.max(lengths).as_py()
    if low is None:
        raise DataError(f"{key} has no ranked sets; rebuild it with `rankset build ... --out DIR`")
    if low != high or low < 2:
        raise DataError(f"{key} has sets of {low} to {high} patches; every set needs the same k >= 2")
    return int(low)


def draw_indices(n_items: int, seed: int, stream: int, draw: int) -> int:
    """The row drawn at global ``draw`` number: a seeded permutation per epoch, cycled."""
    epoch, position = divmod(draw, n_items)
    order = np.random.default_rng([seed, stream, epoch]).permutation(n_items)
    return int(order[position])


class DrawSampler:
    """Batch sampler: batches of (row, draw) for draws ``start``, ``start + 1``, ... (``batches`` batches)."""

    def __init__(self, n_items: int, per_batch: int, seed: int, stream: int, start: int, batches: int) -> None:
        self.n_items, self.per_batch, self.seed, self.stream = n_items, per_batch, seed, stream
        self.start, self.batches = start, batches

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b in range(self.batches):
            first = self.start + b * self.per_batch
            draws = range(first, first + self.per_batch)
            yield [(draw_indices(self.n_items, self.seed, self.stream, d), d) for d in draws]


class LabeledCrops:
    """Random square crops of labeled images with their density targets (a map-style torch dataset).

    Item (row, draw) -> (uint8 image (3, S, S), float32 target (1, S/s, S/s) * density_scale, count, skipped). The crop
    side is uniform in ``crop`` (clipped to the image), the crop is flipped with probability 1/2, points are
    transformed exactly and the density is built after the transform, so the target sums to the heads inside.

    :meth:`fill_cache` decodes the images once, up to a memory budget, before the DataLoader starts its workers:
    forked workers then share the decoded pixels (copy-on-write, never written) instead of each decoding a whole
    picture for every crop, which on a GPU starves the model (measured on an H100: ~65 crops/s per worker for
    1024x768 JPEGs). Cached or not, every item is the same pixels.
    """

    def __init__(
        self,
        sources: list[RowSource],
        input_size: int,
        crop: tuple[int, int],
        sigma: float | str,
        output_stride: int,
        density_scale: float,
        seed: int,
        with_depth: bool = False,
        depth_dir: str = "",
    ) -> None:
        self.sources = [RowSource(s.name, undecoded(s.dataset), s.indices) for s in sources]
        self.rows = [(i, r) for i, s in enumerate(self.sources) for r in s.indices]
        self.input_size, self.crop, self.sigma = input_size, crop, sigma
        self.with_depth, self.depth_dir = with_depth, depth_dir  # with_depth: a 5th item, depth per cell (metres)
        self.output_stride, self.density_scale, self.seed = output_stride, density_scale, seed
        self._sigma_cache: dict[int, np.ndarray] = {}
        self._decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # index -> (H, W, 3) uint8, (N, 2) points

    def __len__(self) -> int:
        return len(self.rows)

    def fill_cache(self, max_bytes: int, threads: int = 0) -> tuple[int, int]:
        """Decode rows in order into memory until the next would pass ``max_bytes``; returns (rows, bytes) cached.

        Unreadable rows stay out (an item drawn there is replaced as always); so do all rows of a run with depth
        targets, which reads each row whole. Decoding runs on ``threads`` threads (0: min(8, cpus)); Pillow
        releases the GIL while it decodes.
        """
        import os
        from concurrent.futures import ThreadPoolExecutor

        if max_bytes <= 0 or not self.rows or self.with_depth:
            return 0, 0
        sizes = self._pixel_bytes()

        def load(index: int) -> tuple[int, tuple[np.ndarray, np.ndarray] | None]:
            try:
                record = self._record(index)
                pixels = np.asarray(decode_image(record["image"]), dtype=np.uint8)
                return index, (pixels, np.asarray(record["points"] or [], dtype=np.float64).reshape(-1, 2))
            except (OSError, ValueError, SyntaxError):
                return index, None

        chosen, total = [], 0
        for index, size in enumerate(sizes):  # the budget is set from the rows' sizes before decoding any
            if size is not None and total + size <= max_bytes:
                chosen.append(index)
                total += size
        workers = threads or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for index, value in pool.map(load, chosen):
                if value is not None:
                    self._decoded[index] = value
        return len(self._decoded), sum(v[0].nbytes for v in self._decoded.values())

    def _pixel_bytes(self) -> list[int | None]:
        """Decoded RGB bytes per row from the image headers (None where the header cannot be read, or holds more
        pixels than Pillow decodes)."""
        from rankset.images import open_quietly

        sizes: list[int | None] = []
        for index in range(len(self.rows)):
            try:
                value = self._record(index)["image"]
                source = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
                with open_quietly(source) as image:
                    sizes.append(image.size[0] * image.size[1] * 3)
            except (OSError, ValueError, SyntaxError):
                sizes.append(None)
        return sizes

    def _record(self, index: int) -> dict[str, Any]:
        source, row = self.rows[index]
        return raw_row(self.sources[source].dataset, row)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Any, ...]:
        """(pixels, target, count, skipped[, depth]): ``skipped`` counts unreadable rows replaced by the rows after
        them; ``depth`` (1, S/s, S/s) metres per cell, NaN where the image has no depth, only ``with_depth``."""
        import torch

        index, draw = item
        for skipped in range(min(MAX_SUBSTITUTES, len(self.rows))):
            try:
                pixels, density, count, *depth = self._crop((index + skipped) % len(self.rows), draw)
                return (pixels, density, count, torch.tensor(skipped), *depth)
            except (OSError, ValueError, SyntaxError) as e:  # what PIL raises for a broken or truncated file
                last_error = e
        raise DataError(f"{MAX_SUBSTITUTES} labeled rows in a row cannot be decoded; last: {last_error}")

    def _crop(self, index: int, draw: int) -> tuple[Any, Any, Any]:
        import torch
        from PIL import Image

        cached = self._decoded.get(index)
        if cached is not None and not self.with_depth:
            record = None
            array, points = cached
            height, width = array.shape[:2]
        else:
            record = self._record(index)
            image = decode_image(record["image"])
            points = np.asarray(record["points"] or [], dtype=np.float64).reshape(-1, 2)
            array, (width, height) = None, image.size
        if self.sigma == "adaptive":
            if index not in self._sigma_cache:
                self._sigma_cache[index] = adaptive_sigmas(points)
            sigmas = self._sigma_cache[index]
        else:
            sigmas = np.full(len(points), float(self.sigma))
        rng = np.random.default_rng([self.seed, LABELED_STREAM, draw])
        smallest = min(width, height)
        side = int(rng.integers(min(self.crop[0], smallest), min(self.crop[1], smallest) + 1))
        x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        inside, mask = points_in_box(points, (x0, y0, x0 + side, y0 + side))
        if array is not None:  # the same pixels as cropping the decoded image
            patch = Image.fromarray(np.ascontiguousarray(array[y0 : y0 + side, x0 : x0 + side]))
        else:
            patch = image.crop((x0, y0, x0 + side, y0 + side))
        patch = patch.resize((self.input_size,) * 2, Image.BILINEAR)
        flipped = rng.random() < 0.5
        if flipped:
            patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
            inside[:, 0] = side - inside[:, 0]
        scale = self.input_size / side
        target = density_map(inside * scale, (self.input_size,) * 2, sigmas[mask] * scale, cell=self.output_stride)
        pixels = torch.from_numpy(np.array(patch, dtype=np.uint8)).permute(2, 0, 1)  # (3, S, S)
        density = torch.from_numpy(target * self.density_scale)[None]  # (1, S/s, S/s)
        if self.with_depth:
            cells = self.input_size // self.output_stride
            assert record is not None  # rows with depth are always read whole
            depth = crop_depth(record, self.depth_dir, (width, height), (x0, y0, x0 + side, y0 + side), cells, flipped)
            return pixels, density, torch.tensor(float(len(inside))), torch.from_numpy(depth)[None]
        return pixels, density, torch.tensor(float(len(inside)))


def crop_depth(
    record: dict[str, Any],
    depth_dir: str,
    size: tuple[int, int],
    box: tuple[int, int, int, int],
    cells: int,
    flip: bool,
) -> np.ndarray:
    """(cells, cells) float32 depth in metres of ``box``, box-averaged per output cell; NaN without a depth map.

    The map is the row's ``depth`` field, else ``depth_dir/<image_id>.png``; a 16-bit PNG of metres *
    DEPTH_SCALE (0 = sky), resized to the image ``size`` when it differs. An unreadable map counts as none.
    """

    from PIL import Image

    from rankset.schema import DEPTH_SCALE

    try:
        if record.get("depth") is not None:
            depth = decode_image(record["depth"], mode="I")
        elif depth_dir and (Path(depth_dir) / f"{record['image_id']}.png").is_file():
            depth = Image.open(Path(depth_dir) / f"{record['image_id']}.png").convert("I")
        else:
            return np.full((cells, cells), np.nan, dtype=np.float32)
        metres = Image.fromarray(np.asarray(depth, dtype=np.float32) / DEPTH_SCALE)  # mode F
    except (OSError, ValueError, SyntaxError):
        return np.full((cells, cells), np.nan, dtype=np.float32)
    if metres.size != size:
        metres = metres.resize(size, Image.BILINEAR)
    patch = metres.crop(box).resize((cells, cells), Image.BOX)
    if flip:
        patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
    return np.array(patch, dtype=np.float32)  # a writable copy: torch.from_numpy shares it


class RankedSets:
    """Whole ranked sets: item (row, draw) -> (uint8 patches (k, 3, S, S) largest first, flipped together, skipped)."""

    def __init__(self, sources: list[RowSource], input_size: int, seed: int) -> None:
        self.sources = [RowSource(s.name, undecoded(s.dataset), s.indices) for s in sources]
        self.rows = [(i, r) for i, s in enumerate(self.sources) for r in s.indices]
        self.input_size, self.seed = input_size, seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Any, Any]:
        """(patches, skipped): an unreadable set is replaced by the next one and counted in ``skipped``."""
        import torch

        index, draw = item
        for skipped in range(min(MAX_SUBSTITUTES, len(self.rows))):
            try:
                return self._set((index + skipped) % len(self.rows), draw), torch.tensor(skipped)
            except (OSError, ValueError, SyntaxError) as e:  # what PIL raises for a broken or truncated file
                last_error = e
        raise DataError(f"{MAX_SUBSTITUTES} ranked sets in a row cannot be decoded; last: {last_error}")

    def _set(self, index: int, draw: int) -> Any:
        source, row = self.rows[index]
        cells = raw_row(self.sources[source].dataset, row)["images"]
        flip = np.random.default_rng([self.seed, RANKED_STREAM, draw]).random() < 0.5
        return set_patches(cells, self.input_size, flip)


def set_patches(cells: list[Any], input_size: int, flip: bool = False) -> Any:
    """One ranked set's encoded image cells as uint8 patches (k, 3, S, S), resized to ``input_size``, largest first;
    ``flip`` mirrors every patch of the set alike, so the nesting stays true."""
    import torch
    from PIL import Image

    patches = []
    for cell in cells:
        patch = decode_image(cell)
        if patch.size != (input_size, input_size):
            patch = patch.resize((input_size,) * 2, Image.BILINEAR)
        if flip:
            patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
        patches.append(torch.from_numpy(np.array(patch, dtype=np.uint8)).permute(2, 0, 1))
    return torch.stack(patches)


def make_loader(dataset: Any, sampler: DrawSampler, workers: int, pin_memory: bool) -> Any:
    """A DataLoader over ``sampler``'s batches, with persistent workers when there are workers."""
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def carve_validation(train_rows: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(train_rows)`` into (train, validation) with a seeded shuffle; validation gets ``fraction``."""
    order = np.random.default_rng([seed, 7]).permutation(train_rows).tolist()
    n_val = int(round(train_rows * fraction))
    if fraction > 0 and train_rows > 1:
        n_val = min(max(n_val, 1), train_rows - 1)
    return sorted(order[n_val:]), sorted(order[:n_val])
