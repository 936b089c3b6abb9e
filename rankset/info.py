"""`rankset info`: what a dataset folder (or Hub id) holds, per split, plus a histogram PNG to look at.

Labeled sets (imported benchmarks, synthetic crowds): images, heads and min / median / max people per image;
the PNG is a histogram of per-image counts. Ranked sets: sets, k (patches per set) and distinct source
pictures; the PNG shows sets per source picture and the side of each set's largest patch. Only the small
columns are read (counts, ids, boxes), never the images, so this is quick on large datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rankset.errors import ConfigError, InputError, RanksetError
from rankset.io import write_figure


@dataclass(frozen=True)
class InfoConfig:
    """What `rankset info DIR [--out PNG]` asks for; ``out`` defaults to DIR/info.png (./info.png for a Hub id)."""

    path: str
    out: Path | None = None

    def __post_init__(self) -> None:
        if not str(self.path).strip():
            raise ConfigError("DIR is empty; pass a dataset folder written by rankset or a Hub id user/name")
        if self.out is not None and Path(self.out).suffix.lower() != ".png":
            raise ConfigError(f"--out {self.out} must end in .png (the histogram is written as a PNG)")
        if self.out is not None:
            from rankset.io import out_folder_problem

            problem = out_folder_problem(Path(self.out), "--out")  # a folder of it is a file: say so, not "File exists"
            if problem is not None:
                raise ConfigError(problem)

    @property
    def png(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        folder = Path(self.path)
        return folder / "info.png" if folder.is_dir() else Path("info.png")


@dataclass(frozen=True)
class SplitInfo:
    """One split: ``rows`` is images (labeled) or sets (ranked); the other fields apply to one kind."""

    name: str
    rows: int
    heads: int | None = None
    unlabeled: int = 0
    count_min: int | None = None
    count_median: float | None = None
    count_max: int | None = None
    k: tuple[int, ...] = ()
    sources: int | None = None


@dataclass(frozen=True)
class DatasetReport:
    """Everything `rankset info` prints, and where the PNG went."""

    path: str
    kind: str
    splits: list[SplitInfo]
    png: Path
    datasets: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    build_info: dict[str, Any] = field(default_factory=dict)


def labeled_split_info(name: str, counts: np.ndarray) -> SplitInfo:
    """Per-split figures from per-image counts; a count of -1 marks an unlabeled image (NWPU-Crowd test)."""
    counts = np.asarray(counts, dtype=np.int64)
    labeled = counts[counts >= 0]
    if len(labeled) == 0:
        return SplitInfo(name, rows=len(counts), heads=0, unlabeled=len(counts))
    return SplitInfo(
        name,
        rows=len(counts),
        heads=int(labeled.sum()),
        unlabeled=int(len(counts) - len(labeled)),
        count_min=int(labeled.min()),
        count_median=float(np.median(labeled)),
        count_max=int(labeled.max()),
    )


def ranked_split_info(name: str, source_ids: list[str], set_lengths: np.ndarray) -> SplitInfo:
    """Per-split figures of a ranked-set split: sets, the distinct k values, distinct source pictures."""
    return SplitInfo(
        name,
        rows=len(source_ids),
        k=tuple(sorted({int(k) for k in set_lengths})),
        sources=len(set(source_ids)),
    )


def dataset_report(config: InfoConfig) -> DatasetReport:
    """Read the small columns of every split, summarise them, and write the histogram PNG."""
    from rankset.io import load_dataset_dict
    from rankset.schema import dataset_kind, decode_build_info

    dsd = load_dataset_dict(config.path)
    first = next(iter(dsd.values()), None)
    if first is None:
        raise InputError(f"{config.path} holds no splits")
    kind = dataset_kind(first.column_names)
    if kind == "unknown":
        raise InputError(
            f"{config.path} is neither a labeled nor a ranked-set dataset (columns {first.column_names}); "
            "pass a folder written by `rankset import`, `rankset synth` or `rankset build`"
        )
    splits, plotted, names = [], {}, set()
    for name, split in dsd.items():
        table = split.data
        if kind == "labeled":
            counts = table.column("count").to_numpy()
            splits.append(labeled_split_info(name, counts))
            plotted[name] = counts[counts >= 0]
            names.update(v for v in table.column("dataset").to_pylist() if v)
        else:
            boxes = table.column("boxes").to_pylist()
            source_ids = table.column("source_id").to_pylist()
            splits.append(ranked_split_info(name, source_ids, np.array([len(b) for b in boxes])))
            sides = np.array([b[0][2] - b[0][0] for b in boxes if b], dtype=np.float64)
            _, per_source = np.unique(np.asarray(source_ids, dtype=str), return_counts=True)
            plotted[name] = (per_source, sides)
    png = config.png
    if kind == "labeled":
        plot_count_histogram(plotted, png, f"{config.path}: people per image")
    else:
        plot_ranked_histograms(plotted, png, f"{config.path}: ranked sets")
    return DatasetReport(
        path=str(config.path),
        kind=kind,
        splits=splits,
        png=png,
        datasets=tuple(sorted(names)),
        columns=tuple(first.column_names),
        build_info=decode_build_info(first.info.description),
    )


def plot_count_histogram(counts_by_split: dict[str, np.ndarray], out: Path, title: str) -> Path:
    """One histogram of per-image counts per split, overlaid, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4))
    every = np.concatenate([c for c in counts_by_split.values() if len(c)] or [np.zeros(1)])
    bins = np.histogram_bin_edges(every, bins=min(40, max(5, len(np.unique(every)))))
    for name, counts in counts_by_split.items():
        if len(counts):
            ax.hist(counts, bins=bins, histtype="step", linewidth=1.5, label=f"{name} ({len(counts)} images)")
    ax.set_xlabel("people per image (annotated count)")
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10)
    if any(len(c) for c in counts_by_split.values()):
        ax.legend()
    return _save(fig, out)


