"""Pseudo-labels from a Masksembles model: uncertainty, selection of the most confident fraction, the dataset."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.train.conftest import blob_image
from train.checkpoint import save_checkpoint
from train.cli import app
from train.errors import ConfigError
from train.manifest import config_from_dict
from train.models.assemble import build_model
from train.pseudo_label import (
    PseudoLabelConfig,
    pseudo_label,
    relative_uncertainty,
    sample_points,
    select_confident,
)
from train.unlabeled import list_unlabeled


def tiny_checkpoint(path: Path, masksembles: bool = True) -> Path:
    """An (untrained, seeded) test-tiny checkpoint, with or without a Masksembles layer."""
    import torch

    torch.manual_seed(0)
    model = {"arch": "test-tiny", "pretrained": "none"}
    if masksembles:
        model["masksembles"] = {"masks": 4, "scale": 2.0}
    config = config_from_dict({"model": model, "data": {"labeled": ["x"]}, "schedule": {"paradigm": "count-only"}})
    save_checkpoint(path, build_model(config), None, None, 0, config)
    return path


def busy_checkpoint(path: Path) -> Path:
    """:func:`tiny_checkpoint` with a density bias of 0.1 people per cell, so every picture gets a few heads."""
    import torch

    from train.checkpoint import load_checkpoint

    path.parent.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(tiny_checkpoint(path))
    state["model"]["base.density.bias"].fill_(0.1 * state["density_scale"])
    torch.save(state, path)
    return path


def write_blobs(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(4)
    for i in range(n):
        data, _ = blob_image(rng, 40 + 4 * i, 36, heads=int(rng.integers(1, 12)))
        (folder / f"p{i}.jpg").write_bytes(data)
    return folder


def test_selection_keeps_exactly_the_rounded_fraction_most_confident_first() -> None:
    uncertainty = np.array([0.5, 0.1, 0.9, 0.1, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6])
    assert select_confident(uncertainty, 0.3).tolist() == [1, 3, 6]  # ties keep input order
    assert select_confident(uncertainty, 0.55).tolist() == [1, 3, 6, 4, 8, 0]  # round(5.5) = 6
    assert len(select_confident(uncertainty, 1.0)) == 10
    assert select_confident(uncertainty, 0.04).tolist() == []


def test_relative_uncertainty_is_the_std_of_member_counts_over_their_mean_floored_at_one() -> None:
    assert relative_uncertainty(np.array([9.0, 11.0, 9.0, 11.0])) == pytest.approx(0.1)
    assert relative_uncertainty(np.array([0.0, 0.5])) == pytest.approx(0.25)  # mean 0.25 -> divided by 1


def test_sampled_points_number_the_count_and_fall_in_cells_with_density() -> None:
    density = np.zeros((3, 4))
    density[1, 2], density[2, 0], density[0, 0] = 2.0, 1.0, -5.0  # negative cells are never chosen
    points = sample_points(density, 30, cell=8, size=(32, 24), rng=np.random.default_rng(0))
    assert points.shape == (30, 2)
    cells = {(int(y // 8), int(x // 8)) for x, y in points}
    assert cells == {(1, 2), (2, 0)}
    assert sample_points(np.zeros((2, 2)), 5, 8, (16, 16), np.random.default_rng(0)).shape == (0, 2)


def test_pseudo_label_writes_the_most_confident_fraction_as_a_labeled_dataset(tmp_path: Path) -> None:
    from rankset.io import load_dataset_dict

    pictures = write_blobs(tmp_path / "real", 9)
    (pictures / "broken.jpg").write_bytes(b"not a jpeg")
    checkpoint = tiny_checkpoint(tmp_path / "ckpt.pt")
    config = PseudoLabelConfig(checkpoint, (str(pictures),), tmp_path / "pseudo", keep_fraction=0.34, device="cpu")
    rows = pseudo_label(config, show_progress=False)
    assert [r["status"] for r in rows].count("unreadable_image") == 1
    readable = sorted((r for r in rows if "uncertainty" in r), key=lambda r: r["uncertainty"])
    expected = [r["image_id"] for r in readable[:3]]  # round(0.34 * 9) = 3, lowest uncertainty first
    train = load_dataset_dict(tmp_path / "pseudo")["train"]
    assert train["image_id"] == expected
    assert set(train["dataset"]) == {"pseudo"} and set(train["split"]) == {"train"}
    for row in train:
        assert row["count"] == len(row["points"])
        width, height = row["image"].size
        assert all(0 <= x < width and 0 <= y < height for x, y in row["points"])
    assert train[0]["image"].size == Image.open(pictures / f"{expected[0]}.jpg").size  # original bytes kept
    with (tmp_path / "pseudo" / "pseudo_labels.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 10 and sum(r["status"] == "kept" for r in table) == 3
    assert Image.open(io.BytesIO((tmp_path / "pseudo" / "uncertainty.png").read_bytes())).format == "PNG"


def test_pseudo_label_needs_a_masksembles_checkpoint_and_a_fraction_in_range(tmp_path: Path) -> None:
    pictures = write_blobs(tmp_path / "real", 1)
    plain = tiny_checkpoint(tmp_path / "plain.pt", masksembles=False)
    with pytest.raises(ConfigError, match="no Masksembles layer"):
        pseudo_label(PseudoLabelConfig(plain, (str(pictures),), tmp_path / "out", device="cpu"), show_progress=False)
    with pytest.raises(ConfigError, match=r"--keep-fraction 1.5 .* \(0, 1\]"):
        PseudoLabelConfig(plain, (str(pictures),), tmp_path / "out", keep_fraction=1.5)
    with pytest.raises(ConfigError, match=r"--seed -1 is invalid: expected an integer in \[0, 2\*\*32\)"):
        PseudoLabelConfig(plain, (str(pictures),), tmp_path / "out", seed=-1)


def test_pseudo_label_never_writes_over_its_input_pictures(tmp_path: Path) -> None:
    pictures = write_blobs(tmp_path / "real", 2)
    checkpoint = tiny_checkpoint(tmp_path / "ckpt.pt")
    for out in (pictures, tmp_path):
        with pytest.raises(ConfigError, match="is or holds the input"):
            pseudo_label(PseudoLabelConfig(checkpoint, (str(pictures),), out, device="cpu"), show_progress=False)
    assert sorted(p.name for p in pictures.iterdir()) == ["p0.jpg", "p1.jpg"]


def test_a_pool_contributes_its_kept_stored_pictures_once(tmp_path: Path) -> None:
    from harvest.pool import Pool

    pool = Pool.create(tmp_path / "pool")
    rng = np.random.default_rng(0)
    rows = []
    for i, kept in enumerate([True, None, False]):
        data, _ = blob_image(rng, 32, 32, heads=2)
        sha, rel = pool.store_image(data, "jpg")
        rows.append({"id": sha, "url": f"file:///x{i}.jpg", "status": "ok", "path": rel, "kept": kept})
    rows.append({"id": None, "url": "http://x/404.jpg", "status": "http_404", "path": None, "kept": None})
    rows.append(dict(rows[0], url="file:///copy.jpg"))  # the same picture found twice
    pool.append_rows(rows)
    found = list_unlabeled([str(tmp_path / "pool")])
    assert [p.image_id for p in found] == [rows[0]["id"], rows[1]["id"]]
    assert all(p.path.is_file() for p in found)


def test_cli_pseudo_label_and_export_are_wired(tmp_path: Path) -> None:
    pictures = write_blobs(tmp_path / "real", 2)
    checkpoint = tiny_checkpoint(tmp_path / "ckpt.pt")
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["pseudo-label", str(checkpoint), "--images", str(pictures), "--keep-fraction", "0.5", "--out",
         str(tmp_path / "pseudo"), "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "kept" in result.output and (tmp_path / "pseudo" / "pseudo_labels.csv").is_file()
    result = runner.invoke(app, ["export", str(checkpoint), "--out", str(tmp_path / "model.pt")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model.pt").is_file()
    result = runner.invoke(
        app, ["pseudo-label", str(checkpoint), "--images", str(pictures), "--out", "x", "--keep-fraction", "0"]
    )
    assert result.exit_code == 2 and "keep-fraction" in result.output


def test_the_table_records_every_picture_with_its_members_counts_and_a_confidence_rank(tmp_path: Path) -> None:
    import torch

    from rankset.io import load_dataset_dict
    from rankset.schema import decode_build_info
    from train.checkpoint import model_from_checkpoint
    from train.pseudo_label import member_densities

    pictures = write_blobs(tmp_path / "real", 5)
    checkpoint = busy_checkpoint(tmp_path / 'runs\\a "quoted" run' / "ckpt.pt")  # must stay valid JSON below
    config = PseudoLabelConfig(checkpoint, (str(pictures),), tmp_path / "pseudo", keep_fraction=0.4, device="cpu")
    rows = pseudo_label(config, show_progress=False)
    model, state, _ = model_from_checkpoint(checkpoint, torch.device("cpu"))
    for row in rows:
        image = np.array(Image.open(row["path"]).convert("RGB"))
        members = member_densities(model, image, 4, 1024, torch.device("cpu"), False, state["density_scale"])
        counts = members.sum(axis=(1, 2))
        assert row["count"] == round(float(counts.mean()))  # rounded, not truncated
        assert row["count_std"] == pytest.approx(float(counts.std()), rel=1e-5)
        assert row["uncertainty"] == pytest.approx(relative_uncertainty(counts), rel=1e-5)
    assert sorted(r["status"] for r in rows) == ["dropped"] * 3 + ["kept"] * 2
    kept = sorted((r for r in rows if r["status"] == "kept"), key=lambda r: r["confidence_rank"])
    assert [r["confidence_rank"] for r in kept] == [0, 1] and kept[0]["uncertainty"] <= kept[1]["uncertainty"]
    train = load_dataset_dict(tmp_path / "pseudo")["train"]
    assert train["uncertainty"] == pytest.approx([r["uncertainty"] for r in kept], rel=1e-6)
    assert decode_build_info(train.info.description) == {"pseudo_labels_from": str(checkpoint), "keep_fraction": 0.4}


def test_the_seed_chooses_where_the_heads_are_drawn(tmp_path: Path) -> None:
    pictures = write_blobs(tmp_path / "real", 1)
    checkpoint = busy_checkpoint(tmp_path / "ckpt.pt")

    def heads(seed: int, out: str) -> list[list[float]]:
        config = PseudoLabelConfig(checkpoint, (str(pictures),), tmp_path / out, 1.0, "cpu", seed=seed)
        pseudo_label(config, show_progress=False)
        from rankset.io import load_dataset_dict

        return load_dataset_dict(tmp_path / out)["train"][0]["points"]

    first = heads(3, "a")
    assert len(first) > 0 and heads(3, "b") == first and heads(4, "c") != first


def test_heads_of_cells_past_the_picture_edge_are_kept_inside_a_tall_picture() -> None:
    density = np.zeros((3, 2))
    density[:, 1] = 1.0  # only the right column of cells, which spans x in [8, 16) but the picture is 12 wide
    points = sample_points(density, 200, cell=8, size=(12, 20), rng=np.random.default_rng(0))
    assert points[:, 0].min() >= 8 and points[:, 0].max() < 12 and points[:, 1].max() < 20


def test_a_tile_below_64_pixels_is_refused(tmp_path: Path) -> None:
    plain = tiny_checkpoint(tmp_path / "plain.pt", masksembles=False)
    with pytest.raises(ConfigError, match=r"--tile 32 is too small; use at least 64 pixels"):
        PseudoLabelConfig(plain, ("x",), tmp_path / "out", tile=32)


def test_selection_rounds_half_up_and_breaks_ties_by_input_order_for_long_lists() -> None:
    assert select_confident(np.arange(10.0), 0.25).tolist() == [0, 1, 2]  # 2.5 -> 3 (not banker's 2)
    assert select_confident(np.arange(10.0)[::-1], 0.45).tolist() == [9, 8, 7, 6, 5]  # 4.5 -> 5, lowest first
    ties = np.array([1.0, 0.0] * 50)  # long enough that an unstable sort reorders equal values
    assert select_confident(ties, 0.5).tolist() == list(range(1, 100, 2))


def test_heads_are_drawn_uniformly_inside_their_cell() -> None:
    density = np.zeros((2, 2))
    density[1, 0] = 3.0
    points = sample_points(density, 400, cell=8, size=(16, 16), rng=np.random.default_rng(0))
    assert points[:, 0].min() < 1 and points[:, 0].max() > 7 and 3 < points[:, 0].mean() < 5  # x in [0, 8)
    assert points[:, 1].min() < 9 and points[:, 1].max() > 15 and 11 < points[:, 1].mean() < 13  # y in [8, 16)


def test_heads_are_drawn_from_the_mean_density_of_the_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import train.pseudo_label as module
    from train.checkpoint import model_from_checkpoint

    pictures = write_blobs(tmp_path / "real", 2)
    checkpoint = busy_checkpoint(tmp_path / "ckpt.pt")
    seen = []

    def recording(density: np.ndarray, count: int, cell: int, size: tuple[int, int], rng: object) -> np.ndarray:
        seen.append((density.copy(), count, cell, size))
        return np.zeros((count, 2), dtype=np.float32)

    monkeypatch.setattr(module, "sample_points", recording)
    config = PseudoLabelConfig(checkpoint, (str(pictures),), tmp_path / "pseudo", keep_fraction=1.0, device="cpu")
    rows = pseudo_label(config, show_progress=False)
    model, state, _ = model_from_checkpoint(checkpoint, torch.device("cpu"))
    for (density, count, cell, size), row in zip(seen, rows, strict=True):
        image = np.array(Image.open(row["path"]).convert("RGB"))
        members = module.member_densities(model, image, 4, 1024, torch.device("cpu"), False, state["density_scale"])
        np.testing.assert_allclose(density, members.mean(axis=0), rtol=1e-5, atol=1e-7)
        assert not np.allclose(density, members[0])  # the members differ, so the mean is not any one of them
        assert (count, cell, size) == (row["count"], 4, (image.shape[1], image.shape[0]))


def test_an_empty_images_folder_beside_a_good_one_is_a_no_pictures_row_and_the_run_goes_on(tmp_path: Path) -> None:
    """`--images good --images empty` labeled the good pictures and said nothing of the empty folder."""
    pictures = write_blobs(tmp_path / "real", 2)
    (tmp_path / "empty").mkdir()
    config = PseudoLabelConfig(
        tiny_checkpoint(tmp_path / "ckpt.pt"), (str(pictures), str(tmp_path / "empty")), tmp_path / "pseudo"
    )
    rows = pseudo_label(config, show_progress=False)
    assert [(Path(r["path"]).name, r["status"]) for r in rows if r["status"] not in ("kept", "dropped")] == [
        ("empty", "no_pictures")
    ]
    assert sum(r["status"] in ("kept", "dropped") for r in rows) == 2
    assert "holds no pictures" in rows[0]["error"] and ".jpg" in rows[0]["error"]


def test_images_folders_that_all_hold_no_pictures_fail_naming_each_before_the_checkpoint_is_read(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "ckpt.pt").write_bytes(b"not a checkpoint: reading it would fail first")
    config = PseudoLabelConfig(tmp_path / "ckpt.pt", (str(tmp_path / "a"), str(tmp_path / "b")), tmp_path / "out")
    from train.errors import DataError

    with pytest.raises(DataError, match=r"--images = .*a, .*b hold no pictures.*\.jpg, \.jpeg"):
        pseudo_label(config, show_progress=False)


def test_the_pseudo_label_summary_warns_about_an_empty_input_and_does_not_count_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from train.report import print_pseudo_label_summary

    rows = [{"image_id": "", "path": "empty", "status": "no_pictures", "error": "empty holds no pictures. A folder"}]
    print_pseudo_label_summary(rows, tmp_path)
    captured = capsys.readouterr()
    assert "inputs with no pictures" in captured.out and "│ 0 " in captured.out.split("pictures", 1)[1]
    assert "warning: --images empty holds no pictures" in captured.err


def test_an_interrupted_write_leaves_no_hidden_csv_beside_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or a failure) inside the dataset write left ``.OUT.csv-tmp`` beside --out until a rerun succeeded."""
    import train.pseudo_label as module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("rankset.io.write_dataset_dict", interrupted)
    pictures = write_blobs(tmp_path / "real", 3)
    config = PseudoLabelConfig(
        tiny_checkpoint(tmp_path / "ckpt.pt"), (str(pictures),), tmp_path / "pseudo", device="cpu"
    )
    with pytest.raises(KeyboardInterrupt):
        module.pseudo_label(config, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "real"]


