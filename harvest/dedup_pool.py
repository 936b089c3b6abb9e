"""`harvest dedup`: mark exact and near-duplicate pictures, and near-copies of evaluation images, in a pool.

Steps: hash every eligible picture once (pHash + dHash, stored in the pool so a re-run with another
threshold decodes nothing); group near-duplicates transitively (:mod:`harvest.dedup`), optionally merging
groups whose cached CLIP embeddings are nearly identical; keep the largest picture of each group and give
the others ``dup_of``; give ``leak_of`` to every group that near-copies an evaluation image. Evidence
columns are recomputed from scratch on every run, so re-running is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harvest.decisions import (
    BY_EXCLUDE_LIKE,
    FAILED_DECODE,
    LEAK_BY,
    eligible_mask,
    kept_mask,
    lost_files_note,
    mark_decode_failures,
    mark_lost_files,
    revive_intact,
)
from harvest.dedup import Components, cosine_blocks, near_duplicate_groups, representatives
from harvest.errors import ConfigError
from harvest.hashing import hash_files, hex_to_uint64
from harvest.leakage import leak_mark_origins, refuse_the_pool_as_evaluation_set

if TYPE_CHECKING:
    from harvest.leakage import ExclusionSet
    from harvest.pool import Pool

# Defaults chosen on the generated test pictures (tests/harvest/test_dedup.py): resized, re-compressed,
# brightened and 2%-cropped copies stay within 10 bits on both hashes; distinct scenes were >= 16 apart.
DEFAULT_PHASH_THRESHOLD = 10
DEFAULT_DHASH_THRESHOLD = 10


@dataclass(frozen=True)
class DedupConfig:
    """Options of ``harvest dedup``; see the CLI help for each."""

    pool: Path
    threshold: int = DEFAULT_PHASH_THRESHOLD
    dhash_threshold: int | None = None  # None: the same as ``threshold``
    exclude_like: tuple[str, ...] = ()
    clear_leaks: bool = False  # drop the leak_of marks of earlier --exclude-like runs first; exclude_like re-marks
    clear_all_leaks: bool = False  # drop qbe's test-split guard marks too (and those of unknown origin)
    clip_threshold: float | None = None
    clip_model: str | None = None  # an embedding-cache tag; None: the newest cache in the pool
    workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "pool", Path(self.pool))
        for flag, value in (("--threshold", self.threshold), ("--dhash-threshold", self.dhash_threshold)):
            if value is not None and not 0 <= value <= 32:
                raise ConfigError(f"{flag} {value} is out of range; pass Hamming bits in 0..32 (default 10)")
        if self.clip_threshold is not None and not 0.0 < self.clip_threshold <= 1.0:
            raise ConfigError(f"--clip-threshold {self.clip_threshold} must be a cosine in (0, 1], e.g. 0.94")
        if self.workers < 0:
            raise ConfigError(f"--workers {self.workers} must be >= 0 (0: one per core)")
        refuse_the_pool_as_evaluation_set(self.exclude_like, self.pool)

    @property
    def dhash_bits(self) -> int:
        return self.threshold if self.dhash_threshold is None else self.dhash_threshold


@dataclass
class DedupSummary:
    """What a dedup run did, for the end-of-run table."""

    eligible_rows: int = 0
    unique_images: int = 0
    hashed: int = 0
    hashes_reused: int = 0
    decode_failures: int = 0
    lost_files: int = 0
    revived: int = 0
    exact_duplicate_rows: int = 0
    near_duplicate_groups: int = 0
    near_duplicate_images: int = 0
    clip_merged_pairs: int = 0
    exclusion_images: int = 0
    exclusion_failures: int = 0
    leaked_images: int = 0
    leaks_cleared: int = 0
    leaks_kept_guard: int = 0
    clear_asked: str = ""  # the flag that asked to clear marks, for the notes
    kept: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    def table(self) -> Any:
        """A rich table of the counts, for the end of the run."""
        from rich.table import Table

        table = Table(title="harvest dedup")
        table.add_column("what")
        table.add_column("count", justify="right")
        for label, value in (
            ("eligible rows (status ok, stored)", self.eligible_rows),
            ("unique pictures hashed now", self.hashed),
            ("unique pictures with stored hashes", self.hashes_reused),
            ("undecodable pictures (status decode_error)", self.decode_failures),
            ("rows whose stored file is gone or changed since (status decode_error)", self.lost_files),
            ("decode_error pictures whose file is back intact (status ok again)", self.revived),
            ("byte-identical re-found rows", self.exact_duplicate_rows),
            ("near-duplicate groups", self.near_duplicate_groups),
            ("near-duplicate pictures marked dup_of", self.near_duplicate_images),
            ("pairs merged by CLIP similarity", self.clip_merged_pairs),
            ("evaluation images (--exclude-like)", self.exclusion_images),
            ("evaluation images that failed to decode", self.exclusion_failures),
            ("pictures marked leak_of", self.leaked_images),
            ("earlier leak_of marks cleared, less those made again (--clear-leaks)", self.leaks_cleared),
            ("qbe test-split guard marks kept by --clear-leaks", self.leaks_kept_guard),
            ("rows kept", self.kept),
        ):
            table.add_row(label, str(value))
        return table

    def notes(self) -> list[str]:
        """What was done or needs doing after the run, one line each (printed under the table)."""
        notes = [lost_files_note(self.lost_files)] if self.lost_files else []
        if self.clear_asked:
            notes.append(
                f"{self.clear_asked} cleared {self.leaks_cleared} earlier leak_of mark(s) and kept "
                f"{self.leaks_kept_guard} made by `harvest qbe`'s test-split guard (or of unknown origin on qbe rows): "
                "they keep the test images of the examples' dataset out of training"
                + ("; --clear-all-leaks drops them too" if self.leaks_kept_guard else "")
            )
        return notes


def _hash_missing(pool: Pool, images: pd.DataFrame, config: DedupConfig, summary: DedupSummary) -> pd.DataFrame:
    """Fill ``phash``/``dhash`` of the unique images that lack them; decode failures go to the summary."""
    from rich.progress import Progress

    missing = images[images["phash"].isna() | images["dhash"].isna()]
    summary.hashes_reused = len(images) - len(missing)
    if len(missing) == 0:
        return images
    with Progress(disable=not config.progress, transient=True) as progress:
        task = progress.add_task("hashing pictures", total=len(missing))
        results = hash_files(
            [(i, pool.path_of(p)) for i, p in zip(missing["id"], missing["path"], strict=True)],
            workers=config.workers,
            on_progress=lambda n: progress.advance(task, n),
        )
    by_id = {r.key: r for r in results}
    images = images.copy()
    fill = images["id"].isin(by_id)
    images.loc[fill, "phash"] = [by_id[i].phash for i in images.loc[fill, "id"]]
    images.loc[fill, "dhash"] = [by_id[i].dhash for i in images.loc[fill, "id"]]
    summary.failures = {r.key: r.error for r in results if r.error is not None}
    summary.hashed = len(results) - len(summary.failures)
    summary.decode_failures = len(summary.failures)
    return images


def _merge_by_clip(pool_root: Path, ids: list[str], labels: np.ndarray, config: DedupConfig) -> tuple[np.ndarray, int]:
    """Join hash groups whose pictures' cached CLIP embeddings reach ``clip_threshold`` cosine similarity."""
    from harvest.embed import EmbeddingCache

    tags = EmbeddingCache.tags(pool_root)
    tag = config.clip_model or (tags[0] if tags else None)
    if tag is None or tag not in tags:
        raise ConfigError(
            f"--clip-threshold needs cached CLIP embeddings in {pool_root}/embeddings (found: {tags or 'none'}); "
            f"run `harvest filter {pool_root}` first"
        )
    cached_ids, embeddings = EmbeddingCache(pool_root, tag).load()
    row_of = {image_id: k for k, image_id in enumerate(cached_ids)}
    present = [k for k, image_id in enumerate(ids) if image_id in row_of]
    if not present:
        return labels, 0
    present_arr = np.asarray(present)
    groups, pairs = Components(int(labels.max()) + 1), 0  # streamed: near-identical frames make ~N^2/2 pairs
    for i, j in cosine_blocks(embeddings[[row_of[ids[k]] for k in present]], config.clip_threshold):
        groups.add(labels[present_arr[i]], labels[present_arr[j]])
        pairs += len(i)
    return groups.labels()[labels], pairs