def plot_ranked_histograms(by_split: dict[str, tuple[np.ndarray, np.ndarray]], out: Path, title: str) -> Path:
    """Two panels per dataset: sets per source picture, and the side of each set's largest patch (pixels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, (per_source, sides) in by_split.items():
        if len(per_source):
            left.hist(per_source, bins=np.arange(per_source.max() + 2) - 0.5, histtype="step", label=name)
        if len(sides):
            right.hist(sides, bins=30, histtype="step", label=name)
    left.set_xlabel("sets cut from one source picture")
    left.set_ylabel("source pictures")
    right.set_xlabel("side of the largest patch (source pixels)")
    right.set_ylabel("sets")
    for ax in (left, right):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def _save(fig: Any, out: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        write_figure(fig, out, dpi=100)
    except OSError as e:  # a dataset folder on a read-only mount, say: DIR/info.png is only the default
        raise RanksetError(f"cannot write {out}: {e.strerror or e}; pass --out PNG, a writable path") from e
    finally:
        plt.close(fig)
    return out


def print_dataset_report(report: DatasetReport, console: Any = None) -> None:
    """Print the per-split table of a :class:`DatasetReport` and where its PNG went."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{report.path} ({report.kind}{': ' + ', '.join(report.datasets) if report.datasets else ''})")
    if report.kind == "labeled":
        columns = ("split", "images", "unlabeled", "heads", "min", "median", "max")
    else:
        columns = ("split", "sets", "k", "sources")
    for column in columns:
        table.add_column(column, justify="left" if column == "split" else "right")
    for split in report.splits:
        if report.kind == "labeled":
            median = "-" if split.count_median is None else f"{split.count_median:g}"
            table.add_row(
                split.name,
                str(split.rows),
                str(split.unlabeled),
                str(split.heads),
                "-" if split.count_min is None else str(split.count_min),
                median,
                "-" if split.count_max is None else str(split.count_max),
            )
        else:
            table.add_row(split.name, str(split.rows), ",".join(map(str, split.k)) or "-", str(split.sources))
    console.print(table)
    if report.build_info:
        console.print("built with: " + ", ".join(f"{k}={v}" for k, v in sorted(report.build_info.items())))
    console.print(f"columns: {', '.join(report.columns)}")
    console.print(f"wrote {report.png}")
