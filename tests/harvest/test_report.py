"""Pool report: the count tables, and the figures that exist only where the pool has their data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harvest.dedup_pool import DedupConfig, dedup_pool
from harvest.errors import ConfigError
from harvest.pool import Pool
from harvest.report import ReportConfig, build_report, count_table, latest_filter_threshold
from tests.harvest.imagegen import add_pictures, edited_copies, scene, write_folder


@pytest.fixture
def pool(tmp_path: Path) -> Pool:
    pool = Pool.create(tmp_path / "pool")
    add_pictures(pool, {f"w{seed}": scene(seed, 96, 72) for seed in range(4)}, source="wikimedia", license="CC BY 4.0")
    add_pictures(pool, {"o0": scene(10, 96, 72), "o0-copy": edited_copies(scene(10, 96, 72))["recompressed"]},
                 source="openverse", license="CC0")  # fmt: skip
    pool.append_rows([{"url": "http://x/gone.jpg", "source": "openverse", "status": "http_404", "error": "404"}])
    return pool


def test_count_table_counts_rows_and_kept_rows_per_value() -> None:
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c", None],
            "path": ["p", "p", "p", None],
            "source": ["wikimedia", "wikimedia", "openverse", "openverse"],
            "status": ["ok", "ok", "ok", "timeout"],
            "license": ["CC0", None, "CC0", None],
            "kept": [True, False, True, False],
        }
    )
    counts = count_table(df).set_index(["by", "value"])
    assert counts.loc[("source", "wikimedia")].tolist() == [2, 1]
    assert counts.loc[("status", "timeout")].tolist() == [1, 0]
    assert counts.loc[("license", "(none)")].tolist() == [2, 0]
    assert counts.loc[("kept", "True"), "rows"] == 2


def test_report_on_a_fresh_pool_writes_the_tables_and_no_figures(pool: Pool) -> None:
    summary = build_report(ReportConfig(pool.root))
    assert summary.figures == []
    assert summary.totals["rows"] == 7 and summary.totals["status ok"] == 6 and summary.totals["kept"] == 6
    counts = pd.read_csv(pool.root / "report" / "counts.csv")
    openverse = counts[(counts["by"] == "source") & (counts["value"] == "openverse")]
    assert openverse[["rows", "kept"]].values.tolist() == [[3, 2]]


def test_report_after_dedup_filter_and_leak_check_draws_every_figure(pool: Pool, tmp_path: Path) -> None:
    evaluation = write_folder(tmp_path / "eval", {"IMG_3": scene(3, 96, 72)})
    dedup_pool(DedupConfig(pool.root, exclude_like=(str(evaluation),), progress=False, workers=1))
    df = pool.read_index()
    ok = df["status"] == "ok"
    df.loc[ok, "clip_score"] = np.linspace(0.05, 0.95, int(ok.sum()), dtype=np.float32)
    pool.rewrite(df)
    pool.log_command(stage="filter", threshold=0.4)

    summary = build_report(ReportConfig(pool.root, out=tmp_path / "report", examples=4))
    names = sorted(p.name for p in summary.figures)
    assert names == sorted(
        ["score_histogram.png", "top_scores.png", "bottom_scores.png", "duplicate_groups.png", "leaks.png"]
    )
    for path in summary.figures:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 300
    assert summary.totals["marked dup_of"] == 1 and summary.totals["marked leak_of"] == 1


def test_latest_filter_threshold_reads_the_last_filter_run() -> None:
    meta = {
        "commands": [{"stage": "filter", "threshold": 0.3}, {"stage": "dedup"}, {"stage": "filter", "threshold": 0.7}]
    }
    assert latest_filter_threshold(meta) == 0.7
    assert latest_filter_threshold({"commands": [{"argv": ["harvest", "local"]}]}) is None


def test_bad_options_fail_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--examples"):
        ReportConfig(tmp_path, examples=0)


def test_cli_report_wiring(pool: Pool) -> None:
    from typer.testing import CliRunner

    from harvest.cli import app

    result = CliRunner().invoke(app, ["report", str(pool.root)])
    assert result.exit_code == 0, result.output
    assert "by source" in result.output and "counts.csv" in result.output
