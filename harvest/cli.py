"""`harvest`: collect crowd photos into a pool. Thin typer commands over the library; see DESIGN.md."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from harvest.errors import ConfigError, HarvestError  # a small module: taken before any Ctrl-C can be caught

if TYPE_CHECKING:
    from harvest.clip_filter import FilterSummary
    from harvest.dedup_pool import DedupSummary
    from harvest.writer import Summary


@contextmanager
def command_errors(command: str) -> Iterator[None]:
    """A bad flag (ConfigError) is a usage error (exit 2) naming the fix; any other HarvestError stops the command
    with ``harvest COMMAND failed: ...`` on stderr and exit 1, no traceback. Ctrl-C says what became of the work
    (exit 130): without it the run ended on a bare progress bar."""
    try:
        yield
    except ConfigError as e:
        raise typer.BadParameter(str(e)) from e
    except HarvestError as e:
        from rich.console import Console

        Console(stderr=True).print(f"[red]harvest {command} failed:[/red] {escape(str(e))}")
        raise typer.Exit(1) from e
    except KeyboardInterrupt as e:  # also one during the command's library imports (a second of pandas, pyarrow)
        _say_interrupted(command)
        raise typer.Exit(130) from e
    except RuntimeError as e:  # Python 3.11 wraps a Ctrl-C in a class body's __set_name__ (importing torch) in one
        if not _caused_by_ctrl_c(e):
            raise
        _say_interrupted(command)
        raise typer.Exit(130) from e


def _say_interrupted(command: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(
        f"[yellow]harvest {command} interrupted:[/yellow] what it had written is kept in the pool and nothing "
        "half-written is used; run the same command again to go on from there"
    )


def _caused_by_ctrl_c(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the exceptions ``error`` was raised from."""
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, KeyboardInterrupt):
            return True
        cause = cause.__cause__
    return False


RETRY_FAILED_HELP = (  # the statuses of harvest.writer.TRANSIENT_STATUSES, not imported here to keep --help instant
    "Fetch again URLs whose every earlier try failed in a way that may pass: timeout, connection error, "
    "TLS error (certificates get renewed), truncated body, HTTP 408, 429, 500, 502, 503 or 504; and URLs whose "
    "stored picture dedup/filter found missing or damaged (decode_error), to store their bytes again."
)

LOCAL_RETRY_FAILED_HELP = (
    "Read again files whose every earlier row failed (too_small, not_image, truncated, unreadable, ...): a file "
    "replaced since, or judged under other --min-side/--max-pixels/--max-bytes. The new row replaces the old."
)

