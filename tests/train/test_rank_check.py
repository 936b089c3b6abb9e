"""`train eval --ranked`: the share of nested pairs a model orders wrongly, from its mean predicted density."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from train.rank_check import check_ranked, ranking_agreement, set_means


class Brightness(torch.nn.Module):
    """Density = the normalised first channel: brighter patches 'hold more people'."""

    output_stride = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


def test_agreement_counts_every_contained_pair_and_the_hinge_of_the_wrong_ones() -> None:
    means = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])  # right, all wrong, ties
    result = ranking_agreement(means)
    assert result["pairs"] == 9 and result["sets"] == 3
    assert result["violated"] == pytest.approx(3 / 9)  # ties are not violations: the hinge is 0 there
    assert result["adjacent_violated"] == pytest.approx(2 / 6)
    assert result["hinge_per_set"] == pytest.approx((0 + (1 + 2 + 1) + 0) / 3)


def test_set_means_are_the_mean_density_of_each_patch_largest_first(blob_data: dict[str, Path]) -> None:
    from rankset.io import load_dataset_dict
    from train.device import normalize

    ranked = load_dataset_dict(str(blob_data["ranked"]))["train"]
    means = set_means(Brightness(), ranked, 32, torch.device("cpu"), max_sets=5, batch_sets=2)
    assert means.shape == (5, 3)
    patch = np.array(ranked[4]["images"][2].convert("RGB").resize((32, 32)), dtype=np.uint8)
    expected = normalize(torch.from_numpy(patch).permute(2, 0, 1)[None])[:, :1].mean()
    assert float(means[4, 2]) == pytest.approx(float(expected), abs=1e-5)
    result = check_ranked(Brightness(), str(blob_data["ranked"]), 32, torch.device("cpu"), max_sets=100)
    assert result["sets"] == 12 and result["pairs"] == 36
    assert 0.0 <= result["violated"] <= 1.0


def test_sets_of_one_patch_or_no_sets_give_zero_pairs_not_nan() -> None:
    for means in (torch.ones(4, 1), torch.zeros(0, 0)):
        result = ranking_agreement(means)
        assert result["pairs"] == 0.0 and result["violated"] == 0.0 and result["hinge_per_set"] == 0.0
        assert result["sets"] == float(means.shape[0])


def test_check_ranked_reads_the_train_split_else_the_first_by_name(blob_data: dict[str, Path]) -> None:
    from rankset.io import load_dataset_dict

    ranked = load_dataset_dict(str(blob_data["ranked"]))["train"]
    few = ranked.select(range(2))
    device = torch.device("cpu")
    assert check_ranked(Brightness(), {"train": ranked, "zzz": few}, 32, device, max_sets=100)["sets"] == 12
    assert check_ranked(Brightness(), {"b": ranked, "a": few}, 32, device, max_sets=100)["sets"] == 2


def test_an_adjacent_violation_is_an_inner_patch_fuller_than_the_one_just_around_it() -> None:
    means = torch.tensor([[3.0, 2.0, 1.0], [3.0, 1.0, 2.0]])  # right; one adjacent pair wrong (1 < 2)
    result = ranking_agreement(means)
    assert result["adjacent_violated"] == pytest.approx(1 / 4)
    assert result["violated"] == pytest.approx(1 / 6) and result["hinge_per_set"] == pytest.approx(1 / 2)
