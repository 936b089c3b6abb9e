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
LEAK_BY = "leak_by"  # the optional column naming who made a row's leak_of mark (see harvest.leakage)
BY_EXCLUDE_LIKE, BY_QBE_GUARD = "dedup", "qbe"  # its values: dedup --exclude-like, qbe's test-split guard


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


def mark_lost_files(df: pd.DataFrame, problem: Callable[[str, int | None], str | None]) -> tuple[pd.DataFrame, int]:
    """Give status ``decode_error`` to the eligible rows whose stored file is gone or no longer the size the index
    records (``problem(path, bytes)``: a ``stat``, no read), with a reason that starts with :data:`LOST_FILE`;
    returns the number of rows marked.

    A stage that reuses stored hashes or cached embeddings reads no file, so without this check a picture deleted or
    replaced after it was judged stayed ``kept`` until a later stage tripped over it. Such rows are fetched again by
    ``--retry-failed`` and judged again once their file is back intact (:func:`revive_intact`).
    """
    eligible = eligible_mask(df)
    if not eligible.any():
        return df, 0
    sizes = df["bytes"] if "bytes" in df.columns else pd.Series(None, index=df.index, dtype=object)
    stored = pd.DataFrame({"path": df.loc[eligible, "path"], "bytes": sizes[eligible]}).drop_duplicates("path")
    reasons = {}
    for path, size in zip(stored["path"], stored["bytes"], strict=True):
        found = problem(path, None if pd.isna(size) else int(size))
        if found is not None:
            reasons[path] = f"{LOST_FILE}: {found} (put it back, or fetch it again with --retry-failed)"
    lost = eligible & df["path"].isin(list(reasons))
    if lost.any():
        df.loc[lost, "status"] = FAILED_DECODE
        df["error"] = df["error"].astype(object)
        df.loc[lost, "error"] = df.loc[lost, "path"].map(reasons)
    return df, int(lost.sum())


def lost_files_note(rows: int) -> str:
    """The end-of-run line for :func:`mark_lost_files`' rows: what became of them and the two ways to mend them."""
    return (
        f"{rows} row(s) lost their stored picture (deleted, or replaced by other bytes) and are no longer kept "
        "(status decode_error): put the files back and run this command again, or store them again with "
        "`harvest keywords|qbe ... --retry-failed` (`harvest local DIR --retry-failed` for pictures from a folder)"
    )


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
