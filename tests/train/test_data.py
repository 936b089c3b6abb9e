"""Batches: exact crop targets, seeded resumable draw order, ranked sets, dataset errors naming the key."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from rankset.io import looks_like_hub_id
from train.data import DrawSampler, LabeledCrops, RankedSets, RowSource, open_dataset, raw_row, undecoded
from train.errors import DataError
from train.manifest import config_from_dict
from train.sources import resolve_sources

from .conftest import build_labeled, build_ranked


def labeled_source(path: Path) -> RowSource:
    ds = open_dataset(str(path), "data.labeled[0]", "labeled")["train"]
    return RowSource(str(path), ds, list(range(len(ds))))


def test_crop_targets_sum_to_the_heads_inside_each_flipped_crop(blob_data: dict[str, Path]) -> None:
    source = labeled_source(blob_data["labeled"])
    crops = LabeledCrops([source], 32, (16, 40), 3.0, output_stride=4, density_scale=100.0, seed=0)
    for draw in range(12):
        pixels, target, count, skipped = crops[(draw % len(crops), draw)]
        assert pixels.shape == (3, 32, 32) and target.shape == (1, 8, 8) and skipped.item() == 0
        assert target.sum().item() / 100.0 == pytest.approx(count.item(), abs=1e-3)


def test_a_crop_of_the_whole_image_keeps_every_annotated_head(tmp_path: Path) -> None:
    path = build_labeled(tmp_path / "square", {"train": 3}, size=(40, 40), max_heads=20)
    source = labeled_source(path)
    crops = LabeledCrops([source], 40, (40, 40), 2.0, output_stride=4, density_scale=1.0, seed=0)
    view = undecoded(source.dataset)
    for draw in range(6):
        _, target, count, _ = crops[(draw % 3, draw)]
        assert count.item() == len(raw_row(view, draw % 3)["points"])
        assert target.sum().item() == pytest.approx(count.item(), abs=1e-3)


def test_draw_order_is_a_function_of_the_draw_number_so_resuming_sees_the_same_batches() -> None:
    full = list(DrawSampler(10, 4, seed=0, stream=1, start=0, batches=6))
    resumed = list(DrawSampler(10, 4, seed=0, stream=1, start=3 * 4, batches=3))
    assert resumed == full[3:]
    first_epoch = [row for batch in full for row, _ in batch][:10]
    assert sorted(first_epoch) == list(range(10))  # every row once per epoch
    assert full != list(DrawSampler(10, 4, seed=1, stream=1, start=0, batches=6))


def test_ranked_sets_come_out_as_k_patches_at_input_size(blob_data: dict[str, Path]) -> None:
    ds = open_dataset(str(blob_data["ranked"]), "data.ranked[0]", "ranked")["train"]
    sets = RankedSets([RowSource("r", ds, [0, 1])], input_size=24, seed=0)
    patches, skipped = sets[(1, 0)]
    assert patches.shape == (3, 3, 24, 24) and skipped.item() == 0


def test_ranked_sets_of_different_k_fail_before_training(blob_data: dict[str, Path], tmp_path: Path) -> None:
    other = build_ranked(tmp_path / "k4", sets=2, k=4)
    config = config_from_dict(
        {"data": {"labeled": [str(blob_data["labeled"])], "ranked": [str(blob_data["ranked"]), str(other)]}}
    )
    with pytest.raises(DataError, match=r"data.ranked\[1\] .* k=4 .* k=3"):
        resolve_sources(config)


def test_a_batch_larger_than_the_training_images_is_refused_naming_both(blob_data: dict[str, Path]) -> None:
    from train.errors import ConfigError

    table = {
        "data": {"labeled": [str(blob_data["labeled"])], "eval": str(blob_data["labeled"]), "val_fraction": 0.125},
        "schedule": {"paradigm": "count-only", "batch": 100000},
    }
    with pytest.raises(ConfigError, match=r"schedule.batch = 100000 is larger than the 14 labeled training images"):
        resolve_sources(config_from_dict(table))
    table["schedule"]["batch"] = 14  # 16 train rows, 2 carved for validation
    assert resolve_sources(config_from_dict(table)).labeled_rows == 14


def test_a_missing_dataset_names_the_manifest_key(tmp_path: Path) -> None:
    config = config_from_dict({"data": {"labeled": [str(tmp_path / "nope")]}, "schedule": {"paradigm": "count-only"}})
    with pytest.raises(DataError, match=r"data.labeled\[0\] = .*nope.* cannot be loaded.*rankset"):
        resolve_sources(config)


def test_a_missing_dataset_gives_the_commands_that_make_it_at_that_path(tmp_path: Path) -> None:
    """The fix used to be a generic "`rankset import/synth ... --out DIR`", which is not a command anyone can run."""
    nope, ranked = tmp_path / "sha", tmp_path / "keyword"
    config = config_from_dict({"data": {"labeled": [str(nope)]}, "schedule": {"paradigm": "count-only"}})
    with pytest.raises(DataError) as labeled:
        resolve_sources(config)
    assert f"`rankset import FORMAT ROOT --out {nope}` (FORMAT: shanghaitech, ucf-cc-50" in str(labeled.value)
    assert f"`rankset synth --n N --out {nope}`" in str(labeled.value)
    assert "manifests/ lists the exact commands" in str(labeled.value)
    with pytest.raises(DataError, match=rf"`rankset build POOL_OR_FOLDER --k 5 --s 0.75 --out {ranked}`"):
        open_dataset(str(ranked), "--ranked", "ranked")


def test_a_relative_path_in_an_existing_folder_is_never_looked_up_on_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data/shb`` with ``data/`` present is a dataset not made yet, not the Hub dataset of a user ``data``."""
    import datasets

    def no_hub(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    config = config_from_dict({"data": {"labeled": ["data/shb"]}, "schedule": {"paradigm": "count-only"}})
    with pytest.raises(DataError, match=r"data/shb does not exist \(its folder data/ does, so it is read as a local"):
        resolve_sources(config)
    assert looks_like_hub_id("user/shb") and not looks_like_hub_id("data/shb")
    assert not looks_like_hub_id("user/shb/extra") and not looks_like_hub_id("./shb")


def test_an_empty_train_split_is_named_with_the_fix(tmp_path: Path) -> None:
    import json

    import datasets

    folder = build_labeled(tmp_path / "labeled", {"train": 2, "test": 2})
    datasets.load_from_disk(str(folder / "test")).select([]).save_to_disk(str(tmp_path / "empty"))
    (folder / "train").rename(tmp_path / "full-train")
    (tmp_path / "empty").rename(folder / "train")  # a 0-row train split, saved as datasets saves one
    assert json.loads((folder / "dataset_dict.json").read_text())["splits"] == ["train", "test"]
    config = config_from_dict({"data": {"labeled": [str(folder)]}, "schedule": {"paradigm": "count-only"}})
    with pytest.raises(DataError, match=r"data.labeled\[0\] = .* has an empty split \(train: 0 rows\).* train on"):
        resolve_sources(config)


def test_a_ranked_set_given_as_labeled_is_refused(blob_data: dict[str, Path]) -> None:
    config = config_from_dict({"data": {"labeled": [str(blob_data["ranked"])]}, "schedule": {"paradigm": "count-only"}})
    with pytest.raises(DataError, match="is a ranked dataset, expected labeled"):
        resolve_sources(config)


def test_validation_is_carved_from_train_without_overlap(blob_data: dict[str, Path]) -> None:
    config = config_from_dict(
        {
            "data": {"labeled": [str(blob_data["labeled"])], "eval": str(blob_data["labeled"]), "val_fraction": 0.25},
            "schedule": {"paradigm": "count-only", "batch": 8},
        }
    )
    sources = resolve_sources(config)
    train_rows, val_rows = set(sources.labeled[0].indices), set(sources.validation[0].indices)
    assert len(val_rows) == 4 and not train_rows & val_rows and len(train_rows) == 12
    assert len(sources.test[0].indices) == 4
    assert np.all(np.array(sorted(train_rows | val_rows)) == np.arange(16))


def test_an_unreadable_image_is_replaced_by_the_next_row_and_counted(tmp_path: Path) -> None:
    from rankset.io import write_dataset_dict
    from rankset.schema import labeled_features

    good = raw_row(
        undecoded(open_dataset(str(build_labeled(tmp_path / "g", {"train": 1})), "k", "labeled")["train"]), 0
    )
    broken = {**good, "image_id": "broken", "image": {"bytes": b"not a jpeg", "path": None}}

    def rows() -> object:
        yield from [broken, good]

    path = write_dataset_dict(tmp_path / "mixed", {"train": (rows, {})}, labeled_features())
    source = labeled_source(tmp_path / "mixed")
    for cache in (0, 1 << 20):  # decoded per crop, then from memory: the broken row is never cached
        crops = LabeledCrops([source], 32, (16, 32), 2.0, output_stride=4, density_scale=1.0, seed=0)
        assert crops.fill_cache(cache)[0] == (1 if cache else 0)
        _, target, count, skipped = crops[(0, 0)]
        assert skipped.item() == 1
        assert target.sum().item() == pytest.approx(count.item(), abs=1e-3)
    assert path is not None


def test_decoded_cache_gives_the_same_items_and_keeps_to_its_budget(tmp_path: Path) -> None:
    import torch

    path = build_labeled(tmp_path / "d", {"train": 6}, size=(64, 48), max_heads=12)
    source = labeled_source(path)

    def make() -> LabeledCrops:
        return LabeledCrops([source], 32, (16, 48), "adaptive", output_stride=4, density_scale=100.0, seed=5)

    plain, cached, partial = make(), make(), make()
    assert cached.fill_cache(1 << 30) == (6, 6 * 64 * 48 * 3)
    assert partial.fill_cache(2 * 64 * 48 * 3 + 100) == (2, 2 * 64 * 48 * 3)  # whole images only, in row order
    assert sorted(partial._decoded) == [0, 1]
    for draw in range(24):
        want = plain[(draw % 6, draw)]
        for crops in (cached, partial):
            got = crops[(draw % 6, draw)]
            assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))


