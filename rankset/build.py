"""``rankset build``: cut nested ranked patch sets out of pictures and write them as a Hugging Face dataset.

Data flow: inputs.py lists the source pictures; each worker process decodes a picture once (reduced JPEG
decode where every patch is downscaled), cuts ``sets_per_image`` sets of k patches (geometry.py) and encodes
them as JPEG; the main process streams the rows to Arrow in input order (io.py), so memory stays flat and
the output is the same whatever ``num_proc`` is. A picture that cannot be read is skipped with its reason, and
every skipped picture is a row of ``OUT/skipped.csv``, written in the staging folder with the dataset.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing as mp
import signal
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rankset.errors import ConfigError, EmptySplitError, ImageError
from rankset.geometry import NestedSet, draft_factor, nested_boxes
from rankset.inputs import (
    SKIP_MISSING,
    SKIP_TOO_SMALL,
    SKIP_UNREADABLE,
    SourcePicture,
    describe_input,
    iter_dataset,
    list_pool,
    printable_name,
    scan_folder,
)
from rankset.progress import progress_bar

MIN_PATCH_SIDE = 2.0  # source pixels: below this the smallest patch is a smear, not a picture


MAX_PATCH_SIZE = 4096  # the largest side of a stored patch; --size 100000 would need ~30 GB per patch
LARGEST_SOURCE_SIDE = 65535  # the largest side a JPEG can have: no picture's patch 0 is larger than this
MAX_K = 1000  # a set of k patches is one row held in memory (and one Arrow list): 1000 of 224 px is ~15 MB
MAX_SETS_PER_IMAGE = 1000  # every set of a picture is held in memory until the picture is written
MAX_NUM_PROC = 256  # a worker process each: --num-proc 100000 would try to start 100000 processes

SKIPPED_CSV = "skipped.csv"  # beside the card in --out: every skipped picture, its reason and the fix
SKIPPED_COLUMNS = ("source", "reason", "message")


KS = (
    f"patch k-1 is s**(k-1) of patch 0, so a larger k leaves even a {LARGEST_SOURCE_SIDE} px picture with patches "
    f"under {MIN_PATCH_SIDE:g} px, and a set holds at most {MAX_K} patches"
)


def max_k(s: float) -> int:
    """The largest k whose smallest patch can be ``MIN_PATCH_SIDE`` px in a picture of ``LARGEST_SOURCE_SIDE`` px
    (computed in logs: ``s**(k-1)`` underflows to 0 long before k is refused), and at most ``MAX_K``; 2 for an ``s``
    outside (0, 1), which its own check refuses."""
    if not 0.0 < s < 1.0:
        return 2
    fit = 1 + math.floor(math.log(MIN_PATCH_SIDE / LARGEST_SOURCE_SIDE) / math.log(s))
    return max(2, min(MAX_K, fit))


@dataclass(frozen=True)
class BuildConfig:
    """Parameters of one build; the paper's defaults (k=5, s=0.75, r=8, 224 px)."""

    input: str
    out: str
    k: int = 5
    s: float = 0.75
    r: float = 8.0
    size: int = 224
    sets_per_image: int = 1
    seed: int = 0
    val_fraction: float = 0.0
    num_proc: int = 1
    split: str = "train"
    quality: int = 90

    def __post_init__(self) -> None:
        checks = [
            (self.k >= 2, "--k", self.k, "an integer >= 2 (a set needs at least one pair)"),
            (0.0 < self.s < 1.0, "--s", self.s, "a ratio strictly between 0 and 1"),
            (self.k <= max_k(self.s), "--k", self.k, f"an integer from 2 to {max_k(self.s)} with --s {self.s}: {KS}"),
            (1.0 <= self.r < math.inf, "--r", self.r, "a finite number >= 1 (the anchor region is 1/r of the picture)"),
            (16 <= self.size <= MAX_PATCH_SIZE, "--size", self.size, f"an integer from 16 to {MAX_PATCH_SIZE} pixels"),
            (0 <= self.seed < 2**32, "--seed", self.seed, "an integer from 0 to 2**32 - 1"),
            (
                1 <= self.sets_per_image <= MAX_SETS_PER_IMAGE,
                "--sets-per-image",
                self.sets_per_image,
                f"an integer from 1 to {MAX_SETS_PER_IMAGE}",
            ),
            (0.0 <= self.val_fraction < 1.0, "--val-fraction", self.val_fraction, "a fraction in [0, 1)"),
            (1 <= self.num_proc <= MAX_NUM_PROC, "--num-proc", self.num_proc, f"an integer from 1 to {MAX_NUM_PROC}"),
            (1 <= self.quality <= 100, "--quality", self.quality, "a JPEG quality from 1 to 100"),
        ]
        for ok, flag, value, expected in checks:
            if not ok:
                raise ConfigError(f"{flag} {value!r} is out of range: expected {expected}")

    def params(self) -> dict[str, Any]:
        """What the dataset card and ``info.description`` record."""
        keys = ("k", "s", "r", "size", "sets_per_image", "seed", "val_fraction", "quality")
        return {"kind": "ranked-sets", **{key: getattr(self, key) for key in keys}}


