"""Gaps in the training-loop tests found by hand-made mutants of train/loop.py.

- ``train_step`` takes the ranked patches' predictions from the shared forward pass by position. Taking the *last*
  N*k outputs instead of those after the labeled crops passed every test, because no test ran a step with the
  upside-down pictures (which join the pass after the ranked patches): Eq. 5 would then rank unlabeled pictures.
- Nothing checked that the ranked sets reach the step in the loader's order, largest patch first: reversing each
  set on its way to ``train_step`` passed test_loop, and it turns Eq. 5 into a loss that rewards misordering.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.train.conftest import blob_data_table
from train.data import RANKED_STREAM, RankedSets, draw_indices
from train.device import normalize
from train.loop import fit, train_step
from train.losses import ranking_hinge
from train.manifest import config_from_dict
from train.sources import resolve_sources


class MeanShade(torch.nn.Module):
    """Density = w * the first channel averaged over 4x4 cells: brighter pictures predict more."""

    output_stride = 4

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * torch.nn.functional.avg_pool2d(x[:, :1], 4)


def _shade(value: int, n: int) -> torch.Tensor:
    return torch.full((n, 3, 8, 8), value, dtype=torch.uint8)


def test_the_rank_term_is_computed_on_the_ranked_patches_when_unlabeled_pictures_join_the_pass() -> None:
    config = config_from_dict(
        {
            "data": {"labeled": ["x"], "ranked": ["y"], "density_scale": 1.0},  # the hinge as computed below
            "schedule": {"amp": False, "device": "cpu"},
            "tasks": {"rank": {"margin": 0.5}},
        }
    )
    model = MeanShade()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-9)
    count_batch = (_shade(100, 2), torch.zeros(2, 1, 2, 2), torch.zeros(2), torch.zeros(2))
    # one set of k=2 whose smaller patch is brighter (a violated pair), then unlabeled pictures far brighter still
    rank_batch = torch.stack([_shade(50, 1)[0], _shade(90, 1)[0]])[None]  # (1, 2, 3, 8, 8)
    unlabeled_batch = (_shade(250, 2), torch.zeros(2, dtype=torch.bool), torch.zeros(2))
    with torch.no_grad():
        expected = ranking_hinge(model(normalize(rank_batch.flatten(0, 1))).unflatten(0, (1, 2)), margin=0.5)
    terms = train_step(model, optimizer, count_batch, rank_batch, config, torch.device("cpu"), unlabeled_batch)
    assert float(expected) > 0.5  # the pair is violated, so a wrong slice would give a different number
    assert terms["rank"].item() == pytest.approx(float(expected), rel=1e-5)


def test_ranked_sets_reach_the_step_in_the_loaders_order_largest_patch_first(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import train.loop

    table: dict[str, Any] = {
        "name": "order",
        "model": {"arch": "test-tiny", "pretrained": "none"},
        "data": blob_data_table(blob_data, ranked=[str(blob_data["ranked"])]),
        "tasks": {"rank": {"sets_per_batch": 2}},
        "schedule": {"paradigm": "rank-then-finetune", "rank_steps": 2, "steps": 3, "batch": 2, "eval_every": 3},
        "optim": {"name": "adam", "lr": 0.001, "weight_decay": 0.0},
    }
    config = config_from_dict(table)
    seen: list[torch.Tensor] = []
    real_step = train.loop.train_step

    def spy(model: Any, optimizer: Any, count_batch: Any, rank_batch: Any, *args: Any, **kwargs: Any) -> Any:
        if rank_batch is not None:
            seen.append(rank_batch.clone())
        return real_step(model, optimizer, count_batch, rank_batch, *args, **kwargs)

    monkeypatch.setattr(train.loop, "train_step", spy)
    fit(config, tmp_path / "run", show_progress=False)
    assert len(seen) == 2  # the two rank-only steps

    ranked = RankedSets(resolve_sources(config).ranked, config.data.input_size, config.seed)
    for batch_index, batch in enumerate(seen):
        draws = (2 * batch_index, 2 * batch_index + 1)
        rows = [(draw_indices(len(ranked), config.seed, RANKED_STREAM, d), d) for d in draws]
        expected = torch.stack([ranked[row][0] for row in rows])
        torch.testing.assert_close(batch, expected)
