"""``train pseudo-label``: the most confident predictions of a Masksembles model become a labeled dataset.

Liu, Durasov & Fua (CVPR 2022) train on synthetic labels, predict real pictures with a Masksembles network
and keep the predictions it is surest of as labels for the next round. Here, per picture:

- every mask is run over the whole picture (tiled as in ``train eval``): n density maps, n counts;
- relative uncertainty = std of the n counts / max(mean count, 1) (so empty pictures are not "uncertain");
- the ``keep_fraction`` of readable pictures with the lowest relative uncertainty are kept (round(F * n) of
  them, ties broken by input order);
- ``count`` = the rounded mean count; ``points`` = ``count`` heads drawn from the mean density (negative cells
  clipped to 0): each picks a cell with probability proportional to its density, and a uniform position
  inside it. Seeded, so the same checkpoint and pictures give the same dataset.

The output is a labeled dataset (``train`` split, ``dataset = "pseudo"``, an extra ``uncertainty`` column)
holding the original image bytes, so the next round's manifest lists it in ``data.labeled``. The dataset folder
also holds ``pseudo_labels.csv`` (every picture: counts, uncertainty, kept or why not) and ``uncertainty.png``.
A manifest chains rounds with a ``[rounds]`` table (:mod:`train.rounds`, ``manifests/liu2022-synth2real-shb.toml``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from train.config import SEED_LIMIT, SEED_RANGE
from train.errors import ConfigError

PSEUDO_STREAM = 5
PSEUDO_DATASET = "pseudo"  # the `dataset` value of every pseudo-labeled row (train.sources never validates on it)


@dataclass(frozen=True)
class PseudoLabelConfig:
    """A Masksembles checkpoint, unlabeled pictures (folders, files or pools), the fraction to keep, the output."""

    checkpoint: Path
    images: tuple[str, ...]
    out: Path
    keep_fraction: float = 0.5
    device: str = "auto"
    tile: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if not Path(self.checkpoint).is_file():
            raise ConfigError(f"CHECKPOINT {self.checkpoint} does not exist; pass RUN_DIR/best.pt")
        if not self.images:
            raise ConfigError("--images is empty; pass image folders, files or harvest pools")
        if not 0 < self.keep_fraction <= 1:
            raise ConfigError(f"--keep-fraction {self.keep_fraction} is invalid: expected a fraction in (0, 1]")
        if self.tile < 64:
            raise ConfigError(f"--tile {self.tile} is too small; use at least 64 pixels")
        if not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(f"--seed {self.seed} is invalid: expected {SEED_RANGE}, e.g. --seed 0")


def relative_uncertainty(member_counts: np.ndarray) -> float:
    """std of the members' counts over max(their mean, 1)."""
    counts = np.asarray(member_counts, dtype=np.float64)
    return float(counts.std() / max(counts.mean(), 1.0))


