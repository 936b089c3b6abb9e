"""``[rounds]`` checks before training, pinned where a hand-made mutant survived: a keep fraction that keeps no
picture is refused for the first pseudo-labels too (round 1), not only for later rounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.test_rounds import chain_table, real_pictures
from train.errors import ConfigError
from train.manifest import config_from_dict
from train.rounds import check_pictures


@pytest.mark.parametrize(("count", "keep_fraction"), [(2, 0.1), (3, [0.1, 0.5])])
def test_a_fraction_that_keeps_nothing_for_round_1_is_refused(
    blob_data: dict[str, Path], tmp_path: Path, count: int, keep_fraction: object
) -> None:
    pictures = real_pictures(tmp_path / "real", 3)
    table = chain_table(blob_data, pictures, count=count, keep_fraction=keep_fraction, images=str(pictures))
    with pytest.raises(ConfigError, match=r"keeps no picture of the 3 in rounds.images for round 1;"):
        check_pictures(config_from_dict(table))
    table = chain_table(blob_data, pictures, count=count, keep_fraction=0.5, images=str(pictures))
    assert check_pictures(config_from_dict(table)) == 3  # round(0.5 * 3) = 2 kept: accepted
