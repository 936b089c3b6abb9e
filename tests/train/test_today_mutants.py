"""Mutants of today's train changes that the tests written with them let through, pinned down.

The density-scale compensation of the count-class term, the one-mask repair of Masksembles masks, the prefix match
of a model's ``head_lr_mult``, SIGTERM handling called off the main thread, and a stopped study starting no fit.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from tests.train.test_lr_mult import config as lr_mult_config
from train.cli import app
from train.loop import param_groups
from train.manifest import config_from_dict
from train.models import create_model
from train.models.masksembles import MASK_STREAM, generate_masks
from train.study import RunningFits, call_fit
from train.tasks import auxiliary_terms


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_the_count_class_term_is_multiplied_by_the_density_scale_squared_as_the_other_auxiliary_terms(
    scale: float,
) -> None:
    """A cross-entropy on count groups is of degree 0 in the densities, so at s = 100 it must be s^2 times its value
    at s = 1, as segment, depth, count_reg and upside_down are; the cascaded tests only ran it at s = 1."""

    def term_at(s: float) -> float:
        config = config_from_dict(
            {"model": {"arch": "cascaded-mtl"}, "data": {"labeled": ["x"], "density_scale": s},
             "schedule": {"paradigm": "count-only"}, "tasks": {"count_class": {"weight": 0.5, "groups": 2}}}
        )  # fmt: skip
        model = create_model("cascaded-mtl")
        model.set_count_groups([0.0, 10.0, 20.0], [0.25, 0.75])
        batch = (None, s * torch.zeros(2, 1, 4, 4), torch.tensor([3.0, 12.0]), torch.zeros(2))
        logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        return float(auxiliary_terms({"count_class": logits}, 2, batch, None, config, model, step=0)["count_class"])

    assert term_at(scale) == pytest.approx(scale**2 * term_at(1.0), rel=1e-5)


def _independent_draws(channels: int, masks: int, scale: float, seed: int) -> np.ndarray:
    """The masks as drawn before the coverage repair: the same generator and stream as generate_masks."""
    keep = max(1, round(channels / scale))
    rng = np.random.default_rng([seed, MASK_STREAM])
    out = np.zeros((masks, channels), dtype=bool)
    for i in range(masks):
        out[i, rng.choice(channels, size=keep, replace=False)] = True
    return out


@pytest.mark.parametrize("seed", range(6))
def test_a_channel_no_draw_picked_joins_exactly_one_mask_in_place_of_a_shared_channel(seed: int) -> None:
    """The repair swaps an uncovered channel into one mask; put into every mask it would make them overlap more
    (the sub-networks less distinct) while sizes and coverage stay as the cover tests check them."""
    raw = _independent_draws(64, 4, 2.0, seed)
    out = generate_masks(64, 4, 2.0, seed)
    uncovered = np.flatnonzero(~raw.any(axis=0))
    assert len(uncovered)  # these seeds leave channels in no mask before the repair
    assert (out[:, uncovered].sum(axis=0) == 1).all()
    assert int((out != raw).sum()) == 2 * len(uncovered)  # one channel in, one shared channel out, per repair


class _TwoDensityNamedLayers(nn.Module):
    head_lr_mult = {"density": 10.0}  # as the models declare it (vgg16-density)

    def __init__(self) -> None:
        super().__init__()
        self.density = nn.Conv2d(2, 1, 1)
        self.density_extra = nn.Conv2d(2, 1, 1)  # not the density conv: its name only starts with the same word


def test_a_head_multiplier_applies_to_its_layer_and_not_to_a_layer_whose_name_merely_starts_alike() -> None:
    model = _TwoDensityNamedLayers()
    of_param = {id(p): (g["lr"], g["weight_decay"]) for g in param_groups(model, lr_mult_config("caffe")) for p in
                g["params"]}  # fmt: skip
    rates = {name: of_param[id(p)] for name, p in model.named_parameters()}
    assert rates["density.weight"] == pytest.approx((1e-5, 5e-4))
    assert rates["density_extra.weight"] == pytest.approx((1e-6, 5e-4))
    assert rates["density_extra.bias"] == pytest.approx((2e-6, 0.0))


def test_a_command_run_outside_the_main_thread_leaves_sigterm_alone_and_runs_as_in_it(tmp_path: Path) -> None:
    """Python takes signals only in its main thread: signal.signal raises ValueError elsewhere (a command invoked
    from a worker thread, as a notebook or a test runner may). That must leave SIGTERM as it is, not fail the
    command."""
    args = ["fit", str(tmp_path / "missing.toml")]
    in_main = CliRunner().invoke(app, args)
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(CliRunner().invoke(app, args)))
    worker.start()
    worker.join()
    (in_thread,) = results
    assert not isinstance(in_thread.exception, ValueError), in_thread.exception
    assert (in_thread.exit_code, in_thread.output) == (in_main.exit_code, in_main.output)
    assert in_main.exit_code == 2 and "does not exist" in in_main.output


def test_once_the_study_is_stopped_no_fit_starts(tmp_path: Path) -> None:
    """A worker thread may take the next run between the signal and the cancelling of the runs not begun: that
    fit must not start (it would train on after the study said it stopped), and it counts as interrupted (130)."""
    children = RunningFits()
    children.stop()
    marker = tmp_path / "started"
    code = call_fit([sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"], children=children)
    assert code == 130 and not marker.exists() and not children.running


def test_a_fit_started_before_the_stop_runs_and_is_forgotten_when_it_ends(tmp_path: Path) -> None:
    children = RunningFits()
    marker = tmp_path / "started"
    code = call_fit([sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"], children=children)
    assert code == 0 and marker.exists() and not children.running and not children.stopped