def select_confident(uncertainty: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Indices of the round(F * n) lowest uncertainties, most confident first (stable for ties)."""
    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    keep = int(math.floor(keep_fraction * len(uncertainty) + 0.5))
    return np.argsort(uncertainty, kind="stable")[:keep]


def sample_points(density: np.ndarray, count: int, cell: int, size: tuple[int, int], rng: np.random.Generator) -> Any:
    """``count`` (x, y) heads drawn from ``density`` (h, w) with cells of ``cell`` pixels, inside ``size`` (W, H)."""
    weights = np.clip(np.asarray(density, dtype=np.float64), 0.0, None).ravel()
    if count <= 0 or weights.sum() <= 0:
        return np.zeros((0, 2), dtype=np.float32)
    cells = rng.choice(len(weights), size=count, p=weights / weights.sum())
    rows, cols = np.divmod(cells, density.shape[1])
    x = (cols + rng.random(count)) * cell
    y = (rows + rng.random(count)) * cell
    width, height = size
    return np.stack([np.clip(x, 0, width - 1e-3), np.clip(y, 0, height - 1e-3)], axis=1).astype(np.float32)


def member_densities(
    model: Any, image: np.ndarray, stride: int, tile: int, device: Any, amp: bool, scale: float
) -> Any:
    """(n, h, w) density of each Masksembles member for one picture, in people per cell: one pass of the shared
    layers for all n (one pass per member ran the whole network n times, 4x the time of the usual 4 masks)."""
    from train.evaluate import predict_density

    assert model.masksembles.member is None, "every member at once needs no member selected"
    return predict_density(model, image, stride, tile, device, amp, scale, members=True)


def plot_uncertainty(rows: list[dict[str, Any]], path_or_buffer: Any) -> None:
    """Predicted count against relative uncertainty, kept pictures highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] in ("kept", "dropped")]
    fig, ax = plt.subplots(figsize=(6, 4))
    for status, colour in (("dropped", "tab:gray"), ("kept", "tab:green")):
        chosen = [r for r in ok if r["status"] == status]
        ax.scatter([r["count"] for r in chosen], [r["uncertainty"] for r in chosen], s=12, c=colour, label=status)
    ax.set_xlabel("predicted count (mean over masks)")
    ax.set_ylabel("relative uncertainty (std / mean)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path_or_buffer, format="png", dpi=100)
    plt.close(fig)


def pseudo_label(config: PseudoLabelConfig, show_progress: bool = True) -> list[dict[str, Any]]:
    """Predict every picture, keep the most confident fraction, write the labeled dataset; returns every row."""
    from rich.progress import track

    from rankset.errors import InputError
    from rankset.io import check_replaceable, write_dataset_dict
    from rankset.schema import encode_build_info, labeled_features
    from train.checkpoint import model_from_checkpoint
    from train.data import read_rgb
    from train.device import resolve_device
    from train.runlog import write_rows_csv
    from train.unlabeled import NO_PICTURES, NO_PICTURES_FIX, unlabeled_and_empty

    inputs = [*config.images, config.checkpoint]
    try:
        check_replaceable(Path(config.out), inputs)  # before predicting anything; the write checks again
    except InputError as e:
        raise ConfigError(str(e)) from e
    pictures, empty = unlabeled_and_empty(list(config.images), key="--images")  # none: fails before the model loads
    rows: list[dict[str, Any]] = [
        {"image_id": "", "path": name, "status": NO_PICTURES, "error": f"{name} holds no pictures. {NO_PICTURES_FIX}"}
        for name in empty
    ]  # a folder that gave nothing beside others that did: said in the CSV and the summary, and the run goes on
    points: list[Any] = [None] * len(rows)
    device = resolve_device(config.device)
    model, state, run_config = model_from_checkpoint(config.checkpoint, device)
    if getattr(model, "masksembles", None) is None:
        raise ConfigError(
            f"{config.checkpoint} has no Masksembles layer, so it gives no uncertainty; train it with "
            "model.masksembles = {masks = 4, scale = 2.0}"
        )
    stride, scale = int(state["output_stride"]), float(state["density_scale"])
    for i, picture in enumerate(track(pictures, description="pseudo-label", disable=not show_progress)):
        row: dict[str, Any] = {"image_id": picture.image_id, "path": str(picture.path), "status": "", "error": ""}
        try:
            image = read_rgb(picture.path)  # as displayed: the written points are read against the decoded bytes
        except Exception as e:  # PIL raises many types for a broken file; the row records it
            rows.append({**row, "status": "unreadable_image", "error": f"{type(e).__name__}: {e}"})
            points.append(None)
            continue
        maps = member_densities(model, image, stride, config.tile, device, run_config.schedule.amp, scale)
        counts = maps.sum(axis=(1, 2))  # (n,)
        mean = maps.mean(axis=0)  # (h, w)
        count = max(0, int(round(float(counts.mean()))))
        rng = np.random.default_rng([config.seed, PSEUDO_STREAM, i])
        points.append(sample_points(mean, count, stride, (image.shape[1], image.shape[0]), rng))
        rows.append(
            {**row, "count": count, "count_std": float(counts.std()), "uncertainty": relative_uncertainty(counts)}
        )
    readable = [i for i, r in enumerate(rows) if "uncertainty" in r]
    chosen = [
        readable[j]
        for j in select_confident(np.array([rows[i]["uncertainty"] for i in readable]), config.keep_fraction)
    ]
    for i in readable:
        rows[i]["status"] = "dropped"
    for rank, i in enumerate(chosen):
        rows[i].update(status="kept", confidence_rank=rank)

    def labeled_rows() -> Any:
        for i in chosen:
            yield {
                "image_id": rows[i]["image_id"],
                "image": {"bytes": Path(rows[i]["path"]).read_bytes(), "path": None},
                "points": points[i].tolist(),
                "count": rows[i]["count"],
                "dataset": PSEUDO_DATASET,
                "split": "train",
                "uncertainty": rows[i]["uncertainty"],
            }

    import datasets

    figure = io.BytesIO()
    plot_uncertainty(rows, figure)
    out = Path(config.out)
    csv_tmp = out.parent / f".{out.name}.csv-tmp"
    out.parent.mkdir(parents=True, exist_ok=True)
    features = labeled_features(extra={"uncertainty": datasets.Value("float32")})
    try:  # the CSV's temp file goes whatever happens: Ctrl-C or a failed write left it beside --out
        write_rows_csv(csv_tmp, rows)
        write_dataset_dict(
            out,
            {"train": labeled_rows()},
            features,
            description=encode_build_info(
                {"pseudo_labels_from": str(config.checkpoint), "keep_fraction": config.keep_fraction}
            ),  # JSON, as rankset's info/publish read it back: a quote or backslash in the path stays valid
            extra_files={"pseudo_labels.csv": csv_tmp.read_bytes(), "uncertainty.png": figure.getvalue()},
            inputs=inputs,
        )
    finally:
        csv_tmp.unlink(missing_ok=True)
    return rows
