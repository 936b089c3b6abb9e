"""rankset build: what each option and each picture does to the sets, checked on values a mistake would change."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from rankset.build import BuildConfig, assign_splits, build_ranked_sets
from rankset.errors import ConfigError, EmptySplitError


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def build(src: Path, out: Path, **kwargs: object) -> tuple:
    cfg = BuildConfig(str(src), str(out), **{"k": 3, "size": 16, **kwargs})  # type: ignore[arg-type]
    summary = build_ranked_sets(cfg, progress=False)
    return summary, datasets.load_from_disk(str(out))["train"]


def raw_patches(ds: datasets.Dataset) -> list[list[bytes]]:
    raw = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    return [[image["bytes"] for image in row["images"]] for row in raw]


def patch_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


# -- BuildConfig: the edges of every range are where an off-by-one hides -------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"r": 1.0},
        {"size": 16},
        {"size": 4096},
        {"seed": 2**32 - 1},
        {"quality": 1},
        {"quality": 100},
        {"num_proc": 1},
        {"k": 2},
        {"k": 37},  # 65535 * 0.75**36 = 2.1 px: the largest picture still gives a 2 px patch
        {"k": 15, "s": 0.5},
        {"k": 1000, "s": 0.999},
        {"sets_per_image": 1000},
        {"num_proc": 256},
        {"val_fraction": 0.0},
    ],
)
def test_config_accepts_the_edges_of_every_range(kwargs: dict) -> None:
    cfg = BuildConfig("in", "out", **kwargs)
    assert all(getattr(cfg, key) == value for key, value in kwargs.items())


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"r": 0.999}, "--r"),
        ({"size": 15}, "--size"),
        ({"size": 4097}, "--size"),
        ({"seed": 2**32}, "--seed"),
        ({"quality": 0}, "--quality"),
        ({"quality": 101}, "--quality"),
        ({"num_proc": 0}, "--num-proc"),
        ({"num_proc": 257}, "--num-proc"),
        ({"val_fraction": -0.1}, "--val-fraction"),
        ({"k": 38}, "--k 38 .* from 2 to 37 with --s 0.75"),
        ({"k": 16, "s": 0.5}, "--k 16 .* from 2 to 15 with --s 0.5"),
        ({"k": 3000}, "--k 3000"),  # 0.75**2999 is 0.0: this divided by zero once a picture was too small
        ({"k": 1001, "s": 0.999999}, "--k 1001 .* from 2 to 1000"),
        ({"r": float("inf")}, "--r inf"),
        ({"sets_per_image": 1001}, "--sets-per-image"),
    ],
)
def test_config_refuses_one_step_past_the_edges_naming_the_flag(kwargs: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        BuildConfig("in", "out", **kwargs)


# -- the validation split ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [(4, 0.1, 0), (3, 0.9, 3), (9, 0.2, 2), (9, 0.15, 1), (20, 0.1, 2), (40, 0.25, 10)],
)
def test_split_sends_the_rounded_fraction_of_pictures_to_validation(n: int, fraction: float, expected: int) -> None:
    splits = assign_splits([f"p{i}" for i in range(n)], fraction, seed=0)
    assert sorted(splits) == sorted(f"p{i}" for i in range(n))
    assert list(splits.values()).count("validation") == expected
    assert list(splits.values()).count("train") == n - expected


def test_split_depends_on_the_seed_and_not_on_the_input_order() -> None:
    ids = [f"picture-{i}" for i in range(40)]

    def validation(ids: list[str], seed: int) -> set[str]:
        return {i for i, split in assign_splits(ids, 0.25, seed).items() if split == "validation"}

    assert validation(ids, 0) == validation(list(reversed(ids)), 0)
    assert validation(ids, 0) != validation(ids, 1)
    assert len(validation(ids, 0)) == len(validation(ids, 1)) == 10


def test_an_empty_validation_split_asks_for_a_larger_fraction_and_an_empty_train_split_a_smaller_one(
    tmp_path: Path,
) -> None:
    from rankset.errors import EmptySplitError

    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(4):
        noise(80, 60, seed=i).save(pics / f"p{i}.png")
    with pytest.raises(EmptySplitError, match=r"split 'validation': 0 pictures.*Try a larger --val-fraction"):
        build(pics, tmp_path / "ds", val_fraction=0.1)  # round(0.1 * 4) = 0 pictures for validation
    with pytest.raises(EmptySplitError, match=r"split 'train': 0 pictures.*Try a smaller --val-fraction"):
        build(pics, tmp_path / "ds", val_fraction=0.9)  # round(0.9 * 4) = 4: all of them
    assert not (tmp_path / "ds").exists()


# -- the per-picture generator -------------------------------------------------------------------------------------


def test_same_sized_pictures_get_their_own_anchors_whatever_else_is_in_the_input(tmp_path: Path) -> None:
    """Frames of one camera share a size; one generator for all would cut every frame at the same place."""
    both, alone = tmp_path / "both", tmp_path / "alone"
    for folder, names in ((both, ["a", "b"]), (alone, ["a"])):
        folder.mkdir()
        for i, name in enumerate(names):
            noise(200, 150, seed=i).save(folder / f"{name}.png")
    _, ds = build(both, tmp_path / "ds-both", seed=4)
    _, single = build(alone, tmp_path / "ds-alone", seed=4)
    anchors = dict(zip(ds["source_id"], ds["anchor"], strict=True))
    assert anchors["a"] != anchors["b"]
    assert single["anchor"] == [anchors["a"]]


# -- decoding: reduced JPEG decode, pixel modes, quality ------------------------------------------------------------


def test_a_reduced_decode_keeps_the_full_source_size_and_only_large_pictures_count_as_reduced(tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    noise(3200, 2400).save(pics / "big.jpg", quality=85)
    noise(120, 90).save(pics / "small.jpg", quality=85)
    summary, ds = build(pics, tmp_path / "ds", k=3, s=0.8, size=64)
    assert summary.reduced_decodes == 1 and summary.used == 2
    sizes = dict(zip(ds["source_id"], ds["source_size"], strict=True))
    assert sizes == {"big": [3200, 2400], "small": [120, 90]}


def test_sixteen_bit_grey_is_scaled_to_eight_bits_not_saturated(tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    Image.fromarray(np.full((60, 80), 100 * 257, dtype=np.uint16)).save(pics / "grey16.png")  # 8-bit grey 100
    _, ds = build(pics, tmp_path / "ds")
    for data in raw_patches(ds)[0]:
        assert patch_pixels(data).mean() == pytest.approx(100, abs=2)


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    Image.new("RGBA", (80, 60), (200, 0, 0, 0)).save(pics / "clear.png")  # red, but fully transparent
    _, ds = build(pics, tmp_path / "ds")
    for data in raw_patches(ds)[0]:
        assert patch_pixels(data).mean(axis=(0, 1)) == pytest.approx([255, 255, 255], abs=2)


def test_quality_option_sets_the_jpeg_quality_of_the_patches(tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    noise(160, 120).save(pics / "noisy.png")
    _, low = build(pics, tmp_path / "low", size=64, quality=10)
    _, high = build(pics, tmp_path / "high", size=64, quality=95)
    low_bytes, high_bytes = raw_patches(low)[0], raw_patches(high)[0]
    assert all(len(a) * 2 < len(b) for a, b in zip(low_bytes, high_bytes, strict=True))
    assert low["boxes"] == high["boxes"]  # the same sets, only encoded differently


# -- which files of a folder are pictures, under which id, with whose attribution ----------------------------------


def test_folder_input_skips_hidden_folders_names_same_stems_by_path_and_reads_both_sidecar_spellings(
    tmp_path: Path,
) -> None:
    import json

    pics = tmp_path / "pics"
    for rel in ("day/x.png", "night/x.png", ".thumbnails/y.png"):
        (pics / rel).parent.mkdir(parents=True, exist_ok=True)
        noise(80, 60).save(pics / rel)
    (pics / "day" / "x.json").write_text(json.dumps({"author": "Day", "license": "cc0-1.0"}))  # x.json
    # x.png.json, written as people write them: HTML in the author, the licence as a page names it.
    night = {"author": '<a href="https://example.org/n">Night</a>', "license": "CC BY-SA 4.0"}
    (pics / "night" / "x.png.json").write_text(json.dumps(night))
    summary, ds = build(pics, tmp_path / "ds")
    assert summary.sources == 2 and sorted(ds["set_id"]) == ["day-x-0", "night-x-0"]
    by_id = {row["source_id"]: (row["author"], row["license"]) for row in ds}
    # As harvest local stores the same sidecar: plain text, the pool's one licence spelling.
    assert by_id == {"day-x": ("Day", "cc0-1.0"), "night-x": ("Night", "cc-by-sa-4.0")}


def test_pictures_whose_paths_differ_only_in_the_suffix_or_a_slash_get_distinct_source_ids(tmp_path: Path) -> None:
    # x.jpg beside x.png had one source id (x) even after the switch to paths: two rows with set_id x-0, one
    # attribution row and one split draw for two pictures.
    pics = tmp_path / "pics"
    for seed, rel in enumerate(("x.jpg", "x.png", "a/b.png", "a-b.png")):
        (pics / rel).parent.mkdir(parents=True, exist_ok=True)
        noise(80, 60, seed).save(pics / rel)
    summary, ds = build(pics, tmp_path / "ds")
    assert summary.sources == 4
    assert sorted(ds["set_id"]) == ["a-b.png-0", "a-b.png~2-0", "x.jpg-0", "x.png-0"]
    assert len(set(ds["source_url"])) == 4


def test_a_rebuild_into_an_out_inside_the_folder_reads_the_same_pictures_not_the_datasets_below_it(
    tmp_path: Path,
) -> None:
    pics = tmp_path / "pics"
    for rel in ("day/x.png", "night/x.png"):
        (pics / rel).parent.mkdir(parents=True, exist_ok=True)
        noise(80, 60).save(pics / rel)
    (pics / "pool").mkdir()
    (pics / "pool" / "pool.json").write_text("{}")
    noise(80, 60).save(pics / "pool" / "x.png")  # a harvest pool's pictures are read through the pool, not here
    first, ds = build(pics, pics / "ranksets")
    (pics / "ranksets" / "preview.png").write_bytes((pics / "day" / "x.png").read_bytes())  # rankset preview's
    again, rebuilt = build(pics, pics / "ranksets")
    pool_note = [("pool", f"a harvest pool, not read as a folder: pass {pics / 'pool'} as INPUT to build from it")]
    assert first.sources == again.sources == 3 and first.skipped == again.skipped == pool_note
    assert sorted(rebuilt["set_id"]) == sorted(ds["set_id"]) == ["day-x-0", "night-x-0"]


def test_with_both_sidecar_spellings_the_one_named_after_the_whole_file_name_is_read(tmp_path: Path) -> None:
    import json

    pics = tmp_path / "pics"
    pics.mkdir()
    noise(80, 60).save(pics / "x.png")
    (pics / "x.png.json").write_text(json.dumps({"author": "Whole name", "license": "cc0-1.0"}))
    (pics / "x.json").write_text(json.dumps({"author": "Stem only", "license": "cc-by-4.0"}))
    _, ds = build(pics, tmp_path / "ds")
    assert [(row["author"], row["license"]) for row in ds] == [("Whole name", "cc0-1.0")]


def test_a_sidecar_that_is_not_utf8_or_not_an_object_is_ignored_and_the_picture_still_cut(tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    for name in ("latin1", "list", "good"):
        noise(80, 60).save(pics / f"{name}.png")
    (pics / "latin1.png.json").write_bytes(b'{"author": "Jos\xe9"}')  # Latin-1, as an old editor saves it
    (pics / "list.png.json").write_text('["not", "an", "object"]')
    (pics / "good.png.json").write_text('{"author": "Jos\u00e9"}')
    summary, ds = build(pics, tmp_path / "ds")
    assert summary.sources == 3
    assert {row["source_id"]: row["author"] for row in ds} == {"good": "José", "latin1": None, "list": None}


def test_pool_pictures_are_cut_in_id_order_whatever_order_they_were_harvested_in(tmp_path: Path) -> None:
    from harvest.pool import Pool

    pool = Pool.create(tmp_path / "pool")
    rows = []
    for i in range(4):
        buf = io.BytesIO()
        noise(64, 48, seed=i).save(buf, "JPEG")
        sha, rel = pool.store_image(buf.getvalue(), "jpg")
        rows.append({"id": sha, "url": f"http://example.org/{i}.jpg", "status": "ok", "path": rel, "kept": True})
    rows.sort(key=lambda row: row["id"], reverse=True)
    for row in rows:  # one index write per picture, newest id first
        pool.append_rows([row])
    _, ds = build(tmp_path / "pool", tmp_path / "ds")
    assert ds["source_id"] == sorted(row["id"] for row in rows)


def test_the_reduced_decode_is_planned_on_the_smallest_patch_not_the_largest(tmp_path: Path) -> None:
    """1600x1600, r=8, k=5, s=0.5: patch 0 is >= 1400 px, patch 4 only ~90 px, under 2x --size 64: full decode."""
    pics = tmp_path / "pics"
    pics.mkdir()
    noise(1600, 1600).save(pics / "big.jpg", quality=75)
    summary, ds = build(pics, tmp_path / "ds", k=5, s=0.5, size=64)
    sides = [box[2] - box[0] for box in ds[0]["boxes"]]
    assert sides[0] >= 1400 and sides[-1] < 128
    assert summary.reduced_decodes == 0


def test_config_defaults_are_the_papers() -> None:
    cfg = BuildConfig("in", "out")
    assert (cfg.k, cfg.s, cfg.r, cfg.size, cfg.sets_per_image, cfg.seed) == (5, 0.75, 8.0, 224, 1, 0)
    assert cfg.params() == {
        "kind": "ranked-sets",
        "k": 5,
        "s": 0.75,
        "r": 8.0,
        "size": 224,
        "sets_per_image": 1,
        "seed": 0,
        "val_fraction": 0.0,
        "quality": 90,
    }


def test_pictures_are_cut_once_each_in_input_order_across_chunks(monkeypatch) -> None:
    """Results come back chunk by chunk; a chunk must neither be lost nor sent twice."""
    import rankset.build as build_module

    calls: list[str] = []

    def fake_task(args):
        calls.append(args[0])
        return args[0], [], None, 1

    monkeypatch.setattr(build_module, "_cut_sets_task", fake_task)
    cfg = BuildConfig("in", "out")
    names = [f"p{i}" for i in range(5)]
    out = [r[0] for r in build_module._map_in_chunks(None, names, cfg, chunk=2)]  # type: ignore[arg-type]
    assert out == names and calls == names


def test_a_picture_whose_smallest_patch_would_be_under_two_pixels_is_skipped_saying_why(tmp_path: Path) -> None:
    """k=5, s=0.5, r=8: patch 4 is 1/16 of patch 0, about 1.1-1.25 px in 20x20 (skipped), 2.2-2.5 px in 40x40."""
    pics = tmp_path / "pics"
    pics.mkdir()
    noise(20, 20).save(pics / "small.png")
    noise(40, 40).save(pics / "large.png")
    summary, ds = build(pics, tmp_path / "ds", k=5, s=0.5)
    [(source_id, message)] = summary.skipped
    assert source_id == "small" and message.startswith("small: 20x20 is too small for k=5, s=0.5")
    # 2 / (7/8 * 0.5**4) = 36.6: the short side from which every anchor fits, and the flags that change it
    assert "short side of 37 px" in message and "--k" in message and "--s" in message
    assert summary.skipped_by_reason == {"too small for k and s": 1}
    assert ds["source_id"] == ["large"] and 2.0 <= ds[0]["boxes"][-1][2] - ds[0]["boxes"][-1][0] < 2.5


def test_a_build_whose_pictures_are_all_unreadable_does_not_suggest_changing_k_or_s(tmp_path: Path) -> None:
    """The message ended "Try a smaller --k or larger --s, or larger pictures" whatever the pictures' fault was."""
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "empty.jpg").write_bytes(b"")
    (pics / "text.png").write_bytes(b"not a picture")
    with pytest.raises(EmptySplitError) as caught:
        build(pics, tmp_path / "ds")
    message = str(caught.value)
    assert "--k" not in message and "--s" not in message
    assert "Try the fix named for each skipped picture (unreadable picture: 2)" in message
    assert "move it out of the folder" in message  # the example skip carries its own fix


@pytest.mark.parametrize("kind", ["folder", "pool"])
def test_split_given_for_a_folder_or_pool_is_refused_not_ignored(tmp_path: Path, kind: str) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    noise(80, 60).save(pics / "x.png")
    if kind == "pool":
        (pics / "pool.json").write_text("{}")
    with pytest.raises(ConfigError, match=f"--split test applies only when INPUT is a dataset; .* is a {kind}"):
        build(pics, tmp_path / "ds", split="test")
    assert not (tmp_path / "ds").exists()


def test_a_folder_holding_only_a_pool_fails_saying_to_pass_the_pool(tmp_path: Path) -> None:
    pools = tmp_path / "pools"
    (pools / "keyword").mkdir(parents=True)
    (pools / "keyword" / "pool.json").write_text("{}")
    noise(80, 60).save(pools / "keyword" / "x.png")
    with pytest.raises(EmptySplitError, match=f"pass {pools / 'keyword'} as INPUT to build from it"):
        build(pools, tmp_path / "ds")
