"""The results of a ``train study``: each run's ordering metrics, then ``results.csv`` (one row per run),
``results.md`` (mean and standard deviation of the study's metric per grid point, and the per-run figures) and
``results.png`` (the metric against the grid). Running the grid is :mod:`train.study`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from train.study import StudyConfig

READING = {"spearman": "higher is better", "count_ratio": "closest to 1 is best"}  # every other metric: lower is better


def ordering_metrics(per_image_csv: Path) -> dict[str, float]:
    """Two numbers that tell ordering from calibration, from a run's per-image test counts.

    ``spearman``: rank correlation of predicted and annotated counts (what a ranking loss can improve);
    ``count_ratio``: total predicted over total annotated (the global scale, which only labels can fix).
    """
    import pandas as pd
    from scipy.stats import spearmanr

    if not per_image_csv.is_file():
        return {}
    df = pd.read_csv(per_image_csv)
    ok = df[df["status"] == "ok"]
    if len(ok) < 2 or ok["count"].sum() <= 0:
        return {}
    return {
        "spearman": float(spearmanr(ok["count"], ok["predicted"]).statistic),
        "count_ratio": float(ok["predicted"].sum() / ok["count"].sum()),
    }


def write_results(study: StudyConfig, rows: list[dict[str, Any]], out: Path) -> None:
    """results.csv, the mean/std Markdown table and the plot, each written atomically: a kill while a rerun rewrites
    them leaves the previous files whole, not empty ones."""
    import pandas as pd

    from train.runlog import write_text_atomic

    stem = results_stem(study, out)
    df = pd.DataFrame(rows)
    write_text_atomic(out / f"{stem}.csv", df.to_csv(index=False))
    ok = df[df["status"] == "ok"]
    write_text_atomic(out / f"{stem}.md", summary_markdown(study, ok))
    if len(ok):
        plot_results(study, ok, out / f"{stem}.png")


def results_stem(study: StudyConfig, out: Path) -> str:
    """``results``, or the study's name when another study already wrote its results into ``out``."""
    owner = out / "study.json"
    if owner.is_file() and json.loads(owner.read_text()).get("name") != study.name:
        return study.name
    return "results"


def group_keys(study: StudyConfig) -> list[str]:
    """What the tables and the plot group runs by: the grid keys; without a grid, the folds, else the seeds."""
    return list(study.grid) or (["fold"] if study.folds else ["seed"])


def summarise(study: StudyConfig, df: Any, keys: list[str] | None = None) -> Any:
    """Mean, standard deviation and number of runs of the metric per grid point (or per ``keys``)."""
    keys = keys or group_keys(study)
    grouped = df.groupby(keys, sort=False)[study.metric]
    return grouped.agg(["mean", "std", "count"]).reset_index()


def summary_markdown(study: StudyConfig, df: Any) -> str:
    """A table: rows = the last grid key's values (or points), columns = the first grid key's values."""
    lines = [f"# {study.name}", ""]
    if study.description:
        lines += [study.description.strip(), ""]
    over = f"seeds {list(study.seeds)}"
    if study.folds:
        over = f"{len(study.folds)} folds ({', '.join(study.folds)}) x {over}"
    reading = READING.get(study.metric, "lower is better")
    lines += [
        f"Test {study.metric.upper()}, mean ± standard deviation over {over} ({reading}). "
        f"Base manifest: `{study.manifest.name}`.",
        "",
    ]
    if not len(df):
        return "\n".join(lines + ["No finished runs yet."]) + "\n"
    table = summarise(study, df)
    keys = list(study.grid)
    if len(keys) >= 2:
        col_key, row_keys = keys[0], keys[1:]
        columns = list(dict.fromkeys(table[col_key]))
        lines.append("| " + " | ".join(row_keys + [str(c) for c in columns]) + " |")
        lines.append("|" + "---|" * (len(row_keys) + len(columns)))
        for row_values, part in table.groupby(row_keys, sort=False):
            row_values = row_values if isinstance(row_values, tuple) else (row_values,)
            cells = {r[col_key]: _cell(r) for _, r in part.iterrows()}
            lines.append("| " + " | ".join([str(v) for v in row_values] + [cells.get(c, "–") for c in columns]) + " |")
    else:
        key = str(table.columns[0])  # the grid key, else what summarise grouped by
        lines += [f"| {key} | {study.metric} |", "|---|---|"]
        lines += [f"| {r[key]} | {_cell(r)} |" for r in table.to_dict("records")]  # iterrows would print 1 as 1.0
    if study.folds and keys and "fold" in df:
        per_fold = summarise(study, df, ["fold", keys[0]])
        columns = list(dict.fromkeys(per_fold[keys[0]]))
        lines += ["", f"Per fold, mean over seeds ({keys[0]} in columns):", ""]
        lines += ["| fold | " + " | ".join(str(c) for c in columns) + " |", "|---|" + "---|" * len(columns)]
        for fold, part in per_fold.groupby("fold", sort=True):
            cells = {r[keys[0]]: f"{r['mean']:.2f}" for _, r in part.iterrows()}
            lines.append(f"| {fold} | " + " | ".join(cells.get(c, "–") for c in columns) + " |")
    return "\n".join(lines + _per_run_lines(study, df)) + "\n"


def _per_run_lines(study: StudyConfig, df: Any) -> list[str]:
    """Every finished run: the metric, then ordering against calibration (Spearman, predicted/annotated count)."""

    def number(value: Any, digits: int) -> str:
        return "–" if value is None or value != value else f"{value:.{digits}f}"  # NaN != NaN: no value

    lines = [
        "",
        "Per run: Spearman rank correlation of predicted and annotated test counts (what ranking can improve) and "
        "total predicted / total annotated count (the scale, which only labels fix).",
        "",
        f"| run | {study.metric} | Spearman | count ratio |",
        "|---|---|---|---|",
    ]
    for _, r in df.iterrows():
        spearman, ratio = r.get("spearman"), r.get("count_ratio")
        lines.append(f"| {r['run']} | {number(r[study.metric], 2)} | {number(spearman, 3)} | {number(ratio, 3)} |")
    return lines


def _cell(r: Any) -> str:
    spread = 0.0 if r["count"] < 2 else float(r["std"])
    return f"{r['mean']:.2f} ± {spread:.2f} (n={int(r['count'])})"


def plot_results(study: StudyConfig, df: Any, path: Path) -> None:
    """Metric against the first numeric grid key, one line per value of the others (error bars: std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rankset.io import write_figure

    table = summarise(study, df)
    keys = group_keys(study)  # a folds study without a grid is grouped by fold: there is no seed column to plot
    numeric = [k for k in keys if all(isinstance(v, int | float) and not isinstance(v, bool) for v in table[k])]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if numeric:
        x_key = numeric[-1]
        others = [k for k in keys if k != x_key]
        groups = table.groupby(others, sort=False) if others else [((), table)]
        for label, part in groups:
            part = part.sort_values(x_key)
            name = ", ".join(str(v) for v in (label if isinstance(label, tuple) else (label,))) or study.metric
            ax.errorbar(part[x_key], part["mean"], yerr=part["std"].fillna(0), marker="o", capsize=3, label=name)
        ax.set_xlabel(x_key)
        ax.legend(fontsize=8)
    else:
        labels = [" / ".join(str(r[k]) for k in keys) for _, r in table.iterrows()]
        ax.bar(range(len(table)), table["mean"], yerr=table["std"].fillna(0), capsize=3)
        ax.set_xticks(range(len(table)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"test {study.metric.upper()} (mean ± std over seeds)")
    ax.set_title(study.name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    write_figure(fig, path, dpi=110)
