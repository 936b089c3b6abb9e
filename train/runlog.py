"""The run folder's logs: ``metrics.jsonl`` (one JSON object per logged step), ``config.toml`` and ``eval.json``.

Writes are appends of whole lines (metrics) or temp-and-rename (everything else). On ``--resume`` the
metrics lines logged after the checkpoint's step are dropped, so no step appears twice; a fresh run into a folder
that a run stopped before its first checkpoint left behind starts from empty logs (:func:`clear_partial_run`).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from rankset.io import staged_file
from train.errors import DataError


def make_out_folder(out: Path, flag: str = "--out") -> Path:
    """``out`` made (with its parents), or a DataError naming ``flag``, the folder and the reason: a parent that is a
    file, a read-only or missing mount. Called before any work, so no evaluation or prediction is computed and then
    lost to a traceback. Not :func:`rankset.io.out_folder_problem`: that one makes nothing and probes the parent of an
    existing ``out`` (it writes by renaming into place), so it misses a read-only ``out``; its message differs."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DataError(
            f"{flag} {out} cannot be written to ({type(e).__name__}: {e.strerror or e}). Fix: pass a folder you can "
            "write to, on a disk that is mounted and writable"
        ) from e
    return out


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temp name beside ``path`` and rename it into place (:func:`rankset.io.staged_file`)."""
    with staged_file(path) as tmp:
        tmp.write_text(text)


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null for non-finite floats."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Pretty, sorted, NaN-free JSON written atomically."""
    write_text_atomic(path, json.dumps({k: _clean(v) for k, v in data.items()}, indent=2, sort_keys=True) + "\n")


class MetricsLog:
    """Append-only ``metrics.jsonl``; every record has ``step`` (steps completed when it was logged)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        assert "step" in record, "every metrics record needs a step"
        with self.path.open("a") as f:
            f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every record. A last line cut short (the machine died mid-append) is dropped: it is the one record
        being written, after the checkpoint a resume goes back to. A damaged line before it is a DataError."""
        if not self.path.exists():
            return []
        lines = [(number, line) for number, line in enumerate(self.path.read_text().splitlines(), 1) if line.strip()]
        records = []
        for index, (number, line) in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                if index == len(lines) - 1:
                    break
                raise DataError(
                    f"{self.path} line {number} is not a JSON record ({e.msg}): the metrics log is damaged; "
                    "restore it from a copy, or delete that line and rerun"
                ) from e
        return records

    def truncate_after(self, step: int) -> None:
        """Keep only records with ``step`` <= ``step`` (used when resuming from a checkpoint at ``step``)."""
        kept = [r for r in self.read() if r["step"] <= step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))


# what fit writes besides checkpoints and config.toml; a run killed before its first last.pt may leave some of them
PARTIAL_RUN_FILES = (
    "metrics.jsonl",
    "eval.json",
    "eval_images.csv",
    "plots/loss.png",
    "plots/val_mae.png",
    "plots/density_examples.png",
)


def clear_partial_run(out: Path) -> list[str]:
    """Delete the files a run stopped before its first checkpoint left in ``out``; returns their names.

    Such a run cannot be resumed (no last.pt), and a fresh start appends to ``metrics.jsonl``: without this the
    killed run's steps would appear twice and its plots would pass for the new run's. Only the files fit writes
    (and its temp files) are removed, since ``--out`` may be a folder that holds other things.
    """
    removed = [name for name in PARTIAL_RUN_FILES if (out / name).is_file()]
    for name in removed:
        (out / name).unlink(missing_ok=True)
    return removed + remove_temp_files(out)


def remove_temp_files(out: Path) -> list[str]:
    """Delete the temp files (``.NAME.tmp-…``, :func:`rankset.io.staged_file`) that writers killed mid-write left in
    ``out`` and ``out/plots``; returns their names. Only for a run folder whose lock is held (train.runlock): no
    other writer's file is taken. A kill while ``last.pt`` was written leaves one the size of a checkpoint, and a
    resume never renames it. Not :func:`rankset.io.remove_stale_staging`: that one keeps files whose writer it cannot
    prove dead (a run killed on another machine of a shared disk), where the held lock already proves it here."""
    removed = [str(p.relative_to(out)) for folder in (out, out / "plots") for p in folder.glob(".*.tmp-*")]
    for name in removed:
        (out / name).unlink(missing_ok=True)
    return removed


def write_rows_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Per-image evaluation rows as CSV (the union of keys as columns), written atomically."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with staged_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        writer = csv.DictWriter(f, fieldnames=columns)  # backslashreplace: never lose a row over its name
        writer.writeheader()
        writer.writerows(rows)
