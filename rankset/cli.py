"""`rankset`: ranked patch sets, labeled benchmarks and synthetic crowds. Thin typer commands over the library."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

app = typer.Typer(
    name="rankset",
    help="Build nested ranked patch sets, import labeled benchmarks, synthesize crowds; all as HF datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


INTERRUPTED = (
    "interrupted: nothing half-written was put in place; --out holds what it held before (synth --unlabeled: the "
    "pictures finished so far, without counts.csv and synth.json). Run the same command again to write it"
)


@contextmanager
def command_errors(*also: type[Exception], interrupted: str = INTERRUPTED) -> Iterator[None]:
    """A bad flag (ConfigError) is a usage error (exit 2) naming the fix; any other RanksetError, a HarvestError
    from reading a pool (a damaged index part, say), or one of ``also`` prints ``error: ...`` and exits 1, no
    traceback. Ctrl-C prints ``interrupted`` (what became of the work) and exits 130: without it the run ended
    silently on a bare progress bar."""
    from harvest.errors import HarvestError
    from rankset.errors import ConfigError, RanksetError

    try:
        yield
    except ConfigError as e:
        raise typer.BadParameter(str(e)) from e
    except (RanksetError, HarvestError, *also) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    except KeyboardInterrupt as e:
        typer.echo(f"\n{interrupted}", err=True)
        raise typer.Exit(130) from e


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
    seed: int = typer.Option(0, "--seed", help="Anchors and split are drawn from it: same input, same bytes."),
    val_fraction: float = typer.Option(0.0, "--val-fraction", help="Pictures put in a `validation` split."),
    num_proc: int = typer.Option(1, "--num-proc", help="Worker processes decoding and cutting."),
    split: str = typer.Option("train", "--split", help="Split to read when INPUT is a dataset."),
) -> None:
    """Cut nested ranked patch sets (Algorithm 1) out of pictures into a Hugging Face dataset."""
    with command_errors():  # the imports too: Ctrl-C while datasets loads gets the same message
        from rankset.build import BuildConfig, build_ranked_sets
        from rankset.report import print_build_summary

        cfg = BuildConfig(input, out, k, s, r, size, sets_per_image, seed, val_fraction, num_proc, split)
        summary = build_ranked_sets(cfg)
    print_build_summary(summary, out)


@app.command()
def preview(
    dataset: str = typer.Argument(..., help="A ranked-set dataset folder or Hub id."),
    out: str = typer.Option(..., "--out", help="PNG to write."),
    n: int = typer.Option(4, "--n", help="Sets to draw."),
    split: str = typer.Option("train", "--split", help="Split whose sets are drawn."),
    seed: int = typer.Option(0, "--seed", help="Which sets are drawn."),
) -> None:
    """Draw a few ranked sets: each source with its nested boxes, beside its k patches."""
    with command_errors(interrupted="interrupted: --out holds the PNG it held before, if any; run it again"):
        from rankset.preview import render_preview

        path = render_preview(dataset, out, n=n, split=split, seed=seed)
    typer.echo(f"wrote {path}")


@app.command("import")
def import_benchmark_command(
    format: str = typer.Argument(
        ..., help="One of: shanghaitech, ucf-cc-50, ucf-qnrf, jhu-crowd, nwpu-crowd, mall, points."
    ),
    root: str = typer.Argument(..., help="The folder the benchmark was unpacked into."),
    out: str = typer.Option(..., "--out", help="Dataset folder to write (replaced atomically)."),
    name: str = typer.Option(None, "--name", help="Dataset name stored in each row (default: from the format/folder)."),
    fold: int = typer.Option(None, "--fold", help="ucf-cc-50 only: standard fold F (1..5) becomes split `test`."),
) -> None:
    """Import a crowd-counting benchmark as a labeled dataset: original image bytes, head points, counts."""
    with command_errors():
        from rankset.importers import ImportConfig, import_benchmark
        from rankset.importers.summary import print_import_summary

        cfg = ImportConfig(format, root, out, name=name, fold=fold)
        summary = import_benchmark(cfg)
    print_import_summary(summary)


@app.command()
def info(
    dataset: str = typer.Argument(..., help="A dataset folder written by rankset, or a Hub id user/name."),
    out: str = typer.Option(None, "--out", help="Histogram PNG to write (default: DATASET/info.png)."),
) -> None:
    """Per-split counts of a labeled or ranked-set dataset, and histograms as a PNG: people per image (labeled);
    sets per source picture and patch sizes (ranked sets)."""
    with command_errors(interrupted="interrupted: the histogram PNG is as it was before, if any; run it again"):
        from rankset.info import InfoConfig, dataset_report, print_dataset_report

        cfg = InfoConfig(dataset, out=out)
        report = dataset_report(cfg)
    print_dataset_report(report)


@app.command()
def synth(
    n: int = typer.Option(..., "--n", help="Scenes to render."),
    out: str = typer.Option(..., "--out", help="Dataset folder (or, with --unlabeled, JPEG folder) to write."),
    unlabeled: bool = typer.Option(False, "--unlabeled", help="Write plain JPEGs + counts.csv (eval only)."),
    seed: int = typer.Option(0, "--seed", help="Scene i is rendered from (seed, i) alone."),
    size: str = typer.Option("512x384", "--size", help="WIDTHxHEIGHT of every scene."),
    splits: str = typer.Option("train=1", "--splits", help="e.g. train=0.8,validation=0.1,test=0.1"),
    max_count: int = typer.Option(1000, "--max-count", help="Largest head count a scene is drawn with."),
    min_count: int = typer.Option(
        0, "--min-count", help="Smallest head count drawn (>0: crowd scenes only, like a CLIP-filtered harvest)."
    ),
    num_proc: int = typer.Option(1, "--num-proc", help="Worker processes rendering scenes."),
) -> None:
    """Render synthetic crowd scenes with exact head points and depth (labeled schema, dataset "synth")."""
    with command_errors(OSError):
        from rankset.synth import SynthConfig, parse_size, parse_splits, synth_dataset, synth_unlabeled
        from rankset.synth.report import print_synth_summary

        width, height = parse_size(size)
        cfg = SynthConfig(n, out, seed, width, height, unlabeled, parse_splits(splits), max_count, num_proc, min_count)
        summary = synth_unlabeled(cfg) if unlabeled else synth_dataset(cfg)
    print_synth_summary(summary)


@app.command()
def push(
    dataset: str = typer.Argument(..., help="A ranked-set or labeled dataset folder (or Hub id) to publish."),
    repo_id: str = typer.Option(..., "--repo-id", help="Hub dataset repo USER/NAME (created if missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    revision: str = typer.Option("main", "--revision", help="Branch to commit to (created if missing)."),
    dry_run: str | None = typer.Option(None, "--dry-run", help="Write the exact upload files to this folder instead."),
    licenses: str | None = typer.Option(None, "--licenses", help="Licence families to publish, e.g. cc0,pdm,by,by-sa."),
    allow_unknown_license: bool = typer.Option(False, "--allow-unknown-license", help="Publish unknown licences."),
    dataset_license: str | None = typer.Option(None, "--dataset-license", help="Licence id of a dataset without one."),
    max_shard_size: str = typer.Option("500MB", "--max-shard-size", help="Largest Parquet shard, e.g. 500MB."),
) -> None:
    """Upload a dataset as Parquet shards + dataset card + attribution.csv to the Hub (token: HF_TOKEN)."""
    from pathlib import Path

    pushed = "interrupted: the repo gets the whole commit or none, a --dry-run folder all files or none; run it again"
    with command_errors(interrupted=pushed):
        from rankset.licenses import parse_license_list
        from rankset.publish import PublishConfig, print_publish_summary, publish_dataset

        families = parse_license_list(licenses) if licenses is not None else None
        out = Path(dry_run) if dry_run else None
        cfg = PublishConfig(
            dataset, repo_id, private, revision, out, families, allow_unknown_license, dataset_license, max_shard_size
        )
        summary = publish_dataset(cfg)
    print_publish_summary(summary, dry_run=dry_run is not None)
