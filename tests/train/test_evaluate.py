"""Whole-image evaluation: tiling covers every pixel once in the sum, and eval/predict write their files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train.device import normalize
from train.evaluate import EvalConfig, context_margin, evaluate_checkpoint, predict_density, tile_spans
from train.predict import PredictConfig, predict_images

from .test_loop import tiny_config


class PooledBrightness(torch.nn.Module):
    """A pointwise 'model' (stride 4): each cell is the summed first channel of its 4x4 block, so tiling is exact."""

    output_stride = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x[:, :1], 4) * 16  # (B, 1, H/4, W/4)


def test_tile_cores_cut_the_length_into_consecutive_pieces_each_inside_its_window_with_margin_context() -> None:
    assert tile_spans(100, 128, 16) == [(0, 100, 0, 100)]  # fits: one window, no context needed
    rng = np.random.default_rng(0)
    for _ in range(200):
        tile = int(rng.integers(2, 300))
        margin = int(rng.integers(0, (tile - 1) // 2 + 1))
        length = int(rng.integers(1, 2000))
        spans = tile_spans(length, tile, margin)
        assert [s[2] for s in spans] == [0, *(s[3] for s in spans[:-1])] and spans[-1][3] == length  # consecutive
        for low, high, core_low, core_high in spans:
            assert 0 <= low <= core_low < core_high <= high <= length and high - low <= tile
            assert core_low - low == min(margin, core_low) and high - core_high == min(margin, length - core_high)


def test_tiled_inference_equals_whole_image_inference_for_a_pointwise_model() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(150, 230, 3), dtype=np.uint8)  # not a multiple of 4: padding is exercised
    model, device = PooledBrightness(), torch.device("cpu")
    whole = predict_density(model, image, 4, 4096, device, amp=False, density_scale=1.0)
    tiled = predict_density(model, image, 4, 64, device, amp=False, density_scale=1.0)
    assert whole.shape == (38, 58)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-4)
    expected = normalize(torch.from_numpy(image).permute(2, 0, 1))[0].sum().item()
    assert whole.sum() == pytest.approx(expected, rel=1e-4)


@pytest.fixture(scope="module")
def trained_checkpoint(blob_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.loop import fit

    run = tmp_path_factory.mktemp("eval-run") / "run"
    fit(tiny_config(blob_data, schedule={"steps": 2, "eval_every": 2}), run, show_progress=False)
    return run / "best.pt"


def test_eval_writes_the_same_summary_and_one_csv_row_per_image(
    trained_checkpoint: Path, blob_data: dict[str, Path], tmp_path: Path
) -> None:
    config = EvalConfig(trained_checkpoint, str(blob_data["labeled"]), "test", tmp_path / "ev", "cpu", 64)
    summary = evaluate_checkpoint(config, show_progress=False)
    written = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert written["mae"] == pytest.approx(summary["mae"]) and written["images"] == 4
    with (tmp_path / "ev" / "images.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["image_id"] for r in rows] == ["test-0", "test-1", "test-2", "test-3"]
    errors = [abs(float(r["predicted"]) - float(r["count"])) for r in rows]
    assert summary["mae"] == pytest.approx(float(np.mean(errors)))


def test_predict_writes_counts_and_overlays_and_records_broken_files(trained_checkpoint: Path, tmp_path: Path) -> None:
    Image.fromarray(np.zeros((40, 56, 3), dtype=np.uint8)).save(tmp_path / "dark.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    config = PredictConfig(trained_checkpoint, (tmp_path / "dark.png", tmp_path / "broken.jpg"), tmp_path / "out")
    rows = predict_images(config, show_progress=False)
    assert [r["status"] for r in rows] == ["ok", "unreadable_image"]
    assert (tmp_path / "out" / "overlays" / "dark.png").is_file()
    with (tmp_path / "out" / "counts.csv").open() as f:
        written = list(csv.DictReader(f))
    assert float(written[0]["count"]) == pytest.approx(rows[0]["count"], rel=1e-5)


def test_a_ranked_argument_that_is_no_ranked_set_fails_before_any_image_is_evaluated(
    trained_checkpoint: Path, blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import train.evaluate
    from train.errors import DataError

    evaluated: list[int] = []
    monkeypatch.setattr(train.evaluate, "evaluate_sources", lambda *a, **kw: evaluated.append(1) or ({}, []))
    labeled = str(blob_data["labeled"])
    config = EvalConfig(trained_checkpoint, labeled, "test", tmp_path / "ev", "cpu", 64, ranked=labeled)
    with pytest.raises(DataError, match="--ranked .* is a labeled dataset, expected ranked"):
        evaluate_checkpoint(config, show_progress=False)
    assert evaluated == [] and not (tmp_path / "ev").exists()  # refused before the work, not after it


@pytest.mark.parametrize("wrong", ["data", "split", "ranked"])
def test_a_wrong_data_split_or_ranked_is_named_before_the_checkpoint_is_read(
    trained_checkpoint: Path, blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrong: str
) -> None:
    """Reading a checkpoint can mean a download from the Hub: a typo in --data should not wait for it."""
    import train.checkpoint
    from train.errors import DataError

    monkeypatch.setattr(train.checkpoint, "model_from_checkpoint", lambda *a: pytest.fail("checkpoint read first"))
    labeled = str(blob_data["labeled"])
    data, split, ranked = labeled, "test", None
    if wrong == "data":
        data = str(tmp_path / "no-such-dataset")
    elif wrong == "split":
        split = "tset"
    else:
        ranked = labeled
    config = EvalConfig(trained_checkpoint, data, split, tmp_path / "ev", "cpu", 64, ranked=ranked)
    with pytest.raises(DataError, match={"data": "--data", "split": "--split 'tset'", "ranked": "--ranked"}[wrong]):
        evaluate_checkpoint(config, show_progress=False)


def test_an_eval_out_that_is_a_file_is_refused_before_anything_runs(
    trained_checkpoint: Path, blob_data: dict[str, Path], tmp_path: Path
) -> None:
    from train.errors import ConfigError

    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"--out .*taken is a file; pass a folder for eval.json and images.csv"):
        EvalConfig(trained_checkpoint, str(blob_data["labeled"]), "test", tmp_path / "taken", "cpu", 64)


def test_predict_writes_every_row_when_a_file_name_is_not_utf8(trained_checkpoint: Path, tmp_path: Path) -> None:
    import os

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.fromarray(np.zeros((40, 56, 3), dtype=np.uint8)).save(pictures / "a.png")
    latin1 = Path(os.fsdecode(bytes(pictures) + b"/caf\xe9.jpg"))  # Latin-1 bytes: held as a lone surrogate
    Image.fromarray(np.zeros((40, 56, 3), dtype=np.uint8)).save(latin1, format="JPEG")
    rows = predict_images(PredictConfig(trained_checkpoint, (pictures,), tmp_path / "out"), show_progress=False)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    written = list(csv.DictReader((tmp_path / "out" / "counts.csv").open(encoding="utf-8")))
    assert [Path(r["path"]).name for r in written] == ["a.png", "caf\\xe9.jpg"]


def test_summaries_join_the_output_folder_without_a_double_slash() -> None:
    from train.report import written_paths

    assert written_paths("counts/", "counts.csv", "overlays/") == "counts/counts.csv, counts/overlays/"


def test_roi_scales_cells_by_their_inside_share_and_drops_outside_points() -> None:
    import io

    from train.evaluate import apply_roi

    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:, :6] = 255  # the left 6 columns are inside
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    density = np.ones((2, 2))  # cells of 4 px
    points = np.array([[1.0, 1.0], [7.0, 7.0]])
    kept_density, kept_points = apply_roi({"bytes": buffer.getvalue(), "path": None}, density, points, 4)
    np.testing.assert_allclose(kept_density, [[1.0, 0.5], [1.0, 0.5]])
    assert kept_points.tolist() == [[1.0, 1.0]]


def test_overlay_puts_the_density_over_the_picture_under_a_count_band(tmp_path: Path) -> None:
    from PIL import Image

    from train.predict import save_overlay

    image = np.full((40, 60, 3), 128, dtype=np.uint8)  # 60x40, not a multiple of the 8-px cells
    density = np.zeros((5, 8), dtype=np.float32)
    density[0, 0] = 1.0  # the top-left cell is the peak: dark red in jet
    save_overlay(image, density, 8, 1.0, tmp_path / "grey.png")
    out = np.asarray(Image.open(tmp_path / "grey.png").convert("RGB")).astype(int)
    assert out.shape == (40 + 24, 60, 3)
    assert (out[:24] > 200).mean() > 0.75  # the band is white, with the count written in black
    assert (out[:24] < 60).any()
    peak, low = out[24 + 2, 2], out[24 + 35, 55]
    assert peak[0] > peak[2] + 20 and low[2] > low[0] + 20  # red over the peak, blue where the density is 0


def test_whole_image_inference_turns_cudnn_autotuning_off_and_restores_it() -> None:
    from train.device import no_autotune

    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = True  # as fit sets it on CUDA
        with pytest.raises(RuntimeError), no_autotune():
            assert torch.backends.cudnn.benchmark is False
            raise RuntimeError("an error inside still restores the flag")
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = before


class ConstantDensity(torch.nn.Module):
    """A 'model' (stride 4) predicting ``value`` in every cell: its counts and GAME are known in advance."""

    output_stride = 4

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, x.shape[2] // 4, x.shape[3] // 4), self.value)


def test_predicted_counts_divide_the_density_scale_out_exactly_once(tmp_path: Path) -> None:
    from tests.train.conftest import build_labeled
    from train.data import RowSource, open_dataset, raw_row, undecoded
    from train.evaluate import evaluate_rows
    from train.metrics import game

    ds = open_dataset(str(build_labeled(tmp_path / "wide", {"train": 2}, size=(64, 48))), "k", "labeled")["train"]
    scale = 100.0
    model = ConstantDensity(0.05 * scale)  # 0.05 people per 4x4 cell once unscaled; 16 x 12 cells per image
    rows = evaluate_rows(model, [RowSource("w", ds, [0, 1])], 4, 32, torch.device("cpu"), False, scale)
    unscaled = np.full((12, 16), 0.05)
    for row, index in zip(rows, (0, 1), strict=True):
        record = raw_row(undecoded(ds), index)
        points = np.asarray(record["points"], dtype=np.float64).reshape(-1, 2)
        assert row["predicted"] == pytest.approx(9.6) and row["count"] == record["count"]
        for level in range(4):  # regions of the 64x48 picture, with the density's 4-px cells
            assert row[f"game{level}"] == pytest.approx(game(unscaled, points, (64, 48), 4, level))
    assert rows[-1]["game1"] != pytest.approx(game(unscaled, points, (48, 64), 4, 1))  # (W, H) order matters here


class WindowOrigins(torch.nn.Module):
    """A stride-``stride`` 'model' that records where each window it sees starts (the picture's red channel is x)."""

    def __init__(self, stride: int = 4) -> None:
        super().__init__()
        self.output_stride = stride
        self.origins: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from train.device import IMAGENET_MEAN, IMAGENET_STD

        red = (x[0, 0, 0, 0].item() * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255
        self.origins.append(round(red))
        return torch.zeros(x.shape[0], 1, x.shape[2] // self.output_stride, x.shape[3] // self.output_stride)


def test_neighbouring_windows_share_the_margin_and_the_last_ends_at_the_border() -> None:
    image = np.zeros((40, 200, 3), dtype=np.uint8)
    image[:, :, 0] = np.arange(200, dtype=np.uint8)[None, :]
    model = WindowOrigins()
    predict_density(model, image, 4, 64, torch.device("cpu"), amp=False, density_scale=1.0)
    assert model.origins == [0, 48, 96, 144]  # windows of 64, 64, 64 and 56 px: the last ends at the border


def test_with_a_region_of_interest_the_count_is_of_the_heads_inside_it_as_the_prediction_is(tmp_path: Path) -> None:
    import io

    from rankset.io import write_dataset_dict
    from rankset.schema import labeled_features
    from tests.train.conftest import _rows
    from train.data import RowSource, open_dataset
    from train.evaluate import evaluate_rows

    def png(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()

    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[:, :8] = 255  # the left half is the region of interest
    row = {"image_id": "r0", "image": {"bytes": png(np.zeros((16, 16, 3), dtype=np.uint8)), "path": None},
           "points": [[2.0, 2.0], [12.0, 12.0]], "count": 2, "dataset": "roi", "split": "train",
           "roi": {"bytes": png(mask), "path": None}}  # fmt: skip
    write_dataset_dict(tmp_path / "roi", {"train": (_rows, {"rows": [row]})}, labeled_features(("roi",)))
    ds = open_dataset(str(tmp_path / "roi"), "k", "labeled")["train"]
    model = ConstantDensity(0.1)  # 16 cells of 4x4 px, 8 of them inside the region: 0.8 people predicted there
    [result] = evaluate_rows(model, [RowSource("roi", ds, [0])], 4, 64, torch.device("cpu"), False, 1.0)
    assert result["predicted"] == pytest.approx(0.8)
    assert result["count"] == 1.0  # the head at (12, 12) is outside the region: neither side counts it
    assert result["game0"] == pytest.approx(abs(result["predicted"] - result["count"]))


def test_tile_spans_are_exact_and_the_last_window_ends_at_the_border() -> None:
    assert tile_spans(128, 128, 16) == [(0, 128, 0, 128)]  # exactly one tile long
    # the first core needs no context on the left, the last none on the right
    assert tile_spans(256, 128, 32) == [(0, 128, 0, 96), (64, 192, 96, 160), (128, 256, 160, 256)]
    assert tile_spans(200, 64, 8) == [(0, 64, 0, 56), (48, 112, 56, 104), (96, 160, 104, 152), (144, 200, 152, 200)]


def test_a_model_without_a_receptive_field_gets_an_eighth_of_the_tile_as_margin_rounded_up_to_the_stride() -> None:
    image = np.zeros((16, 200, 3), dtype=np.uint8)
    image[:, :, 0] = np.arange(200, dtype=np.uint8)[None, :]
    eighth = WindowOrigins(stride=4)
    predict_density(eighth, image, 4, 64, torch.device("cpu"), amp=False, density_scale=1.0)
    assert eighth.origins == [0, 48, 96, 144]  # margin 64 / 8 = 8 px: cores of 56, 48, 48, 48 px
    coarse = WindowOrigins(stride=16)  # 64 / 8 = 8 px is under one 16-px stride: the margin is one stride
    predict_density(coarse, image[:, :160], 16, 64, torch.device("cpu"), amp=False, density_scale=1.0)
    assert coarse.origins == [0, 32, 64, 96]


def test_the_margin_is_half_the_receptive_field_rounded_up_to_the_alignment_and_leaves_a_core() -> None:
    class Declared(torch.nn.Module):
        receptive_field = 228

    assert context_margin(Declared(), 1024, 16) == 128  # 114 px of context, in whole 16-px cells
    assert context_margin(Declared(), 256, 16) == 112  # capped: a 32-px core of the 256-px tile remains
    assert context_margin(Declared(), 64, 64) == 0  # a one-cell tile has no room for context


@pytest.mark.parametrize("arch", ["test-tiny", "cfcn-small", "cfcn", "cascaded-mtl", "csrnet", "vgg16-density"])
def test_tiled_inference_equals_one_pass_over_the_whole_image_for_every_model(arch: str) -> None:
    """Each tile's core sees at least half the declared receptive field of context, so no output cell it keeps
    depends on the zero padding at the tile's edge: the tiled map is the whole-image map, cell for cell."""
    from train.models.registry import create_model

    torch.manual_seed(0)
    model = create_model(arch).eval()
    stride = int(model.output_stride)
    align = max(stride, int(getattr(model, "input_multiple", stride)))
    tile = 2 * context_margin(model, 4096, align) + 2 * align  # the smallest tile that keeps the full margin
    assert context_margin(model, tile, align) == context_margin(model, 4096, align)
    rng = np.random.default_rng(1)
    # several tiles across; VGG-wide models get a strip one tile high (their square kernels see both axes alike)
    height = 2 * align + 3 if arch in ("csrnet", "vgg16-density") else tile + align + 3
    image = rng.integers(0, 255, size=(height, 2 * tile + 7, 3), dtype=np.uint8)
    whole = predict_density(model, image, stride, 8192, torch.device("cpu"), False, 1.0)
    tiled = predict_density(model, image, stride, tile, torch.device("cpu"), False, 1.0)
    scale = float(np.abs(whole).max())
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-4 * scale)
    assert float(tiled.sum()) == pytest.approx(float(whole.sum()), rel=1e-4, abs=1e-4 * scale)


def test_a_tile_that_is_not_a_multiple_of_the_stride_is_cut_down_to_one() -> None:
    # a 66-px tile would start windows at x = 58 (not a cell border) and drop their last 2 px columns
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(150, 230, 3), dtype=np.uint8)
    model, device = PooledBrightness(), torch.device("cpu")
    whole = predict_density(model, image, 4, 4096, device, amp=False, density_scale=1.0)
    np.testing.assert_allclose(predict_density(model, image, 4, 66, device, False, 1.0), whole, rtol=1e-5, atol=1e-4)
    windows = WindowOrigins(stride=4)
    predict_density(windows, np.zeros((16, 200, 3), dtype=np.uint8) + np.arange(200, dtype=np.uint8)[None, :, None],
                    4, 66, device, amp=False, density_scale=1.0)  # fmt: skip
    assert windows.origins == [0, 48, 96, 144]  # the same tiles as a 64-px tile


def _labeled_with_a_broken_row(tmp_path: Path) -> Path:
    from rankset.io import write_dataset_dict
    from rankset.schema import labeled_features
    from tests.train.conftest import _rows, build_labeled
    from train.data import open_dataset, raw_row, undecoded

    good = raw_row(undecoded(open_dataset(str(build_labeled(tmp_path / "g", {"test": 1})), "k", "labeled")["test"]), 0)
    broken = {**good, "image_id": "broken", "image": {"bytes": b"not a picture", "path": None}}
    write_dataset_dict(tmp_path / "mixed", {"test": (_rows, {"rows": [good, broken]})}, labeled_features())
    return tmp_path / "mixed"


def test_an_unreadable_image_is_a_failed_row_counted_apart_from_the_summary(tmp_path: Path) -> None:
    from train.data import RowSource, open_dataset
    from train.evaluate import evaluate_sources

    ds = open_dataset(str(_labeled_with_a_broken_row(tmp_path)), "k", "labeled")["test"]
    model = ConstantDensity(0.0)  # predicts nobody: the readable image's error is its annotated count
    summary, rows = evaluate_sources(model, [RowSource("m", ds, [0, 1])], stride=4, tile=64,
                                     device=torch.device("cpu"), amp=False, density_scale=1.0)  # fmt: skip
    assert [r["status"] for r in rows] == ["ok", "unreadable_image"]
    assert rows[1]["image_id"] == "broken" and rows[1]["error"].startswith("UnidentifiedImageError: ")
    assert summary["failed"] == 1 and summary["images"] == 1
    assert summary["mae"] == pytest.approx(rows[0]["count"])


class RecordsMode(torch.nn.Module):
    """A stride-4 'model' that records whether it was in training mode at each call."""

    output_stride = 4

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return torch.zeros(x.shape[0], 1, x.shape[2] // 4, x.shape[3] // 4)


@pytest.mark.parametrize("training", [True, False])
def test_evaluation_runs_the_model_in_eval_mode_and_gives_it_back_in_its_mode(
    blob_data: dict[str, Path], training: bool
) -> None:
    from train.data import RowSource, open_dataset
    from train.evaluate import evaluate_rows

    ds = open_dataset(str(blob_data["labeled"]), "k", "labeled")["test"]
    model = RecordsMode().train(training)  # fit evaluates mid-training: BatchNorm and dropout must not train
    evaluate_rows(model, [RowSource("b", ds, [0, 1])], 4, 64, torch.device("cpu"), False, 1.0)
    assert model.modes and not any(model.modes)
    assert model.training is training


def test_eval_files_name_every_column_and_the_run_they_scored(
    trained_checkpoint: Path, blob_data: dict[str, Path], tmp_path: Path
) -> None:
    config = EvalConfig(trained_checkpoint, str(blob_data["labeled"]), "test", tmp_path / "ev", "cpu", 64)
    evaluate_checkpoint(config, show_progress=False)
    written = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert {"mae", "rmse", "nae", "game0", "game1", "game2", "game3", "images", "failed"} <= set(written)
    assert written["split"] == "test" and written["data"] == str(blob_data["labeled"]) and written["failed"] == 0
    assert written["step"] == 2  # the tiny run trained 2 steps and evaluated (so saved best.pt) at step 2
    with (tmp_path / "ev" / "images.csv").open() as f:
        header = next(csv.reader(f))
    assert header == ["image_id", "dataset", "status", "error", "count", "predicted", *(f"game{i}" for i in range(4))]


def test_eval_refuses_a_tile_under_64_pixels_and_no_ranked_sets(trained_checkpoint: Path, tmp_path: Path) -> None:
    from train.errors import ConfigError

    assert EvalConfig(trained_checkpoint, "d", tile=64, ranked_sets=1, out=tmp_path / "ok").tile == 64
    with pytest.raises(ConfigError, match="--tile 63 is too small; use at least 64 pixels"):
        EvalConfig(trained_checkpoint, "d", tile=63, out=tmp_path / "e")
    with pytest.raises(ConfigError, match=r"--ranked-sets 0 must be >= 1"):
        EvalConfig(trained_checkpoint, "d", ranked_sets=0, out=tmp_path / "e")


def test_roi_looks_a_point_up_at_its_row_y_and_column_x() -> None:
    import io

    from train.evaluate import apply_roi

    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:, :6] = 255  # the left 6 columns are inside
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    points = np.array([[7.0, 1.0], [1.0, 7.0]])  # x = 7 is outside, x = 1 inside, whatever the row
    _, kept = apply_roi({"bytes": buffer.getvalue(), "path": None}, np.ones((2, 2)), points, 4)
    assert kept.tolist() == [[1.0, 7.0]]


@pytest.mark.parametrize("with_labeled_column", [True, False])
def test_an_image_without_annotation_is_not_scored_against_its_count_of_minus_one(
    tmp_path: Path, with_labeled_column: bool
) -> None:
    """NWPU-Crowd's test split is imported with ``labeled = false, count = -1`` and no points: its rows are
    "unlabeled", left out of every metric and counted apart, not scored as if the truth were -1 people. A count
    of -1 alone (rankset info's mark of an unlabeled image) is enough."""
    import datasets

    from rankset.io import write_dataset_dict
    from rankset.schema import labeled_features
    from tests.train.conftest import _rows, build_labeled
    from train.data import RowSource, open_dataset, raw_row, undecoded
    from train.evaluate import evaluate_sources

    good = raw_row(undecoded(open_dataset(str(build_labeled(tmp_path / "g", {"test": 1})), "k", "labeled")["test"]), 0)
    rows = [{**good, "labeled": True}, {**good, "image_id": "private", "points": [], "count": -1, "labeled": False}]
    features = labeled_features(extra={"labeled": datasets.Value("bool")})
    if not with_labeled_column:
        rows = [{k: v for k, v in row.items() if k != "labeled"} for row in rows]
        features = labeled_features()
    write_dataset_dict(tmp_path / "nwpu", {"test": (_rows, {"rows": rows})}, features)
    ds = open_dataset(str(tmp_path / "nwpu"), "k", "labeled")["test"]
    summary, result = evaluate_sources(ConstantDensity(0.0), [RowSource("n", ds, [0, 1])], stride=4, tile=64,
                                       device=torch.device("cpu"), amp=False, density_scale=1.0)  # fmt: skip
    assert [r["status"] for r in result] == ["ok", "unlabeled"]
    assert "count" not in result[1] and "no annotation" in result[1]["error"]
    assert summary["images"] == 1 and summary["unlabeled"] == 1 and summary["failed"] == 0
    assert summary["mae"] == pytest.approx(good["count"])  # the labeled image alone; -1 would add |0 - -1| / 2


def test_tile_spans_refuse_a_margin_that_leaves_no_core() -> None:
    for margin in (64, 100, -1):  # a core of 128 - 2 * margin <= 0 never advances; a negative margin skips pixels
        with pytest.raises(ValueError, match=rf"tile margin {margin} must be >= 0 and leave a core"):
            tile_spans(300, 128, margin)
    assert tile_spans(300, 128, 0) == [(0, 128, 0, 128), (128, 256, 128, 256), (256, 300, 256, 300)]


def test_a_tile_of_one_output_stride_is_run_without_overlap_and_still_covers_the_image() -> None:
    # a model of stride 64 with the smallest --tile (64): the one-stride overlap would equal the tile (step 0)
    image = np.zeros((16, 200, 3), dtype=np.uint8) + np.arange(200, dtype=np.uint8)[None, :, None]
    coarse = WindowOrigins(stride=64)
    density = predict_density(coarse, image, 64, 64, torch.device("cpu"), amp=False, density_scale=1.0)
    assert coarse.origins == [0, 64, 128, 192]  # padded to 256 px: four tiles side by side
    assert density.shape == (1, 4)


def test_a_model_that_pools_more_than_its_output_stride_counts_every_cell_of_any_image_size() -> None:
    """cfcn outputs at 1/2 but pools to 1/8: padding only to its stride made a 1x1 picture fail in max_pool2d and
    left the last cells of a 20x20 picture (encoder 20 -> 2, decoder 2 -> 8 of 10 cells) uncovered, counted 0."""
    from train.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("cfcn").eval()
    single = predict_density(model, np.full((1, 1, 3), 90, np.uint8), 2, 64, torch.device("cpu"), False, 1.0)
    assert single.shape == (1, 1)
    density = predict_density(model, np.full((20, 20, 3), 90, np.uint8), 2, 64, torch.device("cpu"), False, 1.0)
    assert density.shape == (10, 10)
    assert np.all(density != 0.0)  # an uncovered cell is exactly 0
