"""The end-of-run summary table of ``rankset synth``."""

from __future__ import annotations

from rankset.synth.writer import SynthSummary


def print_synth_summary(summary: SynthSummary) -> None:
    """Images per split, total heads, min/median/max heads per image, and render speed, as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"rankset synth → {summary.out}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for split, size in summary.split_sizes.items():
        table.add_row(f"images ({split})", str(size))
    table.add_row("images", str(summary.images))
    table.add_row("total heads", str(summary.total_heads))
    low, median, high = summary.count_stats
    table.add_row("heads per image (min / median / max)", f"{low} / {median:g} / {high}")
    table.add_row("scenes per second (incl. writing)", f"{summary.scenes_per_second:.1f}")
    console = Console()
    console.print(table)
    for note in summary.notes:
        console.print(f"note: {note}", markup=False)
