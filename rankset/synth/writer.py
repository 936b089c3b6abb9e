"""Write synthetic scenes to disk: a labeled dataset (with depth) or a folder of plain JPEGs.

Scene i is rendered from ``numpy.random.default_rng([seed, i])`` and nothing else, so it is the same bytes
whether 10 or 10,000 scenes are rendered, in one process or many. This is the only module of the synth
package that touches files.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rankset.build import MAX_NUM_PROC
from rankset.errors import ConfigError, InputError
from rankset.synth.render import synthesize_scene

SPLIT_NAMES = ("train", "validation", "test")
DATASET_NAME = "synth"
GENERATOR_VERSION = 1  # bump when a change makes the same seed render different scenes


def parse_size(text: str) -> tuple[int, int]:
    """``"512x384"`` -> (512, 384); raises ConfigError naming --size otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"--size {text!r} is not WIDTHxHEIGHT; use e.g. --size 512x384")
    return int(match.group(1)), int(match.group(2))


def parse_splits(text: str) -> tuple[tuple[str, float], ...]:
    """``"train=0.8,validation=0.1,test=0.1"`` -> ((name, fraction), ...); raises ConfigError naming --splits."""
    parts = []
    for chunk in filter(None, (c.strip() for c in text.split(","))):
        name, sep, value = chunk.partition("=")
        try:
            fraction = float(value) if sep else float("nan")
        except ValueError:
            fraction = float("nan")
        if not sep or fraction != fraction:
            raise ConfigError(f"--splits entry {chunk!r} is not NAME=FRACTION; use e.g. --splits train=0.8,test=0.2")
        parts.append((name.strip(), fraction))
    return tuple(parts)


@dataclass(frozen=True)
class SynthConfig:
    """Arguments of ``rankset synth``; every field is validated here, with the flag it comes from."""

    n: int
    out: Path
    seed: int = 0
    width: int = 512
    height: int = 384
    unlabeled: bool = False
    splits: tuple[tuple[str, float], ...] = (("train", 1.0),)
    max_count: int = 1000
    num_proc: int = 1
    min_count: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.n < 1:
            raise ConfigError(f"--n {self.n} must be at least 1 (the number of scenes to render)")
        if self.width < 64 or self.height < 64:
            raise ConfigError(f"--size {self.width}x{self.height}: both sides must be at least 64 px, e.g. 512x384")
        if self.width > 8192 or self.height > 8192:
            raise ConfigError(f"--size {self.width}x{self.height}: both sides must be at most 8192 px")
        if self.seed < 0:
            raise ConfigError(f"--seed {self.seed} must be >= 0")
        if not 1 <= self.max_count <= 100_000:
            raise ConfigError(f"--max-count {self.max_count} must be in [1, 100000]")
        if not 0 <= self.min_count <= self.max_count:
            raise ConfigError(f"--min-count {self.min_count} must be in [0, --max-count {self.max_count}]")
        if not 1 <= self.num_proc <= MAX_NUM_PROC:
            raise ConfigError(f"--num-proc {self.num_proc} must be in [1, {MAX_NUM_PROC}] (one process each)")
        names = [name for name, _ in self.splits]
        unknown = [name for name in names if name not in SPLIT_NAMES]
        if not self.splits or unknown or len(set(names)) != len(names):
            raise ConfigError(
                f"--splits {self.splits_text()!r}: names must be distinct and among {', '.join(SPLIT_NAMES)}; "
                f"use e.g. --splits train=0.8,validation=0.1,test=0.1"
            )
        fractions = [f for _, f in self.splits]
        if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
            raise ConfigError(f"--splits {self.splits_text()!r}: fractions must be > 0 and sum to 1")
        if self.unlabeled and len(self.splits) > 1:
            raise ConfigError("--splits does not apply with --unlabeled (plain JPEGs have no splits); drop one")

    def splits_text(self) -> str:
        return ",".join(f"{name}={fraction:g}" for name, fraction in self.splits)

    def record(self) -> dict[str, Any]:
        """The resolved config as plain JSON values, saved beside the output."""
        values = asdict(self)
        values.update(out=str(self.out), splits=self.splits_text(), generator_version=GENERATOR_VERSION)
        return values


@dataclass(frozen=True)
class SynthSummary:
    """What a run wrote: per-split image counts and head statistics over every image."""

    out: Path
    images: int
    split_sizes: dict[str, int]
    counts: tuple[int, ...]
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def total_heads(self) -> int:
        return int(sum(self.counts))

    @property
    def count_stats(self) -> tuple[int, float, int]:
        """(min, median, max) head count per image."""
        counts = np.asarray(self.counts)
        return int(counts.min()), float(np.median(counts)), int(counts.max())

    @property
    def scenes_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