def test_a_run_reports_its_decoded_cache(blob_data: dict[str, Path], tmp_path: Path) -> None:
    from train.loop import make_iterators

    config = config_from_dict({"data": {"labeled": [str(blob_data["labeled"])], "input_size": 32, "crop": [16, 32],
                                        "workers": 0, "cache_gb": 0.5},
                              "schedule": {"steps": 2, "batch": 2, "paradigm": "count-only"}})  # fmt: skip
    notes: list[str] = []
    count_iter, _ = make_iterators(config, resolve_sources(config), 4, 0, False, notes)
    assert next(count_iter)[0].shape == (2, 3, 32, 32)
    assert len(notes) == 1 and notes[0].startswith("decoded ") and "data.cache_gb = 0.5" in notes[0]


def test_adaptive_sigma_targets_still_sum_to_the_heads_in_the_crop(blob_data: dict[str, Path]) -> None:
    source = labeled_source(blob_data["labeled"])
    crops = LabeledCrops([source], 32, (16, 48), "adaptive", output_stride=4, density_scale=1.0, seed=3)
    for draw in range(6):
        _, target, count, _ = crops[(draw, draw)]
        assert target.sum().item() == pytest.approx(count.item(), abs=1e-3)
    assert len(crops._sigma_cache) == 6  # one kNN computation per image, reused by later crops


