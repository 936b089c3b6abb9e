"""`harvest filter`: a zero-shot crowd-scene score for every pool picture, from CLIP prompt ensembles.

The classifier is built as open_clip's zero-shot classifiers are: for each class, every template is filled
with the class name, the text embeddings are normalised and averaged, and the mean is renormalised. The
image logits are ``100 * image @ classes.T``; after a softmax, ``clip_score`` is the probability mass of
the crowd classes. Image and text embeddings are cached in the pool, so changing ``--threshold`` re-scores
without loading the model.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harvest.decisions import (
    eligible_mask,
    kept_mask,
    lost_files_note,
    mark_decode_failures,
    mark_lost_files,
    revive_intact,
)
from harvest.errors import ConfigError

if TYPE_CHECKING:
    from harvest.pool import Pool

CROWD_CLASSES = (
    "a dense crowd of people",
    "a protest or demonstration",
    "a crowded train station",
    "a crowded shopping mall",
    "a packed stadium",
    "a crowded beach",
    "a street festival",
    "a concert audience",
    "a crowded market",
    "pilgrims at a mass gathering",
)
NEGATIVE_CLASSES = (
    "an empty street",
    "a portrait of a single person",
    "a landscape",
    "an object",
    "a page of text",
    "a drawing",
    "an empty room",
    "a small group of people",
    "an animal",
    "a building",
)
TEMPLATES = (
    "a photo of {}.",
    "a picture of {}.",
    "an image of {}.",
    "a blurry photo of {}.",
    "a wide-angle photo of {}.",
    "an aerial photo of {}.",
)
LOGIT_SCALE = 100.0
# A run saves its embeddings to the cache every SAVE_EVERY pictures or SAVE_SECONDS, whichever comes first: a kill
# loses at most that much work (a save is one small file, cheap beside embedding the pictures).
SAVE_EVERY = 1024
SAVE_SECONDS = 30.0
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class FilterConfig:
    """Options of ``harvest filter``; see the CLI help for each."""

    pool: Path
    model: str = "ViT-B-32"
    pretrained: str | None = "laion2b_s34b_b79k"
    checkpoint: Path | None = None
    threshold: float = 0.5
    batch_size: int = 64
    device: str = "auto"
    workers: int = 2
    save_every: int = SAVE_EVERY  # pictures embedded between two saves to the cache (also every SAVE_SECONDS)
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "pool", Path(self.pool))
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"--threshold {self.threshold} is not a probability; pass a value in [0, 1]")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size} must be >= 1 (e.g. 64 on CPU, 256 on a GPU)")
        if self.workers < 0:
            raise ConfigError(f"--workers {self.workers} must be >= 0 (0 decodes in the main process)")
        if self.save_every < 1:
            raise ConfigError(f"save_every {self.save_every} must be >= 1 (pictures embedded between two saves)")
        if not _DEVICE_PATTERN.match(self.device):
            raise ConfigError(f"--device {self.device!r} is not one of auto, cpu, mps, cuda, cuda:N")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise ConfigError(f"--checkpoint {self.checkpoint} is not a file; pass an open_clip checkpoint (.pt)")
        if self.checkpoint is None and not self.pretrained:
            raise ConfigError("pass --pretrained TAG (e.g. laion2b_s34b_b79k) or --checkpoint PATH for the weights")


@dataclass
class FilterSummary:
    """What a filter run did, for the end-of-run table."""

    eligible: int = 0
    embedded: int = 0
    from_cache: int = 0
    failed: int = 0
    lost_files: int = 0
    revived: int = 0
    above_threshold: int = 0
    kept: int = 0
    model_loaded: bool = False
    model: str = ""
    threshold: float = 0.5
    failures: dict[str, str] = field(default_factory=dict)

    def table(self) -> Any:
        """A rich table of the counts, for the end of the run."""
        from rich.table import Table

        table = Table(title=f"harvest filter ({self.model}, threshold {self.threshold:g})")
        table.add_column("what")
        table.add_column("count", justify="right")
        for label, value in (
            ("eligible pictures", self.eligible),
            ("embedded now", self.embedded),
            ("embeddings from the cache", self.from_cache),
            ("undecodable pictures (status decode_error)", self.failed),
            ("rows whose stored file is gone or changed since (status decode_error)", self.lost_files),
            ("decode_error pictures whose file is back intact (status ok again)", self.revived),
            ("scored >= threshold", self.above_threshold),
            ("rows kept (also after dedup)", self.kept),
            ("model weights loaded", self.weights_line()),
        ):
            table.add_row(label, str(value))
        return table

    def weights_line(self) -> str:
        """Whether the CLIP weights were loaded, and why not: every picture came from the cache, or there was none."""
        if self.model_loaded:
            return "yes"
        return "no (cached embeddings)" if self.from_cache else "no (no pictures to score)"

    def notes(self) -> list[str]:
        """What needs doing after the run, one line each (printed under the table)."""
        if not self.lost_files:
            return []
        return [lost_files_note(self.lost_files)]


def prompt_fingerprint(classnames: Sequence[str], templates: Sequence[str]) -> str:
    """A short digest of a prompt set: cached text embeddings are only reused for the same prompts."""
    return hashlib.sha256(json.dumps([list(classnames), list(templates)]).encode()).hexdigest()[:12]


def class_embeddings(model: Any, tokenizer: Any, classnames: Sequence[str], templates: Sequence[str], device: Any):
    """(C, D) class embeddings: the renormalised mean of each class's normalised template embeddings."""
    import torch

    texts = [template.format(name) for name in classnames for template in templates]
    with torch.inference_mode():
        embedded = model.encode_text(tokenizer(texts).to(device), normalize=True).float()  # (C * T, D)
    per_class = embedded.reshape(len(classnames), len(templates), -1).mean(dim=1)  # (C, D)
    return torch.nn.functional.normalize(per_class, dim=-1).cpu().numpy()


