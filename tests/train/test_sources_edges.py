"""Which rows play which role, at the edges: a benchmark's own validation split is used as it is, and a labeled
fraction keeps the rounded share of rows, nested across fractions."""

from __future__ import annotations

from pathlib import Path

from tests.train.conftest import build_labeled
from train.manifest import config_from_dict
from train.sources import resolve_sources


def test_a_validation_split_is_used_and_nothing_is_carved_from_train(tmp_path: Path) -> None:
    data = build_labeled(tmp_path / "shb", {"train": 6, "validation": 3, "test": 2})
    table = {"data": {"labeled": [str(data)], "eval": str(data), "val_fraction": 0.5}}
    sources = resolve_sources(config_from_dict({**table, "schedule": {"paradigm": "count-only", "batch": 2}}))
    assert [len(s.indices) for s in sources.validation] == [3] and sources.labeled_rows == 6
    assert sources.validation[0].dataset.num_rows == 3 and not any("carved" in n for n in sources.notes)


def test_a_labeled_fraction_keeps_the_rounded_share_and_smaller_fractions_are_subsets(
    blob_data: dict[str, Path],
) -> None:
    def kept(fraction: float) -> list[int]:
        table = {"data": {"labeled": [str(blob_data["labeled"])], "labeled_fraction": fraction}}
        sources = resolve_sources(config_from_dict({**table, "schedule": {"paradigm": "count-only", "batch": 1}}))
        assert any(f"training on {len(sources.labeled[0].indices)} of 16 rows" in n for n in sources.notes)
        return sources.labeled[0].indices

    small, large = kept(0.35), kept(0.6)
    assert len(small) == 6 and len(large) == 10  # round(5.6) and round(9.6), not the floor
    assert set(small) < set(large) and small == sorted(small)


def test_the_validation_carve_and_the_labeled_fraction_are_drawn_from_the_run_seed(blob_data: dict[str, Path]) -> None:
    """Seeds 0 and 1 carve different validation rows and keep different training rows; one seed, the same ones.
    Validation is carved from train only: the benchmark's test split is never among it."""

    def roles(seed: int, evaluate: bool = True) -> tuple[list[int], list[int]]:
        data = {"labeled": [str(blob_data["labeled"])], "val_fraction": 0.25, "labeled_fraction": 0.5}
        if evaluate:
            data["eval"] = str(blob_data["labeled"])
        table = {"seed": seed, "data": data, "schedule": {"paradigm": "count-only", "batch": 1}}
        sources = resolve_sources(config_from_dict(table))
        train = sources.labeled[0].indices
        if not evaluate:  # no data.eval: nothing is carved, the fraction keeps 8 of the 16 rows
            assert not sources.validation and not sources.test and len(train) == 8
            return [], train
        (validation,) = sources.validation
        assert validation.dataset.select_columns(["split"])[0]["split"] == "train" and len(sources.test[0].indices) == 4
        assert not set(validation.indices) & set(train) and len(validation.indices) == 4 and len(train) == 6
        return validation.indices, train

    zero, one = roles(0), roles(1)
    assert roles(0) == zero and zero[0] != one[0]
    assert roles(0, evaluate=False)[1] != roles(1, evaluate=False)[1]


def test_more_ranked_sets_per_batch_than_the_ranked_data_holds_is_refused_before_any_work(
    blob_data: dict[str, Path],
) -> None:
    """A typo of sets_per_batch = 10**9 passed every check and asked the loader for 10**9 sets a step."""
    import pytest

    from train.errors import ConfigError

    table = {"data": {"labeled": [str(blob_data["labeled"])], "ranked": [str(blob_data["ranked"])]}}
    table["schedule"] = {"batch": 2}
    with pytest.raises(ConfigError, match=r"tasks.rank.sets_per_batch = 13 is larger than the 12 ranked sets.*Fix"):
        resolve_sources(config_from_dict({**table, "tasks": {"rank": {"sets_per_batch": 13}}}))
    assert len(resolve_sources(config_from_dict({**table, "tasks": {"rank": {"sets_per_batch": 12}}})).ranked) == 1


def test_a_depth_dir_that_is_not_a_folder_of_depth_maps_is_refused_with_depth_on(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    """A misspelt data.depth_dir left every cell's depth unknown: the depth task trained on nothing, silently."""
    import pytest

    from train.errors import DataError

    def resolve(depth_dir: str, depth: bool = True) -> object:
        data = {"labeled": [str(blob_data["labeled"])], "depth_dir": depth_dir}
        table = {"data": data, "schedule": {"paradigm": "count-only", "batch": 2}}
        if depth:
            table["tasks"] = {"depth": {}}
        return resolve_sources(config_from_dict(table))

    with pytest.raises(DataError, match=r"data.depth_dir = '.*nope' is not a folder. Fix: name the folder"):
        resolve(str(tmp_path / "nope"))
    (tmp_path / "maps").mkdir()
    with pytest.raises(DataError, match=r"maps' holds no .png depth maps"):
        resolve(str(tmp_path / "maps"))
    (tmp_path / "maps" / "train-0.png").write_bytes(b"")
    assert resolve(str(tmp_path / "maps")).labeled_rows == 16
    assert resolve(str(tmp_path / "nope"), depth=False).labeled_rows == 16  # unused without [tasks.depth]


def test_a_depth_dir_whose_maps_match_no_training_image_is_refused_and_a_partial_one_is_counted(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    """Maps named after another dataset's ids were accepted: the depth task trained with every cell's depth unknown.
    Now none matching fails before training with an expected and a found name; some matching says how many."""
    import pytest

    from train.errors import DataError

    def resolve(depth_dir: Path) -> list[str]:
        data = {"labeled": [str(blob_data["labeled"])], "depth_dir": str(depth_dir)}
        table = {"data": data, "schedule": {"paradigm": "count-only", "batch": 2}, "tasks": {"depth": {}}}
        return [n for n in resolve_sources(config_from_dict(table)).notes if "depth" in n]

    maps = tmp_path / "maps"
    maps.mkdir()
    for name in ("shb-train-0.png", "shb-train-1.png"):  # another naming: the dataset prefixed
        (maps / name).write_bytes(b"")
    with pytest.raises(DataError, match=r"none of its 2 .png files .* \(expected e.g. 'train-0.png', found e.g. "
                       r"'shb-train-0.png'\). Fix"):  # fmt: skip
        resolve(maps)
    for i in range(4):
        (maps / f"train-{i}.png").write_bytes(b"")
    assert resolve(maps) == [
        f"data.depth_dir = {str(maps)!r}: 4 of 16 labeled training images have a depth map (e.g. no 'train-4.png'); "
        "the others train without depth supervision"
    ]
    for i in range(4, 16):
        (maps / f"train-{i}.png").write_bytes(b"")
    assert resolve(maps) == []
