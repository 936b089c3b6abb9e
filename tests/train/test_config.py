"""Manifest loading, validation and --set overrides: every bad key or value names itself and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.errors import ConfigError
from train.manifest import config_from_dict, config_to_toml, load_manifest

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {"data": {"labeled": ["data/shb"], "ranked": ["ranksets/keyword"]}}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


def test_manifest_values_override_defaults_and_sections_keep_their_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'name = "x"\n[data]\nlabeled = ["a"]\nranked = ["b"]\nsigma = "adaptive"\n[schedule]\nsteps = 7\n',
    )
    config = load_manifest(path)
    assert (config.name, config.schedule.steps, config.data.sigma) == ("x", 7, "adaptive")
    assert config.schedule.batch == 25 and config.tasks.rank.sets_per_batch == 5


def test_unknown_key_is_refused_and_the_valid_keys_are_listed(tmp_path: Path) -> None:
    path = write(tmp_path, '[data]\nlabeled = ["a"]\nranked = ["b"]\ncorp = [56, 448]\n')
    with pytest.raises(ConfigError, match=r"unknown key 'data.corp'.*data.crop"):
        load_manifest(path)


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'tasks.ranking'.*tasks.rank"):
        config_from_dict({**MINIMAL, "tasks": {"ranking": {"weight": 1.0}}})


def test_wrong_type_names_the_key_and_the_expected_type() -> None:
    with pytest.raises(ConfigError, match=r"schedule.steps = '100' has the wrong type: expected int"):
        config_from_dict({**MINIMAL, "schedule": {"steps": "100"}})


def test_int_is_accepted_where_a_float_is_expected() -> None:
    config = config_from_dict({**MINIMAL, "optim": {"lr": 1}})
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)


def test_out_of_range_value_names_the_accepted_range() -> None:
    with pytest.raises(ConfigError, match=r"data.val_fraction = 1.5 .*\[0, 1\)"):
        config_from_dict({**MINIMAL, "data": {**MINIMAL["data"], "val_fraction": 1.5}})


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_numpy_cannot_take_is_refused_naming_the_key(seed: int) -> None:
    with pytest.raises(ConfigError, match=rf"seed = {seed} is invalid: expected an integer in \[0, 2\*\*32\)"):
        config_from_dict(MINIMAL, [f"seed={seed}"])
    assert config_from_dict(MINIMAL, [f"seed={2**32 - 1}"]).seed == 2**32 - 1


def test_set_overrides_are_parsed_as_toml_and_type_checked() -> None:
    config = config_from_dict(MINIMAL, ["schedule.steps=500", "data.eval=data/shb", "data.crop=[32, 64]"])
    assert (config.schedule.steps, config.data.eval, config.data.crop) == (500, "data/shb", [32, 64])
    with pytest.raises(ConfigError, match="schedule.steps = 'many'"):
        config_from_dict(MINIMAL, ["schedule.steps=many"])


def test_set_override_of_an_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'schedule.stepz'.*schedule.steps"):
        config_from_dict(MINIMAL, ["schedule.stepz=3"])
    with pytest.raises(ConfigError, match="not key=value"):
        config_from_dict(MINIMAL, ["schedule.steps"])


def test_paradigms_with_ranking_require_ranked_data() -> None:
    with pytest.raises(ConfigError, match=r"data.ranked .*count-only"):
        config_from_dict({"data": {"labeled": ["a"]}})
    assert config_from_dict({"data": {"labeled": ["a"]}, "schedule": {"paradigm": "count-only"}}).data.ranked == []


def test_rank_then_finetune_requires_rank_steps_below_steps() -> None:
    with pytest.raises(ConfigError, match=r"schedule.rank_steps = 0"):
        config_from_dict({**MINIMAL, "schedule": {"paradigm": "rank-then-finetune", "steps": 10}})


def test_resolved_toml_loads_back_to_an_equal_config(tmp_path: Path) -> None:
    config = config_from_dict(MINIMAL, ["data.sigma=adaptive", "optim.lr_milestones=[5, 9]", "schedule.compile=true"])
    assert load_manifest(write(tmp_path, config_to_toml(config))) == config


@pytest.mark.parametrize("manifest", sorted((REPO / "manifests").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_manifest_is_valid(manifest: Path) -> None:
    config = load_manifest(manifest)
    assert config.name == manifest.stem


def test_a_manifest_that_leaves_keys_out_gets_the_documented_defaults() -> None:
    """The values DESIGN.md's example manifest and the README document, for a manifest that names only its data."""
    import os

    config = config_from_dict(MINIMAL)
    data, schedule, optim = config.data, config.schedule, config.optim
    assert (data.val_fraction, data.labeled_fraction, data.crop, data.input_size, data.sigma) == (
        0.1, 1.0, [56, 448], 224, 15.0,
    )  # fmt: skip
    assert (data.density_scale, data.cache_gb, data.workers) == (100.0, 4.0, -1)
    assert data.num_workers == min(8, os.cpu_count() or 1)
    assert (schedule.paradigm, schedule.steps, schedule.batch, schedule.alternate_every, schedule.eval_every) == (
        "multitask", 20000, 25, 300, 1000,
    )  # fmt: skip
    assert (optim.name, optim.lr, optim.momentum, optim.weight_decay, optim.lr_gamma) == ("sgd", 1e-6, 0.9, 5e-4, 0.1)
    assert (config.tasks.count.weight, config.tasks.rank.margin, config.tasks.rank.sets_per_batch) == (1.0, 0.0, 5)
    assert config_from_dict(MINIMAL, ["data.workers=3"]).data.num_workers == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["schedule.paradigm='rank-then-finetune'", "schedule.steps=10", "schedule.rank_steps=10"],
         r"schedule.rank_steps = 10 is invalid: expected 0 < rank_steps < schedule.steps \(10\)"),
        (["schedule.alternate_every=0"], r"schedule.alternate_every = 0 is invalid: expected an integer >= 1"),
        (["schedule.eval_every=0"], r"schedule.eval_every = 0 is invalid: expected an integer >= 1"),
        (["optim.lr_milestones=[9, 5]"], r"optim.lr_milestones = \[9, 5\] is invalid: expected increasing positive"),
        (["data.val_fraction=1.0"], r"data.val_fraction = 1.0 is invalid: expected a fraction in \[0, 1\)"),
        (["model.arch='cascaded-mtl'"], r"tasks.count_class = 'absent' is invalid: expected a \[tasks.count_class\]"),
        (["data.sigma=[3]"], r"data.sigma = \[3\] has the wrong type: expected float \| str"),
        (["model.arch='cfcn_small'"], r"model.arch = 'cfcn_small' is invalid: expected one of .*mean 'cfcn-small'"),
        (["model.arch=vgg"], r"model.arch = 'vgg' is invalid: expected one of cascaded-mtl, .*, vgg16-density"),
    ],
)  # fmt: skip
def test_a_value_outside_its_range_fails_before_training_naming_the_key_and_what_is_accepted(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(MINIMAL, overrides)


def test_a_set_override_reaches_a_switched_off_section_of_a_stored_config() -> None:
    """A checkpoint's config holds ``None`` for an absent optional section; ``--set`` on one of its keys switches
    it on, as it does on a manifest without the table."""
    from train.manifest import config_to_dict

    stored = config_to_dict(config_from_dict(MINIMAL))
    assert stored["tasks"]["segment"] is None
    config = config_from_dict(stored, ["tasks.segment.weight=0.1"])
    assert config.tasks.segment is not None and config.tasks.segment.weight == 0.1


def test_a_rounds_manifest_survives_the_resolved_dict_and_toml(tmp_path: Path) -> None:
    from train.manifest import config_to_dict

    table = {
        **MINIMAL,
        "model": {"masksembles": {"masks": 4, "scale": 2.0}},
        "rounds": {"count": 3, "images": ["pictures"], "keep_fraction": [0.5, 0.75], "steps": 40},
    }
    config = config_from_dict(table)
    assert config_from_dict(config_to_dict(config)) == config
    assert load_manifest(write(tmp_path, config_to_toml(config))) == config
    assert config.rounds is not None and config.rounds.fraction(1) == 0.75
    single = config_from_dict(table, ["rounds.count=1", "rounds.keep_fraction=[]"])  # no pseudo-labeling: no fraction
    assert load_manifest(write(tmp_path, config_to_toml(single))) == single and single.rounds.keep_fraction == []
