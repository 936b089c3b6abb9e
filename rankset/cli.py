"""`rankset`: ranked patch sets, labeled benchmarks and synthetic crowds. Thin typer commands over the library."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="rankset",
    help="Build nested ranked patch sets, import labeled benchmarks, synthesize crowds; all as HF datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Ranked patch sets (Liu et al. CVPR 2018, Algorithm 1), labeled benchmarks and synthetic crowds."""
