"""Resolve a manifest's datasets into row sources: training rows, ranked sets, validation and test rows.

Everything here runs before the first step, so a missing dataset, a wrong schema or ranked sets of different k
stop the run with a message naming the manifest key. Validation is the evaluation benchmark's ``validation``
split when it has one; otherwise ``data.val_fraction`` of the labeled training rows are carved out (seeded)
and never trained on. The ``test`` split is only evaluated once, at the end, and never selects a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.config import RunConfig
from train.data import RowSource, carve_validation, open_dataset, ranked_set_size
from train.errors import ConfigError, DataError
from train.unlabeled import UnlabeledImage, list_unlabeled


@dataclass
class RunSources:
    """The rows a run trains, selects and reports on."""

    labeled: list[RowSource]
    ranked: list[RowSource]
    k: int | None
    validation: list[RowSource] = field(default_factory=list)
    test: list[RowSource] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unlabeled: list[UnlabeledImage] = field(default_factory=list)  # the upside-down task's pictures, when it is on

    @property
    def labeled_rows(self) -> int:
        return sum(len(s.indices) for s in self.labeled)

    @property
    def ranked_rows(self) -> int:
        return sum(len(s.indices) for s in self.ranked)


def _train_split(dsd: Any, key: str, path: str) -> Any:
    if "train" not in dsd:
        raise DataError(f"{key} = {path!r} has no 'train' split (splits: {sorted(dsd)}); training reads 'train'")
    return dsd["train"]


def resolve_sources(config: RunConfig) -> RunSources:
    """Open every dataset of ``config.data`` and decide which rows play which role."""
    sources = _resolve(config)
    if config.data.labeled_fraction < 1.0:  # after validation is carved, so validation never shrinks with it
        sources.notes.extend(subsample_labeled(sources.labeled, config.data.labeled_fraction, config.seed))
    check_batch_fits(config.schedule.batch, sources.labeled_rows)
    if config.tasks.depth is not None and config.data.depth_dir:
        sources.notes.extend(check_depth_maps(config.data.depth_dir, sources.labeled))
    if sources.ranked:
        check_sets_fit(config.tasks.rank.sets_per_batch, sum(len(s.indices) for s in sources.ranked))
    if config.tasks.upside_down is not None:
        sources.unlabeled = list_unlabeled(config.data.unlabeled)
        check_upside_down_fits(config.tasks.upside_down.batch, len(sources.unlabeled), config.data.unlabeled)
    return sources


def check_upside_down_fits(batch: int, pictures: int, paths: list[str]) -> None:
    """Refuse more upside-down crops per step than data.unlabeled has pictures, before any work (as
    :func:`check_batch_fits` does for labeled crops): the sampler cycled the pictures, so a batch of 64 on 3 pictures
    trained on 21 crops of each picture a step, silently, a self-supervised task that mostly memorises them."""
    if batch > pictures:
        raise ConfigError(
            f"tasks.upside_down.batch = {batch} is larger than the {pictures} pictures of data.unlabeled = {paths!r}: "
            f"each step would crop every picture {batch / pictures:.1f} times on average. "
            f"Fix: --set tasks.upside_down.batch={pictures} or less, or add pictures to data.unlabeled"
        )


def check_sets_fit(sets_per_batch: int, sets: int) -> None:
    """Refuse more ranked sets per batch than the ranked data holds, before any work (as :func:`check_batch_fits`
    does for crops): each step would draw every set several times, and a typo of 10**9 would exhaust memory."""
    if sets_per_batch > sets:
        raise ConfigError(
            f"tasks.rank.sets_per_batch = {sets_per_batch} is larger than the {sets} ranked sets of data.ranked. "
            f"Fix: --set tasks.rank.sets_per_batch={min(sets, 5)} (the paper uses 5), or build more ranked sets"
        )


def check_depth_maps(depth_dir: str, labeled: list[RowSource]) -> list[str]:
    """Refuse a ``data.depth_dir`` that gives no labeled training image a depth map, before any work; a note saying
    how many have one when only some do (a cell without depth is left out of the depth loss, so a partial folder
    trains, on fewer images than the user may think).

    A training image has a depth map when its row carries a ``depth`` field or ``depth_dir/<image_id>.png`` exists,
    as :func:`train.data.crop_depth` reads them. A folder of maps named after another dataset's ids (or with the
    dataset name prefixed) used to train with every cell's depth unknown: the depth task learned nothing, silently.
    """
    folder = Path(depth_dir)
    fix = (
        "Fix: name the folder of <image_id>.png depth maps (16-bit, metres * 256) of the data.labeled images, "
        'or set data.depth_dir = "" when the labeled rows carry a depth field'
    )
    found = {p.name for p in folder.glob("*.png")} if folder.is_dir() else set()  # the folder is listed once
    if not found:
        what = "holds no .png depth maps" if folder.is_dir() else "is not a folder"
        raise DataError(f"data.depth_dir = {depth_dir!r} {what}. {fix}")
    total, with_map, missing = 0, 0, []
    for source in labeled:
        columns = ["image_id"] + (["depth"] if "depth" in source.dataset.column_names else [])
        table = source.dataset.select_columns(columns).select(source.indices).with_format("arrow")[:]
        ids = table.column("image_id").to_pylist()
        in_row = table.column("depth").is_valid().to_pylist() if "depth" in columns else [False] * len(ids)
        for image_id, has_field in zip(ids, in_row, strict=True):
            total += 1
            if has_field or f"{image_id}.png" in found:
                with_map += 1
            elif not missing:
                missing.append(f"{image_id}.png")
    if total and with_map == 0:
        raise DataError(
            f"data.depth_dir = {depth_dir!r}: none of its {len(found)} .png files is named after a labeled training "
            f"image, so the depth task would learn nothing (expected e.g. {missing[0]!r}, found e.g. "
            f"{min(found)!r}). {fix}"
        )
    if with_map < total:
        return [
            f"data.depth_dir = {depth_dir!r}: {with_map} of {total} labeled training images have a depth map "
            f"(e.g. no {missing[0]!r}); the others train without depth supervision"
        ]
    return []


def check_batch_fits(batch: int, rows: int) -> None:
    """Refuse a count batch larger than the labeled training set, before any work.

    Each batch draws that many crops from the training images, so a batch beyond the set crops every image
    several times per step: almost always a typo (``batch = 100000`` ran silently for minutes on 24 images).
    """
    if batch > rows:
        raise ConfigError(
            f"schedule.batch = {batch} is larger than the {rows} labeled training images (after the validation "
            f"carve and data.labeled_fraction): each step would crop every image {batch / rows:.1f} times on average. "
            f"Fix: --set schedule.batch={rows} or less, or add labeled training data"
        )


def _resolve(config: RunConfig) -> RunSources:
    data = config.data
    labeled: list[RowSource] = []
    opened: dict[str, Any] = {}
    for i, path in enumerate(data.labeled):
        key = f"data.labeled[{i}]"
        dsd = opened[path] = open_dataset(path, key, "labeled")
        ds = _train_split(dsd, key, path)
        if len(ds) == 0:
            raise DataError(
                f"{key} = {path!r} has an empty 'train' split (0 rows), so there is nothing to train on. Fix: "
                "remake it with training rows (`rankset import/synth ... --splits train=0.7,validation=0.1,test=0.2`)"
            )
        labeled.append(RowSource(path, ds, list(range(len(ds)))))

    ranked: list[RowSource] = []
    k: int | None = None
    if config.schedule.paradigm != "count-only":
        for i, path in enumerate(data.ranked):
            key = f"data.ranked[{i}]"
            ds = _train_split(open_dataset(path, key, "ranked"), key, path)
            size = ranked_set_size(ds, key)
            if k is not None and size != k:
                raise DataError(
                    f"{key} = {path!r} has sets of k={size} patches but data.ranked[0] has k={k}; "
                    "build every ranked set with the same --k, or list only one of them"
                )
            k = size
            ranked.append(RowSource(path, ds, list(range(len(ds)))))

    sources = RunSources(labeled=labeled, ranked=ranked, k=k)
    if not data.eval:
        sources.notes.append("no data.eval: no validation, so best.pt is the last checkpoint; no eval.json is written")
        return sources
    dsd = opened.get(data.eval) or open_dataset(data.eval, "data.eval", "labeled")
    if "test" in dsd:
        sources.test = [RowSource(data.eval, dsd["test"], list(range(len(dsd["test"]))))]
    else:
        sources.notes.append(f"data.eval = {data.eval!r} has no 'test' split: no eval.json at the end")
    if "validation" in dsd:
        sources.validation = [RowSource(data.eval, dsd["validation"], list(range(len(dsd["validation"]))))]
    elif data.val_fraction > 0:
        carved = []
        for source in labeled:
            if _is_pseudo(source):  # a model's own labels must never select its checkpoint
                continue
            keep, held = carve_validation(len(source.indices), data.val_fraction, config.seed)
            if held:
                carved.append(RowSource(source.name, source.dataset, [source.indices[j] for j in held]))
                source.indices[:] = [source.indices[j] for j in keep]
        sources.validation = carved
        sources.notes.append(
            f"validation: {sum(len(s.indices) for s in carved)} rows carved from labeled train "
            f"(data.val_fraction = {data.val_fraction})"
        )
    else:
        sources.notes.append("no validation split and data.val_fraction = 0: best.pt is the last checkpoint")
    return sources


def subsample_labeled(sources: list[RowSource], fraction: float, seed: int) -> list[str]:
    """Keep ``fraction`` of each labeled source's training rows (at least one), chosen by ``seed``.

    The rows kept for a smaller fraction are a subset of those kept for a larger one (a prefix of one seeded
    permutation), so a labeled-fraction curve compares nested training sets, as in the paper's Figure 4.
    """
    import numpy as np

    notes = []
    for source in sources:
        n = len(source.indices)
        keep = max(1, int(round(fraction * n)))
        order = np.random.default_rng([seed, 7]).permutation(n)[:keep]
        source.indices[:] = [source.indices[j] for j in sorted(order.tolist())]
        notes.append(f"data.labeled_fraction = {fraction}: training on {keep} of {n} rows of {source.name}")
    return notes


def _is_pseudo(source: RowSource) -> bool:
    """Whether ``source`` holds pseudo-labels (``train pseudo-label`` marks their ``dataset`` column)."""
    from train.pseudo_label import PSEUDO_DATASET

    if not source.indices or "dataset" not in source.dataset.column_names:
        return False
    return source.dataset.select_columns(["dataset"])[source.indices[0]]["dataset"] == PSEUDO_DATASET
