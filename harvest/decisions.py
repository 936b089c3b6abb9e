"""How the pool's ``kept`` column is derived from the decisions of dedup and filter.

Each stage writes only its own evidence (``dup_of`` / ``leak_of`` for dedup, ``clip_score`` and
``clip_kept`` for filter) and then recomputes ``kept`` from all of it, so the two stages can run in either
order, any number of times, and ``kept`` always means: status ok, stored bytes, not a duplicate, not a
near-copy of an evaluation image, and above the CLIP threshold where a score exists.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

FAILED_DECODE = "decode_error"  # the status a stage gives a row whose stored bytes do not decode
LOST_FILE = "stored file missing or damaged"  # how the error of a decode_error row whose file was lost begins


def kept_mask(df: pd.DataFrame) -> pd.Series:
    """The ``kept`` value of every row from the evidence columns present in ``df``."""
    kept = (df["status"] == "ok") & df["id"].notna() & df["path"].notna()
    for column in ("dup_of", "leak_of"):
        if column in df.columns:
            kept &= df[column].isna()
    if "clip_kept" in df.columns:
        kept &= df["clip_kept"].astype("boolean").fillna(True).astype(bool)
    return kept.astype(bool)


def eligible_mask(df: pd.DataFrame) -> pd.Series:
    """Rows that take part in dedup and filter: status ok, with an id and a stored file."""
    return ((df["status"] == "ok") & df["id"].notna() & df["path"].notna()).astype(bool)


def mark_decode_failures(
    df: pd.DataFrame, errors: dict[str, str], intact: Callable[[str, str], bool] | None = None
) -> pd.DataFrame:
    """Give every row whose id failed to decode status ``decode_error`` and the reason (not a crash).

    Where the stored file is not the bytes that were checked when they were stored (``intact(id, path)`` false: it
    was deleted, cut short or overwritten since), the reason starts with :data:`LOST_FILE`: those rows are judged
    again once the file is put back (:func:`revive_intact`), or fetched again by ``--retry-failed``.
    """
    if errors:
        failed = df["id"].isin(list(errors))
        df.loc[failed, "status"] = FAILED_DECODE
        reasons = df.loc[failed, "id"].map(errors)
        if intact is not None:
            stored = df.loc[failed, ["id", "path"]].drop_duplicates("id")
            lost = {
                i
                for i, p in zip(stored["id"], stored["path"], strict=True)
                if not (isinstance(p, str) and intact(i, p))
            }
            reasons = [
                f"{LOST_FILE}: {r}" if i in lost else r for i, r in zip(df.loc[failed, "id"], reasons, strict=True)
            ]
        df.loc[failed, "error"] = reasons
    return df


def revive_intact(df: pd.DataFrame, intact: Callable[[str, str], bool]) -> tuple[pd.DataFrame, set[str]]:
    """Give status ok back to ``decode_error`` rows that failed because their stored file was lost (reason
    :data:`LOST_FILE`) and whose file holds its original bytes again (``intact(id, path)``: put back from a backup,
    or stored again by a fetch of the same bytes), so the stage that runs now judges them again; returns the ids
    revived. Bytes that never decoded are not read again on every run: their file was intact when they failed."""
    failed = (
        (df["status"] == FAILED_DECODE)
        & df["id"].notna()
        & df["path"].notna()
        & df["error"].fillna("").astype(str).str.startswith(LOST_FILE)
    )
    if not failed.any():
        return df, set()
    stored = df.loc[failed, ["id", "path"]].drop_duplicates()
    revived = {i for i, path in zip(stored["id"], stored["path"], strict=True) if intact(i, path)}
    back = failed & df["id"].isin(list(revived))
    df.loc[back, "status"] = "ok"
    df.loc[back, "error"] = None
    return df, revived
