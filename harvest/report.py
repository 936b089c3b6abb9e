"""`harvest report`: count tables and pictures that let a person judge a pool at a glance.

Writes into ``POOL/report/`` (or ``--out``): ``counts.csv`` (rows and kept rows by source, status,
licence and kept), and, where the pool has the data for them, ``top_scores.png`` / ``bottom_scores.png``
(contact sheets of the highest- and lowest-scoring pictures), ``score_histogram.png`` (with the
threshold line), ``duplicate_groups.png`` and ``leaks.png``. A pool that was never deduped or filtered
gets the tables and whatever figures apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harvest.decisions import kept_mask
from harvest.errors import ConfigError, PoolError

BREAKDOWNS = ("source", "status", "license", "kept")


@dataclass(frozen=True)
class ReportConfig:
    """Options of ``harvest report``; see the CLI help for each."""

    pool: Path
    out: Path | None = None
    examples: int = 24
    groups: int = 6
    thumb: int = 160

    def __post_init__(self) -> None:
        object.__setattr__(self, "pool", Path(self.pool))
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        if not 1 <= self.examples <= 200:
            raise ConfigError(f"--examples {self.examples} must be in 1..200 (pictures per contact sheet)")
        if not 1 <= self.groups <= 50:
            raise ConfigError(f"--groups {self.groups} must be in 1..50 (duplicate groups / leaks shown)")
        if not 32 <= self.thumb <= 512:
            raise ConfigError(f"--thumb {self.thumb} must be in 32..512 pixels")


@dataclass
class ReportSummary:
    """The count tables and the figures written."""

    out: Path
    counts: pd.DataFrame
    totals: dict[str, int]
    figures: list[Path] = field(default_factory=list)

    def tables(self) -> list[Any]:
        """Rich tables: the totals, then one per breakdown."""
        from rich.table import Table

        totals = Table(title="pool totals")
        totals.add_column("what")
        totals.add_column("rows", justify="right")
        for label, value in self.totals.items():
            totals.add_row(label, str(value))
        tables = [totals]
        for by in BREAKDOWNS:
            part = self.counts[self.counts["by"] == by]
            table = Table(title=f"by {by}")
            table.add_column(by)
            table.add_column("rows", justify="right")
            table.add_column("kept", justify="right")
            for _, row in part.iterrows():
                table.add_row(str(row["value"]), str(row["rows"]), str(row["kept"]))
            tables.append(table)
        return tables


def effective_kept(df: pd.DataFrame) -> pd.Series:
    """``kept`` as later stages read it: where no stage has decided yet (null), status ok rows count as kept."""
    derived = kept_mask(df)
    if "kept" not in df.columns:
        return derived
    return df["kept"].astype("boolean").fillna(derived).astype(bool)


def count_table(df: pd.DataFrame) -> pd.DataFrame:
    """Long table ``by, value, rows, kept``: rows and kept rows per source, status, licence and kept."""
    kept = effective_kept(df)
    frames = []
    for by in BREAKDOWNS:
        values = (kept if by == "kept" else df[by]).astype(object).where(lambda s: s.notna(), "(none)").astype(str)
        grouped = pd.DataFrame({"value": values, "kept": kept.astype(int)}).groupby("value", sort=True)
        part = grouped["kept"].agg(rows="size", kept="sum").reset_index()
        part.insert(0, "by", by)
        frames.append(part.sort_values("rows", ascending=False, kind="stable"))
    return pd.concat(frames, ignore_index=True)


def totals(df: pd.DataFrame) -> dict[str, int]:
    """Headline counts: rows, stored pictures, duplicates, leaks, scored and kept rows."""

    def count(column: str) -> int:
        return int(df[column].notna().sum()) if column in df.columns else 0

    kept = effective_kept(df)
    return {
        "rows": len(df),
        "status ok": int((df["status"] == "ok").sum()),
        "unique pictures": int(df.loc[df["status"] == "ok", "id"].nunique()),
        "marked dup_of": count("dup_of"),
        "marked leak_of": count("leak_of"),
        "with clip_score": count("clip_score"),
        "kept": int(kept.sum()),
    }


def latest_filter_threshold(meta: dict[str, Any]) -> float | None:
    """The threshold of the last `harvest filter` run that finished, as recorded in pool.json, if any."""
    for entry in reversed(meta.get("commands", [])):
        if entry.get("stage") == "filter" and entry.get("threshold") is not None and "failed" not in entry:
            return float(entry["threshold"])
    return None


def _thumbnail(path: Path, size: int) -> np.ndarray:
    """An RGB thumbnail array; a grey square when the file cannot be read (the report never fails on one)."""
    from PIL import Image, ImageOps

    from rankset.images import open_quietly  # a stored picture was admitted under the collecting run's limit

    try:
        with open_quietly(path) as image:
            image.draft("RGB", (size * 2, size * 2))
            image = ImageOps.exif_transpose(image).convert("RGB")
            image.thumbnail((size, size))
            return np.asarray(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return np.full((size, size, 3), 128, dtype=np.uint8)


def _save_png(fig: Any, out: Path) -> None:
    """Write ``fig`` to ``out`` as a PNG atomically and close it (:func:`rankset.io.write_figure`)."""
    from rankset.io import write_figure  # harvest imports nothing of ours at module level

    write_figure(fig, out, dpi=100)


def contact_sheet(items: list[tuple[Path, str]], out: Path, title: str, thumb: int, columns: int = 6) -> Path:
    """A grid of thumbnails with one caption each, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(1, min(columns, len(items)))
    rows = max(1, -(-len(items) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(max(2.2 * columns, 6.0), 2.2 * rows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (path, caption) in zip(axes.ravel(), items, strict=False):
        ax.imshow(_thumbnail(path, thumb))
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    _save_png(fig, out)
    return out


def group_sheet(groups: list[list[tuple[Path, str]]], out: Path, title: str, thumb: int) -> Path:
    """One row per group (first picture = the one kept), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(g) for g in groups)
    fig, axes = plt.subplots(
        len(groups), columns, figsize=(max(2.2 * columns, 6.0), 2.3 * len(groups) + 0.6), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for row, group in enumerate(groups):
        for col, (path, caption) in enumerate(group):
            axes[row, col].imshow(_thumbnail(path, thumb))
            axes[row, col].set_title(caption, fontsize=8)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    _save_png(fig, out)
    return out


def score_histogram(scores: np.ndarray, threshold: float | None, out: Path) -> Path:
    """Histogram of clip_score with the threshold as a vertical line, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(scores, bins=np.linspace(0, 1, 41), color="#4477aa")
    if threshold is not None:
        kept = int((scores >= threshold).sum())
        ax.axvline(
            threshold, color="#cc3311", linestyle="--", label=f"threshold {threshold:g}: {kept} of {len(scores)}"
        )
        ax.legend()
    ax.set_xlabel("clip_score (probability of a crowd scene)")
    ax.set_ylabel("pictures")
    ax.set_title("CLIP crowd-scene scores")
    fig.tight_layout()
    _save_png(fig, out)
    return out


def _size(width: object, height: object) -> str:
    """``WxH`` in whole pixels, ``?`` where unknown."""
    if pd.isna(width) or pd.isna(height):
        return "?"
    return f"{int(width)}x{int(height)}"


def build_report(config: ReportConfig) -> ReportSummary:
    """Write counts.csv and the figures the pool has data for; return the tables and figure paths."""
    from harvest.pool import Pool

    pool = Pool.open(config.pool)
    df = pool.read_index()
    out = Path(config.out) if config.out is not None else pool.root / "report"
    from rankset.io import write_file_atomic  # harvest imports nothing of ours at module level

    summary = ReportSummary(out=out, counts=count_table(df), totals=totals(df))
    try:  # the first writes: a pool on a read-only mount can be reported, into a folder elsewhere
        out.mkdir(parents=True, exist_ok=True)
        write_file_atomic(out / "counts.csv", summary.counts.to_csv(index=False).encode())
    except OSError as e:
        fix = "pass --out DIR, a writable folder" if config.out is None else "choose a writable --out"
        raise PoolError(f"cannot write the report into {out}: {e.strerror or e}; {fix}") from e

    stored = df[(df["status"] == "ok") & df["path"].notna()].drop_duplicates("id")
    path_of = dict(zip(stored["id"], (pool.path_of(p) for p in stored["path"]), strict=True))
    scored = stored[stored["clip_score"].notna()].sort_values("clip_score", ascending=False, kind="stable")
    if len(scored):
        threshold = latest_filter_threshold(pool.meta)
        summary.figures.append(score_histogram(scored["clip_score"].to_numpy(), threshold, out / "score_histogram.png"))
        for name, part, title in (
            ("top_scores.png", scored.head(config.examples), "highest clip_score"),
            ("bottom_scores.png", scored.tail(config.examples).iloc[::-1], "lowest clip_score"),
        ):
            items = [
                (path_of[i], f"{s:.3f} {str(t or '')[:18]}")
                for i, s, t in zip(part["id"], part["clip_score"], part["title"], strict=True)
            ]
            summary.figures.append(contact_sheet(items, out / name, title, config.thumb))

    dups = stored[stored["dup_of"].notna() & (stored["dup_of"] != stored["id"])] if "dup_of" in stored else stored[:0]
    if len(dups):
        groups = []
        size_of = stored.set_index("id")[["width", "height"]]
        by_size = sorted(dups.groupby("dup_of", sort=False), key=lambda group: -len(group[1]))  # largest first
        for rep, members in by_size[: config.groups]:
            if rep not in path_of:
                continue
            group = [(path_of[rep], f"kept {_size(*size_of.loc[rep])}, 1 of {len(members) + 1}")]
            group += [
                (path_of[i], f"dup {_size(w, h)}")
                for i, w, h in zip(members["id"], members["width"], members["height"], strict=True)
            ]
            groups.append(group[:6])
        if groups:
            summary.figures.append(group_sheet(groups, out / "duplicate_groups.png", "duplicate groups", config.thumb))

    leaks = stored[stored["leak_of"].notna()] if "leak_of" in stored else stored[:0]
    if len(leaks):
        items = [(path_of[i], f"leak of {k}") for i, k in zip(leaks["id"], leaks["leak_of"], strict=True)][
            : config.examples
        ]
        summary.figures.append(
            contact_sheet(items, out / "leaks.png", "near-copies of evaluation images", config.thumb)
        )
    return summary
