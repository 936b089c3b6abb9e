"""rankset synth: camera geometry, layout sampling, rendering, and the dataset / JPEG writers (all offline, CPU)."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from rankset.cli import app
from rankset.errors import ConfigError, InputError
from rankset.io import load_dataset_dict
from rankset.schema import DEPTH_SCALE, labeled_features
from rankset.synth import (
    Camera,
    SynthConfig,
    ground_depth_rows,
    parse_size,
    parse_splits,
    project,
    sample_count,
    sample_plan,
    save_contact_sheet,
    split_indices,
    synth_dataset,
    synth_unlabeled,
    synthesize_scene,
)
from rankset.synth.camera import backproject_to_plane
from rankset.synth.people import Figure
from rankset.synth.render import _visible_heads
from rankset.synth.writer import render_row

SMALL = (160, 120)


def _camera(tilt_degrees: float = 30.0) -> Camera:
    return Camera(width=320, height=240, focal_px=300.0, height_m=8.0, tilt_rad=math.radians(tilt_degrees))


def test_projection_of_ground_points_backprojects_to_the_same_place() -> None:
    camera = _camera()
    x, z = np.array([-3.0, 0.0, 2.5, 10.0]), np.array([6.0, 15.0, 20.0, 40.0])
    u, v, depth = project(camera, x, np.zeros_like(x), z)
    back_x, back_z, back_depth = backproject_to_plane(camera, u, v)
    np.testing.assert_allclose(back_x, x, atol=1e-9)
    np.testing.assert_allclose(back_z, z, atol=1e-9)
    np.testing.assert_allclose(back_depth, depth, atol=1e-9)


def test_optical_axis_hits_image_centre_and_far_ground_approaches_the_horizon() -> None:
    camera = _camera(tilt_degrees=30.0)
    # the optical axis meets the ground at Z = height / tan(tilt)
    u, v, depth = project(camera, np.array([0.0]), np.array([0.0]), np.array([8.0 / math.tan(math.radians(30))]))
    assert (u[0], v[0]) == pytest.approx((160.0, 120.0))
    assert depth[0] == pytest.approx(8.0 / math.sin(math.radians(30)))
    _, far_v, _ = project(camera, np.array([0.0]), np.array([0.0]), np.array([1e7]))
    assert far_v[0] == pytest.approx(camera.horizon_v, abs=1e-3)


def test_ground_depth_grows_toward_the_horizon_and_is_zero_for_sky() -> None:
    camera = Camera(width=320, height=240, focal_px=300.0, height_m=5.0, tilt_rad=math.radians(15))
    depth = ground_depth_rows(camera)
    horizon_row = math.ceil(camera.horizon_v)
    assert 0 < horizon_row < camera.height, "this camera must see the horizon"
    assert np.all(depth[: horizon_row - 1] == 0)
    ground = depth[horizon_row + 1 :]
    assert np.all(ground > 0)
    assert np.all(np.diff(ground) < 0), "rows nearer the bottom are nearer the camera"


def test_count_sampler_is_log_uniform_so_sparse_and_dense_are_equally_common() -> None:
    rng = np.random.default_rng(7)
    counts = np.array([sample_count(rng, 1000) for _ in range(3000)])
    assert counts.min() >= 0 and counts.max() <= 1000
    assert 0.27 < np.mean((counts >= 1) & (counts < 10)) < 0.40  # log-uniform: a third per decade
    assert 0.27 < np.mean(counts >= 100) < 0.40


def test_min_count_draws_crowd_scenes_only_and_leaves_the_default_draws_unchanged() -> None:
    crowds = np.array([sample_count(np.random.default_rng([1, i]), 300, 30) for i in range(2000)])
    assert crowds.min() >= 30 and crowds.max() <= 300
    assert 0.4 < np.mean(crowds < 95) < 0.6  # log-uniform over [30, 300]: the geometric midpoint ~95 halves it
    default = [sample_count(np.random.default_rng([1, i]), 300) for i in range(200)]
    explicit = [sample_count(np.random.default_rng([1, i]), 300, 0) for i in range(200)]
    assert default == explicit and 0 in default  # empty scenes only without a minimum
    with pytest.raises(ConfigError, match="--min-count 400"):
        SynthConfig(n=1, out="x", max_count=300, min_count=400)


def test_layouts_cover_sparse_and_dense_scenes() -> None:
    counts = [len(sample_plan(np.random.default_rng([3, i]), 512, 384).crowd) for i in range(80)]
    assert sum(c < 20 for c in counts) >= 10
    assert sum(c > 300 for c in counts) >= 5
    assert max(counts) <= 1000


def test_heads_higher_in_the_image_are_smaller_and_farther() -> None:
    checked = 0
    for i in range(40):
        crowd = sample_plan(np.random.default_rng([5, i]), 512, 384).crowd
        if len(crowd) < 40:
            continue
        upper = crowd.head_v < np.median(crowd.head_v)
        assert crowd.head_px[upper].mean() < crowd.head_px[~upper].mean()
        assert crowd.depth[upper].mean() > crowd.depth[~upper].mean()
        checked += 1
    assert checked >= 5


def test_head_points_follow_the_projection_of_each_person() -> None:
    plan = sample_plan(np.random.default_rng([9, 1]), 512, 384)
    crowd = plan.crowd
    assert len(crowd) > 0
    u, v, _ = project(plan.camera, crowd.x, crowd.stature - 0.11, crowd.z)
    np.testing.assert_allclose(crowd.head_u, u)
    np.testing.assert_allclose(crowd.head_v, v)


def test_same_seed_gives_same_bytes_and_another_seed_differs() -> None:
    first = render_row(4, 0, *SMALL, 1000, True)
    again = render_row(4, 0, *SMALL, 1000, True)
    other = render_row(4, 1, *SMALL, 1000, True)
    assert first["image"]["bytes"] == again["image"]["bytes"]
    assert first["depth"]["bytes"] == again["depth"]["bytes"]
    assert first["points"] == again["points"]
    assert first["image"]["bytes"] != other["image"]["bytes"]


@pytest.mark.parametrize("index", range(6))
def test_points_lie_inside_the_image_and_count_is_their_number(index: int) -> None:
    scene = synthesize_scene(np.random.default_rng([11, index]), *SMALL)
    width, height = SMALL
    assert scene.image.shape == (height, width, 3) and scene.depth.shape == (height, width)
    assert scene.count == len(scene.points) == len(scene.head_px)
    assert np.all((scene.points[:, 0] >= 0) & (scene.points[:, 0] < width))
    assert np.all((scene.points[:, 1] >= 0) & (scene.points[:, 1] < height))
    # every counted head sits on something with depth: a person, never the sky
    if scene.count:
        columns, rows = scene.points[:, 0].astype(int), scene.points[:, 1].astype(int)
        assert np.all(scene.depth[rows, columns] > 0)


def test_a_fully_hidden_head_is_not_counted_but_a_partly_hidden_one_is() -> None:
    ids = np.zeros((40, 40), dtype=np.int32)
    figures = [Figure(10, 30, 10, 10, 5.0, 40.0), Figure(30, 30, 30, 10, 5.0, 40.0)]
    ids[5:16, 5:16] = 3  # person 1's head fully painted over by a nearer label
    ids[5:16, 25:36] = 2  # person 2's head drawn ...
    ids[5:16, 25:31] = 3  # ... then a nearer label covers its left half
    assert _visible_heads(ids, figures).tolist() == [False, True]


def test_depth_png_round_trips_in_metres_times_depth_scale() -> None:
    scene = synthesize_scene(np.random.default_rng([2, 3]), *SMALL)
    decoded = np.asarray(Image.open(io.BytesIO(scene.depth_png_bytes())), dtype=np.float64) / DEPTH_SCALE
    np.testing.assert_allclose(decoded, scene.depth, atol=0.5 / DEPTH_SCALE + 1e-6)
    assert decoded.max() > 0


def test_dataset_reloads_with_labeled_features_depth_and_splits(tmp_path) -> None:
    out = tmp_path / "synth"
    config = SynthConfig(n=3, out=out, seed=3, width=128, height=96, splits=parse_splits("train=0.67,validation=0.33"))
    summary = synth_dataset(config)
    dsd = load_dataset_dict(out)
    # a split of a single scene is written too
    assert set(dsd) == {"train", "validation"} and summary.split_sizes == {"train": 2, "validation": 1}
    assert dsd["train"].features == labeled_features(("depth",))
    row = dsd["validation"][0]
    assert row["image_id"] == "synth_00002" and row["dataset"] == "synth" and row["split"] == "validation"
    assert row["count"] == len(row["points"])
    assert row["image"].size == (128, 96)
    expected = render_row(2, 3, 128, 96, 1000, True)
    assert row["points"] == [[pytest.approx(x), pytest.approx(y)] for x, y in expected["points"]]
    depth = np.asarray(row["depth"])
    assert depth.dtype == np.uint16 and depth.shape == (96, 128) and depth.max() > 0
    assert summary.total_heads == sum(dsd["train"]["count"]) + sum(dsd["validation"]["count"])
    assert summary.images == 3 and summary.counts == (*dsd["train"]["count"], *dsd["validation"]["count"])
    assert json.loads((out / "synth.json").read_text())["splits"] == "train=0.67,validation=0.33"


def test_unlabeled_writes_jpegs_and_evaluation_only_counts(tmp_path) -> None:
    out = tmp_path / "pictures"
    summary = synth_unlabeled(SynthConfig(n=3, out=out, seed=1, width=96, height=64, unlabeled=True))
    jpegs = sorted(p.name for p in out.glob("*.jpg"))
    assert jpegs == ["synth_00000.jpg", "synth_00001.jpg", "synth_00002.jpg"]
    assert (out / "synth_00002.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert (out / "counts.csv").read_text().startswith("# evaluation only")
    table = pd.read_csv(out / "counts.csv", comment="#")
    assert table["count"].tolist() == list(summary.counts)
    assert table["count"].tolist()[1] == render_row(1, 1, 96, 64, 1000, False)["count"]


def test_scene_bytes_do_not_depend_on_run_length_or_worker_count(tmp_path) -> None:
    short, long = tmp_path / "short", tmp_path / "long"
    synth_unlabeled(SynthConfig(n=2, out=short, seed=5, width=96, height=64, unlabeled=True))
    synth_unlabeled(SynthConfig(n=3, out=long, seed=5, width=96, height=64, unlabeled=True, num_proc=2))
    for name in ("synth_00000.jpg", "synth_00001.jpg"):
        assert (short / name).read_bytes() == (long / name).read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"n": 0}, "--n"),
        ({"width": 32}, "--size"),
        ({"splits": (("train", 0.5), ("test", 0.4))}, "--splits"),
        ({"splits": (("training", 1.0),)}, "--splits"),
        ({"num_proc": 0}, "--num-proc"),
        ({"num_proc": 257}, "--num-proc 257 must be in \\[1, 256\\]"),  # 100000 started 100000 processes and hung
        ({"max_count": 0}, "--max-count"),
        ({"unlabeled": True, "splits": (("train", 0.5), ("test", 0.5))}, "--unlabeled"),
    ],
)
def test_config_errors_name_the_flag(tmp_path, kwargs: dict, flag: str) -> None:
    values = {"n": 2, "out": tmp_path, **kwargs}
    with pytest.raises(ConfigError, match=flag):
        SynthConfig(**values)


def test_no_more_worker_processes_are_started_than_there_are_scenes(tmp_path, monkeypatch) -> None:
    import multiprocessing

    started: list[int] = []

    class InlinePool:
        def __init__(self, processes: int) -> None:
            started.append(processes)

        def __enter__(self) -> InlinePool:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def imap(self, fn: Any, jobs: list, chunksize: int = 1) -> Any:
            return map(fn, jobs)

    class Context:
        Pool = InlinePool

    monkeypatch.setattr(multiprocessing, "get_context", lambda method: Context())
    synth_unlabeled(
        SynthConfig(n=2, out=tmp_path / "u", width=64, height=64, max_count=3, unlabeled=True, num_proc=200)
    )
    assert started == [2]


def test_size_and_split_parsers_accept_the_documented_forms() -> None:
    assert parse_size("640x480") == (640, 480)
    assert parse_splits("train=0.8, test=0.2") == (("train", 0.8), ("test", 0.2))
    with pytest.raises(ConfigError, match="--size"):
        parse_size("640")
    with pytest.raises(ConfigError, match="--splits"):
        parse_splits("train:0.8")


def test_split_indices_are_contiguous_and_add_up_exactly() -> None:
    blocks = split_indices(10, (("train", 0.8), ("validation", 0.1), ("test", 0.1)))
    assert blocks == {"train": list(range(8)), "validation": [8], "test": [9]}
    assert {k: len(v) for k, v in split_indices(7, (("train", 0.5), ("test", 0.5))).items()} == {"train": 4, "test": 3}


def test_contact_sheet_is_a_png_with_one_panel_pair_per_scene(tmp_path) -> None:
    scenes = [synthesize_scene(np.random.default_rng([0, i]), 128, 96) for i in range(2)]
    path = save_contact_sheet(scenes, tmp_path / "sheet.png", columns=2)
    with Image.open(path) as sheet:
        assert sheet.format == "PNG" and sheet.width > sheet.height


def test_cli_synth_writes_a_dataset_and_rejects_bad_splits(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["synth", "--n", "2", "--out", str(out), "--size", "96x64", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert load_dataset_dict(out)["train"].num_rows == 2
    bad = runner.invoke(app, ["synth", "--n", "2", "--out", str(out), "--splits", "train=0.5"])
    assert bad.exit_code == 2 and "--splits" in bad.output


def test_cli_synth_unlabeled_writes_jpegs(tmp_path) -> None:
    out = tmp_path / "jpegs"
    result = CliRunner().invoke(app, ["synth", "--n", "2", "--out", str(out), "--size", "96x64", "--unlabeled"])
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("synth_*.jpg"))) == 2 and (out / "counts.csv").is_file()


def test_split_indices_give_the_scenes_left_over_to_the_largest_remainders() -> None:
    blocks = split_indices(10, (("train", 0.47), ("validation", 0.33), ("test", 0.2)))  # 4.7, 3.3, 2.0
    assert {name: len(indices) for name, indices in blocks.items()} == {"train": 5, "validation": 3, "test": 2}


def test_dataset_scenes_are_drawn_with_the_min_and_max_count_options(tmp_path) -> None:
    config = SynthConfig(n=2, out=tmp_path / "crowded", seed=2, width=96, height=64, max_count=40, min_count=20)
    dsd = load_dataset_dict(synth_dataset(config).out)
    for index, row in enumerate(dsd["train"]):
        expected = render_row(index, 2, 96, 64, 40, True, 20)
        assert row["count"] == expected["count"]
        assert row["points"] == [[pytest.approx(x), pytest.approx(y)] for x, y in expected["points"]]


def test_scene_i_is_rendered_from_the_generator_seeded_with_seed_and_i_alone() -> None:
    """default_rng([seed, i]): not seed + i, under which scene 1 of seed 0 would be scene 0 of seed 1."""
    row = render_row(1, 0, 96, 64, 1000, False)
    scene = synthesize_scene(np.random.default_rng([0, 1]), 96, 64)
    assert row["image"]["bytes"] == scene.jpeg_bytes() and row["count"] == scene.count
    assert row["image"]["bytes"] != render_row(0, 1, 96, 64, 1000, False)["image"]["bytes"]


def test_only_heads_left_visible_are_points_and_the_written_count_is_their_number() -> None:
    """Scene 1 of seed 0 at 96x64 hides some heads behind nearer people: they are neither points nor counted."""
    scene = synthesize_scene(np.random.default_rng([0, 1]), 96, 64)
    assert scene.hidden_heads > 0
    assert scene.count == len(scene.points) == len(scene.head_px) == len(scene.plan.crowd) - scene.hidden_heads
    row = render_row(1, 0, 96, 64, 1000, True)
    assert row["count"] == len(row["points"]) == scene.count


@pytest.mark.parametrize(("shown", "counted"), [(54, False), (55, True)])
def test_a_head_counts_from_a_fifth_of_its_area_on_top(shown: int, counted: bool) -> None:
    """Radius 10: a fifth of the drawn ellipse (0.86 r by r) is 0.2 * pi * 0.86 * 100 = 54.04 pixels."""
    ids = np.zeros((40, 40), dtype=np.int32)
    region = ids[10:30, 10:30].reshape(-1).copy()
    region[:shown] = 1
    ids[10:30, 10:30] = region.reshape(20, 20)
    assert _visible_heads(ids, [Figure(20, 39, 20, 20, 10.0, 40.0)]).tolist() == [counted]


def test_layouts_never_place_more_people_than_the_drawn_count() -> None:
    for i in range(40):
        plan = sample_plan(np.random.default_rng([6, i]), 96, 64)
        assert len(plan.crowd) <= plan.target_count


def test_count_sampler_reaches_max_count() -> None:
    counts = [sample_count(np.random.default_rng([4, i]), 2) for i in range(60)]
    assert max(counts) == 2 and 1 in counts


def test_unlabeled_counts_csv_names_each_picture_and_both_modes_record_their_settings(tmp_path) -> None:
    out = tmp_path / "pictures"
    synth_unlabeled(SynthConfig(n=2, out=out, seed=1, width=64, height=64, unlabeled=True))
    table = pd.read_csv(out / "counts.csv", comment="#")
    assert table["file"].tolist() == ["synth_00000.jpg", "synth_00001.jpg"]
    assert all((out / name).is_file() for name in table["file"])
    record = json.loads((out / "synth.json").read_text())
    assert (record["n"], record["seed"], record["unlabeled"], record["width"]) == (2, 1, True, 64)


@pytest.mark.parametrize(
    ("kwargs", "refused_flag"),
    [
        ({"width": 64, "height": 64}, None),
        ({"width": 64, "height": 63}, "--size"),
        ({"width": 8192, "height": 8192}, None),
        ({"width": 512, "height": 8193}, "--size"),
        ({"seed": 0}, None),
        ({"seed": -1}, "--seed"),
        ({"splits": (("train", 1.2), ("test", -0.2))}, "--splits"),  # sums to 1, but a fraction is negative
        ({"max_count": 10, "min_count": 10}, None),
        ({"max_count": 10, "min_count": 11}, "--min-count"),
    ],
)
def test_config_edges_are_accepted_and_one_step_past_them_refused(tmp_path, kwargs: dict, refused_flag) -> None:
    values = {"n": 1, "out": tmp_path, **kwargs}
    if refused_flag is None:
        config = SynthConfig(**values)
        assert all(getattr(config, key) == value for key, value in kwargs.items())
    else:
        with pytest.raises(ConfigError, match=refused_flag):
            SynthConfig(**values)


def test_nearer_people_are_painted_over_farther_ones() -> None:
    """Drawn far to near, the pixel under a counted head shows that person or someone nearer, never someone behind."""
    scene = synthesize_scene(np.random.default_rng([1, 0]), 96, 64)  # a dense scene: most heads hidden, >100 not
    crowd = scene.plan.crowd
    _, _, body_depth = project(scene.plan.camera, crowd.x, np.full_like(crowd.x, 0.9), crowd.z)
    heads = np.stack([crowd.head_u, crowd.head_v], 1).astype(np.float32).tolist()
    person = {(u, v): i for i, (u, v) in enumerate(heads)}
    assert scene.count > 100
    for u, v in scene.points.tolist():
        assert scene.depth[int(v), int(u)] <= body_depth[person[(u, v)]] + 1e-3


def test_unlabeled_refuses_a_dataset_folder_and_scenes_left_from_a_longer_run(tmp_path) -> None:
    labeled = tmp_path / "data"
    synth_dataset(SynthConfig(n=1, out=labeled, width=64, height=64))
    record = (labeled / "synth.json").read_bytes()
    result = CliRunner().invoke(app, ["synth", "--n", "1", "--out", str(labeled), "--size", "64x64", "--unlabeled"])
    assert result.exit_code == 1 and "is a dataset folder" in result.output and "Traceback" not in result.output
    assert (labeled / "synth.json").read_bytes() == record and not list(labeled.glob("*.jpg"))

    pictures = tmp_path / "pictures"
    synth_unlabeled(SynthConfig(n=3, out=pictures, width=64, height=64, unlabeled=True))
    result = CliRunner().invoke(app, ["synth", "--n", "1", "--out", str(pictures), "--size", "64x64", "--unlabeled"])
    assert result.exit_code == 1 and "synth_00001.jpg … synth_00002.jpg" in result.output and "--n 3" in result.output
    assert len(pd.read_csv(pictures / "counts.csv", comment="#")) == 3  # the earlier run's table is left whole
    synth_unlabeled(SynthConfig(n=3, out=pictures, width=64, height=64, unlabeled=True))  # the same run again is fine


def test_a_split_too_small_for_n_is_named_in_the_summary_not_dropped_silently(tmp_path) -> None:
    out = tmp_path / "data"
    args = ["synth", "--n", "2", "--size", "64x64", "--splits", "train=0.8,validation=0.1,test=0.1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert list(load_dataset_dict(out)) == ["train"]
    text = " ".join(result.output.split())
    assert "note: split validation: 0.1 of --n 2 rounds to no scene" in text and "raise --n" in text
    assert "note: split test: 0.1 of --n 2 rounds to no scene" in text
    assert "note: split train" not in text


def test_unlabeled_refuses_a_pool_and_never_overwrites_a_counts_csv_or_synth_json_it_did_not_write(tmp_path) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "pool.json").write_text("{}")
    with pytest.raises(InputError, match="is a harvest pool"):
        synth_unlabeled(SynthConfig(n=1, out=pool, width=64, height=64, unlabeled=True))
    for name, text in (("counts.csv", "file,count\nmine.jpg,12\n"), ("synth.json", '{"mine": 1}')):
        photos = tmp_path / name
        photos.mkdir()
        (photos / name).write_text(text)
        with pytest.raises(InputError, match=f"holds a {name} that rankset synth did not write"):
            synth_unlabeled(SynthConfig(n=1, out=photos, width=64, height=64, unlabeled=True))
        assert (photos / name).read_text() == text and not list(photos.glob("*.jpg"))
    again = tmp_path / "again"  # its own files from an earlier run are replaced, as before
    synth_unlabeled(SynthConfig(n=1, out=again, width=64, height=64, unlabeled=True))
    synth_unlabeled(SynthConfig(n=1, out=again, width=64, height=64, unlabeled=True))


def test_unlabeled_removes_a_half_written_picture_left_by_a_killed_run_and_says_so(tmp_path) -> None:
    import subprocess
    import sys

    from rankset.io import HOST

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    out = tmp_path / "pictures"
    out.mkdir()
    half = out / f".synth_00001.jpg.tmp-{HOST}-{child.pid}-0123abcd"
    half.write_bytes(b"\xff\xd8\xff")
    summary = synth_unlabeled(SynthConfig(n=2, out=out, seed=1, width=96, height=64, unlabeled=True))
    assert sorted(p.name for p in out.iterdir()) == ["counts.csv", "synth.json", "synth_00000.jpg", "synth_00001.jpg"]
    assert len(summary.notes) == 1 and str(half) in summary.notes[0]
