"""End-of-run summary tables printed by the rankset commands."""

from __future__ import annotations

from typing import Any


def print_build_summary(summary: Any, out: str, max_skipped: int = 20) -> None:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from rankset.build import SKIPPED_CSV

    console = Console()
    table = Table(title=f"rankset build -> {out}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row(f"source pictures ({summary.input_kind})", str(summary.sources))
    table.add_row("pictures used", str(summary.used))
    table.add_row("pictures skipped", str(len(summary.skipped)))
    for reason, count in sorted(getattr(summary, "skipped_by_reason", {}).items()):
        table.add_row(f"  skipped: {reason}", str(count))
    table.add_row("reduced (draft) decodes", str(summary.reduced_decodes))
    for split, count in summary.sets.items():
        table.add_row(f"sets in {split}", str(count))
    for name, count in sorted(summary.licenses.items()):
        table.add_row(f"sets licensed {name}", str(count))
    table.add_row("seconds", f"{summary.seconds:.1f}")
    console.print(table)
    if summary.skipped:
        skipped = Table(title="skipped pictures")
        skipped.add_column("source")
        skipped.add_column("reason")
        for source_id, reason in summary.skipped[:max_skipped]:
            skipped.add_row(source_id, reason)
        if len(summary.skipped) > max_skipped:
            skipped.add_row("…", f"{len(summary.skipped) - max_skipped} more")
        console.print(skipped)
        n = len(summary.skipped)
        console.print(f"all {n} skipped picture{'s' if n != 1 else ''}: {Path(out) / SKIPPED_CSV}", markup=False)
    for note in getattr(summary, "notes", ()):
        console.print(f"note: {note}", markup=False)
