"""``harvest qbe``: query-by-example collection, the paper's second method, into the same pool.

Each example picture (every picture of a folder, or the ``train`` split of a labeled dataset) is sent to each
backend of ``--sources``, and its first ``--per-query`` answers (the paper kept ten) become pool rows:

- ``clip-knn``: a self-hosted clip-retrieval k-NN back end (:mod:`harvest.sources.clip_knn`), fetched like any
  search result by :func:`harvest.collect.collect`;
- ``google-lens``: Google Lens visual matches through SerpApi (:mod:`harvest.sources.google_lens`), likewise;
- ``local``: the nearest pictures of another pool by CLIP similarity, copied over (:mod:`harvest.qbe_local`).

Every row has mode ``qbe``, ``query`` = the example id that first found it, ``found_by`` = every
``source:example`` that found it (one row and one fetch per URL), ``similarity`` (the backend's score for
``query``; empty for Google Lens, which gives none) and ``rank`` (1 = best). A failure of one example (no public
URL, a refused request, an unreadable picture) is counted and reported; the run goes on.

Leakage guard: when the examples are a dataset, its ``test`` split (plus every ``--exclude-like`` set) is
loaded before anything is fetched, and every qbe picture in the pool that near-copies one of its images gets
``leak_of`` and ``kept = False``. Scores, ranks, hashes and leaks are written in one pool rewrite at the end;
a killed run's rows get them on the next run, which fetches nothing twice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harvest.collect import collect, make_search_session
from harvest.decisions import BY_QBE_GUARD, LEAK_BY
from harvest.errors import ConfigError, FetchError, SourceError
from harvest.fetch import FetchConfig
from harvest.leakage import ExclusionSet, refuse_the_pool_as_evaluation_set
from harvest.pool import Pool
from harvest.qbe_local import ClipEmbedder, Embedder, copied_row, exact_knn, pool_vectors
from harvest.sources.by_example import Example, ExampleSearchSource, Match
from harvest.sources.clip_knn import DEFAULT_INDEX, ClipKnnSource
from harvest.sources.google_lens import GoogleLensSource, NoPublicUrlError
from harvest.writer import PoolWriter, Summary, compact_pool, known_found_by, run_progress, with_notes

WEB_BACKENDS: dict[str, type[ExampleSearchSource]] = {"clip-knn": ClipKnnSource, "google-lens": GoogleLensSource}
BACKENDS = (*WEB_BACKENDS, "local")
DEFAULT_LEAK_THRESHOLD = 10  # pHash/dHash bits, as harvest dedup's default


@dataclass(frozen=True)
class QbeConfig:
    """``harvest qbe``: which examples, which backends, how many answers each, and where the pool is."""

    out: Path
    examples: str
    sources: tuple[str, ...] = ("clip-knn",)
    per_query: int = 10
    endpoints: dict[str, str] = field(default_factory=dict)
    public_url_prefix: str | None = None
    from_pool: Path | None = None
    exclude_like: tuple[str, ...] = ()
    knn_index: str = DEFAULT_INDEX
    knn_query: str = "image"  # "image": send the picture; "embedding": send its CLIP vector (same model as the index)
    model: str = "ViT-B-32"
    pretrained: str | None = "laion2b_s34b_b79k"
    checkpoint: str | None = None
    device: str = "auto"
    leak_threshold: int = DEFAULT_LEAK_THRESHOLD
    fetch: FetchConfig = field(default_factory=FetchConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "sources", tuple(s.strip() for s in self.sources))
        if self.from_pool is not None:
            object.__setattr__(self, "from_pool", Path(self.from_pool))
        if not str(self.examples).strip():
            raise ConfigError("--examples is empty; pass a folder of pictures, a labeled dataset folder or a Hub id")
        unknown = [s for s in self.sources if s not in BACKENDS]
        if not self.sources or unknown:
            raise ConfigError(f"--sources {','.join(self.sources)!r}: pass one or more of {', '.join(BACKENDS)}")
        if len(set(self.sources)) != len(self.sources):
            raise ConfigError(f"--sources {','.join(self.sources)} names a backend twice")
        if not 1 <= self.per_query <= 1000:
            raise ConfigError(f"--per-query must be between 1 and 1000 (the paper used 10), got {self.per_query}")
        for name, url in self.endpoints.items():
            if name not in WEB_BACKENDS or name not in self.sources:
                raise ConfigError(f"--endpoint {name}={url}: {name!r} is not a web backend in --sources")
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"--endpoint {name}={url}: the endpoint must be an http(s) URL")
        if "clip-knn" in self.sources and not self.endpoints.get("clip-knn"):
            raise ConfigError(
                "--sources clip-knn needs --endpoint clip-knn=URL (a clip-retrieval back end you host; there is no "
                "default because the public LAION service is down), e.g. --endpoint clip-knn=http://my-host:1234"
            )
        if ("local" in self.sources) != (self.from_pool is not None):
            raise ConfigError("--sources local and --from-pool POOL go together: local ranks the pictures of that pool")
        if self.from_pool is not None and self.from_pool.resolve() == self.out.resolve():
            raise ConfigError(f"--out {self.out} is --from-pool too; qbe copies the nearest pictures into another pool")
        if self.public_url_prefix and not self.public_url_prefix.startswith(("http://", "https://")):
            raise ConfigError(f"--public-url-prefix {self.public_url_prefix!r} must be an http(s) URL prefix")
        if self.knn_query not in ("image", "embedding"):
            raise ConfigError(f"--knn-query {self.knn_query!r}: pass image (send the picture) or embedding")
        if not 0 <= self.leak_threshold <= 32:
            raise ConfigError(f"--leak-threshold {self.leak_threshold} is out of range; pass Hamming bits in 0..32")
        refuse_the_pool_as_evaluation_set(self.exclude_like, self.out)

    @property
    def needs_embedder(self) -> bool:
        return "local" in self.sources or ("clip-knn" in self.sources and self.knn_query == "embedding")

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.update(out=str(self.out), from_pool=None if self.from_pool is None else str(self.from_pool))
        return record


@dataclass
class QbeSummary:
    """What a qbe run did: the fetch summary (rows by source and status) plus the per-example picture."""

    fetch: Summary
    examples: int = 0
    searches: int = 0  # (example, backend) searches that answered
    matches: int = 0
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)  # (backend, reason) -> examples
    exclusion_images: int = 0
    leaks: int = 0
    notes: list[str] = field(default_factory=list)

    def fail(self, backend: str, example_id: str, error: BaseException) -> None:
        """Record one example a backend could not answer, with the reason class and the message."""
        if isinstance(error, NoPublicUrlError):
            reason = "no_public_url"
        elif isinstance(error, FetchError):
            reason = "search_error"
        elif isinstance(error, SourceError):
            reason = "bad_answer"
        elif isinstance(error, OSError):
            reason = "unreadable_example"
        else:
            reason = "internal_error"
        self.failures[(backend, reason)] += 1
        self.fetch.search_failures.append(f"{backend} {example_id}: {type(error).__name__}: {error}")

    def table(self) -> Any:
        """A rich table of the per-example counts (the fetch table lists the rows)."""
        from rich.table import Table

        table = Table(title=f"harvest qbe: {self.examples} examples, {self.searches} searches answered")
        table.add_column("what")
        table.add_column("count", justify="right")
        table.add_row("matches returned", str(self.matches))
        for (backend, reason), count in sorted(self.failures.items()):
            table.add_row(f"{backend}: examples failed ({reason})", str(count), style="yellow")
        table.add_row("evaluation images guarded against", str(self.exclusion_images))
        table.add_row("pictures marked leak_of (kept = False)", str(self.leaks), style="yellow" if self.leaks else None)
        return with_notes(table, "; ".join(self.notes) or None)

    def to_record(self) -> dict[str, Any]:
        return {
            **self.fetch.to_record(),
            "examples": self.examples,
            "searches": self.searches,
            "matches": self.matches,
            "example_failures": {f"{b}/{r}": n for (b, r), n in sorted(self.failures.items())},
            "exclusion_images": self.exclusion_images,
            "leaks": self.leaks,
        }


def harvest_qbe(config: QbeConfig, embedder: Embedder | None = None) -> QbeSummary:
    """Search every example in every backend and store what they find in the pool at ``config.out``.

    ``embedder`` replaces the CLIP model (tests pass a tiny one); it is needed by ``local`` and by
    ``--knn-query embedding``. Bad arguments, a missing key or model fail here before the pool is touched.
    """
    from harvest.leakage import load_exclusion_set
    from harvest.qbe_examples import open_examples

    started = time.monotonic()
    session = make_search_session(config.fetch)
    try:
        web = [_make_backend(name, config, session) for name in config.sources if name in WEB_BACKENDS]
        from_pool = Pool.open(config.from_pool) if config.from_pool is not None else None
        with ExitStack() as held:
            example_set = held.enter_context(open_examples(config.examples, config.public_url_prefix))
            guarded = ([example_set.test_split_of] if example_set.test_split_of else []) + list(config.exclude_like)
            exclusions = ExclusionSet()
            for spec in guarded:
                exclusions.extend(load_exclusion_set(spec))
            # the model last: a missing --examples or --exclude-like set is named before a missing CLIP checkpoint
            if embedder is None and config.needs_embedder:
                embedder = ClipEmbedder(config.model, config.pretrained, config.checkpoint, config.device)
            pool = Pool.create(config.out)
            held.enter_context(pool.lock("qbe"))  # one writer at a time: a second run into this pool fails at once
            pool.log_command(command="qbe", config=config.to_record(), leakage_guard=guarded)
            examples = example_set.examples
            vectors = _example_vectors(examples, embedder) if embedder is not None and config.needs_embedder else {}
            scores: dict[tuple[str, str, str], tuple[float | None, int]] = {}
            result = QbeSummary(Summary("qbe"), examples=len(examples), exclusion_images=len(exclusions.keys))
            result.notes += example_set.notes
            if web:
                candidates = _web_candidates(web, examples, config, vectors, scores, result)
                result.fetch = _merge_into(collect(pool, candidates, config.fetch, command="qbe"), result.fetch)
            if from_pool is not None and embedder is not None:
                _collect_local(pool, from_pool, examples, vectors, embedder, config, result)
            finalize_pool(pool, scores, exclusions, config.leak_threshold, result)
            result.fetch.add_source_counts(web)
    finally:
        session.close()
    result.fetch.elapsed_s = time.monotonic() - started
    return result


def _make_backend(name: str, config: QbeConfig, session: Any) -> ExampleSearchSource:
    """One web backend on the shared search session; a missing endpoint or API key raises ConfigError here."""
    options: dict[str, Any] = {"index": config.knn_index} if name == "clip-knn" else {}
    timeout = config.fetch.timeout
    return WEB_BACKENDS[name](endpoint=config.endpoints.get(name), session=session, timeout=timeout, **options)


def _merge_into(fetched: Summary, earlier: Summary) -> Summary:
    """The fetch summary with the search failures recorded before it (while its candidates were produced)."""
    fetched.search_failures = earlier.search_failures + fetched.search_failures
    return fetched


def _example_vectors(examples: list[Example], embedder: Embedder) -> dict[str, np.ndarray]:
    """Each example's embedding by id; an example that cannot be embedded has none (its searches fail later)."""
    vectors, errors = embedder([example.path for example in examples])
    return {ex.example_id: vectors[k] for k, ex in enumerate(examples) if not errors[k]}


