"""Distilled depth without a segmentation task, pinned where a hand-made mutant survived: the mask of D = S * D_raw
is then every cell holding people (threshold 0, the segmentation task's default), not some other cut."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.train.test_aux_tasks import aux_table
from train.manifest import config_from_dict
from train.tasks import auxiliary_terms


def test_depth_alone_distils_the_depth_of_every_cell_holding_people() -> None:
    config = config_from_dict(aux_table(Path("never-read"), depth={"weight": 1.0}))
    assert config.tasks.segment is None
    target = torch.tensor([[[[0.0, 10.0], [60.0, 200.0]]]])  # density_scale 100: 0, 0.1, 0.6 and 2 people per cell
    depth = torch.tensor([[[[5.0, 4.0], [3.0, float("nan")]]]])  # the last cell's depth is unknown
    predicted = torch.zeros(1, 1, 2, 2)
    terms = auxiliary_terms({"depth": predicted}, 1, (None, target, torch.tensor([3.0]), torch.zeros(1), depth), None,
                            config, None, step=0)  # fmt: skip
    # known cells: 0 people (target 0), 0.1 people (target 4 m), 0.6 people (target 3 m)
    assert float(terms["depth"]) == pytest.approx(100.0**2 * (0.0 + 16.0 + 9.0) / 3)  # times s^2, as the count term
