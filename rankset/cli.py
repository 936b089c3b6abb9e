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


@app.command()
def build(
    input: str = typer.Argument(..., help="A harvest pool, a folder of pictures, a dataset folder or a Hub id."),
    out: str = typer.Option(..., "--out", help="Dataset folder to write (replaced atomically)."),
    k: int = typer.Option(5, "--k", help="Patches per set (paper: 5)."),
    s: float = typer.Option(0.75, "--s", help="Side ratio between consecutive patches (paper: 0.75)."),
    r: float = typer.Option(8.0, "--r", help="Anchor region is 1/r of the picture (paper: 8)."),
    size: int = typer.Option(224, "--size", help="Patch side in pixels after resizing (paper: 224)."),
    sets_per_image: int = typer.Option(1, "--sets-per-image", help="Sets cut from each picture."),
    seed: int = typer.Option(0, "--seed"),
    val_fraction: float = typer.Option(0.0, "--val-fraction", help="Pictures put in a `validation` split."),
    num_proc: int = typer.Option(1, "--num-proc", help="Worker processes decoding and cutting."),
    split: str = typer.Option("train", "--split", help="Split to read when INPUT is a dataset."),
) -> None:
    """Cut nested ranked patch sets (Algorithm 1) out of pictures into a Hugging Face dataset."""
    from rankset.build import BuildConfig, build_ranked_sets
    from rankset.errors import ConfigError, RanksetError
    from rankset.report import print_build_summary

    try:
        cfg = BuildConfig(input, out, k, s, r, size, sets_per_image, seed, val_fraction, num_proc, split)
    except ConfigError as e:
        raise typer.BadParameter(str(e)) from e
    try:
        summary = build_ranked_sets(cfg)
    except RanksetError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    print_build_summary(summary, out)


@app.command()
def preview(
    dataset: str = typer.Argument(..., help="A ranked-set dataset folder or Hub id."),
    out: str = typer.Option(..., "--out", help="PNG to write."),
    n: int = typer.Option(4, "--n", help="Sets to draw."),
    split: str = typer.Option("train", "--split"),
    seed: int = typer.Option(0, "--seed", help="Which sets are drawn."),
) -> None:
    """Draw a few ranked sets: each source with its nested boxes, beside its k patches."""
    from rankset.errors import ConfigError, RanksetError
    from rankset.preview import render_preview

    try:
        path = render_preview(dataset, out, n=n, split=split, seed=seed)
    except ConfigError as e:
        raise typer.BadParameter(str(e)) from e
    except RanksetError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(f"wrote {path}")
