"""Pseudo-label rounds chained inside one manifest (``[rounds]``; Liu, Durasov & Fua CVPR 2022, issue #8).

``train fit MANIFEST --out RUN`` with a ``[rounds]`` table trains a chain of ordinary runs:

```
RUN/config.toml                  the manifest as given, [rounds] included (``train fit RUN/config.toml`` reruns it)
RUN/round-0/                     a normal run folder: the manifest as written (its config.toml has no [rounds])
RUN/round-0/pseudo-labels/       ``train pseudo-label`` of round-0/best.pt over rounds.images (a labeled dataset)
RUN/round-0/model.pt             ``train export`` of round-0/best.pt: round 1's initial weights (init = "previous")
RUN/round-1/                     data.labeled + [round-0/pseudo-labels], model.pretrained = round-0/model.pt, ...
RUN/rounds.csv, RUN/rounds.png   per round: validation and test MAE, pseudo-labeled pictures trained on and kept
RUN/eval.json, eval_images.csv   the last round's test evaluation (so a chain reads like one run to `train study`)
```

Each step is skipped when its output is already complete, so ``--resume`` continues a killed chain at the first
unfinished step: a round is complete once its ``round.json`` exists (written after its fit returns), pseudo-labels
once their dataset folder exists (written atomically), an export once its file exists. An unfinished round
continues from its own ``last.pt`` exactly as ``train fit --resume`` does. Every round's config is built and
validated before the first step, so a bad ``[rounds]`` value fails before any training.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from train.config import RunConfig
from train.errors import ConfigError, DataError
from train.manifest import config_from_dict, config_to_dict, config_to_toml
from train.runlog import write_json, write_rows_csv, write_text_atomic

PSEUDO_LABELS = "pseudo-labels"
INIT_WEIGHTS = "model.pt"
ROUND_DONE = "round.json"
COLUMNS = (
    "round",
    "steps",
    "resumed_from",
    "init",
    "labeled_sets",
    "pseudo_labels_in",
    "best_val_mae",
    "test_mae",
    "test_rmse",
    "pseudo_labels_kept",
    "pseudo_label_mae",
    "seconds",
)


@dataclass
class RoundsResult:
    """A finished chain: its folder, one summary row per round, and notes for the person who ran it."""

    out: Path
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def round_folder(out: Path, index: int) -> Path:
    """``RUN/round-<index>``."""
    return out / f"round-{index}"


def round_config(config: RunConfig, index: int, out: Path) -> RunConfig:
    """The resolved manifest of round ``index`` of the chain ``config`` trains into ``out`` (without [rounds]).

    Round 0 is the manifest as written. Round r >= 1 appends ``round-(r-1)/pseudo-labels`` to ``data.labeled``,
    trains ``rounds.steps`` steps when that is set, and with ``init = "previous"`` starts from
    ``round-(r-1)/model.pt`` (the exported best.pt, Masksembles masks included).
    """
    rounds = config.rounds
    assert rounds is not None, "round_config needs a manifest with [rounds]"
    changes: dict[str, Any] = {"name": f"{config.name}-round-{index}", "rounds": None}
    try:
        if index > 0:
            previous = round_folder(out, index - 1)
            changes["data"] = dataclasses.replace(
                config.data, labeled=[*config.data.labeled, str(previous / PSEUDO_LABELS)]
            )
            if rounds.init == "previous":
                changes["model"] = dataclasses.replace(config.model, pretrained=str(previous / INIT_WEIGHTS))
            if rounds.steps:
                changes["schedule"] = dataclasses.replace(config.schedule, steps=rounds.steps)
        return dataclasses.replace(config, **changes)
    except ConfigError as e:
        raise ConfigError(f"round {index} of [rounds] (rounds.steps = {rounds.steps}): {e}") from e


def pseudo_label_images(config: RunConfig) -> list[str]:
    """What every round pseudo-labels: ``rounds.images``, else ``data.unlabeled``."""
    assert config.rounds is not None, "pseudo_label_images needs a manifest with [rounds]"
    return config.rounds.image_paths or list(config.data.unlabeled)


def check_pictures(config: RunConfig) -> int:
    """How many pictures the rounds pseudo-label; fails before training when a round would keep none of them."""
    from train.pseudo_label import select_confident
    from train.unlabeled import list_unlabeled

    rounds = config.rounds
    assert rounds is not None, "check_pictures needs a manifest with [rounds]"
    key = "rounds.images" if rounds.image_paths else "data.unlabeled"
    pictures = len(list_unlabeled(pseudo_label_images(config), key=key))
    for index in range(rounds.count - 1):
        if not len(select_confident([0.0] * pictures, rounds.fraction(index))):
            raise ConfigError(
                f"rounds.keep_fraction = {rounds.keep_fraction!r} keeps no picture of the {pictures} in {key} "
                f"for round {index + 1}; raise it above {0.5 / pictures:.3g} or add pictures"
            )
    return pictures


def fit_rounds(config: RunConfig, out: str | Path, resume: bool = False, show_progress: bool = True) -> RoundsResult:
    """Train every round of ``config``'s chain into ``out``, pseudo-labeling between rounds; skips finished steps."""
    started = time.perf_counter()
    rounds = config.rounds
    if rounds is None:
        raise ConfigError("this manifest has no [rounds] table; train it with train.loop.fit, or add [rounds]")
    out = Path(out)
    configs = [round_config(config, index, out) for index in range(rounds.count)]
    pictures = check_pictures(config)
    notes = check_chain_folder(config, out, resume)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.toml", config_to_toml(config))
    rows: list[dict[str, Any]] = []
    for index, round_cfg in enumerate(configs):
        folder = round_folder(out, index)
        row = train_round(round_cfg, index, folder, show_progress, notes)
        row["pseudo_labels_in"] = 0 if index == 0 else count_kept(round_folder(out, index - 1) / PSEUDO_LABELS)
        row["pseudo_labels_kept"] = row["pseudo_label_mae"] = ""
        if index < rounds.count - 1:
            row["pseudo_labels_kept"] = make_pseudo_labels(round_cfg, folder, config, index, pictures, show_progress)
            row["pseudo_label_mae"] = pseudo_label_error(folder / PSEUDO_LABELS, pseudo_label_images(config))
            if rounds.init == "previous":
                export_for_next(folder)
        rows.append({column: row.get(column, "") for column in COLUMNS})
    write_summary(out, rows)
    return RoundsResult(out, rows, notes, time.perf_counter() - started)