def crowd_scores(image_embeddings: np.ndarray, classes: np.ndarray, crowd_classes: int) -> np.ndarray:
    """Softmax mass of the first ``crowd_classes`` classes for each (normalised) image embedding."""
    logits = LOGIT_SCALE * np.asarray(image_embeddings, dtype=np.float64) @ np.asarray(classes, dtype=np.float64).T
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs[:, :crowd_classes].sum(axis=1)


def filter_pool(config: FilterConfig) -> FilterSummary:
    """Score every eligible pool picture, cache embeddings, and rewrite ``clip_*`` and ``kept`` atomically."""
    from harvest.pool import Pool

    pool = Pool.open(config.pool)
    with pool.lock("filter"), pool.logged_if_failed(stage="filter"):  # no rows may be added from read to rewrite
        return _filter_locked(pool, config)


def _filter_locked(pool: Pool, config: FilterConfig) -> FilterSummary:
    from harvest.embed import EmbeddingCache, load_clip, model_tag
    from harvest.errors import ModelUnavailableError

    df = pool.read_index()
    summary = FilterSummary(threshold=config.threshold)
    df, revived = revive_intact(df, pool.holds_intact)
    check, checked = pool.stored_file_check()
    df, summary.lost_files = mark_lost_files(df, check)  # a stat each: embeddings may be cached
    tag = model_tag(config.model, config.pretrained, config.checkpoint)
    summary.model = tag
    cache = EmbeddingCache(pool.root, tag)
    classnames = list(CROWD_CLASSES) + list(NEGATIVE_CLASSES)
    fingerprint = prompt_fingerprint(classnames, TEMPLATES)

    eligible = df[eligible_mask(df)].drop_duplicates("id")
    summary.eligible = len(eligible)
    cached_ids, cached = cache.load()
    known = set(cached_ids)
    missing = eligible[~eligible["id"].isin(known)]
    summary.from_cache = len(eligible) - len(missing)
    classes = cache.load_text(fingerprint)

    if len(missing) or (classes is None and len(eligible)):  # an empty pool needs no model
        try:
            bundle = load_clip(config.model, config.pretrained, config.checkpoint, config.device)
        except ModelUnavailableError as e:
            others = [t for t in EmbeddingCache.tags(pool.root) if t != tag]
            if not others:
                raise
            raise ModelUnavailableError(
                f"{e}. This pool has embeddings cached for {', '.join(others)} (model__weights); to re-score with "
                f"those, pass the same --model and --pretrained or --checkpoint that made them: no model is loaded"
            ) from e
        summary.model_loaded = True
        if classes is None:
            classes = class_embeddings(bundle.model, bundle.tokenizer, classnames, TEMPLATES, bundle.device)
            cache.save_text(fingerprint, classes)
        if len(missing):
            paths = [str(pool.path_of(p)) for p in missing["path"]]
            saver = ShardSaver(cache, missing["id"].tolist(), config.save_every, SAVE_SECONDS)
            try:
                _, errors = _embed_with_progress(bundle, paths, config, saver.add)
            finally:  # also on Ctrl-C: what was embedded is kept
                saver.flush()
            summary.failures = {i: e for i, e in zip(missing["id"], errors, strict=True) if e}
            summary.embedded = saver.saved
            summary.failed = len(summary.failures)
    cache.consolidate()  # also the shards of an earlier, killed run
    cached_ids, cached = cache.load()

    position = {image_id: k for k, image_id in enumerate(cached_ids)}
    scores = crowd_scores(cached, classes, len(CROWD_CLASSES)) if len(cached) and classes is not None else []
    score_of = {image_id: float(scores[position[image_id]]) for image_id in eligible["id"] if image_id in position}
    df = mark_decode_failures(df, summary.failures, pool.holds_intact)
    summary.revived = len(revived - set(summary.failures))
    df["clip_score"] = df["id"].map(score_of).astype("float64")
    df["clip_model"] = np.where(df["clip_score"].notna(), tag, None)
    df["clip_kept"] = np.where(df["clip_score"].notna(), df["clip_score"] >= config.threshold, None)
    df["kept"] = kept_mask(df)
    pool.rewrite(df)
    pool.log_command(stage="filter", model=tag, threshold=config.threshold, **checked)
    summary.above_threshold = int(sum(score >= config.threshold for score in score_of.values()))
    summary.kept = int(df["kept"].sum())
    return summary


