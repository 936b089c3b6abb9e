"""Targets and losses of the seed methods' extra tasks; pure functions of tensors, plus count-group calibration.

- count groups (Sindagi & Patel 2017): edges split [0, max crop count] into equal bins; class weights are the
  inverse group frequencies of the calibration crops (each empty group counted as one crop, so its weight is
  finite), normalised to sum to 1; class-weighted cross-entropy on each crop's exact count's group.
- segmentation (Zhao et al. 2019): target = (density per cell > threshold); binary cross-entropy on logits.
- distilled depth (Zhao et al. 2019): target = segment * depth (metres per cell); L2 over cells of known depth.
- count regression (Zhao et al. 2019): L2 between the count head and the crop's exact count.
- upside-down (Liu, Durasov & Fua 2022): binary cross-entropy on whether a real picture was flipped vertically.

:func:`auxiliary_terms` returns each term already weighted, keyed by task name, for the loop to add to
``"loss"`` and log (STYLE.md: a multi-task loss is a dict of weighted terms). Every one of these terms is of degree
0 in the densities (a cross-entropy, or an L2 on true counts or depths), so its weight is multiplied by
``density_scale ** 2`` (:func:`train.losses.scale_compensation`): the papers' weights keep their meaning relative to
the count term, which is computed on scaled targets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from train.config import RunConfig
from train.losses import scale_compensation


def count_group_edges(counts: np.ndarray, groups: int) -> np.ndarray:
    """``groups + 1`` edges splitting [0, max(counts)] into equal bins (at least [0, 1] when every count is 0)."""
    top = max(float(np.max(counts)) if len(counts) else 0.0, 1.0)
    return np.linspace(0.0, top, groups + 1)


def count_groups_of(counts: Any, edges: Any) -> Any:
    """Group index of each count (a tensor): bin i holds edges[i] <= count < edges[i+1]; the top bin is closed
    and counts beyond the calibrated range fall into it."""
    import torch

    inner = torch.as_tensor(edges, dtype=torch.float32, device=counts.device)[1:-1]
    return torch.bucketize(counts.float(), inner, right=True)


def class_weights(labels: np.ndarray, groups: int) -> np.ndarray:
    """Inverse-frequency class weights summing to 1; an empty group counts as one sample."""
    frequency = np.bincount(np.asarray(labels, dtype=np.int64), minlength=groups)[:groups].astype(np.float64)
    inverse = 1.0 / np.maximum(frequency, 1.0)
    return inverse / inverse.sum()


def calibrate_count_groups(model: Any, crop_counts: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Set ``model``'s group edges and class weights from the training crops' exact counts; returns both."""
    import torch

    edges = count_group_edges(crop_counts, groups)
    labels = count_groups_of(torch.as_tensor(crop_counts, dtype=torch.float32), edges).numpy()
    weights = class_weights(labels, groups)
    target = model.base if hasattr(model, "base") else model
    target.set_count_groups(edges, weights)
    return edges, weights


def segment_target(density_target: Any, density_scale: float, threshold: float) -> Any:
    """(B, 1, h, w) 0/1 crowd mask: cells holding more than ``threshold`` people (targets are scaled)."""
    return (density_target.float() / density_scale > threshold).float()


def depth_loss(predicted: Any, segment: Any, depth: Any) -> Any:
    """L2 between predicted and distilled depth (segment * depth) over cells whose depth is known (not NaN)."""
    import torch

    known = ~torch.isnan(depth)
    if not bool(known.any()):
        return predicted.sum() * 0.0  # keeps the graph; no crop of this batch has depth
    target = segment * depth.nan_to_num(0.0)
    return (predicted.float() - target)[known].pow(2).mean()


def auxiliary_terms(
    out: dict[str, Any],
    count_n: int,
    count_batch: tuple[Any, ...] | None,
    flipped: Any | None,
    config: RunConfig,
    model: Any,
    step: int,
) -> dict[str, Any]:
    """Weighted loss terms of the extra tasks active at ``step``.

    ``out`` is the model's dict over the concatenated batch: ``count_n`` labeled crops first, then ranked patches,
    then the unlabeled pictures of the upside-down task (as many as ``flipped`` has labels, at the end).
    ``count_batch`` holds (pixels, target, count, skipped[, depth]) on the model's device.
    """
    from torch.nn import functional as F

    tasks, terms = config.tasks, {}
    boost = scale_compensation(config.data.density_scale, degree=0)
    if count_batch is not None:
        target, counts = count_batch[1], count_batch[2]  # (B, 1, h, w) scaled, (B,)
        if tasks.count_class is not None and "count_class" in out:
            net = model.base if hasattr(model, "base") else model
            labels = count_groups_of(counts, net.group_edges)
            logits = out["count_class"][:count_n].float()  # (B, groups)
            terms["count_class"] = (
                boost * tasks.count_class.weight * F.cross_entropy(logits, labels, weight=net.class_weights)
            )
        segment = segment_target(target, config.data.density_scale, tasks.segment.threshold if tasks.segment else 0.0)
        if tasks.segment is not None and tasks.segment.active(step):
            logits = out["segment"][:count_n].float()
            terms["segment"] = boost * tasks.segment.weight * F.binary_cross_entropy_with_logits(logits, segment)
        if tasks.depth is not None and tasks.depth.active(step):
            terms["depth"] = boost * tasks.depth.weight * depth_loss(out["depth"][:count_n], segment, count_batch[4])
        if tasks.count_reg is not None and tasks.count_reg.active(step):
            terms["count_reg"] = (
                boost * tasks.count_reg.weight * F.mse_loss(out["count_reg"][:count_n].float(), counts.float())
            )
    if flipped is not None:
        logits = out["upside_down"][-flipped.shape[0] :].float()  # (U,)
        terms["upside_down"] = (
            boost * tasks.upside_down.weight * F.binary_cross_entropy_with_logits(logits, flipped.float())
        )
    return terms


def calibrate_from_training_crops(model: Any, config: RunConfig, sources: Any, stride: int) -> str:
    """Measure the exact counts of the first ``calibration_crops`` training crops (the very crops the run draws
    first), set ``model``'s count groups and class weights from them, and return a note for the run summary."""
    from train.data import LABELED_STREAM, LabeledCrops, draw_indices

    task = config.tasks.count_class
    assert task is not None, "count-group calibration needs [tasks.count_class]"
    data = config.data
    crops = LabeledCrops(
        sources.labeled, data.input_size, (data.crop[0], data.crop[1]), data.sigma, stride, 1.0, config.seed
    )
    counts = []
    for draw in range(task.calibration_crops):
        row = draw_indices(len(crops), config.seed, LABELED_STREAM, draw)
        counts.append(float(crops[(row, draw)][2]))
    edges, weights = calibrate_count_groups(model, np.asarray(counts), task.groups)
    return (
        f"count groups: {task.groups} bins over [0, {edges[-1]:.0f}] people per crop from {len(counts)} "
        f"training crops; class weights {np.round(weights, 3).tolist()}"
    )