def check_chain_folder(config: RunConfig, out: Path, resume: bool) -> list[str]:
    """Refuse to overwrite a chain without ``--resume`` (or resume a missing one); note manifest changes."""
    if (out / "last.pt").exists():
        raise ConfigError(f"{out} holds a single run (last.pt), not a rounds chain; choose another --out")
    started = (out / "config.toml").is_file() or any(out.glob("round-*"))
    if started and not resume:
        raise ConfigError(f"{out} already holds a rounds chain; pass --resume to continue it or choose another --out")
    if resume and not started:
        raise ConfigError(f"--resume: {out} holds no rounds chain (no config.toml); run without --resume first")
    if not (out / "config.toml").is_file():
        return []
    before = config_to_dict(config_from_dict(tomllib.loads((out / "config.toml").read_text())))
    changed = [k for k, v in config_to_dict(config).items() if before.get(k) != v]
    if changed:
        return [f"resumed with changed manifest sections: {', '.join(changed)} (finished rounds are kept as they are)"]
    return []


def train_round(config: RunConfig, index: int, folder: Path, show_progress: bool, notes: list[str]) -> dict[str, Any]:
    """Round ``index``'s summary row: read back from ``round.json`` when finished, else trained (or resumed)."""
    from train.loop import fit

    done = folder / ROUND_DONE
    if done.is_file():
        notes.append(f"round {index}: finished before, not retrained ({done})")
        return json.loads(done.read_text())
    result = fit(config, folder, resume=(folder / "last.pt").is_file(), show_progress=show_progress)
    notes += [f"round {index}: {note}" for note in result.notes]
    row = {
        "round": index,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "labeled_sets": len(config.data.labeled),
        "init": config.model.pretrained,
        "best_val_mae": result.best_val_mae,
        "test_mae": result.test.get("mae", math.nan),
        "test_rmse": result.test.get("rmse", math.nan),
        "seconds": round(result.seconds, 1),
    }
    write_json(done, row)
    return json.loads(done.read_text())


def make_pseudo_labels(
    round_cfg: RunConfig, folder: Path, config: RunConfig, index: int, pictures: int, show_progress: bool
) -> int:
    """Write ``folder/pseudo-labels`` from ``folder/best.pt`` unless it is there; returns how many were kept."""
    from train.pseudo_label import PseudoLabelConfig, pseudo_label

    assert config.rounds is not None, "make_pseudo_labels needs a manifest with [rounds]"
    target = folder / PSEUDO_LABELS
    if not (target / "dataset_dict.json").is_file():
        schedule = round_cfg.schedule
        labeling = PseudoLabelConfig(
            folder / "best.pt",
            tuple(pseudo_label_images(config)),
            target,
            keep_fraction=config.rounds.fraction(index),
            device=schedule.device,
            tile=schedule.eval_tile,
            seed=round_cfg.seed,
        )
        pseudo_label(labeling, show_progress=show_progress)
    kept = count_kept(target)
    if kept == 0:
        raise DataError(
            f"round {index} kept no pseudo-label of {pictures} pictures (all unreadable?); see "
            f"{target / 'pseudo_labels.csv'}"
        )
    return kept


