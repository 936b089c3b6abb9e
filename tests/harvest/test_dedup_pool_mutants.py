"""Dedup's default dHash threshold, which a hand-made mutant showed unprotected."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.harvest.test_dedup_pool_edges import by_name, hashed_pool, run


def test_without_dhash_threshold_the_dhash_vote_uses_the_phash_threshold(tmp_path: Path) -> None:
    # pHash identical; dHash 4 bits apart (at --threshold 4: near) or 5 bits apart (over it: kept apart).
    pool = hashed_pool(
        tmp_path,
        {
            "a": (0, 0, 800, 600, 10_000),
            "b": (0, 0b1111, 400, 300, 9_000),
            "c": (0, 0b11111 << 20, 400, 300, 9_000),
        },
    )
    run(pool, threshold=4)
    df = by_name(pool)
    assert df.loc["b", "dup_of"] == df.loc["a", "id"]
    assert pd.isna(df.loc["c", "dup_of"])
    assert bool(df.loc["c", "kept"]) and bool(df.loc["a", "kept"]) and not bool(df.loc["b", "kept"])
