"""Checkpoint field checks, pinned where a hand-made mutant survived: a density scale of NaN or infinity is refused
like 0 (with NaN every count would be NaN, with infinity every count 0, both silently)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.train.test_pseudo_label import tiny_checkpoint
from train.checkpoint import model_from_checkpoint
from train.errors import ModelError


@pytest.mark.parametrize(("value", "found"), [(float("nan"), "float nan"), (float("inf"), "float inf")])
def test_a_density_scale_that_is_not_finite_is_refused_naming_the_field(
    tmp_path: Path, value: float, found: str
) -> None:
    state = torch.load(tiny_checkpoint(tmp_path / "good.pt"), weights_only=True)
    state["density_scale"] = value
    torch.save(state, tmp_path / "best.pt")
    with pytest.raises(ModelError, match=rf"its 'density_scale' is {found}, expected a number > 0"):
        model_from_checkpoint(tmp_path / "best.pt", torch.device("cpu"))