@dataclass
class BuildSummary:
    input_kind: str
    sources: int = 0
    used: int = 0
    sets: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source id, message naming the value and the fix)
    skipped_rows: list[tuple[str, str, str]] = field(default_factory=list)  # (source, reason, message): skipped.csv
    licenses: Counter = field(default_factory=Counter)
    reduced_decodes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["licenses"] = dict(self.licenses)
        d["skipped_by_reason"] = dict(self.skipped_by_reason)
        return d

    def skip(self, source_id: str, reason: str, message: str, source: str | None = None) -> None:
        """Count a skipped picture; ``source`` (its path, for a folder) is what skipped.csv names it by. A name that
        is not UTF-8 is kept with escapes (:func:`printable_name`): the summary table and the CSV cannot print it."""
        message = printable_name(message)
        self.skipped.append((source_id, message))
        self.skipped_rows.append((printable_name(source or source_id), reason, message))

    @property
    def skipped_by_reason(self) -> Counter:
        """Skipped pictures per ``SKIP_*`` reason of :mod:`rankset.inputs`, counted from :attr:`skipped_rows`."""
        return Counter(reason for _, reason, _ in self.skipped_rows)

    def skipped_csv(self) -> bytes:
        """Every skipped picture as a CSV row (a header alone when none was), sorted so a rebuild gives the same
        bytes. Names that are not UTF-8 are written as escapes, as in the dataset's columns."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(SKIPPED_COLUMNS)
        writer.writerows(sorted(self.skipped_rows))
        return buffer.getvalue().encode("utf-8")


def source_rng(seed: int, source_id: str) -> np.random.Generator:
    """Each picture's own generator: its sets do not depend on what else is in the input or on num_proc."""
    return np.random.default_rng([seed, zlib.crc32(source_id.encode("utf-8"))])


Skip = tuple[str, str]  # (a SKIP_* reason, the message naming the picture and what went wrong)


def cut_sets(picture: SourcePicture, cfg: BuildConfig) -> tuple[list[dict[str, Any]], Skip | None, int]:
    """The rows of one picture's sets, or no rows and why it was skipped; plus the draft factor used."""
    from rankset.images import cut_patches, decode_oriented, encode_jpeg

    rng = source_rng(cfg.seed, picture.source_id)
    sets: list[NestedSet] = []

    def plan(width: int, height: int) -> int:
        sets.extend(nested_boxes(width, height, cfg.k, cfg.s, cfg.r, rng) for _ in range(cfg.sets_per_image))
        smallest = min(ns.sides[-1] for ns in sets)
        return draft_factor(smallest, cfg.size)

    name = picture.path or picture.source_id
    try:
        data = picture.read()
    except FileNotFoundError:
        return [], (SKIP_MISSING, f"{name}: the file does not exist"), 1
    except OSError as e:  # a permission, a folder in its place, a disk error
        return [], (SKIP_UNREADABLE, f"{name}: cannot be read ({e.strerror or e})"), 1
    try:
        img, full = decode_oriented(data, name, plan=plan)
    except (ImageError, OSError) as e:
        return [], (SKIP_UNREADABLE, str(e)), 1
    factor = round(full[0] / img.width) if img.width else 1
    if min(ns.sides[-1] for ns in sets) < MIN_PATCH_SIDE:
        return [], (SKIP_TOO_SMALL, f"{picture.source_id}: {full[0]}x{full[1]} {too_small_fix(cfg)}"), factor
    rows = []
    for j, ns in enumerate(sets):
        patches = cut_patches(img, full, ns.boxes, cfg.size)
        rows.append(
            {
                "set_id": f"{picture.source_id}-{j}",
                "source_id": picture.source_id,
                "images": [{"bytes": encode_jpeg(p, cfg.quality), "path": None} for p in patches],
                "boxes": [list(b) for b in ns.boxes],
                "anchor": list(ns.anchor),
                "source_size": list(full),
                "license": picture.license,
                "author": picture.author,
                "source_url": picture.source_url,
            }
        )
    return rows, None, factor


