"""``data.density_scale`` is an optimisation detail: it must not change what a manifest's weights and margin mean.

With s = 100 the count term on scaled targets is 1e4 times its value on true densities, while the ranking hinge
grew 100 times and the auxiliary tasks' cross-entropies and L2s on counts and depths not at all: lambda = 100 acted
as the paper's lambda = 1 and Zhao et al.'s 0.04 / 0.6 / 1 as 1e-4 of themselves. Every term of a run with scale s
must be s^2 times the same term at s = 1, so their proportions are the papers'.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.train.test_aux_tasks import aux_table
from train.losses import multitask_loss, scale_compensation
from train.manifest import config_from_dict
from train.tasks import auxiliary_terms


def test_scale_compensation_is_s_to_the_two_minus_the_degree_of_the_term() -> None:
    assert scale_compensation(100.0, degree=2) == 1.0
    assert scale_compensation(100.0, degree=1) == 100.0
    assert scale_compensation(100.0, degree=0) == 1e4
    assert scale_compensation(1.0, degree=0) == 1.0


@pytest.mark.parametrize("scale", [1.0, 100.0, 1000.0])
def test_counting_and_ranking_terms_keep_their_proportion_whatever_the_density_scale(scale: float) -> None:
    gen = torch.Generator().manual_seed(0)
    predicted, target = torch.rand(3, 1, 4, 4, generator=gen), torch.rand(3, 1, 4, 4, generator=gen)
    ranked = torch.rand(2, 5, 1, 4, 4, generator=gen)  # unordered means: several pairs violate the nesting
    margin = 0.05  # people per output cell, as the paper's
    base = multitask_loss(predicted, target, ranked, 1.0, 100.0, margin, density_scale=1.0)
    scaled = multitask_loss(scale * predicted, scale * target, scale * ranked, 1.0, 100.0, margin, scale)
    assert float(base["rank"]) > 0
    for key in ("count", "rank", "loss"):
        assert float(scaled[key]) == pytest.approx(scale**2 * float(base[key]), rel=1e-5), key


def test_the_ranking_term_at_the_default_scale_is_the_papers_lambda_times_the_hinge_on_true_densities() -> None:
    """The paper's L = Lc + lambda Lr on true densities, times s^2: lambda is not divided by s."""
    ranked = torch.tensor([[1.0, 3.0]]).reshape(1, 2, 1, 1, 1)  # the inner patch holds 2 more per cell
    terms = multitask_loss(None, None, 100.0 * ranked, 1.0, 100.0, 0.0, density_scale=100.0)
    assert float(terms["rank"]) == pytest.approx(100.0**2 * 100.0 * 2.0)


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_auxiliary_terms_scale_as_the_count_term_does(scale: float) -> None:
    table = aux_table(Path("never-read"), segment={"weight": 0.04, "threshold": 0.3}, depth={"weight": 0.6},
                      count_reg={"weight": 1.0}, upside_down={"weight": 0.5})  # fmt: skip
    table["data"]["unlabeled"] = ["never-read"]
    gen = torch.Generator().manual_seed(1)
    true_density = torch.rand(2, 1, 4, 4, generator=gen)
    out = {
        "segment": torch.randn(2, 1, 4, 4, generator=gen),
        "depth": torch.randn(2, 1, 4, 4, generator=gen),
        "count_reg": torch.tensor([2.0, 11.0]),
        "upside_down": torch.tensor([1.0, -1.0, 2.0, -3.0]),
    }
    batch = (None, None, torch.tensor([3.0, 9.0]), torch.zeros(2), torch.rand(2, 1, 4, 4, generator=gen) * 10)

    def terms_at(s: float) -> dict[str, float]:
        table["data"]["density_scale"] = s
        config = config_from_dict(table)
        got = auxiliary_terms(out, 2, (None, s * true_density, *batch[2:]), torch.tensor([0.0, 1.0]), config, None, 0)
        return {key: float(value) for key, value in got.items()}

    base, scaled = terms_at(1.0), terms_at(scale)
    assert set(base) == {"segment", "depth", "count_reg", "upside_down"}
    for key, value in base.items():
        assert scaled[key] == pytest.approx(scale**2 * value, rel=1e-5), key