def _web_candidates(
    backends: list[ExampleSearchSource],
    examples: list[Example],
    config: QbeConfig,
    vectors: dict[str, np.ndarray],
    scores: dict[tuple[str, str, str], tuple[float | None, int]],
    result: QbeSummary,
) -> Iterator[Any]:
    """Every backend's matches for every example, lazily (downloads start while later examples are searched)."""
    for example in examples:
        for backend in backends:
            embedding = None
            if backend.name == "clip-knn" and config.knn_query == "embedding":
                embedding = vectors.get(example.example_id)
                if embedding is None:
                    result.fail(backend.name, example.example_id, OSError("the example picture could not be embedded"))
                    continue
            try:
                matches: list[Match] = backend.search_example(example, config.per_query, embedding)
            except Exception as e:  # one example failing (refused, bad answer, no URL) must not end the run
                result.fail(backend.name, example.example_id, e)
                continue
            result.searches += 1
            result.matches += len(matches)
            for match in matches:
                key = (match.candidate.url, backend.name, example.example_id)
                scores.setdefault(key, (match.similarity, match.rank))
                yield match.candidate


def _collect_local(
    pool: Pool,
    from_pool: Pool,
    examples: list[Example],
    vectors: dict[str, np.ndarray],
    embedder: Embedder,
    config: QbeConfig,
    result: QbeSummary,
) -> None:
    """The ``local`` backend: nearest pictures of ``from_pool`` per example, copied into ``pool`` once per URL."""
    summary = result.fetch
    for example in examples:
        if example.example_id not in vectors:
            result.fail("local", example.example_id, OSError("the example picture could not be embedded"))
    queries = [example for example in examples if example.example_id in vectors]
    with run_progress(config.fetch.show_progress, "embedding --from-pool") as progress:
        candidates = pool_vectors(from_pool, embedder, progress)
    if candidates.failures:
        result.notes.append(f"{len(candidates.failures)} pictures of --from-pool could not be embedded")
    if candidates.unreviewed:
        result.notes.append(
            f"{candidates.unreviewed} pictures of --from-pool were added after its last dedup/filter and are left "
            "out until they are judged: run harvest dedup (and filter) on it again"
        )
    if not candidates.rows:
        result.notes.append(f"--from-pool {from_pool.root} has no usable pictures (status ok, not rejected)")
    if not queries or not candidates.rows:
        return
    sims, idx = exact_knn(np.stack([vectors[ex.example_id] for ex in queries]), candidates.vectors, config.per_query)
    known = known_found_by(pool)
    late_tags: dict[str, list[str]] = {}
    pending: dict[str, tuple[dict[str, Any], str, float, int, list[str]]] = {}
    for q, example in enumerate(queries):
        result.searches += 1
        result.matches += idx.shape[1]
        for rank, (k, similarity) in enumerate(zip(idx[q].tolist(), sims[q].tolist(), strict=True), start=1):
            row, tag = candidates.rows[k], f"local:{example.example_id}"
            summary.candidates += 1
            if row["url"] in known:
                summary.known += 1
                if tag not in known[row["url"]]:
                    known[row["url"]].append(tag)
                    late_tags.setdefault(row["url"], []).append(tag)
            elif row["url"] in pending:
                summary.repeats += 1
                if tag not in pending[row["url"]][4]:
                    pending[row["url"]][4].append(tag)
            else:
                pending[row["url"]] = (row, example.example_id, similarity, rank, [tag])
    with (
        run_progress(config.fetch.show_progress, "harvest qbe (local)") as progress,
        PoolWriter(pool, config.fetch.flush_rows, config.fetch.flush_seconds) as writer,
    ):
        progress.add_total(len(pending))
        for row, example_id, similarity, rank, tags in pending.values():
            copied = copied_row(pool, from_pool, row, example_id, tags, similarity, rank)
            writer.add(copied)
            summary.add("local", copied["status"], copied.get("bytes") if copied.get("id") else None)
            progress.advance()
    compact_pool(pool, late_tags)


