"""Whole-image evaluation: tiled inference in bounded memory, per-image rows and the eval.json summary.

An image is padded on the right and bottom to a multiple of the model's ``input_multiple`` and, when larger
than ``tile`` pixels a side, cut into tiles aligned to it (U-Net's overlap-tile strategy): the cores of the
tiles cut the image into consecutive pieces, and each tile is its core widened by a context margin of half the
model's receptive field on every side that is not the image border. Only the core's cells are kept, so every
output cell is computed once, from the same pixels as in a single pass over the whole image: tiled and whole
density maps agree to float precision, and the sum is the predicted count whatever ``tile`` is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from train.data import RowSource, decode_image, raw_row, undecoded
from train.device import autocast, no_autotune, normalize
from train.errors import ConfigError, DataError
from train.metrics import GAME_LEVELS, game, summarise
from train.runlog import make_out_folder, write_json, write_rows_csv


def tile_spans(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(window start, window end, core start, core end) of the tiles along one axis of ``length`` pixels.

    The cores cut [0, length) into consecutive pieces; each window is its core widened by ``margin`` on both sides
    (not past the image) and at most ``tile`` long. ``margin`` must be >= 0 with ``tile - 2 * margin`` >= 1, else
    the cores would not advance."""
    if margin < 0 or tile - 2 * margin < 1:
        raise ValueError(f"tile margin {margin} must be >= 0 and leave a core: under half the tile side {tile}")
    spans: list[tuple[int, int, int, int]] = []
    start = 0
    while True:
        low = max(0, start - margin)
        if length - low <= tile:  # the rest fits in one window, which ends at the image border
            spans.append((low, length, start, length))
            return spans
        end = low + tile - margin  # the window's last ``margin`` pixels are context for the core's right edge
        spans.append((low, low + tile, start, end))
        start = end


