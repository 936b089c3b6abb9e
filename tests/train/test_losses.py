"""Eq. 1 normalisation and Eq. 5's pairs and gradient, checked against hand computations."""

from __future__ import annotations

import pytest
import torch

from train.config import ScheduleConfig
from train.losses import density_mse, multitask_loss, pair_indices, ranking_hinge
from train.paradigms import active_tasks, batches_before


def test_density_mse_sums_pixels_and_averages_over_maps_with_a_half() -> None:
    predicted = torch.zeros(2, 1, 2, 2)
    target = torch.ones(2, 1, 2, 2)
    assert density_mse(predicted, target).item() == pytest.approx(8 / (2 * 2))


def test_a_set_of_five_has_ten_contained_pairs_and_five_sets_fifty() -> None:
    first, second = pair_indices(5)
    assert len(first) == 10 and all(i < j for i, j in zip(first, second, strict=True))
    densities = torch.zeros(5, 5, 1, 2, 2)
    assert ranking_hinge(densities, margin=1.0).item() == pytest.approx(50.0)  # every pair pays the margin


def test_ranking_hinge_gradient_matches_a_hand_computation() -> None:
    # one set of k=3 with mean densities c = [1, 2, 0.5] (largest-first order violated between 0 and 1)
    values = torch.tensor([1.0, 2.0, 0.5])
    densities = values.view(1, 3, 1, 1, 1).expand(1, 3, 1, 2, 2).clone().requires_grad_(True)
    loss = ranking_hinge(densities, margin=0.25)
    # pairs (0,1): max(0, 2-1+.25)=1.25; (0,2): max(0, .5-1+.25)=0; (1,2): max(0, .5-2+.25)=0
    assert loss.item() == pytest.approx(1.25)
    loss.backward()
    # d loss / d c = [-1, +1, 0]; each of the 4 cells of a map gets 1/4 of its mean's gradient
    expected = torch.tensor([-0.25, 0.25, 0.0]).view(1, 3, 1, 1, 1).expand(1, 3, 1, 2, 2)
    torch.testing.assert_close(densities.grad, expected)


def test_multitask_loss_weights_each_term_and_sums_them() -> None:
    predicted, target = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.0)
    ranked = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1, 1)
    terms = multitask_loss(predicted, target, ranked, count_weight=0.5, rank_weight=10.0, margin=0.0)
    assert terms["count"].item() == pytest.approx(0.5 * 2.0)
    assert terms["rank"].item() == pytest.approx(10.0)
    assert terms["loss"].item() == pytest.approx(11.0)
    only_rank = multitask_loss(None, None, ranked, 1.0, 1.0, 0.0)
    assert set(only_rank) == {"rank", "loss"}


def test_paradigm_schedules_switch_tasks_where_the_manifest_says() -> None:
    alternate = ScheduleConfig(paradigm="alternate", steps=10, alternate_every=2)
    assert [active_tasks(alternate, s) for s in range(5)] == [
        (True, False),
        (True, False),
        (False, True),
        (False, True),
        (True, False),
    ]
    finetune = ScheduleConfig(paradigm="rank-then-finetune", steps=10, rank_steps=3)
    assert [active_tasks(finetune, s)[1] for s in range(5)] == [True, True, True, False, False]
    assert batches_before(finetune, 5) == (2, 3)
    assert batches_before(ScheduleConfig(paradigm="multitask", steps=4), 4) == (4, 4)


def test_ranking_hinge_compares_patches_within_each_set_never_across_sets() -> None:
    # two sets, each correctly ordered largest first; every patch of set 1 is denser than every patch of set 0
    means = torch.tensor([[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]])
    densities = means.view(2, 3, 1, 1, 1).expand(2, 3, 1, 2, 2)
    assert ranking_hinge(densities, margin=0.5).item() == pytest.approx(0.0)  # c_j - c_i + 0.5 < 0 for each pair
    swapped = torch.tensor([[3.0, 2.0, 1.0], [6.0, 4.0, 5.0]])  # set 1 violates its pair (1, 2) by 1
    assert ranking_hinge(swapped.view(2, 3, 1, 1, 1), margin=0.5).item() == pytest.approx(1.5)


def test_multitask_loss_passes_its_margin_to_the_ranking_hinge() -> None:
    ranked = torch.zeros(1, 3, 1, 2, 2)  # three equal patches: each of the 3 pairs pays exactly the margin
    terms = multitask_loss(None, None, ranked, count_weight=1.0, rank_weight=2.0, margin=0.75)
    assert terms["rank"].item() == pytest.approx(2.0 * 3 * 0.75)


def test_count_only_never_ranks_and_multitask_trains_both_tasks_every_step() -> None:
    count_only = ScheduleConfig(paradigm="count-only", steps=10)
    multitask = ScheduleConfig(paradigm="multitask", steps=10)
    assert [active_tasks(count_only, s) for s in range(4)] == [(True, False)] * 4
    assert [active_tasks(multitask, s) for s in range(4)] == [(True, True)] * 4
    assert batches_before(count_only, 6) == (6, 0)


def test_alternate_switches_task_every_n_batches_for_any_n() -> None:
    every_one = ScheduleConfig(paradigm="alternate", steps=10, alternate_every=1)
    assert [active_tasks(every_one, s)[0] for s in range(4)] == [True, False, True, False]
    every_three = ScheduleConfig(paradigm="alternate", steps=20, alternate_every=3)
    assert [active_tasks(every_three, s)[0] for s in range(9)] == [True] * 3 + [False] * 3 + [True] * 3
    assert batches_before(every_three, 8) == (5, 3)  # steps 0-2 and 6-7 count, 3-5 rank