def finalize_pool(
    pool: Pool,
    scores: dict[tuple[str, str, str], tuple[float | None, int]],
    exclusions: ExclusionSet,
    leak_threshold: int,
    result: QbeSummary,
) -> bool:
    """Fill ``similarity``/``rank`` of qbe rows that lack them, hash qbe pictures and mark leaks; one rewrite."""
    df = pool.read_index()
    changed = False
    for column in ("similarity", "rank", "dhash"):
        if column not in df.columns:
            df[column] = None
    df["similarity"] = df["similarity"].astype("float64")
    df["rank"] = df["rank"].astype("Int64")
    qbe = df["mode"] == "qbe"
    for i in df.index[qbe & df["similarity"].isna() & df["rank"].isna()]:
        key = (df.at[i, "url"], df.at[i, "source"], df.at[i, "query"])
        if key in scores:
            similarity, rank = scores[key]
            df.at[i, "similarity"] = np.nan if similarity is None else similarity
            df.at[i, "rank"] = rank
            changed = True
    if exclusions.keys:
        changed |= _mark_leaks(pool, df, qbe, exclusions, leak_threshold, result)
    if changed:
        pool.rewrite(df)
    return changed


def _mark_leaks(pool: Pool, df: Any, qbe: Any, exclusions: ExclusionSet, threshold: int, result: QbeSummary) -> bool:
    """Give ``leak_of`` and ``kept = False`` to qbe pictures that near-copy an evaluation image (never clears one)."""
    from harvest.decisions import eligible_mask
    from harvest.hashing import hash_files, hex_to_uint64
    from harvest.leakage import find_leaks

    eligible = qbe & eligible_mask(df)
    images = df.loc[eligible, ["id", "path", "phash", "dhash"]].drop_duplicates("id")
    unhashed = images[images["phash"].isna() | images["dhash"].isna()]
    changed = False
    if len(unhashed):
        hashes = hash_files([(i, pool.path_of(p)) for i, p in zip(unhashed["id"], unhashed["path"], strict=True)])
        done = {h.key: h for h in hashes if h.error is None}
        for column in ("phash", "dhash"):
            fill = df["id"].isin(list(done)) & df[column].isna()
            df[column] = df[column].astype(object)
            df.loc[fill, column] = [getattr(done[i], column) for i in df.loc[fill, "id"]]
        images = df.loc[eligible, ["id", "phash", "dhash"]].drop_duplicates("id")
        changed = bool(done)
    images = images[images["phash"].notna() & images["dhash"].notna()].reset_index(drop=True)
    if not len(images):
        return changed
    leaks = find_leaks(hex_to_uint64(images["phash"]), hex_to_uint64(images["dhash"]), exclusions, threshold, threshold)
    leak_of = {images.at[k, "id"]: key for k, key in leaks.items()}
    if LEAK_BY not in df.columns:
        df[LEAK_BY] = None
    # A mark dedup's --exclude-like made first becomes the guard's, so that `dedup --clear-leaks` keeps it.
    marked = eligible & df["id"].isin(list(leak_of)) & df[LEAK_BY].ne(BY_QBE_GUARD)
    if marked.any():
        new = marked & df["leak_of"].isna()
        result.leaks += int(df.loc[new, "id"].nunique())
        for column in ("leak_of", LEAK_BY, "kept"):
            df[column] = df[column].astype(object)
        df.loc[marked, "leak_of"] = [leak_of[i] for i in df.loc[marked, "id"]]
        df.loc[marked, LEAK_BY] = BY_QBE_GUARD
        df.loc[marked, "kept"] = False
        changed = True
    return changed