def split_indices(n: int, splits: tuple[tuple[str, float], ...]) -> dict[str, list[int]]:
    """Contiguous index blocks per split, sized by largest remainder so they add up to exactly ``n``."""
    raw = np.array([fraction * n for _, fraction in splits])
    sizes = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - sizes), kind="stable")[: n - int(sizes.sum())]:
        sizes[i] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return {name: list(range(int(bounds[i]), int(bounds[i + 1]))) for i, (name, _) in enumerate(splits)}


def scene_id(index: int) -> str:
    return f"synth_{index:05d}"


def render_row(
    index: int, seed: int, width: int, height: int, max_count: int, with_depth: bool, min_count: int = 0
) -> dict[str, Any]:
    """Scene ``index`` as a labeled-schema row (image and, if asked, depth as encoded bytes; no split)."""
    scene = synthesize_scene(np.random.default_rng([seed, index]), width, height, max_count, min_count)
    row = {
        "image_id": scene_id(index),
        "image": {"bytes": scene.jpeg_bytes(), "path": None},
        "points": scene.points.tolist(),
        "count": scene.count,
        "dataset": DATASET_NAME,
    }
    if with_depth:
        row["depth"] = {"bytes": scene.depth_png_bytes(), "path": None}
    return row


def _render_args(args: tuple[int, int, int, int, int, bool, int]) -> dict[str, Any]:
    return render_row(*args)


def _rendered(indices: list[int], config: SynthConfig, label: str) -> Iterator[dict[str, Any]]:
    """Rows for ``indices`` in order, rendered by ``config.num_proc`` processes, with a rich progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    jobs = [
        (i, config.seed, config.width, config.height, config.max_count, not config.unlabeled, config.min_count)
        for i in indices
    ]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task(f"synth {label}", total=len(jobs))
        if config.num_proc > 1 and len(jobs) > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(min(config.num_proc, len(jobs))) as pool:  # none idle
                for row in pool.imap(_render_args, jobs, chunksize=4):
                    progress.advance(task)
                    yield row
        else:
            for job in jobs:
                row = _render_args(job)
                progress.advance(task)
                yield row


def _split_rows(start: int, stop: int, split: str, config_json: str) -> Iterator[dict[str, Any]]:
    """Generator for ``Dataset.from_generator`` over scenes [start, stop).

    Arguments are plain scalars: datasets fingerprints them, and would cut a list argument into one shard per
    element (one progress bar per scene); parallelism is ours, in :func:`_rendered`.
    """
    values = json.loads(config_json)
    config = SynthConfig(
        n=values["n"],
        out=Path(values["out"]),
        seed=values["seed"],
        width=values["width"],
        height=values["height"],
        splits=parse_splits(values["splits"]),
        max_count=values["max_count"],
        num_proc=values["num_proc"],
        min_count=values.get("min_count", 0),
    )
    for row in _rendered(list(range(start, stop)), config, split):
        yield {**row, "split": split}


def _card(config: SynthConfig, summary_counts: dict[str, int]) -> str:
    sizes = ", ".join(f"{name}: {size}" for name, size in summary_counts.items())
    return (
        "---\npretty_name: crowdrank synthetic crowds\ntask_categories:\n- object-detection\n---\n"
        "# Synthetic crowds (crowdrank `rankset synth`)\n\n"
        "Rendered crowd scenes with exact head points and per-pixel depth. People stand on a perspective ground "
        "plane seen by a pinhole camera; a head is annotated when at least 20% of it is visible.\n\n"
        f"- images: {sizes}\n- size: {config.width}x{config.height}, seed {config.seed}, "
        f"head count {config.min_count}–{config.max_count}\n"
        f"- depth: 16-bit PNG, metres * 256, 0 for sky\n\n```json\n{json.dumps(config.record(), indent=2)}\n```\n"
    )


def synth_dataset(config: SynthConfig) -> SynthSummary:
    """Render ``config.n`` scenes into a labeled DatasetDict at ``config.out`` (written atomically)."""
    from rankset.io import write_dataset_dict
    from rankset.schema import encode_build_info, labeled_features

    if config.unlabeled:
        raise ConfigError("synth_dataset got unlabeled=True; call synth_unlabeled for plain JPEGs")
    started = time.perf_counter()
    planned = split_indices(config.n, config.splits)
    blocks = {name: idx for name, idx in planned.items() if idx}
    empty = [name for name, idx in planned.items() if not idx]
    config_json = json.dumps(config.record(), sort_keys=True)
    cleaned: list[str] = []
    dsd = write_dataset_dict(
        config.out,
        {
            name: (_split_rows, {"start": idx[0], "stop": idx[-1] + 1, "split": name, "config_json": config_json})
            for name, idx in blocks.items()
        },
        features=labeled_features(("depth",)),
        description=encode_build_info({"kind": "synth", **config.record()}),
        card=_card(config, {name: len(idx) for name, idx in blocks.items()}),
        extra_files={"synth.json": json.dumps(config.record(), indent=2).encode()},
        notes=cleaned,
    )
    counts = tuple(int(c) for name in dsd for c in dsd[name].data.column("count").to_pylist())
    return SynthSummary(
        out=config.out,
        images=len(counts),
        split_sizes={name: dsd[name].num_rows for name in dsd},
        counts=counts,
        seconds=time.perf_counter() - started,
        notes=tuple(
            f"split {name}: {fraction:g} of --n {config.n} rounds to no scene, so the dataset has no {name} split; "
            "raise --n"
            for name, fraction in config.splits
            if name in empty
        )
        + tuple(cleaned),
    )


SCENE_FILE = re.compile(r"synth_(\d{5,})\.jpg")


COUNTS_HEADER = "# evaluation only: true head counts of these synthetic pictures; never used by training\n"


def _written_by_synth(path: Path) -> bool:
    """A ``counts.csv`` that starts with synth's comment, or a ``synth.json`` with its ``generator_version``."""
    try:
        if path.name == "counts.csv":
            with open(path, encoding="utf-8") as handle:
                return handle.readline() == COUNTS_HEADER
        return "generator_version" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def check_unlabeled_out(out: Path, n: int) -> None:
    """Refuse an ``--unlabeled --out`` that is a dataset folder, or that holds scenes from an earlier, longer run:
    they would stay beside the new ones, unlisted in ``counts.csv``, and be read as pictures by later stages."""
    from rankset.io import existing_out_folder, is_dataset_folder

    if not existing_out_folder(out, "the JPEGs"):
        return
    what = "a dataset folder" if is_dataset_folder(out) else "a harvest pool" if (out / "pool.json").is_file() else None
    if what is not None:
        raise InputError(
            f"--out {out} is {what}; --unlabeled writes plain JPEGs beside it and would mix the two. "
            "Choose a new or empty folder"
        )
    for name in ("counts.csv", "synth.json"):
        if (out / name).is_file() and not _written_by_synth(out / name):
            raise InputError(
                f"--out {out} holds a {name} that rankset synth did not write; --unlabeled would overwrite it. "
                "Choose a new or empty folder, or move that file away"
            )
    left = sorted(int(m.group(1)) for p in out.iterdir() if (m := SCENE_FILE.fullmatch(p.name)))
    left = [index for index in left if index >= n]
    if left:
        shown = scene_id(left[0]) + ".jpg" + ("" if len(left) == 1 else f" … {scene_id(left[-1])}.jpg")
        raise InputError(
            f"--out {out} already holds {len(left)} scene(s) past --n {n} ({shown}) from an earlier run; counts.csv "
            f"would not list them. Pass --n {left[-1] + 1} or more, a new folder, or delete those files"
        )