def too_small_fix(cfg: BuildConfig) -> str:
    """Why a picture is too small for the set's geometry, and the short side from which every picture fits.

    Patch 0 is at least (r - 1) / r of the short side (the anchor is in the centred 1/r region) and patch k-1 is
    s**(k-1) of patch 0, so a short side of ``MIN_PATCH_SIDE * r / ((r - 1) * s**(k-1))`` always gives patches of
    at least ``MIN_PATCH_SIDE`` pixels. With r = 1 the anchor may fall on the border, where every patch is empty:
    no short side always fits, and a larger --r is the fix that works for any picture.
    """
    why = f"is too small for k={cfg.k}, s={cfg.s}: its smallest patch would be under {MIN_PATCH_SIDE:g} px"
    if cfg.r <= 1:
        return (
            f"{why} (with --r 1 the anchor may fall on the picture's border, where every patch is empty, so no "
            "picture always fits). Use --r 2 or more (patch 0 is then at least half the short side), a smaller --k "
            "or a larger --s"
        )
    share = (cfg.r - 1.0) / cfg.r
    needed = math.ceil(MIN_PATCH_SIDE / (share * cfg.s ** (cfg.k - 1)))
    return (
        f"{why} (pictures with a short side of {needed} px or more always fit). Use a smaller --k or a larger --s, "
        "or leave the picture out"
    )


def skip_fix(kind: str, reason: str, input: str) -> str:
    """What to do about a picture skipped for ``reason`` in an input of ``kind`` (pool, folder, dataset, hub)."""
    if kind == "pool" and reason in (SKIP_MISSING, SKIP_UNREADABLE):
        return (
            "the stored file was deleted or changed after harvest stored it. Restore it from a backup, or run "
            f"`harvest dedup {input}` to mark it lost and then the harvest command that found it (keywords, qbe "
            "or local) with --retry-failed to fetch it again"
        )
    if reason == SKIP_MISSING:
        if kind == "folder":
            return "it was deleted or moved while the build ran; put it back and build again"
        return f"a row of {input} names this file for its image; restore the file, or write the dataset again"
    if reason == SKIP_UNREADABLE:
        if kind == "folder":
            return "replace it with a readable copy, or move it out of the folder (it is skipped on every build)"
        return f"the row's image in {input} does not decode; write that dataset again from readable pictures"
    return ""


def _cut_sets_task(
    args: tuple[SourcePicture, BuildConfig],
) -> tuple[str, str | None, list[dict[str, Any]], Skip | None, int]:
    """The picture's id and path (not its bytes: they need not travel back), then what :func:`cut_sets` gives."""
    picture, cfg = args
    return (picture.source_id, picture.path, *cut_sets(picture, cfg))


