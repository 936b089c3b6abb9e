"""Manifest edges: every refused value names its key and the fix, --set reaches sections and values it should,
and the resolved config.toml loads back whatever characters a name or path holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.errors import ConfigError
from train.manifest import config_from_dict, config_to_toml, load_manifest

MINIMAL = {"data": {"labeled": ["data/shb"], "ranked": ["ranksets/keyword"]}}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"schedule": {"steps": True}}, r"schedule.steps = True has the wrong type: expected int"),
        ({"optim": {"lr": False}}, r"optim.lr = False has the wrong type: expected float"),
        ({"model": 3}, r"model must be a table \(\[model\]\), got 3"),
        ({"data": {"labeled": "data/shb"}}, r"data.labeled = 'data/shb' has the wrong type: expected a list of str"),
        ({"data": {"labeled": ["a", 7]}}, r"data.labeled\[1\] = 7 has the wrong type: expected str"),
    ],
)
def test_a_value_of_the_wrong_shape_is_refused_naming_its_key(table: dict, message: str) -> None:
    merged = {**MINIMAL, **table}
    if "data" in table:
        merged["data"] = {**MINIMAL["data"], **table["data"]}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(merged)


@pytest.mark.parametrize(
    ("override", "fix"),
    [
        ('schedule.batch="8"', "write e.g. schedule.batch = 8 (a number in quotes is a string in TOML)"),
        ('optim.lr="1e-3"', "write e.g. optim.lr = 0.001 (a number in quotes"),
        ("schedule.steps=ten", "write e.g. schedule.steps = 20000"),
        ('data.eval=["data/shb"]', ""),  # a string field whose default is empty: no example to give
        ('data.ranked="ranksets/k"', 'write e.g. data.ranked = ["ranksets/k"] (a list, even of one)'),
        ("schedule.amp=1", "write e.g. schedule.amp = true"),
        ("data.crop=64", "write e.g. data.crop = [56, 448]"),
    ],
)
def test_a_wrong_type_comes_with_the_value_written_as_it_should_be(override: str, fix: str) -> None:
    """The message used to stop at "has the wrong type: expected int", which leaves the TOML to guess."""
    with pytest.raises(ConfigError, match="has the wrong type") as error:
        config_from_dict(MINIMAL, [override])
    assert fix in str(error.value) and ("write e.g." in str(error.value)) == bool(fix)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("=5", r"--set '=5' has an empty key; e.g. --set schedule.steps=500"),
        ("schedule=3", r"--set 'schedule=3': schedule is a section, not a value; set one of its keys: --set sch"),
        (
            "schedule.steps.max=3",
            r"schedule.steps is a value, not a section; set it itself: --set schedule.steps=VALUE",
        ),
    ],
)
def test_a_bad_override_is_refused_naming_it(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(MINIMAL, [override])


def test_an_override_switches_an_absent_section_on_and_keeps_equals_signs_in_its_value() -> None:
    config = config_from_dict(MINIMAL, ["tasks.segment.weight=0.1", "data.eval=runs/a=b"])
    assert config.tasks.segment is not None and config.tasks.segment.weight == 0.1
    assert config.data.eval == "runs/a=b"
    assert config_from_dict(MINIMAL).tasks.segment is None


def test_a_manifest_that_is_not_toml_or_not_there_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[data\nlabeled = 1\n")
    with pytest.raises(ConfigError, match=r"manifest .*broken.toml is not valid TOML"):
        load_manifest(broken)
    with pytest.raises(ConfigError, match=r"manifest .*missing.toml does not exist; pass a TOML file"):
        load_manifest(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "name", ['a "quoted" run', "C:\\runs\\shb", "two\nlines\tand\x7f\x01controls", "crowd ünïcode"]
)
def test_the_resolved_toml_loads_back_whatever_a_string_holds(tmp_path: Path, name: str) -> None:
    config = config_from_dict({**MINIMAL, "name": name, "data": {**MINIMAL["data"], "eval": name}})
    (tmp_path / "config.toml").write_text(config_to_toml(config), encoding="utf-8")
    assert load_manifest(tmp_path / "config.toml") == config


# --- found by fuzzing every manifest in manifests/ (each key removed, wrong types, out-of-range numbers, ...) ---


def test_a_manifest_that_is_not_utf8_is_refused_naming_the_byte_not_a_traceback(tmp_path: Path) -> None:
    """A Latin-1 manifest raised UnicodeDecodeError out of `train fit`."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(
        ConfigError, match=r"latin1.toml is not UTF-8 text \(byte 0xe9 at offset 11\).*save it as UTF-8"
    ):
        load_manifest(path)


