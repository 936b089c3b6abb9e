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
