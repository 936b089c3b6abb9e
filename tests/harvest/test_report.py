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
from tests.harvest.imagegen import add_pictures, edited_copies, encode, scene, write_folder


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


def test_the_figures_show_the_right_pictures_in_the_right_order(tmp_path: Path, monkeypatch) -> None:
    """Top and bottom sheets by score, duplicate groups largest first with the kept picture leading its row, and the
    --examples / --groups limits; the drawing itself is stubbed out (what is drawn is the point here)."""
    from harvest import report

    drawn: dict[str, list] = {}

    def draw(items: list, out: Path, *_: object) -> Path:
        drawn[out.name] = items
        return out

    monkeypatch.setattr(report, "contact_sheet", draw)
    monkeypatch.setattr(report, "group_sheet", draw)
    monkeypatch.setattr(report, "score_histogram", lambda scores, threshold, out: out)
    pool = Pool.create(tmp_path / "pool")
    dup_of = {1: 0, 2: 0, 3: 0, 5: 4, 7: 6, 8: 6}  # groups: 0 with three copies, 4 with one, 6 with two
    pool.append_rows(
        [{"id": f"i{k}", "url": f"u/{k}", "status": "ok", "path": f"images/i{k}.jpg", "width": 10 * (k + 1),
          "height": 10, "clip_score": k / 10, "title": f"t{k}", "dup_of": f"i{dup_of[k]}" if k in dup_of else None,
          "leak_of": "IMG_1" if k == 9 else None} for k in range(10)]
    )  # fmt: skip
    build_report(ReportConfig(pool.root, examples=3, groups=2))
    assert [caption for _, caption in drawn["top_scores.png"]] == ["0.900 t9", "0.800 t8", "0.700 t7"]
    assert [caption for _, caption in drawn["bottom_scores.png"]] == ["0.000 t0", "0.100 t1", "0.200 t2"]
    groups = drawn["duplicate_groups.png"]
    assert [[path.name for path, _ in group] for group in groups] == [
        ["i0.jpg", "i1.jpg", "i2.jpg", "i3.jpg"],
        ["i6.jpg", "i7.jpg", "i8.jpg"],
    ]
    assert groups[0][0][1] == "kept 10x10, 1 of 4" and groups[1][1][1] == "dup 80x10"
    assert drawn["leaks.png"] == [(pool.root / "images" / "i9.jpg", "leak of IMG_1")]


def test_totals_count_unique_pictures_among_usable_rows_only() -> None:
    from harvest.report import totals

    df = pd.DataFrame(
        {"id": ["a", "a", "b", "c"], "path": ["p", "p", "p", "p"], "status": ["ok", "ok", "ok", "decode_error"]}
    )
    assert totals(df)["unique pictures"] == 2 and totals(df)["status ok"] == 3 and totals(df)["kept"] == 3


def test_a_stored_file_that_does_not_decode_is_a_grey_thumbnail(tmp_path: Path) -> None:
    from harvest.report import _thumbnail

    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    thumb = _thumbnail(tmp_path / "cut.jpg", 48)
    assert thumb.shape == (48, 48, 3) and (thumb == 128).all()
    (tmp_path / "fine.png").write_bytes(encode(scene(1, 96, 72), "PNG"))
    assert _thumbnail(tmp_path / "fine.png", 48).shape == (36, 48, 3)


def test_the_histogram_threshold_line_counts_scores_at_the_threshold_as_kept(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.axes

    from harvest.report import score_histogram

    labels: list[str] = []
    real_axvline = matplotlib.axes.Axes.axvline

    def axvline(self, x, *args, **kwargs):
        labels.append(kwargs.get("label"))
        return real_axvline(self, x, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "axvline", axvline)
    score_histogram(np.array([0.2, 0.4, 0.6]), 0.4, tmp_path / "h.png")
    assert labels == ["threshold 0.4: 2 of 3"] and (tmp_path / "h.png").is_file()


def test_a_pool_whose_report_folder_cannot_be_written_fails_naming_it_and_out(pool: Pool, monkeypatch) -> None:
    import errno

    from typer.testing import CliRunner

    from harvest.cli import app

    mkdir = Path.mkdir

    def read_only(self: Path, *args, **kwargs) -> None:  # a pool on a read-only mount, as the README allows
        if self.name == "report":
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    result = CliRunner().invoke(app, ["report", str(pool.root)], env={"COLUMNS": "400"})
    assert result.exit_code == 1 and not isinstance(result.exception, OSError)
    message = " ".join(result.output.split())
    assert "harvest report failed: cannot write the report into" in message and "report: Read-only" in message
    assert "pass --out DIR" in message

    elsewhere = pool.root.parent / "elsewhere"
    assert CliRunner().invoke(app, ["report", str(pool.root), "--out", str(elsewhere)]).exit_code == 0
    assert (elsewhere / "counts.csv").is_file()  # the fix the message names works


def test_a_figure_killed_mid_write_leaves_the_previous_png_whole(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.figure

    from harvest.report import score_histogram

    out = score_histogram(np.array([0.2, 0.7]), 0.5, tmp_path / "score_histogram.png")  # an earlier report's
    previous = out.read_bytes()
    real_savefig = matplotlib.figure.Figure.savefig

    def killed_mid_write(self, target, *args, **kwargs):
        real_savefig(self, target, *args, **kwargs)
        if hasattr(target, "truncate"):  # a file object: cut it short, as a kill would
            target.truncate(40)
        else:
            Path(target).write_bytes(Path(target).read_bytes()[:40])
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        score_histogram(np.array([0.1, 0.3, 0.9]), 0.5, out)
    assert out.read_bytes() == previous and Image.open(out).size[0] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["score_histogram.png"]  # and no half-written file beside it