def _text_column(df: pd.DataFrame, values: list[str | None]) -> pd.Series:
    """A nullable text column aligned with ``df`` (object dtype, so an all-null column stays assignable)."""
    return pd.Series(values, index=df.index, dtype=object)


def _earlier_leak_marks(
    pool: Pool, df: pd.DataFrame, config: DedupConfig, summary: DedupSummary
) -> tuple[dict[str, str], dict[str, str | None], set[str]]:
    """The leak marks already in the pool that this run keeps (``id -> leak_of`` and ``id -> leak_by``) and the ids
    whose marks it clears.

    Leak marks are sticky: a mark set by an earlier run (dedup with other --exclude-like sets, or qbe's automatic
    test-split guard) is never dropped by a later run that was not given the same sets, unless it is asked to.
    --clear-leaks drops the marks of earlier --exclude-like runs (a wrong evaluation set) and keeps the guard's, which
    no --exclude-like made; --clear-all-leaks drops those too. This run's --exclude-like then marks afresh.
    """
    earlier = {}
    if "leak_of" in df.columns:
        earlier = {
            i: k for i, k in zip(df["id"], df["leak_of"], strict=True) if isinstance(i, str) and isinstance(k, str)
        }
    origin = leak_mark_origins(df, _a_qbe_run_guarded(pool))
    if config.clear_all_leaks:
        cleared = set(earlier)
        summary.clear_asked = "--clear-all-leaks"
    elif config.clear_leaks:
        cleared = {i for i in earlier if origin.get(i) == BY_EXCLUDE_LIKE}
        summary.leaks_kept_guard = len(earlier) - len(cleared)
        summary.clear_asked = "--clear-leaks"
    else:
        cleared = set()
    kept = {i: k for i, k in earlier.items() if i not in cleared}
    return kept, {i: origin.get(i) for i in kept}, cleared


