"""`train`: fit, evaluate and predict with density networks from TOML manifests. Thin typer commands."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="train",
    help="Train density networks on labeled and ranked sets together, driven by TOML manifests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Train, evaluate and predict with crowd-counting density networks (manifests/*.toml)."""
