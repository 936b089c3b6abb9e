"""End-of-run summary tables (rich) for ``train fit``, ``train eval`` and ``train predict``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) or math.isinf(value) else f"{value:.4g}"
    return str(value)


def written_paths(out: Any, *names: str) -> str:
    """``OUT/name`` for each name, joined by Path so ``--out counts/`` does not print ``counts//counts.csv``."""
    return ", ".join(str(Path(out) / name) + ("/" if name.endswith("/") else "") for name in names)


def _table(title: str, rows: list[tuple[str, Any]]) -> Any:
    """A two-column table; cells are escaped, so a note naming ``[tasks.depth]`` or a path with ``[...]`` in it is
    printed as written instead of being taken for rich markup and dropped."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(escape(key), escape(_fmt(value)))
    return table


def print_fit_summary(result: Any) -> None:
    """Steps, final loss terms, best validation MAE, test metrics and notes of a finished ``fit``."""
    from rich.console import Console

    rows: list[tuple[str, Any]] = [("run folder", result.out), ("steps", result.steps)]
    if result.resumed_from:
        rows.append(("resumed from step", result.resumed_from))
    rows += [(f"train {k} (last log)", v) for k, v in result.last_terms.items()]
    rows.append(("best validation MAE", result.best_val_mae))
    rows += [
        (f"test {k}", result.test[k])
        for k in ("mae", "rmse", "nae", "game0", "game3", "images", "failed", "unlabeled")
        if k in result.test and (k != "unlabeled" or result.test[k])
    ]
    rows.append(("seconds", result.seconds))
    rows += [("note", note) for note in result.notes]
    Console().print(_table("train fit", rows))


def print_eval_summary(summary: dict[str, Any], out: Any) -> None:
    """eval.json's numbers and where the files went."""
    from rich.console import Console

    keys = ("split", "images", "failed", "unlabeled", "mae", "rmse", "nae", "game0", "game1", "game2", "game3")
    rows = [(k, summary[k]) for k in keys if k in summary and (k != "unlabeled" or summary[k])]
    ranking = summary.get("ranking")
    if ranking:
        rows.append(("nested pairs ordered wrongly", f"{ranking['violated']:.1%} of {int(ranking['pairs'])}"))
        rows.append(("adjacent pairs ordered wrongly", f"{ranking['adjacent_violated']:.1%}"))
    rows.append(("written", written_paths(out, "eval.json", "images.csv")))
    Console().print(_table("train eval", rows))


def print_predict_summary(rows: list[dict[str, Any]], out: Any) -> None:
    """How many images were counted or failed, the total count and where the files went."""
    from rich.console import Console
    from rich.markup import escape

    from train.unlabeled import NO_PICTURES

    ok = [r for r in rows if r["status"] == "ok"]
    empty = [r for r in rows if r["status"] == NO_PICTURES]
    failed: dict[str, int] = {}
    for r in rows:
        if r["status"] not in ("ok", NO_PICTURES):
            failed[r["status"]] = failed.get(r["status"], 0) + 1
    summary = [("images counted", len(ok)), ("people (total)", float(sum(r["count"] for r in ok)))]
    summary += [(f"failed: {status}", n) for status, n in sorted(failed.items())]
    if empty:
        summary.append(("folders with no pictures", len(empty)))
    summary.append(("written", written_paths(out, "counts.csv", "overlays/")))
    Console().print(_table("train predict", summary))
    for r in empty:  # a folder argument that gave nothing: said plainly, not only counted
        Console(stderr=True).print(f"warning: {escape(r['error'])}", soft_wrap=True)


def print_pseudo_label_summary(rows: list[dict[str, Any]], out: Any) -> None:
    """Kept, dropped and unreadable pictures, the kept ones' uncertainty range and where the dataset went."""
    from rich.console import Console
    from rich.markup import escape

    from train.unlabeled import NO_PICTURES

    empty = [r for r in rows if r["status"] == NO_PICTURES]
    kept = [r for r in rows if r["status"] == "kept"]
    summary: list[tuple[str, Any]] = [
        ("pictures", len(rows) - len(empty)),
        ("kept", len(kept)),
        ("dropped (less confident)", sum(r["status"] == "dropped" for r in rows)),
        ("unreadable", sum(r["status"] == "unreadable_image" for r in rows)),
    ]
    if kept:
        summary.append(("kept relative uncertainty, max", max(r["uncertainty"] for r in kept)))
        summary.append(("kept people (total)", sum(r["count"] for r in kept)))
    if empty:
        summary.append(("inputs with no pictures", len(empty)))
    summary.append(
        ("written", f"{Path(out)} (train split), {written_paths(out, 'pseudo_labels.csv', 'uncertainty.png')}")
    )
    Console().print(_table("train pseudo-label", summary))
    for r in empty:  # an --images folder that gave nothing: said plainly, not only counted
        Console(stderr=True).print(f"warning: --images {escape(r['error'])}", soft_wrap=True)