@pytest.mark.parametrize("sigma", [2.0, "adaptive"])
def test_a_flipped_crop_flips_its_pixels_and_its_target_together(tmp_path: Path, sigma: float | str) -> None:
    """Whole-image crops of a 32x32 picture resized to 16 px: the only random choice left is the flip, and the
    target is the picture's heads (and sigmas) scaled by 1/2, mirrored exactly when the pixels are."""
    from PIL import Image

    from train.data import decode_image
    from train.targets import adaptive_sigmas, density_map

    source = labeled_source(build_labeled(tmp_path / "sq", {"train": 1}, size=(32, 32), max_heads=12))
    record = raw_row(undecoded(source.dataset), 0)
    points = np.asarray(record["points"], dtype=np.float64).reshape(-1, 2)
    assert len(points) >= 2
    sigmas = adaptive_sigmas(points) if sigma == "adaptive" else np.full(len(points), sigma)
    mirrored_points = np.stack([32 - points[:, 0], points[:, 1]], axis=1)
    targets = [density_map(p * 0.5, (16, 16), sigmas * 0.5, cell=4) for p in (points, mirrored_points)]
    upright = np.array(decode_image(record["image"]).resize((16, 16), Image.BILINEAR)).transpose(2, 0, 1)
    crops = LabeledCrops([source], 16, (32, 32), sigma, output_stride=4, density_scale=1.0, seed=0)
    flips = []
    for draw in range(8):
        pixels, target, count, _ = crops[(0, draw)]
        flipped = not np.array_equal(pixels.numpy(), upright)
        if flipped:
            np.testing.assert_array_equal(pixels.numpy(), upright[:, :, ::-1])
        np.testing.assert_allclose(target[0].numpy(), targets[int(flipped)], atol=1e-6)
        assert count.item() == len(points)
        flips.append(flipped)
    assert 0 < sum(flips) < 8  # both orientations were drawn