def _a_qbe_run_guarded(pool: Pool) -> bool:
    """Whether a ``harvest qbe`` run on the pool had evaluation images to guard against (so it may have marked)."""
    return any(entry.get("command") == "qbe" and entry.get("leakage_guard") for entry in pool.finished_commands())


def dedup_pool(config: DedupConfig) -> DedupSummary:
    """Mark duplicates and leaks in the pool: columns ``phash``, ``dhash``, ``dup_of``, ``leak_of`` and ``kept``."""
    from harvest.leakage import ExclusionSet, load_exclusion_set
    from harvest.pool import Pool

    exclusions = ExclusionSet()
    for spec in config.exclude_like:  # before any pool work: a bad --exclude-like fails at once
        exclusions.extend(load_exclusion_set(spec, workers=config.workers))
    pool = Pool.open(config.pool)
    with pool.lock("dedup"), pool.logged_if_failed(stage="dedup"):  # no rows may be added from read to rewrite
        return _dedup_locked(pool, config, exclusions)


def _dedup_locked(pool: Pool, config: DedupConfig, exclusions: ExclusionSet) -> DedupSummary:
    from harvest.leakage import find_leaks

    df = pool.read_index()
    if "dhash" not in df.columns:
        df["dhash"] = None
    summary = DedupSummary(exclusion_images=len(exclusions.keys), exclusion_failures=len(exclusions.failures))
    df, revived = revive_intact(df, pool.holds_intact)
    check, checked = pool.stored_file_check()
    df, summary.lost_files = mark_lost_files(df, check)  # a stat each: hashes may be stored

    eligible = eligible_mask(df)
    summary.eligible_rows = int(eligible.sum())
    images = df.loc[eligible, ["id", "path", "width", "height", "bytes", "phash", "dhash"]]
    images = images.groupby("id", sort=False).first().reset_index()  # one row per stored picture
    images = _hash_missing(pool, images, config, summary)
    df = mark_decode_failures(df, summary.failures, pool.holds_intact)
    summary.revived = len(revived - set(summary.failures))
    images = images[images["phash"].notna() & images["dhash"].notna()].reset_index(drop=True)
    summary.unique_images = len(images)

    phash, dhash = hex_to_uint64(images["phash"]), hex_to_uint64(images["dhash"])
    labels = near_duplicate_groups(phash, dhash, config.threshold, config.dhash_bits, workers=config.workers)
    if config.clip_threshold is not None and len(images):
        labels, summary.clip_merged_pairs = _merge_by_clip(pool.root, images["id"].tolist(), labels, config)
    area = images["width"].fillna(0).astype(np.int64) * images["height"].fillna(0).astype(np.int64)
    rank = np.empty(len(images), dtype=np.int64)
    rank[np.lexsort((images["bytes"].fillna(0).to_numpy(), area.to_numpy()))] = np.arange(len(images))
    reps = representatives(labels, rank)  # the largest picture (then the most bytes) of each group
    ids = images["id"].to_numpy()
    dup_of = {ids[k]: ids[r] for k, r in enumerate(reps.tolist()) if r != k}
    group_sizes = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    summary.near_duplicate_groups = int((group_sizes > 1).sum())
    summary.near_duplicate_images = len(dup_of)

    leak_of, leak_by, cleared = _earlier_leak_marks(pool, df, config, summary)
    if len(exclusions.keys) and len(images):
        direct = find_leaks(phash, dhash, exclusions, config.threshold, config.dhash_bits)
        key_of_label: dict[int, str] = {}
        for position, key in direct.items():
            key_of_label.setdefault(int(labels[position]), key)
        for k, lab in enumerate(labels.tolist()):
            if lab in key_of_label and leak_by.get(ids[k], BY_EXCLUDE_LIKE) == BY_EXCLUDE_LIKE:  # never the guard's
                leak_of[ids[k]] = key_of_label[int(lab)]
                leak_by[ids[k]] = BY_EXCLUDE_LIKE
    summary.leaked_images = len(leak_of)
    summary.leaks_cleared = len(cleared - set(leak_of))  # a mark this run's --exclude-like makes again stays

    eligible = eligible_mask(df).tolist()
    row_ids = df["id"].tolist()
    phash_of = dict(zip(images["id"], images["phash"], strict=True))
    dhash_of = dict(zip(images["id"], images["dhash"], strict=True))
    refound = df["id"].notna() & df["id"].duplicated(keep="first")  # same bytes found at another URL
    dup_column = [
        (dup_of.get(i) or (i if again else None)) if ok else None
        for i, ok, again in zip(row_ids, eligible, refound.tolist(), strict=True)
    ]
    df["phash"] = _text_column(df, [phash_of.get(i) for i in row_ids])
    df["dhash"] = _text_column(df, [dhash_of.get(i) for i in row_ids])
    df["dup_of"] = _text_column(df, dup_column)
    # A picture whose file is missing or damaged keeps its mark: once its bytes are back it is judged again, and a
    # leak that only an earlier run's --exclude-like (or qbe's guard) found must not come back as kept.
    marked = (pd.Series(eligible, index=df.index) | df["status"].eq(FAILED_DECODE)).tolist()
    df["leak_of"] = _text_column(df, [leak_of.get(i) if ok else None for i, ok in zip(row_ids, marked, strict=True)])
    df[LEAK_BY] = _text_column(df, [leak_by.get(i) if ok else None for i, ok in zip(row_ids, marked, strict=True)])
    summary.exact_duplicate_rows = int((refound & pd.Series(eligible, index=df.index)).sum())
    df["kept"] = kept_mask(df)
    pool.rewrite(df)
    pool.log_command(
        stage="dedup",
        **checked,
        threshold=config.threshold,
        dhash_threshold=config.dhash_bits,
        clip_threshold=config.clip_threshold,
        exclude_like=list(config.exclude_like),
        clear_leaks=config.clear_leaks,
        clear_all_leaks=config.clear_all_leaks,
    )
    summary.kept = int(df["kept"].sum())
    return summary
