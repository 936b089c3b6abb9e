"""Folding repeated pool rows, pinned where a hand-made mutant survived: once a URL has an ``ok`` row, a later row
of the same URL (a failed attempt, or other bytes) never replaces it; its tags are merged into the ok row."""

from __future__ import annotations

import pandas as pd

from harvest.writer import merge_found_by


def test_a_later_row_never_replaces_the_first_ok_row_of_its_url() -> None:
    df = pd.DataFrame(
        {
            "url": ["u", "v", "u", "v"],
            "status": ["ok", "ok", "http_503", "ok"],
            "id": ["a", "c", None, "d"],
            "query": ["x", "x", "y", "y"],
            "found_by": [["s:x"], ["s:x"], ["s:y"], ["t:y"]],
        }
    )
    merged = merge_found_by(df, {}).set_index("url")
    assert list(merged.index) == ["u", "v"]
    assert (merged.loc["u", "status"], merged.loc["u", "id"], merged.loc["u", "query"]) == ("ok", "a", "x")
    assert (merged.loc["v", "id"], merged.loc["v", "found_by"]) == ("c", ["s:x", "t:y"])
    assert merged.loc["u", "found_by"] == ["s:x", "s:y"]