class ShardSaver:
    """Saves embeddings to the cache as they come (:meth:`EmbeddingCache.add_shard`), every ``every`` pictures or
    ``seconds``, so a killed filter run embeds again only what it had not saved."""

    def __init__(self, cache: Any, ids: list[str], every: int, seconds: float) -> None:
        self.cache, self.ids, self.every, self.seconds = cache, ids, every, seconds
        self.pending_ids: list[str] = []
        self.pending: list[np.ndarray] = []
        self.saved = 0
        self._last = time.monotonic()

    def add(self, positions: np.ndarray, embeddings: np.ndarray, errors: list[str]) -> None:
        """One batch from :func:`harvest.embed.embed_pictures` (positions into ``ids``); failures are not saved."""
        good = [k for k, error in enumerate(errors) if not error]
        self.pending_ids += [self.ids[int(positions[k])] for k in good]
        self.pending.append(embeddings[good])
        if len(self.pending_ids) >= self.every or time.monotonic() - self._last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.pending_ids:
            self.cache.add_shard(self.pending_ids, np.concatenate(self.pending))
            self.saved += len(self.pending_ids)
        self.pending_ids, self.pending = [], []
        self._last = time.monotonic()


def _embed_with_progress(
    bundle: Any, paths: list[str], config: FilterConfig, on_batch: Any = None
) -> tuple[np.ndarray, list[str]]:
    from rich.progress import Progress

    from harvest.embed import embed_pictures

    with Progress(disable=not config.progress, transient=True) as progress:
        task = progress.add_task("embedding pictures", total=len(paths))
        return embed_pictures(
            bundle,
            paths,
            batch_size=config.batch_size,
            workers=config.workers,
            on_progress=lambda n: progress.advance(task, n),
            on_batch=on_batch,
        )