def test_a_manifest_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Windows editors write a UTF-8 BOM; tomllib called it an invalid statement at line 1."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b'\xef\xbb\xbfname = "bom"\n[data]\nlabeled = ["data/shb"]\nranked = ["ranksets/k"]\n')
    assert load_manifest(path).name == "bom"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"empty.toml holds no keys \(empty, or only comments\): data.labeled = \[\].*quickstart.toml"),
        ("# only a comment\n", r"holds no keys"),
        ('name = "x\n', r"is not valid TOML: .*line 1.*Fix the TOML there: strings in quotes"),
        ("name = hello\n", r"is not valid TOML: .*Fix the TOML there"),
    ],
)
def test_an_empty_or_broken_manifest_says_so_and_how_to_fix_it(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "empty.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_manifest(path)


def test_a_folder_given_as_manifest_is_called_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a folder, not a TOML file"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.sigma=inf", r"data.sigma = inf is not a finite number.*write e.g. data.sigma = 15.0"),
        ("data.density_scale=inf", r"data.density_scale = inf is not a finite number"),
        ("tasks.rank.weight=inf", r"tasks.rank.weight = inf is not a finite number"),
        ("tasks.rank.margin=1e308", r"tasks.rank.margin = 1e\+308 is not a finite number within float32 range"),
        ("optim.weight_decay=inf", r"optim.weight_decay = inf is not a finite number"),
        ("optim.lr=nan", r"optim.lr = nan is not a finite number"),
        ("optim.lr=1e-300", r"optim.lr = 1e-300 is so close to 0 that float32 holds it as 0"),
        ("data.density_scale=1e-40", r"data.density_scale = 1e-40 is so close to 0.*write e.g. data.density_scale ="),
        ("schedule.rank_steps=-1", r"schedule.rank_steps = -1 is invalid: expected 0 or a number of steps >= 1"),
        ("tasks.segment.threshold=inf", r"tasks.segment.threshold = inf is not a finite number"),
        (
            "rounds.keep_fraction=[0.5, nan]",
            r"rounds.keep_fraction\[1\] = nan is not a finite number.*write e.g. rounds.keep_fraction = 0.5",
        ),
        (
            "optim.lr_milestones=[99999999999999999999]",
            r"optim.lr_milestones\[0\] = 99999999999999999999 does not fit a 64-bit integer",
        ),
    ],
)
def test_nan_infinity_and_numbers_beyond_float32_or_int64_are_refused(override: str, message: str) -> None:
    """inf passed every ">= 0" check (a loss weight of inf trained NaNs); nan was refused as a bad sign."""
    with pytest.raises(ConfigError, match=message):
        config_from_dict(MINIMAL, [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("schedule.steps=4611686018427387904", r"schedule.steps = 4611686018427387904 is invalid: .*100,000,000"),
        ("data.workers=100000", r"data.workers = 100000 is invalid: expected -1 \(auto\) or .* \[0, 256\]"),
        ("tasks.count_class.calibration_crops=10000000000", r"calibration_crops = 10000000000 is invalid"),
        ("tasks.upside_down.batch=1000000000000", r"tasks.upside_down.batch = 1000000000000 is invalid"),
        ("rounds.steps=4611686018427387904", r"rounds.steps = 4611686018427387904 is invalid"),
    ],
)
def test_counts_no_run_could_use_are_refused_before_any_work(override: str, message: str) -> None:
    """2**62 workers or calibration crops, or 2**62 steps (loops over the schedule hang), passed as valid."""
    table = {
        **MINIMAL,
        "model": {"arch": "cascaded-mtl"},
        "tasks": {"count_class": {}},
        "data": {**MINIMAL["data"], "unlabeled": ["pics"]},
        "schedule": {"paradigm": "multitask"},
    }
    if override.startswith("rounds"):
        table["model"] = {"arch": "cascaded-mtl", "masksembles": {"masks": 4}}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(table, [override])


def test_large_but_usable_values_are_accepted() -> None:
    config = config_from_dict(
        MINIMAL,
        [
            "schedule.steps=100000000",
            "schedule.eval_every=999999999999",
            "data.workers=0",
            "tasks.rank.weight=0",
            "optim.lr=1e-30",
            "tasks.rank.margin=1e30",
        ],
    )
    assert config.schedule.steps == 10**8 and config.data.workers == 0 and config.tasks.rank.margin == 1e30


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('name=" "', r"name = ' ' is invalid: expected a run name that is not blank"),
        ('data.labeled=[""]', r"data.labeled\[0\] = '' is invalid: expected a dataset folder or Hub id, not a blank"),
        ('data.ranked=["r", " "]', r"data.ranked\[1\] = ' ' is invalid"),
        ('data.unlabeled=[""]', r"data.unlabeled\[0\] = '' is invalid: expected a folder of pictures"),
        ('data.eval=" "', r"data.eval = ' ' is invalid: expected \"\" \(none\) or a folder"),
        ('data.depth_dir=" "', r"data.depth_dir = ' ' is invalid"),
    ],
)
def test_blank_names_and_paths_are_refused(override: str, message: str) -> None:
    """data.unlabeled = [""] read every picture under the folder the run started in ("" is ".")."""
    with pytest.raises(ConfigError, match=message):
        config_from_dict(MINIMAL, [override])