def assign_splits(ids: list[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Exactly round(val_fraction * n) pictures go to ``validation``, chosen by a seeded hash of their id.

    Splitting by picture (not by set) keeps the sets of one picture out of both splits.
    """
    n_val = int(round(val_fraction * len(ids)))
    order = sorted(ids, key=lambda i: (zlib.crc32(f"{seed}:{i}".encode()), i))
    val = set(order[:n_val])
    return {i: ("validation" if i in val else "train") for i in ids}


def list_sources(cfg: BuildConfig) -> tuple[str, int, Iterable[SourcePicture], list[tuple[str, str, str, str]]]:
    """The input's kind, its number of pictures, the pictures, and entries refused unread (id, path or id, reason,
    message)."""
    kind = describe_input(cfg.input)
    if kind in ("pool", "folder") and cfg.split != "train":
        raise ConfigError(
            f"--split {cfg.split} applies only when INPUT is a dataset; {cfg.input} is a {kind}, which has no splits. "
            "Drop --split"
        )
    if kind == "pool":
        pictures, refused = list_pool(Path(cfg.input))
        return kind, len(pictures), pictures, refused
    if kind == "folder":
        pictures, refused = scan_folder(Path(cfg.input))
        return kind, len(pictures), pictures, refused
    n, rows = iter_dataset(cfg.input, cfg.split)
    return kind, n, rows, []


def build_ranked_sets(cfg: BuildConfig, progress: bool = True) -> BuildSummary:
    """Build the ranked-set DatasetDict at ``cfg.out`` (atomically) and return what happened."""
    from rankset.card import pool_commands, ranked_set_card
    from rankset.io import check_replaceable, write_dataset_dict
    from rankset.schema import encode_build_info, ranked_features

    start = time.perf_counter()
    check_replaceable(Path(cfg.out), [cfg.input], ranked_features(cfg.k))  # before any work; the write checks again
    kind, n, pictures, refused = list_sources(cfg)
    summary = BuildSummary(input_kind=kind, sources=n + len(refused))
    for source_id, source, reason, message in refused:
        summary.skip(source_id, reason, message, source)
    if cfg.val_fraction > 0:
        pictures = list(pictures)  # the split needs every id up front (paths or bytes already in memory)
        split_of = assign_splits([p.source_id for p in pictures], cfg.val_fraction, cfg.seed)
        by_split = {s: [p for p in pictures if split_of[p.source_id] == s] for s in ("train", "validation")}
    else:
        by_split = {"train": pictures}

    with progress_bar(progress, n, "cutting ranked sets") as advance, _worker_pool(cfg.num_proc) as pool:

        def rows_of(items: Iterable[SourcePicture], split: str) -> Iterator[dict[str, Any]]:
            summary.sets[split] = 0
            for source_id, path, rows, error, factor in _map_in_chunks(pool, items, cfg):
                advance()
                if error is not None:
                    reason, message = error
                    fix = skip_fix(kind, reason, cfg.input)
                    source = path if kind == "folder" else source_id  # a pool row or a dataset row: by its id
                    summary.skip(source_id, reason, f"{message}; {fix}" if fix else message, source)
                    continue
                summary.used += 1
                summary.reduced_decodes += factor > 1
                for row in rows:
                    summary.licenses[row["license"] or "unknown"] += 1
                    summary.sets[split] += 1
                    yield row

        try:
            write_dataset_dict(
                cfg.out,
                {split: rows_of(items, split) for split, items in by_split.items()},
                ranked_features(cfg.k),
                description=encode_build_info(
                    {**cfg.params(), "input": str(cfg.input), "pool_commands": pool_commands(cfg.input)}
                ),
                card=lambda: ranked_set_card(cfg, summary),
                extra_files={SKIPPED_CSV: summary.skipped_csv},  # after the rows: it lists every picture skipped
                inputs=[cfg.input],
                notes=summary.notes,
            )
        except EmptySplitError as e:
            split = e.splits[0]
            raise EmptySplitError(_no_sets_message(cfg, summary, split, len(by_split[split])), e.splits) from e
    summary.seconds = time.perf_counter() - start
    return summary


def _no_sets_message(cfg: BuildConfig, summary: BuildSummary, split: str, pictures: int) -> str:
    """Why a split came out empty, and what to change; ``--out`` is untouched."""
    why = f"; e.g. {summary.skipped[0][1]}" if summary.skipped else ""
    fix = "a smaller --k or larger --s, or larger pictures"
    if cfg.r <= 1:  # the anchor may land on the border: no picture is large enough, while --r 2 fits most
        fix = "--r 2 or more (with --r 1 the anchor may fall on the border), a smaller --k or a larger --s"
    if SKIP_TOO_SMALL not in summary.skipped_by_reason:  # missing or unreadable files: --k and --s change nothing
        counts = ", ".join(f"{reason}: {n}" for reason, n in sorted(summary.skipped_by_reason.items()))
        fix = f"the fix named for each skipped picture ({counts})"
    if pictures == 0:  # an empty validation split needs a larger fraction, an empty train split a smaller one
        fix = "an input with pictures"  # `why` stays: entries refused unread (a nested pool, say) say what to pass
        if cfg.val_fraction:
            fix = f"a {'larger' if split == 'validation' else 'smaller'} --val-fraction or more pictures"
    return (
        f"no ranked sets for split {split!r}: {pictures} pictures went to it and {len(summary.skipped)} of "
        f"{summary.sources} were skipped{why}. Try {fix}; {cfg.out} was left as it was"
    )


def _map_in_chunks(
    pool: Any, items: Iterable[SourcePicture], cfg: BuildConfig, chunk: int = 64
) -> Iterator[tuple[str, str | None, list[dict[str, Any]], Skip | None, int]]:
    """Results in input order; at most ``chunk`` pictures in flight, so memory does not grow with the input."""
    batch: list[tuple[SourcePicture, BuildConfig]] = []
    for item in items:
        batch.append((item, cfg))
        if len(batch) == chunk:
            yield from (pool.map(_cut_sets_task, batch, chunksize=2) if pool else map(_cut_sets_task, batch))
            batch = []
    if batch:
        yield from (pool.map(_cut_sets_task, batch, chunksize=2) if pool else map(_cut_sets_task, batch))


def _ignore_interrupts() -> None:
    """Worker initializer: Ctrl-C is the main process's to handle. A worker that died of it mid-task would lose
    that task's result, and ``Pool.map`` would wait for it forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _worker_pool:
    """A process pool when num_proc > 1 (fork where available: workers inherit imports), else None.

    Workers ignore SIGINT; on Ctrl-C the main process stops and terminates them on the way out."""

    def __init__(self, num_proc: int):
        self.num_proc = num_proc
        self.pool: Any = None

    def __enter__(self) -> Any:
        if self.num_proc > 1:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            self.pool = mp.get_context(method).Pool(self.num_proc, initializer=_ignore_interrupts)
        return self.pool

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
