"""harvest report's counts.csv, pinned where a hand-made mutant survived: within each breakdown the values come
largest first (by rows), not in alphabetical order."""

from __future__ import annotations

import pandas as pd

from harvest.report import count_table


def test_each_breakdown_lists_its_values_by_rows_largest_first() -> None:
    df = pd.DataFrame(
        {
            "source": ["a", "b", "b", "b", "c", "c"],
            "status": ["ok", "ok", "ok", "http_404", "ok", "ok"],
            "license": ["cc0-1.0"] * 6,
            "id": ["1", "2", "3", None, "5", "6"],
            "path": ["p1", "p2", "p3", None, "p5", "p6"],
        }
    )
    table = count_table(df)
    sources = table[table["by"] == "source"]
    assert list(sources["value"]) == ["b", "c", "a"] and list(sources["rows"]) == [3, 2, 1]
    assert list(sources["kept"]) == [2, 2, 1]  # the 404 row is not kept
    assert list(table[table["by"] == "status"]["value"]) == ["ok", "http_404"]
