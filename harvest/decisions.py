"""How the pool's ``kept`` column is derived from the decisions of dedup and filter.

Each stage writes only its own evidence (``dup_of`` / ``leak_of`` for dedup, ``clip_score`` and
``clip_kept`` for filter) and then recomputes ``kept`` from all of it, so the two stages can run in either
order, any number of times, and ``kept`` always means: status ok, stored bytes, not a duplicate, not a
near-copy of an evaluation image, and above the CLIP threshold where a score exists.
"""

from __future__ import annotations

import pandas as pd

FAILED_DECODE = "decode_error"  # the status a stage gives a row whose stored bytes do not decode


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


def mark_decode_failures(df: pd.DataFrame, errors: dict[str, str]) -> pd.DataFrame:
    """Give every row whose id failed to decode status ``decode_error`` and the reason (not a crash)."""
    if errors:
        failed = df["id"].isin(list(errors))
        df.loc[failed, "status"] = FAILED_DECODE
        df.loc[failed, "error"] = df.loc[failed, "id"].map(errors)
    return df
