"""rankset.schema, the contract train reads, pinned where a hand-made mutant survived: a head point is exactly
(x, y), and a dataset is ranked only when it has every ranked field, not merely an ``images`` column."""

from __future__ import annotations

from rankset.schema import LABELED_FIELDS, RANKED_FIELDS, dataset_kind, labeled_features, ranked_features


def test_a_labeled_point_is_a_fixed_pair_and_a_ranked_box_four_numbers() -> None:
    points = labeled_features()["points"]
    assert points.feature.length == 2 and points.feature.feature.dtype == "float32"
    assert ranked_features(5)["boxes"].feature.length == 4
    assert ranked_features(5)["anchor"].length == 2


def test_the_kind_needs_every_field_of_a_kind() -> None:
    assert dataset_kind(RANKED_FIELDS) == "ranked"
    assert dataset_kind([*LABELED_FIELDS, "images"]) == "labeled"  # a labeled set with an extra images column
    assert dataset_kind([f for f in RANKED_FIELDS if f != "anchor"]) == "unknown"
    assert dataset_kind([f for f in LABELED_FIELDS if f != "split"]) == "unknown"


def test_build_info_is_written_with_sorted_keys_so_equal_parameters_give_equal_bytes() -> None:
    from rankset.schema import encode_build_info

    assert encode_build_info({"s": 0.75, "k": 5}) == encode_build_info({"k": 5, "s": 0.75}) == '{"k": 5, "s": 0.75}'
