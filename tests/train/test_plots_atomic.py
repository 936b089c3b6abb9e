"""Every PNG train writes is atomic: a render that dies part way leaves the previous file, not a torn one."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

import train
from train.plots import plot_curves, plot_density_examples
from train.rounds import plot_rounds

OLD = b"\x89PNG previous complete figure"


class RenderKilled(Exception):
    pass


@pytest.fixture
def dying_savefig(monkeypatch: pytest.MonkeyPatch) -> None:
    """``savefig`` writes a few bytes to wherever it is told, then dies, as a kill mid-write would."""

    def savefig(self: Figure, target: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(target, str | Path):
            Path(target).write_bytes(b"\x89PNG torn")
        else:
            target.write(b"\x89PNG torn")
        raise RenderKilled

    monkeypatch.setattr(Figure, "savefig", savefig)


def _plot_curves(path: Path) -> None:
    plot_curves([{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}], path.parent)


def _plot_density_examples(path: Path) -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    plot_density_examples([("a", image, np.ones((2, 2)), 3.0, 4.0)], 4, path)


def _plot_rounds(path: Path) -> None:
    plot_rounds([{"round": 0, "pseudo_labels_in": 0, "best_val_mae": 2.0, "test_mae": 3.0}], path)


@pytest.mark.parametrize(
    ("plot", "name"),
    [(_plot_curves, "loss.png"), (_plot_density_examples, "density_examples.png"), (_plot_rounds, "rounds.png")],
)
def test_a_render_killed_mid_write_leaves_the_previous_png_and_no_staging_file(
    tmp_path: Path, dying_savefig: None, plot: Any, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(OLD)
    with pytest.raises(RenderKilled):
        plot(path)
    assert path.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_plot_is_a_complete_png_and_its_figure_is_closed(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    _plot_rounds(tmp_path / "rounds.png")
    assert (tmp_path / "rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "rounds.png").read_bytes()[-8:-4] == b"IEND"
    assert len(plt.get_fignums()) == before


def test_no_train_module_but_plots_calls_savefig_on_a_path() -> None:
    """compare, rounds, studies and run plots all go through ``rankset.io.write_figure``; a new direct
    ``fig.savefig(path)`` would bring torn PNGs back. (pseudo_label renders into a buffer that the atomic
    dataset write carries, so it is allowed to call savefig on that buffer.)"""
    package = Path(train.__file__).parent
    offenders = []
    for module in package.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "savefig":
                offenders.append(f"{module.relative_to(package)}:{node.lineno}")
    assert [o for o in offenders if not o.startswith(("plots.py", "pseudo_label.py"))] == []
