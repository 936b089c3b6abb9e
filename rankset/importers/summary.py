"""The end-of-run tables of `rankset import`: per-split counts, then every skipped file with its reason."""

from __future__ import annotations

from typing import Any

from rankset.importers.writer import ImportSummary

SHOWN_PER_LIST = 25


def print_import_summary(summary: ImportSummary, console: Any = None) -> None:
    """Print the per-split table, the skipped files (first 25; all in skipped.csv), warnings and notes."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{summary.dataset} ({summary.format}) -> {summary.out}")
    for column in ("split", "images", "unlabeled", "heads", "min", "median", "max", "clamped points", "reoriented"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for name, stats in summary.splits.items():
        low_mid_high = stats.count_range()
        low, mid, high = ("-", "-", "-")
        if low_mid_high:
            low, mid, high = str(low_mid_high[0]), f"{low_mid_high[1]:g}", str(low_mid_high[2])
        table.add_row(
            name,
            str(stats.images),
            str(stats.unlabeled),
            str(stats.heads),
            low,
            mid,
            high,
            str(stats.clamped_points),
            str(stats.reoriented),
        )
    console.print(table)
    for title, items in (("skipped", summary.skipped), ("warnings", summary.warnings)):
        if not items:
            continue
        listing = Table(title=f"{len(items)} {title}", show_lines=False)
        listing.add_column("path", overflow="fold")
        listing.add_column("reason", overflow="fold")
        for item in items[:SHOWN_PER_LIST]:
            listing.add_row(item.path, item.reason)
        console.print(listing)
        if len(items) > SHOWN_PER_LIST:
            where = "skipped.csv" if title == "skipped" else "import.json"
            console.print(f"... and {len(items) - SHOWN_PER_LIST} more {title}: see {summary.out}/{where}")
    for note in summary.notes:
        console.print(f"note: {note}")
    if not summary.skipped:
        console.print("skipped: none")