app = typer.Typer(
    name="harvest",
    help="Collect crowd photos into a content-addressed pool: search, fetch, dedup, filter, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Collect crowd photos into a content-addressed pool (POOL/index/*.parquet + POOL/images/)."""


@app.command("keywords")
def keywords(
    terms: str = typer.Option(..., "--terms", help="Comma-separated search terms, e.g. crowded,beach."),
    out: str = typer.Option(..., "--out", help="Pool folder (created if new)."),
    sources: str = typer.Option("wikimedia,openverse", "--sources", help="Comma-separated search sources."),
    per_term: int = typer.Option(50, "--per-term", help="Candidates taken per term and source."),
    endpoint: list[str] = typer.Option([], "--endpoint", help="SOURCE=URL: another API URL for a source (repeat)."),
    workers: int = typer.Option(16, "--workers", help="Download threads."),
    host_rate: float = typer.Option(2.0, "--host-rate", help="Requests per second per host (0: no limit)."),
    timeout: float = typer.Option(15.0, "--timeout", help="Connect and read timeout, seconds."),
    retries: int = typer.Option(3, "--retries", help="Retries on 429/5xx, timeouts and dropped connections."),
    max_retry_wait: float = typer.Option(60.0, "--max-retry-wait", help="Give up when Retry-After asks longer."),
    max_bytes: int = typer.Option(20 * 1024 * 1024, "--max-bytes", help="Largest image body, bytes."),
    min_side: int = typer.Option(224, "--min-side", help="Smallest accepted shorter side, pixels."),
    max_pixels: int = typer.Option(89_478_485, "--max-pixels", help="Decompression-bomb limit, pixels."),
    ignore_robots: bool = typer.Option(False, "--ignore-robots", help="Ignore robots.txt and X-Robots-Tag."),
    allow_private_hosts: bool = typer.Option(False, "--allow-private-hosts", help="Allow private/loopback hosts."),
    user_agent: str | None = typer.Option(None, "--user-agent", help="User-Agent header (default names crowdrank)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help=RETRY_FAILED_HELP),
) -> None:
    """Search each term in each source and download the images into the pool."""

    with command_errors("keywords"):
        from harvest.collect import KeywordsConfig, harvest_keywords
        from harvest.fetch import FetchConfig

        endpoints = dict(_split_pair(item, "--endpoint") for item in endpoint)
        fetch = FetchConfig(
            workers=workers, host_rate=host_rate, timeout=timeout, retries=retries, max_retry_wait=max_retry_wait,
            max_bytes=max_bytes, min_side=min_side, max_pixels=max_pixels, ignore_robots=ignore_robots,
            allow_private_hosts=allow_private_hosts, user_agent=user_agent, retry_failed=retry_failed,
        )  # fmt: skip
        config = KeywordsConfig(out=out, terms=_split_list(terms), sources=_split_list(sources), per_term=per_term,
                                endpoints=endpoints, fetch=fetch)  # fmt: skip
        summary = harvest_keywords(config)
    _print_summary(summary)
    if summary.search_failures and summary.candidates == 0:
        raise typer.Exit(1)  # every search failed (offline? wrong --endpoint?): nothing was harvested


@app.command("local")
def local(
    folder: str = typer.Argument(..., help="Folder of pictures, searched recursively."),
    out: str = typer.Option(..., "--out", help="Pool folder (created if new)."),
    workers: int = typer.Option(4, "--workers", help="Parallel decode checks."),
    min_side: int = typer.Option(224, "--min-side", help="Smallest accepted shorter side, pixels."),
    max_pixels: int = typer.Option(89_478_485, "--max-pixels", help="Decompression-bomb limit, pixels."),
    max_bytes: int = typer.Option(50 * 1024 * 1024, "--max-bytes", help="Largest accepted file, bytes."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help=LOCAL_RETRY_FAILED_HELP),
) -> None:
    """Ingest a folder of pictures into the pool (sidecar <file>.json gives license/author/title/source_url)."""

    with command_errors("local"):
        from harvest.local import LocalConfig, ingest_local

        config = LocalConfig(root=folder, out=out, workers=workers, min_side=min_side, max_pixels=max_pixels,
                             max_bytes=max_bytes, retry_failed=retry_failed)  # fmt: skip
        summary = ingest_local(config)
    _print_summary(summary)


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _split_pair(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ConfigError(f"{flag} expects SOURCE=URL, got {text!r}")
    return name.strip(), value.strip()


def _print_summary(summary: Summary) -> None:
    from rich.console import Console

    console = Console()
    console.print(summary.table())
    for failure in summary.search_failures:
        console.print(f"[yellow]search failed:[/yellow] {escape(str(failure))}")


def _print_table_and_notes(summary: DedupSummary | FilterSummary) -> None:
    """A stage's summary table, then each of its notes (what needs doing) in yellow."""
    from rich.console import Console

    console = Console()
    console.print(summary.table())
    for note in summary.notes():
        console.print(f"[yellow]{escape(note)}[/yellow]", soft_wrap=True)


@app.command("dedup")
def dedup(
    pool: str = typer.Argument(..., help="Pool folder."),
    threshold: int = typer.Option(10, "--threshold", help="Most pHash bits two near-duplicates may differ in."),
    dhash_threshold: int | None = typer.Option(None, "--dhash-threshold", help="dHash vote (default: --threshold)."),
    exclude_like: list[str] = typer.Option([], "--exclude-like", help="Evaluation images: folder or dataset (repeat)."),
    clear_leaks: bool = typer.Option(
        False,
        "--clear-leaks",
        help="Drop the leak_of marks of earlier --exclude-like runs (a wrong set); qbe's test-split guard marks stay.",
    ),
    clear_all_leaks: bool = typer.Option(
        False, "--clear-all-leaks", help="Drop every earlier leak_of mark, qbe's test-split guard marks too."
    ),
    clip_threshold: float | None = typer.Option(None, "--clip-threshold", help="Also merge cosine >= this, e.g. 0.94."),
    clip_model: str | None = typer.Option(None, "--clip-model", help="Embedding cache tag (default: newest)."),
    workers: int = typer.Option(0, "--workers", help="Hashing processes and grouping threads (0: one per core)."),
) -> None:
    """Mark exact and near-duplicate pictures (dup_of) and near-copies of evaluation images (leak_of)."""
    with command_errors("dedup"):
        from harvest.dedup_pool import DedupConfig, dedup_pool

        config = DedupConfig(pool=pool, threshold=threshold, dhash_threshold=dhash_threshold,
                             exclude_like=tuple(exclude_like), clear_leaks=clear_leaks, clear_all_leaks=clear_all_leaks,
                             clip_threshold=clip_threshold, clip_model=clip_model, workers=workers)  # fmt: skip
        summary = dedup_pool(config)
    _print_table_and_notes(summary)


@app.command("filter")
def filter_(
    pool: str = typer.Argument(..., help="Pool folder."),
    model: str = typer.Option("ViT-B-32", "--model", help="open_clip architecture."),
    pretrained: str = typer.Option("laion2b_s34b_b79k", "--pretrained", help="open_clip pretrained tag."),
    checkpoint: str | None = typer.Option(None, "--checkpoint", help="Local weights file (instead of --pretrained)."),
    threshold: float = typer.Option(0.5, "--threshold", help="Keep pictures with clip_score >= this (0..1)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Pictures per model call."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(2, "--workers", help="DataLoader decoding processes."),
) -> None:
    """Score every picture as a crowd scene with CLIP zero-shot prompts; keep those >= --threshold."""
    with command_errors("filter"):
        from harvest.clip_filter import FilterConfig, filter_pool

        config = FilterConfig(pool=pool, model=model, pretrained=pretrained, checkpoint=checkpoint,
                              threshold=threshold, batch_size=batch_size, device=device, workers=workers)  # fmt: skip
        summary = filter_pool(config)
    _print_table_and_notes(summary)


@app.command("report")
def report(
    pool: str = typer.Argument(..., help="Pool folder."),
    out: str | None = typer.Option(None, "--out", help="Report folder (default: POOL/report)."),
    examples: int = typer.Option(24, "--examples", help="Pictures per contact sheet."),
) -> None:
    """Count tables (by source, status, licence, kept) and PNG contact sheets, histogram, duplicates, leaks."""
    with command_errors("report"):  # first: a Ctrl-C during any import below is reported too
        from rich.console import Console

        from harvest.report import ReportConfig, build_report

        summary = build_report(ReportConfig(pool=pool, out=out, examples=examples))
    console = Console()
    for table in summary.tables():
        console.print(table)
    figures = ", ".join(p.name for p in summary.figures) or "none yet"
    console.print(escape(f"wrote {summary.out}/counts.csv; figures: {figures}"), soft_wrap=True)


@app.command("qbe")
def qbe(
    examples: str = typer.Option(..., "--examples", help="Example pictures: a folder, or a labeled dataset (train)."),
    out: str = typer.Option(..., "--out", help="Pool folder (created if new)."),
    sources: str = typer.Option("clip-knn", "--sources", help="Comma-separated: clip-knn, google-lens, local."),
    per_query: int = typer.Option(10, "--per-query", help="Answers kept per example and backend (paper: 10)."),
    endpoint: list[str] = typer.Option([], "--endpoint", help="SOURCE=URL, e.g. clip-knn=http://host:1234 (repeat)."),
    public_url_prefix: str | None = typer.Option(None, "--public-url-prefix", help="URL prefix + file name (Lens)."),
    from_pool: str | None = typer.Option(None, "--from-pool", help="Pool whose pictures `local` ranks."),
    exclude_like: list[str] = typer.Option([], "--exclude-like", help="More evaluation sets to guard (repeat)."),
    knn_index: str = typer.Option("laion5B-L-14", "--knn-index", help="clip-knn indice_name."),
    knn_query: str = typer.Option("image", "--knn-query", help="clip-knn query: image or embedding."),
    model: str = typer.Option("ViT-B-32", "--model", help="open_clip model (local, --knn-query embedding)."),
    pretrained: str = typer.Option("laion2b_s34b_b79k", "--pretrained", help="open_clip pretrained tag."),
    checkpoint: str | None = typer.Option(None, "--checkpoint", help="Local weights file (instead of --pretrained)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(16, "--workers", help="Download threads."),
    host_rate: float = typer.Option(2.0, "--host-rate", help="Requests per second per host (0: no limit)."),
    timeout: float = typer.Option(15.0, "--timeout", help="Connect and read timeout, seconds."),
    retries: int = typer.Option(3, "--retries", help="Retries on 429/5xx, timeouts and dropped connections."),
    max_retry_wait: float = typer.Option(60.0, "--max-retry-wait", help="Give up when Retry-After asks longer."),
    max_bytes: int = typer.Option(20 * 1024 * 1024, "--max-bytes", help="Largest image body, bytes."),
    min_side: int = typer.Option(224, "--min-side", help="Smallest accepted shorter side, pixels."),
    max_pixels: int = typer.Option(89_478_485, "--max-pixels", help="Decompression-bomb limit, pixels."),
    ignore_robots: bool = typer.Option(False, "--ignore-robots", help="Ignore robots.txt and X-Robots-Tag."),
    allow_private_hosts: bool = typer.Option(False, "--allow-private-hosts", help="Allow private/loopback hosts."),
    user_agent: str | None = typer.Option(None, "--user-agent", help="User-Agent header (default names crowdrank)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help=RETRY_FAILED_HELP),
) -> None:
    """Query by example: each example's nearest pictures from k-NN, Google Lens or another pool, into the pool."""
    with command_errors("qbe"):  # first: a Ctrl-C during any import below is reported too
        from rich.console import Console

        from harvest.fetch import FetchConfig
        from harvest.qbe import QbeConfig, harvest_qbe

        fetch = FetchConfig(workers=workers, host_rate=host_rate, timeout=timeout, retries=retries,
                            max_retry_wait=max_retry_wait, max_bytes=max_bytes, min_side=min_side,
                            max_pixels=max_pixels, ignore_robots=ignore_robots,
                            allow_private_hosts=allow_private_hosts, user_agent=user_agent,
                            retry_failed=retry_failed)  # fmt: skip
        config = QbeConfig(
            out=out, examples=examples, sources=_split_list(sources), per_query=per_query,
            endpoints=dict(_split_pair(item, "--endpoint") for item in endpoint), public_url_prefix=public_url_prefix,
            from_pool=from_pool, exclude_like=tuple(exclude_like), knn_index=knn_index, knn_query=knn_query,
            model=model, pretrained=None if checkpoint else pretrained, checkpoint=checkpoint, device=device,
            fetch=fetch,
        )  # fmt: skip
        summary = harvest_qbe(config)
    _print_summary(summary.fetch)
    Console().print(summary.table())
    if summary.searches == 0:
        raise typer.Exit(1)  # no example was answered by any backend (offline? wrong --endpoint? no key?)