def test_ranked_set_patches_keep_their_order_and_flip_all_alike(blob_data: dict[str, Path]) -> None:
    from train.data import decode_image, set_patches

    ds = open_dataset(str(blob_data["ranked"]), "data.ranked[0]", "ranked")["train"]
    cells = raw_row(undecoded(ds), 0)["images"]
    stored = np.stack([np.array(decode_image(cell)).transpose(2, 0, 1) for cell in cells])  # (k, 3, 32, 32)
    np.testing.assert_array_equal(set_patches(cells, 32).numpy(), stored)  # largest first, as stored
    np.testing.assert_array_equal(set_patches(cells, 32, flip=True).numpy(), stored[..., ::-1])
    sets = RankedSets([RowSource("r", ds, [0])], input_size=32, seed=0)
    flips = []
    for draw in range(8):
        patches = sets[(0, draw)][0].numpy()
        flipped = not np.array_equal(patches, stored)
        if flipped:
            np.testing.assert_array_equal(patches, stored[..., ::-1])
        flips.append(flipped)
    assert 0 < sum(flips) < 8


def _recorded_boxes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float, float, float]]:
    """Every crop box LabeledCrops asks for, in draw order (its points_in_box call sees each one)."""
    import train.data
    from train.targets import points_in_box

    boxes: list[tuple[float, float, float, float]] = []

    def recording(points: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        boxes.append(box)
        return points_in_box(points, box)

    monkeypatch.setattr(train.data, "points_in_box", recording)
    return boxes


def test_crop_sides_span_data_crop_and_crops_reach_every_border_of_a_portrait_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = labeled_source(build_labeled(tmp_path / "tall", {"train": 1}, size=(48, 64), max_heads=3))  # W < H
    crops = LabeledCrops([source], 16, (16, 40), 2.0, output_stride=4, density_scale=1.0, seed=0)
    crops.fill_cache(1 << 20)
    boxes = _recorded_boxes(monkeypatch)
    for draw in range(300):
        crops[(0, draw)]
    sides = {x1 - x0 for x0, y0, x1, y1 in boxes}
    assert all(x1 - x0 == y1 - y0 for x0, y0, x1, y1 in boxes)  # squares
    assert min(sides) == 16 and max(sides) == 40 and len(sides) > 15  # uniform over 16..40, both ends included
    assert min(b[0] for b in boxes) == 0 and max(b[2] for b in boxes) == 48
    assert min(b[1] for b in boxes) == 0 and max(b[3] for b in boxes) == 64  # the bottom rows are reachable too


def test_a_crop_range_beyond_the_image_is_clipped_to_its_short_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = labeled_source(build_labeled(tmp_path / "small", {"train": 1}, size=(20, 12), max_heads=3))
    crops = LabeledCrops([source], 16, (16, 64), 2.0, output_stride=4, density_scale=1.0, seed=0)
    boxes = _recorded_boxes(monkeypatch)
    for draw in range(20):
        _, _, _, skipped = crops[(0, draw)]
        assert skipped.item() == 0
    assert {(x1 - x0, y0, y1) for x0, y0, x1, y1 in boxes} == {(12, 0, 12)}  # every crop is 12 px, full height


def _one_image_set(tmp_path: Path, points: list[list[float]], size: tuple[int, int] = (32, 32)) -> RowSource:
    import io

    from PIL import Image

    from rankset.io import write_dataset_dict
    from rankset.schema import labeled_features

    from .conftest import _rows

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((size[1], size[0], 3), dtype=np.uint8)).save(buffer, format="PNG")
    row = {"image_id": "edge", "image": {"bytes": buffer.getvalue(), "path": None}, "points": points,
           "count": len(points), "dataset": "edge", "split": "train"}  # fmt: skip
    write_dataset_dict(tmp_path / "edge", {"train": (_rows, {"rows": [row]})}, labeled_features())
    return labeled_source(tmp_path / "edge")


