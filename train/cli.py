"""`train`: fit, evaluate and predict with density networks from TOML manifests. Thin typer commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.markup import escape

app = typer.Typer(
    name="train",
    help="Train density networks on labeled and ranked sets together, driven by TOML manifests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@contextmanager
def usage_errors() -> Iterator[None]:
    """A bad flag or manifest key (ConfigError) becomes a usage error: exit 2 with the message naming the fix."""
    from train.errors import ConfigError

    try:
        yield
    except ConfigError as e:
        raise typer.BadParameter(str(e)) from e


@contextmanager
def run_errors() -> Iterator[None]:
    """A run that cannot go on (TrainError: data, model, Hub) prints ``error: ...`` and exits 1, no traceback."""
    from train.errors import TrainError

    try:
        yield
    except TrainError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``; SLURM, Kubernetes and systemd stopping a job), raised where Ctrl-C raises
    KeyboardInterrupt, so that every command stops the same way: a line saying what was kept and how to go on."""


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """The shell's code for a process stopped by a signal: 128 + SIGTERM's 15, or + SIGINT's 2 for Ctrl-C."""
    return 143 if isinstance(interrupt, Terminated) else 130


def stop_on_sigterm(ctx: typer.Context) -> None:
    """Until the command ends, SIGTERM raises :class:`Terminated`. It used to end every command at once, in silence
    (exit 143, no word of what was kept), and ``train study`` without stopping its running fits in order."""
    import signal

    def terminated(signum: int, frame: object) -> None:
        raise Terminated()

    try:
        before = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # called outside the main thread, where Python takes no signals: SIGTERM stays as it is
        return
    if before is not None:  # None: a handler set outside Python, which cannot be put back
        ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, before))


@contextmanager
def interrupted_before(output: object, left: str = "", done: str = "written") -> Iterator[None]:
    """Ctrl-C (or SIGTERM) ends the command with exit 130 (143) and a line naming the output it did not write
    (``output`` was not ``done``; ``left`` says what is there meanwhile)."""
    try:
        yield
    except KeyboardInterrupt as e:
        typer.echo(f"interrupted before {output} was {done}{left}: rerun the same command", err=True)
        raise typer.Exit(exit_code(e)) from None


@contextmanager
def interrupted_starting(command: str) -> Iterator[None]:
    """Ctrl-C or SIGTERM while a command imports torch and reads its arguments (its first second or so), before it
    writes anything: a line saying so. It ended the command with typer's exit 130, for SIGTERM too, and no word."""
    try:
        yield
    except KeyboardInterrupt as e:
        typer.echo(f"interrupted before train {command} started: nothing was written; rerun the same command", err=True)
        raise typer.Exit(exit_code(e)) from None


@app.callback()
def main(ctx: typer.Context) -> None:
    """Train, evaluate and predict with crowd-counting density networks (manifests/*.toml)."""
    stop_on_sigterm(ctx)


@app.command()
def fit(
    manifest: str = typer.Argument(..., help="A TOML manifest, e.g. manifests/quickstart.toml."),
    set_: list[str] = typer.Option([], "--set", help="Override a manifest key: --set schedule.steps=500 (repeat)."),
    out: str = typer.Option(None, "--out", help="Run folder (default: runs/<name>)."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from RUN/last.pt (model, optimizer, RNG, step); \\[rounds]: at the first unfinished step.",
    ),
) -> None:
    """Train a density network as the manifest says; writes config.toml, metrics.jsonl, last/best.pt, eval.json.

    With a \\[rounds] table: RUN/round-0, round-1, … with pseudo-labels between them, rounds.csv and rounds.png.
    """
    with interrupted_starting("fit"):
        from train.loop import fit as run_fit
        from train.manifest import load_manifest
        from train.report import print_fit_summary
        from train.rounds import fit_rounds, print_rounds_summary

        with usage_errors():
            config = load_manifest(manifest, set_)
    run = out or f"runs/{config.name}"
    try:
        with run_errors():
            if config.rounds is not None:
                print_rounds_summary(fit_rounds(config, run, resume=resume))
                return
            result = run_fit(config, run, resume=resume)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: say how to go on instead of ending silently (or in a traceback)
        typer.echo(interrupted_message(run, config.schedule.eval_every, config.rounds is not None), err=True)
        raise typer.Exit(exit_code(e)) from None
    print_fit_summary(result)


def interrupted_message(run: str, eval_every: int, rounds: bool) -> str:
    """What a stopped ``train fit`` leaves and the command that continues it."""
    from pathlib import Path

    saved = Path(run) / "last.pt"
    if rounds or saved.is_file():
        return (
            f"interrupted: rerun the same command with --resume to continue {run} from its last checkpoint "
            f"(saved every schedule.eval_every = {eval_every} steps; later steps are redone)"
        )
    return f"interrupted before the first checkpoint ({saved} not written yet): rerun the same command without --resume"


