"""How well a density model already orders nested patches: the signal a ranked set has left to teach it.

The ranking hinge (Eq. 5) only acts on pairs the model orders wrongly, c(inner) > c(outer). A model that already
orders nearly every pair of a ranked set gets almost no gradient from it, and the hinge (margin 0) cannot change
the model's global count scale at all: multiplying every density by a positive constant leaves every hinge term
at zero. ``train eval --ranked RANKSET`` reports these figures so a user can see, before a long multitask run,
whether their unlabeled pictures carry any ranking information the counting model lacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from train.data import raw_row, set_patches, undecoded
from train.device import normalize
from train.losses import pair_indices


def set_means(model: Any, ranked: Any, input_size: int, device: Any, max_sets: int, batch_sets: int = 16) -> Any:
    """(S, k) mean predicted density of every patch of the first ``max_sets`` sets (largest patch first)."""
    import torch

    from train.models.registry import density_of

    view = undecoded(ranked)
    n = min(len(view), max_sets)
    means = []
    with torch.no_grad():
        for start in range(0, n, batch_sets):
            sets = [
                set_patches(raw_row(view, row)["images"], input_size)
                for row in range(start, min(n, start + batch_sets))
            ]
            pixels = torch.stack(sets).to(device)  # (sets, k, 3, S, S)
            density = density_of(model(normalize(pixels.flatten(0, 1)))).float()  # (sets * k, 1, h, w)
            means.append(density.reshape(len(sets), pixels.shape[1], -1).mean(dim=2).cpu())
    return torch.cat(means) if means else torch.zeros(0, 0)


def ranking_agreement(means: Any) -> dict[str, float]:
    """Share of contained pairs (and of adjacent pairs) the model orders wrongly, and the mean hinge per set."""
    sets, k = means.shape
    if sets == 0 or k < 2:
        return {"sets": float(sets), "pairs": 0.0, "violated": 0.0, "adjacent_violated": 0.0, "hinge_per_set": 0.0}
    first, second = pair_indices(k)
    gap = means[:, second] - means[:, first]  # > 0: the inner patch predicted fuller than the one containing it
    adjacent = means[:, 1:] - means[:, :-1]
    return {
        "sets": float(sets),
        "pairs": float(gap.numel()),
        "violated": float((gap > 0).float().mean()),
        "adjacent_violated": float((adjacent > 0).float().mean()),
        "hinge_per_set": float(gap.clamp(min=0).sum(dim=1).mean()),
    }


def check_ranked(model: Any, ranked: Any, input_size: int, device: Any, max_sets: int) -> dict[str, float]:
    """:func:`ranking_agreement` of ``model`` on the train split of a ranked set: its path or Hub id, or the
    DatasetDict already opened from one."""
    from train.data import open_dataset

    dsd = open_dataset(ranked, "--ranked", "ranked") if isinstance(ranked, str | Path) else ranked
    split = "train" if "train" in dsd else sorted(dsd)[0]
    return ranking_agreement(set_means(model, dsd[split], input_size, device, max_sets))