def context_margin(model: Any, tile: int, align: int) -> int:
    """Pixels of context each side of a tile's core: half the model's ``receptive_field`` (the input span one
    output cell sees), rounded up to ``align``; a tile's eighth for a model that does not declare it. Capped so
    that a core of ``align`` pixels remains: a ``tile`` under ``receptive_field + align`` gives up exactness."""
    field = getattr(model, "receptive_field", None)
    wanted = math.ceil(field / 2) if field else tile // 8
    margin = math.ceil(wanted / align) * align
    return min(margin, (tile - align) // 2 // align * align)


def predict_density(
    model: Any,
    image: np.ndarray,
    stride: int,
    tile: int,
    device: Any,
    amp: bool,
    density_scale: float,
    members: bool = False,
) -> np.ndarray:
    """(ceil(H/s), ceil(W/s)) density in people per cell for an (H, W, 3) uint8 image, in tiles of <= ``tile``.

    With ``members`` (a Masksembles model in eval mode, no member selected): (n, ceil(H/s), ceil(W/s)), the density
    of each of its n members, from one pass of the layers they share. Whole images come in many sizes, so cuDNN
    autotuning is off here (:func:`~train.device.no_autotune`)."""
    import torch

    from train.models.registry import density_of

    height, width = image.shape[:2]
    align = max(stride, int(getattr(model, "input_multiple", stride)))  # cfcn pools to 1/8, outputs 1/2
    assert align % stride == 0, f"input_multiple {align} is not a multiple of the output stride {stride}"
    padded_h, padded_w = math.ceil(height / align) * align, math.ceil(width / align) * align
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(device)  # (3, H, W)
    batch = torch.zeros(3, padded_h, padded_w, device=device)  # zeros = the mean colour after normalising
    batch[:, :height, :width] = normalize(pixels)
    tile = max(align, tile // align * align)
    margin = context_margin(model, tile, align)
    lead = (model.masksembles.n,) if members else ()
    total = torch.zeros(*lead, padded_h // stride, padded_w // stride, device=device)
    with torch.no_grad(), autocast(device, amp), no_autotune():
        for top, bottom, core_top, core_bottom in tile_spans(padded_h, tile, margin):
            for left, right, core_left, core_right in tile_spans(padded_w, tile, margin):
                window = batch[:, top:bottom, left:right][None]  # (1, 3, <=T, <=T)
                result = model(window)
                # ([n,] <=T/s, <=T/s): members is (n, 1, 1, h, w), the density (1, 1, h, w)
                out = (result["members"][:, 0, 0] if members else density_of(result)[0, 0]).float()
                inside = (  # the core's cells, in the window's map and in the whole map
                    slice((core_top - top) // stride, (core_bottom - top) // stride),
                    slice((core_left - left) // stride, (core_right - left) // stride),
                )
                core = (
                    slice(core_top // stride, core_bottom // stride),
                    slice(core_left // stride, core_right // stride),
                )
                total[(..., *core)] = out[(..., *inside)]
    cells_h, cells_w = math.ceil(height / stride), math.ceil(width / stride)  # the padding past them is dropped
    return (total / density_scale)[..., :cells_h, :cells_w].cpu().numpy()


def failure_line(error: BaseException) -> str:
    """``Type: first line`` of an inference failure, for a per-image row (a CUDA out-of-memory message runs on
    over several lines of allocator advice)."""
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def apply_roi(roi: dict[str, Any], density: np.ndarray, points: np.ndarray, stride: int) -> tuple:
    """Keep only the region of interest: each density cell is scaled by the share of its pixels inside the mask
    (an L-mode image, non-zero inside), and points outside the mask are dropped (they are not evaluated)."""
    mask = np.array(decode_image(roi, mode="L")) > 0  # (H, W)
    height, width = density.shape[0] * stride, density.shape[1] * stride
    padded = np.zeros((height, width), dtype=np.float64)
    padded[: mask.shape[0], : mask.shape[1]] = mask[:height, :width]
    share = padded.reshape(density.shape[0], stride, density.shape[1], stride).mean(axis=(1, 3))  # (h, w)
    if len(points):
        cols = np.clip(points[:, 0].astype(int), 0, mask.shape[1] - 1)
        rows = np.clip(points[:, 1].astype(int), 0, mask.shape[0] - 1)
        points = points[mask[rows, cols]]
    return density * share, points


def evaluate_rows(
    model: Any,
    sources: list[RowSource],
    stride: int,
    tile: int,
    device: Any,
    amp: bool,
    density_scale: float,
    progress: Any | None = None,
) -> list[dict[str, Any]]:
    """One row per image: id, annotated and predicted counts, GAME(0..3); an unreadable image is a failed row, and
    an image without annotation (``count`` -1, ``labeled`` false: NWPU-Crowd's test split) an unscored one."""
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    for source in sources:
        ds = undecoded(source.dataset)
        for index in source.indices:
            if progress is not None:
                progress()
            record = raw_row(ds, index)
            row: dict[str, Any] = {"image_id": record["image_id"], "dataset": source.name, "status": "ok", "error": ""}
            if record["count"] < 0 or record.get("labeled") is False:  # NWPU-Crowd test: annotations kept private
                error = f"no annotation (count {record['count']}): not scored; `train predict` counts it"
                rows.append({**row, "status": "unlabeled", "error": error})
                continue
            try:
                image = np.array(decode_image(record["image"]))
            except Exception as e:  # PIL raises many types for a broken file; the row records it
                rows.append({**row, "status": "unreadable_image", "error": f"{type(e).__name__}: {e}"})
                continue
            try:
                density = predict_density(model, image, stride, tile, device, amp, density_scale)
            except (RuntimeError, MemoryError) as e:  # out of memory on this picture's tiles: the row says so
                rows.append({**row, "status": "prediction_failed", "error": failure_line(e)})
                continue
            points = np.asarray(record["points"] or [], dtype=np.float64).reshape(-1, 2)
            count = float(record["count"])
            if record.get("roi") is not None:  # both sides of every metric cover the region only
                density, points = apply_roi(record["roi"], density, points, stride)
                count = float(len(points))
            size = (image.shape[1], image.shape[0])
            row.update(count=count, predicted=float(density.sum()))
            for level in GAME_LEVELS:
                row[f"game{level}"] = game(density, points, size, stride, level)
            rows.append(row)
    model.train(was_training)
    return rows


def evaluate_sources(model: Any, sources: list[RowSource], **kwargs: Any) -> tuple[dict[str, float], list[dict]]:
    """(summary over readable annotated images, every row) for the rows of ``sources``; ``failed`` counts the
    unreadable images, ``unlabeled`` those without annotation."""
    rows = evaluate_rows(model, sources, **kwargs)
    summary = summarise([r for r in rows if r["status"] == "ok"])
    summary["failed"] = sum(r["status"] not in ("ok", "unlabeled") for r in rows)
    summary["unlabeled"] = sum(r["status"] == "unlabeled" for r in rows)
    return summary, rows


@dataclass(frozen=True)
class EvalConfig:
    """``train eval``: a checkpoint, a labeled dataset (folder or Hub id), its split and an output folder."""

    checkpoint: Path
    data: str
    split: str = "test"
    out: Path = Path("eval-out")
    device: str = "auto"
    tile: int = 1024
    ranked: str | None = None  # a ranked set: also report how many nested pairs the model orders wrongly
    ranked_sets: int = 500

    def __post_init__(self) -> None:
        from train.hub import check_checkpoint_argument

        check_checkpoint_argument(self.checkpoint)  # a file, a `train push` folder or a Hub id
        if not self.split:
            raise ConfigError("--split is empty; pass test, validation or train")
        if self.tile < 64:
            raise ConfigError(f"--tile {self.tile} is too small; use at least 64 pixels")
        if self.ranked_sets < 1:
            raise ConfigError(f"--ranked-sets {self.ranked_sets} must be >= 1 (ranked sets to check)")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(f"--out {self.out} is a file; pass a folder for eval.json and images.csv")


def evaluate_checkpoint(config: EvalConfig, show_progress: bool = True) -> dict[str, Any]:
    """Evaluate a checkpoint on one split: writes ``eval.json`` and ``images.csv`` to ``out``; returns the summary."""
    from rich.progress import Progress

    from train.checkpoint import model_from_checkpoint
    from train.data import open_dataset
    from train.device import resolve_device

    device = resolve_device(config.device)
    # the data first: a missing --data, --split or --ranked is named before a checkpoint is read (or downloaded)
    dsd = open_dataset(config.data, "--data", "labeled")
    if config.split not in dsd:
        raise DataError(f"--split {config.split!r} is not in {config.data} (splits: {', '.join(sorted(dsd))})")
    ds = dsd[config.split]
    ranked = open_dataset(config.ranked, "--ranked", "ranked") if config.ranked else None
    out = make_out_folder(Path(config.out))  # before the evaluation: an unwritable --out lost all of it at the end
    (out / "eval.json").unlink(missing_ok=True)  # an earlier one must not sit beside this run's images.csv if killed
    model, state, run_config = model_from_checkpoint(config.checkpoint, device)
    source = RowSource(config.data, ds, list(range(len(ds))))
    with Progress(disable=not show_progress) as progress:
        task = progress.add_task(f"eval {config.split}", total=len(ds))
        summary, rows = evaluate_sources(
            model,
            [source],
            stride=int(state["output_stride"]),
            tile=config.tile,
            device=device,
            amp=run_config.schedule.amp,
            density_scale=float(state["density_scale"]),
            progress=lambda: progress.advance(task),
        )
    summary.update(split=config.split, checkpoint=str(config.checkpoint), step=int(state["step"]), data=config.data)
    if ranked is not None:
        from train.rank_check import check_ranked

        input_size = run_config.data.input_size
        summary["ranking"] = check_ranked(model, ranked, input_size, device, config.ranked_sets)
    write_rows_csv(out / "images.csv", rows)
    write_json(out / "eval.json", summary)  # last: a kill before it leaves no eval.json that looks complete
    return summary