def test_heads_in_the_last_pixel_row_and_column_and_on_the_far_border_belong_to_the_crop(tmp_path: Path) -> None:
    # points are clamped into [0, W] x [0, H]: a head at x = 31.7 lies in pixel column 31 of a 32-px picture
    source = _one_image_set(tmp_path, [[31.7, 3.0], [4.0, 31.9], [32.0, 32.0], [0.0, 0.0]])
    crops = LabeledCrops([source], 32, (32, 32), 2.0, output_stride=4, density_scale=1.0, seed=0)
    for draw in range(4):
        _, target, count, _ = crops[(0, draw)]
        assert count.item() == 4.0 and target.sum().item() == pytest.approx(4.0, abs=1e-4)


def test_each_epoch_draws_its_own_permutation_of_the_rows() -> None:
    from train.data import draw_indices

    epochs = [[draw_indices(10, 0, 1, epoch * 10 + i) for i in range(10)] for epoch in range(3)]
    assert all(sorted(order) == list(range(10)) for order in epochs)
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]  # not one order repeated, which would fix batches


def test_validation_carve_rounds_keeps_one_row_each_side_and_is_a_seeded_shuffle() -> None:
    from train.data import carve_validation

    train, val = carve_validation(10, 0.27, seed=0)
    assert len(val) == 3 and len(train) == 7  # 2.7 rounds to 3
    assert train == sorted(train) and val == sorted(val) and sorted(train + val) == list(range(10))
    assert len(carve_validation(16, 0.01, seed=0)[1]) == 1  # a fraction under one row still carves one
    assert [len(part) for part in carve_validation(2, 0.9, seed=0)] == [1, 1]  # and leaves one to train on
    assert carve_validation(5, 0.0, seed=0) == ([0, 1, 2, 3, 4], [])
    held = [carve_validation(20, 0.25, seed=s)[1] for s in (0, 1)]
    assert held[0] != [0, 1, 2, 3, 4] and held[0] != held[1]  # shuffled by the seed, not the first rows