@app.command("eval")
def eval_command(
    checkpoint: str = typer.Argument(..., help="RUN/best.pt, a `train push` folder or a Hub id USER/NAME."),
    data: str = typer.Option(..., "--data", help="A labeled dataset folder or Hub id."),
    split: str = typer.Option("test", "--split", help="Split to evaluate."),
    out: str = typer.Option("eval-out", "--out", help="Folder for eval.json and images.csv."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps."),
    tile: int = typer.Option(1024, "--tile", help="Largest tile side for whole-image inference."),
    ranked: str = typer.Option(
        None, "--ranked", help="A ranked set: also report the share of nested pairs the model orders wrongly."
    ),
    ranked_sets: int = typer.Option(500, "--ranked-sets", help="Ranked sets to check (the first N)."),
) -> None:
    """Evaluate a checkpoint on whole images: MAE, RMSE, NAE, GAME(0-3) into eval.json, one CSV row per image."""
    with interrupted_starting("eval"):
        from pathlib import Path

        from train.evaluate import EvalConfig, evaluate_checkpoint
        from train.report import print_eval_summary

        with usage_errors():
            config = EvalConfig(Path(checkpoint), data, split, Path(out), device, tile, ranked, ranked_sets)
    with run_errors(), interrupted_before(Path(out) / "eval.json"):
        summary = evaluate_checkpoint(config)
    print_eval_summary(summary, out)


@app.command()
def predict(
    checkpoint: str = typer.Argument(..., help="RUN/best.pt, a `train push` folder or a Hub id USER/NAME."),
    images: list[str] = typer.Argument(..., help="Image files or folders of images."),
    out: str = typer.Option("predict-out", "--out", help="Folder for counts.csv and overlays/."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps."),
    tile: int = typer.Option(1024, "--tile", help="Largest tile side for whole-image inference."),
) -> None:
    """Count people in images: counts.csv plus a density overlay PNG per image."""
    with interrupted_starting("predict"):
        from pathlib import Path

        from train.predict import PredictConfig, predict_images
        from train.report import print_predict_summary

        with usage_errors():
            config = PredictConfig(Path(checkpoint), tuple(Path(p) for p in images), Path(out), device, tile)
    with run_errors(), interrupted_before(Path(out) / "counts.csv", " (overlays/ may hold some of its overlays)"):
        rows = predict_images(config)
    print_predict_summary(rows, out)


@app.command()
def export(
    checkpoint: str = typer.Argument(..., help="RUN/best.pt or RUN/last.pt."),
    out: str = typer.Option("model.pt", "--out", help="The inference-only checkpoint to write."),
) -> None:
    """Drop auxiliary heads, optimizer and RNG states: a checkpoint that eval/predict read, costing no extra."""
    with interrupted_starting("export"):
        from pathlib import Path

        from rich.console import Console

        from train.export import ExportConfig, export_model

        with usage_errors():
            config = ExportConfig(Path(checkpoint), Path(out))
    with run_errors(), interrupted_before(out):
        summary = export_model(config)
    kept, dropped = summary["kept_values"], summary["dropped_values"]
    out = escape(str(summary["out"]))
    Console().print(f"wrote {out}: {kept} values kept, {dropped} dropped (auxiliary heads, classifier)", soft_wrap=True)


@app.command()
def upgrade(
    checkpoint: str = typer.Argument(..., help="A RUN/last.pt or best.pt written by crowdrank before format 2."),
    out: str = typer.Option(None, "--out", help="Write the upgraded file here (default: replace CHECKPOINT)."),
) -> None:
    """Rewrite an old checkpoint you wrote yourself in the safe format (it is unpickled once: never a stranger's)."""
    with interrupted_starting("upgrade"):
        from pathlib import Path

        from rich.console import Console

        from train.checkpoint import upgrade_checkpoint

    if not out or Path(out).resolve() == Path(checkpoint).resolve():
        interrupted = interrupted_before(checkpoint, " (it is as it was)", done="rewritten")
    else:
        interrupted = interrupted_before(out)
    with run_errors(), interrupted:  # the file is replaced in one rename, or not at all
        summary = upgrade_checkpoint(Path(checkpoint), Path(out) if out else None)
    if summary["upgraded"]:
        done = f"wrote {summary['out']}: checkpoint format {summary['from_version']} -> {summary['to_version']}"
        done += f", step {summary['step']}"
    else:
        copied = f"; copied to {summary['out']}" if Path(summary["out"]).resolve() != Path(checkpoint).resolve() else ""
        done = f"{checkpoint} is already checkpoint format {summary['to_version']}: nothing to upgrade{copied}"
        done += f" (step {summary['step']})"
    Console().print(escape(done), soft_wrap=True)


@app.command("pseudo-label")
def pseudo_label_command(
    checkpoint: str = typer.Argument(..., help="A checkpoint of a model with model.masksembles."),
    images: list[str] = typer.Option(..., "--images", help="Image folder, file or harvest pool (repeat)."),
    keep_fraction: float = typer.Option(0.5, "--keep-fraction", help="Share of pictures kept, most confident first."),
    out: str = typer.Option(..., "--out", help="The labeled dataset folder to write."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps."),
    seed: int = typer.Option(0, "--seed", help="Seed of the head positions drawn from the density."),
) -> None:
    """Label real pictures with a Masksembles model's most confident counts (lowest std/mean across masks)."""
    with interrupted_starting("pseudo-label"):
        from pathlib import Path

        from train.pseudo_label import PseudoLabelConfig, pseudo_label
        from train.report import print_pseudo_label_summary

        with usage_errors():
            config = PseudoLabelConfig(Path(checkpoint), tuple(images), Path(out), keep_fraction, device, seed=seed)
    with run_errors(), interrupted_before(out):  # the dataset folder is put in place in one rename, or not at all
        rows = pseudo_label(config)
    print_pseudo_label_summary(rows, out)


@app.command()
def study(
    study_file: str = typer.Argument(..., help="A study TOML (base manifest, grid, seeds), e.g. manifests/studies/*."),
    out: str = typer.Option(..., "--out", help="Study folder: runs/, results.csv, results.md, results.png."),
    overrides: list[str] = typer.Option([], "--set", help="Override a manifest key in every run (repeat)."),
    jobs: int = typer.Option(1, "--jobs", help="Runs trained at once (CPU threads are split between them)."),
) -> None:
    """Run a grid of manifests (paradigm x labeled fraction x seed), resumable run by run, and tabulate it."""
    with interrupted_starting("study"):
        from pathlib import Path

        from rich.console import Console
        from rich.markdown import Markdown

        from train.study import load_study, run_study
        from train.study_results import results_stem

        with usage_errors():
            config = load_study(study_file, overrides)
    left = " (finished runs are kept, interrupted ones continue from their last.pt)"
    try:  # Ctrl-C ended the study with exit 130 and nothing said
        with interrupted_before(Path(out) / f"{results_stem(config, Path(out))}.csv", left), run_errors():
            run_study(config, out, jobs=jobs)
    finally:
        results = Path(out) / f"{results_stem(config, Path(out))}.md"
        if results.is_file():
            Console().print(Markdown(results.read_text()))


@app.command()
def compare(
    runs: list[str] = typer.Argument(..., help="Finished run folders (with eval.json and best.pt)."),
    out: str = typer.Option(..., "--out", help="PNG report to write."),
    labels: list[str] = typer.Option([], "--label", help="A name per run, in order (default: folder names)."),
    examples: int = typer.Option(3, "--examples", help="Test pictures drawn with each run's density map."),
) -> None:
    """Compare finished runs: a table of test metrics and a PNG (curves, predicted vs annotated, density maps)."""
    with interrupted_starting("compare"):
        from pathlib import Path

        from rich.console import Console
        from rich.table import Table

        from train.compare import METRICS, CompareConfig, compare_runs

        with usage_errors():
            config = CompareConfig(tuple(Path(r) for r in runs), Path(out), examples, tuple(labels))
    with run_errors(), interrupted_before(out):
        rows, path = compare_runs(config)
    table = Table(title="test metrics")
    for column in ("run", "paradigm", "labeled_fraction", "best_step", *METRICS):
        table.add_column(column, justify="left" if column in ("run", "paradigm") else "right")
    for row in rows:
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else escape(str(v)) for v in row.values()))
    Console().print(table)
    Console().print(escape(f"wrote {path}"), soft_wrap=True)


@app.command()
def push(
    checkpoint: str = typer.Argument(..., help="RUN/best.pt (or an exported .pt) to publish."),
    repo_id: str = typer.Option(..., "--repo-id", help="The Hub model repo, USER/NAME."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private."),
    revision: str = typer.Option("main", "--revision", help="Branch to commit to (created when missing)."),
    dry_run: str = typer.Option(None, "--dry-run", help="Write the files that would be uploaded to this folder."),
    license: str = typer.Option("other", "--license", help="Hub licence id of the weights, e.g. mit, cc-by-4.0."),
) -> None:
    """Publish the density model (heads dropped) as model.safetensors, config.toml, crowdrank.json and a card."""
    with interrupted_starting("push"):
        from pathlib import Path

        from train.hub import PushConfig, print_push_summary, push_model

        with usage_errors():
            target = Path(dry_run) if dry_run else None
            config = PushConfig(Path(checkpoint), repo_id, private, revision, target, license)
    if config.dry_run is not None:
        interrupted = interrupted_before(config.dry_run)
    else:  # one commit of all the files: the repo has it or not (one that reached the Hub already stays there)
        interrupted = interrupted_before(f"the commit to {repo_id} (revision {revision})", done="made")
    with run_errors(), interrupted:
        summary = push_model(config)
    print_push_summary(summary, dry_run=config.dry_run is not None)
