"""`harvest`: collect crowd photos into a pool. Thin typer commands over the library; see DESIGN.md."""

from __future__ import annotations

import typer

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