def synth_unlabeled(config: SynthConfig) -> SynthSummary:
    """Render ``config.n`` scenes as ``out/synth_00000.jpg ...``: stand-ins for web photos.

    The true counts go to ``out/counts.csv`` for honest evaluation only; its first line says training must not
    read it. Each file is written atomically, so a killed run leaves only whole pictures. ``counts.csv`` and
    ``synth.json`` of an earlier run are deleted before the first picture is replaced and written again after the
    last: a killed run leaves a folder without them (unfinished), never new pictures beside the old run's counts.
    """
    from rankset.io import remove_stale_staging, write_file_atomic

    check_unlabeled_out(config.out, config.n)  # any counts.csv or synth.json there is synth's own
    started = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    cleaned = remove_stale_staging(config.out)
    for name in ("synth.json", "counts.csv"):  # synth.json first: it is written last, so it marks a finished run
        (config.out / name).unlink(missing_ok=True)
    counts: list[int] = []
    with io.StringIO() as table:
        table.write(COUNTS_HEADER)
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["file", "count"])
        for row in _rendered(list(range(config.n)), config, "unlabeled"):
            name = f"{row['image_id']}.jpg"
            write_file_atomic(config.out / name, row["image"]["bytes"])
            writer.writerow([name, row["count"]])
            counts.append(int(row["count"]))
        write_file_atomic(config.out / "counts.csv", table.getvalue().encode())
    write_file_atomic(config.out / "synth.json", json.dumps(config.record(), indent=2).encode())
    return SynthSummary(
        out=config.out,
        images=len(counts),
        split_sizes={"unlabeled": len(counts)},
        counts=tuple(counts),
        seconds=time.perf_counter() - started,
        notes=tuple(cleaned),
    )