def test_ranked_sets_of_one_patch_are_refused(tmp_path: Path) -> None:
    from train.data import ranked_set_size

    one = open_dataset(str(build_ranked(tmp_path / "k1", sets=2, k=1)), "data.ranked[0]", "ranked")["train"]
    with pytest.raises(DataError, match="data.ranked.0. has sets of 1 to 1 patches; every set needs the same k >= 2"):
        ranked_set_size(one, "data.ranked[0]")
    two = open_dataset(str(build_ranked(tmp_path / "k2", sets=2, k=2)), "data.ranked[0]", "ranked")["train"]
    assert ranked_set_size(two, "data.ranked[0]") == 2


def test_the_decoded_cache_fills_its_budget_exactly(tmp_path: Path) -> None:
    source = labeled_source(build_labeled(tmp_path / "d", {"train": 3}, size=(16, 8), max_heads=2))
    crops = LabeledCrops([source], 8, (8, 8), 2.0, output_stride=4, density_scale=1.0, seed=0)
    assert crops.fill_cache(2 * 16 * 8 * 3) == (2, 2 * 16 * 8 * 3)  # two whole pictures fit to the byte


def test_the_decoded_cache_leaves_out_a_picture_over_twice_pillows_limit_without_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    source = labeled_source(build_labeled(tmp_path / "d", {"train": 2}, size=(16, 8), max_heads=2))
    crops = LabeledCrops([source], 8, (8, 8), 2.0, output_stride=4, density_scale=1.0, seed=0)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60)  # 16x8 = 128 pixels: over twice the limit
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert crops.fill_cache(1 << 20) == (0, 0)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # over the limit, under twice it: cached, quietly
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert crops.fill_cache(1 << 20) == (2, 2 * 16 * 8 * 3)


def test_a_partial_crop_s_target_is_its_own_heads_scaled_by_input_size_over_the_crop_side(
    blob_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from train.targets import density_map

    source = labeled_source(blob_data["labeled"])
    crops = LabeledCrops([source], 32, (16, 40), 2.0, output_stride=4, density_scale=1.0, seed=0)
    boxes = _recorded_boxes(monkeypatch)
    view, flips = undecoded(source.dataset), set()
    for draw in range(12):
        _, target, count, _ = crops[(draw % 8, draw)]
        x0, y0, x1, y1 = boxes[-1]
        points = np.asarray(raw_row(view, draw % 8)["points"], dtype=np.float64).reshape(-1, 2)
        keep = (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
        inside, side = points[keep] - [x0, y0], x1 - x0
        mirrored = np.stack([side - inside[:, 0], inside[:, 1]], axis=1)
        scale = 32 / side  # the crop, not the picture, is resized to input_size: heads and sigmas scale alike
        upright, flipped = (density_map(p * scale, (32, 32), 2.0 * scale, cell=4) for p in (inside, mirrored))
        assert count.item() == keep.sum()
        matches = [np.allclose(target[0].numpy(), t, atol=1e-5) for t in (upright, flipped)]
        assert any(matches), f"draw {draw}: the target is neither orientation of the crop's heads"
        flips.add(matches.index(True) if keep.sum() else None)
    assert {0, 1} <= flips


def test_dataset_pictures_are_decoded_as_displayed_after_their_exif_orientation() -> None:
    """rankset stores points "after EXIF orientation" (HF datasets' decode turns the picture): train eval and
    training crops must read the stored bytes in that frame, not as stored."""
    import io

    from PIL import Image

    from train.data import decode_image

    shown = np.random.default_rng(3).integers(0, 255, size=(30, 20, 3), dtype=np.uint8)  # 20 wide, 30 high
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 counter-clockwise to display"
    buffer = io.BytesIO()
    Image.fromarray(np.rot90(shown, k=-1).copy()).save(buffer, format="PNG", exif=exif.tobytes())
    decoded = np.array(decode_image({"bytes": buffer.getvalue(), "path": None}))
    assert decoded.shape == (30, 20, 3)
    np.testing.assert_array_equal(decoded, shown)
