"""Gaps in the manifest-validation tests found by hand-made mutants of train/config.py and train/task_config.py.

Each boundary below could be moved (``>`` to ``>=``, ``< 1`` to ``<= 1``) or its check dropped without any test
failing. A value just past each one breaks training quietly: a zero learning rate or density scale trains nothing
(or divides by zero at evaluation), a zero sigma gives Gaussians of no width, a negative rank weight or margin
turns Eq. 5 into a reward for misordering, a gamma above 1 or a momentum of 1 lets the step size grow without
bound, and a crop list of three sides or a zero milestone is a typo that used to be accepted. Each case is checked
at the first refused value and, beside it, the nearest accepted one.
"""

from __future__ import annotations

from typing import Any

import pytest

from train.errors import ConfigError
from train.manifest import config_from_dict

MINIMAL = {"data": {"labeled": ["data/shb"], "ranked": ["ranksets/keyword"]}}


def _with(section: str, key: str, value: Any) -> dict[str, Any]:
    """MINIMAL with ``section.key = value`` (``tasks.rank`` nests one level further)."""
    table: dict[str, Any] = {k: dict(v) for k, v in MINIMAL.items()}
    if section == "tasks.rank":
        table["tasks"] = {"rank": {key: value}}
    else:
        table.setdefault(section, {})[key] = value
    return table


REFUSED = [
    ("optim", "lr", 0.0),
    ("optim", "lr_gamma", 1.5),
    ("optim", "momentum", 1.0),
    ("optim", "lr_milestones", [0, 100]),
    ("optim", "lr_milestones", [-5]),
    ("data", "density_scale", 0.0),
    ("data", "sigma", 0.0),
    ("data", "input_size", 15),
    ("data", "crop", [56, 100, 448]),
    ("data", "crop", [56]),
    ("tasks.rank", "weight", -0.1),
    ("tasks.rank", "margin", -0.5),
    ("tasks.rank", "sets_per_batch", 0),
]

ACCEPTED = [
    ("optim", "lr", 1e-9),
    ("optim", "lr_gamma", 1.0),
    ("optim", "momentum", 0.99),
    ("optim", "lr_milestones", [1, 100]),
    ("data", "density_scale", 1e-3),
    ("data", "sigma", 0.5),
    ("data", "input_size", 16),
    ("data", "crop", [8, 8]),
    ("tasks.rank", "weight", 0.0),
    ("tasks.rank", "margin", 0.0),
    ("tasks.rank", "sets_per_batch", 1),
]


@pytest.mark.parametrize(("section", "key", "value"), REFUSED, ids=lambda v: str(v))
def test_a_value_just_past_each_boundary_is_refused_naming_its_key(section: str, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"{section}.{key} = .* is invalid"):
        config_from_dict(_with(section, key, value))


@pytest.mark.parametrize(("section", "key", "value"), ACCEPTED, ids=lambda v: str(v))
def test_the_nearest_value_inside_each_boundary_is_accepted(section: str, key: str, value: Any) -> None:
    config = config_from_dict(_with(section, key, value))
    holder = config.tasks.rank if section == "tasks.rank" else getattr(config, section)
    assert getattr(holder, key) == value