def count_kept(dataset: Path) -> int:
    """How many pictures a pseudo-label dataset kept, from its ``pseudo_labels.csv``."""
    with (dataset / "pseudo_labels.csv").open(newline="") as f:
        return sum(row["status"] == "kept" for row in csv.DictReader(f))


def pseudo_label_error(dataset: Path, images: list[str]) -> float:
    """MAE of the kept pseudo-labels' counts against true counts, where the pictures' folder ships them; else NaN.

    ``rankset synth --unlabeled`` writes ``counts.csv`` (``file``, ``count``; ``#`` comment lines) beside its JPEGs
    for evaluation only. This reads it to say how right the kept labels are; nothing is chosen by it.
    """
    truth: dict[str, float] = {}
    for name in images:
        path = Path(name) / "counts.csv"
        if path.is_file():
            lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
            truth.update({Path(r["file"]).stem: float(r["count"]) for r in csv.DictReader(lines)})
    with (dataset / "pseudo_labels.csv").open(newline="") as f:
        kept = [r for r in csv.DictReader(f) if r["status"] == "kept" and r["image_id"] in truth]
    if not kept:
        return math.nan
    return sum(abs(float(r["count"]) - truth[r["image_id"]]) for r in kept) / len(kept)


def export_for_next(folder: Path) -> Path:
    """``folder/model.pt``: best.pt without heads, optimizer or RNG states, the next round's initial weights."""
    from train.export import ExportConfig, export_model

    target = folder / INIT_WEIGHTS
    if not target.is_file():
        export_model(ExportConfig(folder / "best.pt", target))
    return target


def write_summary(out: Path, rows: list[dict[str, Any]]) -> None:
    """``rounds.csv``, ``rounds.png`` and the last round's ``eval.json`` / ``eval_images.csv`` copied to ``out``."""
    write_rows_csv(out / "rounds.csv", rows)
    plot_rounds(rows, out / "rounds.png")
    last = round_folder(out, rows[-1]["round"])
    if (last / "eval.json").is_file():
        write_json(out / "eval.json", {**json.loads((last / "eval.json").read_text()), "round": rows[-1]["round"]})
    if (last / "eval_images.csv").is_file():
        shutil.copyfile(last / "eval_images.csv", out / "eval_images.csv")


def plot_rounds(rows: list[dict[str, Any]], path: Path) -> Path:
    """Validation and test MAE per round, with the pseudo-labeled pictures each round trained on as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rankset.io import write_figure

    rounds = [int(r["round"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.twinx()
    bars.bar(rounds, [int(r["pseudo_labels_in"]) for r in rows], color="tab:gray", alpha=0.25, width=0.5)
    bars.set_ylabel("pseudo-labeled pictures trained on")
    curves = (
        ("best_val_mae", "validation MAE (best)"),
        ("test_mae", "test MAE"),
        ("pseudo_label_mae", "kept pseudo-labels' MAE (true counts)"),
    )
    for key, label in curves:
        points = [(x, r[key]) for x, r in zip(rounds, rows, strict=True) if _finite(r.get(key))]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_zorder(bars.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xticks(rounds)
    ax.set(xlabel="round", ylabel="MAE (people)", title="pseudo-label rounds")
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    return write_figure(fig, path, dpi=100)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _blank(value: Any) -> str:
    """A table cell: "-" for nothing, NaN or infinity (no validation, no true counts), else the value."""
    return "-" if value in (None, "") or (isinstance(value, float) and not math.isfinite(value)) else str(value)


def print_rounds_summary(result: RoundsResult) -> None:
    """One table row per round (MAE, pseudo-labels in and kept, time), the notes, and where the files went."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"train fit: {len(result.rows)} rounds in {result.out}"))
    columns = ("round", "steps", "pseudo_labels_in", "best_val_mae", "test_mae", "test_rmse", "pseudo_labels_kept")
    for column in (*columns, "pseudo_label_mae", "seconds"):
        table.add_column(column.replace("_", " "), justify="right")
    for row in result.rows:
        cells = [row.get(c) for c in (*columns, "pseudo_label_mae", "seconds")]
        table.add_row(*(f"{v:.4g}" if _finite(v) and isinstance(v, float) else escape(_blank(v)) for v in cells))
    console = Console()
    console.print(table)
    for note in result.notes:
        console.print(escape(f"note: {note}"), soft_wrap=True)
    console.print(
        escape(f"wrote {result.out}/rounds.csv, {result.out}/rounds.png, {result.out}/round-*/"), soft_wrap=True
    )
