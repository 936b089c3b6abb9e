"""Findings of a kill-and-resume fuzz audit of the rankset CLI, each replayed at its kill point without timing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rankset.synth.writer
from rankset.synth import SynthConfig, synth_unlabeled


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the point it is raised at runs (no ``except Exception`` catches it)."""


def test_a_killed_unlabeled_rerun_never_leaves_new_pictures_beside_the_earlier_runs_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "pictures"
    synth_unlabeled(SynthConfig(n=3, out=out, seed=0, width=64, height=64, max_count=5, unlabeled=True))
    assert (out / "counts.csv").is_file() and (out / "synth.json").is_file()
    real = rankset.synth.writer._rendered

    def killed_after_one_scene(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        rows = real(*args, **kwargs)
        yield next(rows)
        raise Killed

    monkeypatch.setattr(rankset.synth.writer, "_rendered", killed_after_one_scene)
    with pytest.raises(Killed):
        synth_unlabeled(SynthConfig(n=3, out=out, seed=1, width=64, height=64, max_count=5, unlabeled=True))
    # synth_00000.jpg is seed 1's now, 00001-00002 still seed 0's: the earlier counts.csv would be wrong for it, and
    # a synth.json would say the folder is a finished seed-0 run
    assert sorted(p.name for p in out.iterdir()) == ["synth_00000.jpg", "synth_00001.jpg", "synth_00002.jpg"]
    monkeypatch.setattr(rankset.synth.writer, "_rendered", real)
    again = synth_unlabeled(SynthConfig(n=3, out=out, seed=1, width=64, height=64, max_count=5, unlabeled=True))
    fresh = tmp_path / "fresh"
    reference = synth_unlabeled(SynthConfig(n=3, out=fresh, seed=1, width=64, height=64, max_count=5, unlabeled=True))
    assert again.counts == reference.counts
    for name in ("synth_00000.jpg", "synth_00001.jpg", "synth_00002.jpg", "counts.csv"):
        assert (out / name).read_bytes() == (fresh / name).read_bytes()
