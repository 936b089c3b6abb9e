"""Unlabeled pictures at their edges: what a folder or file contributes, a broken picture replaced by the next
one, and a resumed run drawing exactly the upside-down batches the uninterrupted one would have."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.train.test_masksembles import masks_table, write_pictures
from train.errors import DataError
from train.manifest import config_from_dict
from train.unlabeled import UpsideDownCrops, list_unlabeled, upside_down_iterator


def test_folders_give_their_pictures_whatever_the_suffix_case_and_a_non_picture_file_is_refused(
    tmp_path: Path,
) -> None:
    real = write_pictures(tmp_path / "real", 2)
    (real / "real0.jpg").rename(real / "UPPER.JPG")
    (real / "notes.txt").write_text("not a picture")
    assert [p.image_id for p in list_unlabeled([str(real)])] == ["UPPER", "real1"]
    assert [p.image_id for p in list_unlabeled([str(real / "UPPER.JPG")])] == ["UPPER"]
    with pytest.raises(
        DataError, match=r"rounds.images\[1\] = .*notes.txt.* is neither an image folder, an image file"
    ):
        list_unlabeled([str(real), str(real / "notes.txt")], key="rounds.images")


def test_a_missing_unlabeled_folder_is_named_missing_with_what_to_pass_instead(tmp_path: Path) -> None:
    """The shipped liu2022-synth2real-shb.toml names ShanghaiTech/part_B/train_data/images: before the download,
    the error said only "is neither an image folder, an image file nor a harvest pool"."""
    with pytest.raises(DataError, match=r"data.unlabeled\[0\] = .*images' does not exist\. Fix: .*harvest local DIR"):
        list_unlabeled([str(tmp_path / "part_B" / "images")])


def test_a_broken_picture_is_replaced_by_the_next_and_counted(tmp_path: Path) -> None:
    real = write_pictures(tmp_path / "real", 3)
    (real / "real0.jpg").write_bytes(b"not a jpeg")
    crops = UpsideDownCrops(list_unlabeled([str(real)]), input_size=16, crop=(24, 40), seed=0)
    pixels, flipped, skipped = crops[(0, 5)]
    replacement, same_flip, _ = crops[(1, 5)]  # the same draw of the next picture
    assert int(skipped) == 1 and torch.equal(pixels, replacement) and flipped == same_flip


def test_a_resumed_run_draws_the_upside_down_batches_the_uninterrupted_run_would_have(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    table = masks_table(blob_data, write_pictures(tmp_path / "real", 5))
    table["tasks"]["upside_down"]["start"] = 1  # step 0 draws none: the draws resume at (active steps done) * batch
    config = config_from_dict(table)
    images = list_unlabeled(config.data.unlabeled)  # as resolve_sources lists them for the run
    whole = upside_down_iterator(config, 0, False, images)
    batches = [next(whole) for _ in range(3)]  # steps 1, 2, 3
    resumed = upside_down_iterator(config, 3, False, images)  # killed after step 2: step 3 comes next
    pixels, flipped, _ = next(resumed)
    assert torch.equal(pixels, batches[2][0]) and torch.equal(flipped, batches[2][1])
    assert upside_down_iterator(config, 4, False, images) is None  # no step left


def test_crops_are_mirrored_and_flipped_each_with_probability_one_half(tmp_path: Path) -> None:
    from PIL import Image

    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:16, :16] = 255  # only the top-left quadrant is bright
    Image.fromarray(pixels).save(tmp_path / "corner.png")
    crops = UpsideDownCrops(list_unlabeled([str(tmp_path / "corner.png")]), input_size=8, crop=(32, 32), seed=0)
    seen = []
    for draw in range(200):
        patch, flipped, _ = crops[(0, draw)]
        bright_top = bool(patch[:, :4].float().mean() > patch[:, 4:].float().mean())
        bright_left = bool(patch[:, :, :4].float().mean() > patch[:, :, 4:].float().mean())
        assert bright_top != bool(flipped)
        seen.append((bright_left, bool(flipped)))
    mirrored = sum(not left for left, _ in seen) / len(seen)
    flipped_share = sum(f for _, f in seen) / len(seen)
    assert 0.35 < mirrored < 0.65 and 0.35 < flipped_share < 0.65
    assert len(set(seen)) == 4  # mirroring and flipping are drawn independently


def test_a_crop_depends_on_the_draw_not_on_the_picture_row(tmp_path: Path) -> None:
    real = write_pictures(tmp_path / "real", 1)
    (real / "real1.jpg").write_bytes((real / "real0.jpg").read_bytes())  # the same picture at two rows
    crops = UpsideDownCrops(list_unlabeled([str(real)]), input_size=16, crop=(24, 40), seed=0)
    for draw in range(4):
        first, second = crops[(0, draw)], crops[(1, draw)]
        assert torch.equal(first[0], second[0]) and first[1] == second[1]


def test_an_upside_down_batch_larger_than_the_unlabeled_pictures_is_refused_before_the_run_folder_is_made(
    blob_data: dict[str, Path], tmp_path: Path
) -> None:
    """tasks.upside_down.batch = 64 on 3 pictures trained silently on ~21 crops of each picture a step (the sampler
    cycles them); it now fails as schedule.batch does, before anything is written, and a batch that fits trains."""
    from train.errors import ConfigError
    from train.loop import fit

    table = masks_table(blob_data, write_pictures(tmp_path / "real", 3))
    table["schedule"].update(steps=1, eval_every=1)
    table["tasks"]["upside_down"]["batch"] = 4
    with pytest.raises(ConfigError, match=r"tasks.upside_down.batch = 4 is larger than the 3 pictures of data.unlabel"
                       r"ed = \['.*real'\].*Fix: --set tasks.upside_down.batch=3 or less"):  # fmt: skip
        fit(config_from_dict(table), tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()
    table["tasks"]["upside_down"]["batch"] = 3
    fit(config_from_dict(table), tmp_path / "run", show_progress=False)
    assert (tmp_path / "run" / "best.pt").is_file()