@pytest.mark.parametrize("tile", [1024, 64])
def test_every_members_density_from_one_pass_equals_one_pass_per_member(tmp_path: Path, tile: int) -> None:
    """member_densities ran the whole network once per member (4x the time for 4 masks); one pass of the shared
    layers must give each member's map as selecting that member does, whole or in tiles."""
    import torch

    from train.checkpoint import model_from_checkpoint
    from train.evaluate import predict_density
    from train.pseudo_label import member_densities

    model, state, _ = model_from_checkpoint(busy_checkpoint(tmp_path / "ckpt.pt"), torch.device("cpu"))
    with torch.no_grad():
        for p in model.parameters():  # untrained weights give near-equal members: make them differ
            p.add_(0.05 * torch.randn_like(p))
    image = np.random.default_rng(0).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    stride, scale = int(state["output_stride"]), float(state["density_scale"])
    together = member_densities(model, image, stride, tile, torch.device("cpu"), False, scale)
    one_by_one = []
    for member in range(model.masksembles.n):
        model.masksembles.member = member
        one_by_one.append(predict_density(model, image, stride, tile, torch.device("cpu"), False, scale))
    model.masksembles.member = None
    assert together.shape == (4, 38, 50)
    np.testing.assert_allclose(together, np.stack(one_by_one), rtol=1e-5, atol=1e-6)
    assert np.ptp(together.sum(axis=(1, 2))) > 0  # the members differ, so a mix-up of their order would show


def test_all_members_come_from_one_pass_of_the_shared_layers(tmp_path: Path) -> None:
    import torch

    from train.checkpoint import model_from_checkpoint
    from train.pseudo_label import member_densities

    model, state, _ = model_from_checkpoint(tiny_checkpoint(tmp_path / "ckpt.pt"), torch.device("cpu"))
    passes = []
    model.base.register_forward_hook(lambda module, inputs, output: passes.append(inputs[0].shape[0]))
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    maps = member_densities(model, image, int(state["output_stride"]), 1024, torch.device("cpu"), False, 100.0)
    assert maps.shape[0] == 4 and passes == [1]  # one window, one pass (it ran 4 before)
