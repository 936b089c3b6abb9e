"""rankset synth's end-of-run summary, pinned where a hand-made mutant survived: the middle figure of "heads per
image (min / median / max)" is the median, not the mean (a sparse run with one dense scene differs a lot)."""

from __future__ import annotations

from pathlib import Path

from rankset.synth.writer import SynthSummary


def test_the_summary_gives_min_median_and_max_heads_per_image(capsys, monkeypatch) -> None:
    from rankset.synth.report import print_synth_summary

    monkeypatch.setenv("COLUMNS", "200")  # the table on one line whatever the terminal

    summary = SynthSummary(Path("out"), 4, {"train": 4}, (0, 2, 3, 995), seconds=1.0)
    assert summary.count_stats == (0, 2.5, 995)  # the mean would be 250
    assert summary.total_heads == 1000
    print_synth_summary(summary)
    assert "0 / 2.5 / 995" in capsys.readouterr().out
