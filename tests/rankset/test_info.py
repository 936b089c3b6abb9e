"""`rankset info`: per-split figures and the histogram PNG, for labeled, synthetic-style and ranked-set datasets."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rankset.cli import app
from rankset.errors import ConfigError, InputError
from rankset.info import InfoConfig, dataset_report, labeled_split_info, ranked_split_info
from rankset.io import write_dataset_dict
from rankset.schema import encode_build_info, labeled_features, ranked_features


def png_bytes(size: tuple[int, int] = (8, 8), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def write_labeled(out: Path, counts_by_split: dict[str, list[int]], optional: tuple[str, ...] = ()) -> Path:
    """A labeled dataset whose rows have the given counts (-1 = unlabeled); with ``depth`` like `rankset synth`."""

    def rows(split: str, counts: list[int]):
        for index, count in enumerate(counts):
            row = {
                "image_id": f"{split}-{index}",
                "image": {"bytes": png_bytes(), "path": None},
                "points": [[1.0, 1.0]] * max(count, 0),
                "count": count,
                "dataset": "toy",
                "split": split,
            }
            if "depth" in optional:
                row["depth"] = {"bytes": png_bytes(mode="I;16"), "path": None}
            yield row

    splits = {name: (rows, {"split": name, "counts": counts}) for name, counts in counts_by_split.items()}
    write_dataset_dict(out, splits, labeled_features(optional))
    return out


def write_ranked(out: Path, sources: list[str], k: int = 3) -> Path:
    def rows(sources: list[str]):
        for index, source in enumerate(sources):
            side = 40.0 + index
            yield {
                "set_id": f"{source}-{index}",
                "source_id": source,
                "images": [{"bytes": png_bytes(), "path": None}] * k,
                "boxes": [[0.0, 0.0, side * 0.75**j, side * 0.75**j] for j in range(k)],
                "anchor": [20.0, 20.0],
                "source_size": [64, 48],
                "license": "cc-by",
                "author": "a",
                "source_url": "file:///x",
            }

    description = encode_build_info({"k": k, "s": 0.75, "r": 8, "size": 224, "seed": 0})
    write_dataset_dict(out, {"train": (rows, {"sources": sources})}, ranked_features(k), description=description)
    return out


def test_labeled_split_info_leaves_unlabeled_images_out_of_the_figures() -> None:
    info = labeled_split_info("test", np.array([4, -1, 10, 1, -1]))
    assert (info.rows, info.unlabeled, info.heads) == (5, 2, 15)
    assert (info.count_min, info.count_median, info.count_max) == (1, 4.0, 10)


def test_ranked_split_info_counts_sets_k_and_distinct_sources() -> None:
    info = ranked_split_info("train", ["a", "b", "a", "c"], np.array([5, 5, 5, 5]))
    assert (info.rows, info.k, info.sources) == (4, (5,), 3)


def test_report_of_a_labeled_dataset_gives_per_split_counts_and_writes_png(tmp_path: Path) -> None:
    folder = write_labeled(tmp_path / "ds", {"train": [3, 0, 7], "test": [2, -1]}, optional=("depth",))
    report = dataset_report(InfoConfig(str(folder)))
    by_name = {s.name: s for s in report.splits}
    assert report.kind == "labeled" and report.datasets == ("toy",)
    assert (by_name["train"].rows, by_name["train"].heads, by_name["train"].count_median) == (3, 10, 3.0)
    assert (by_name["test"].unlabeled, by_name["test"].count_max) == (1, 2)
    assert "depth" in report.columns
    assert report.png == folder / "info.png"
    with Image.open(report.png) as png:
        assert png.format == "PNG" and png.size[0] > 100


def test_report_of_a_ranked_dataset_gives_sets_k_sources_and_build_info(tmp_path: Path) -> None:
    folder = write_ranked(tmp_path / "ranked", ["p1", "p2", "p1", "p3", "p1"], k=3)
    report = dataset_report(InfoConfig(str(folder), out=tmp_path / "figs" / "r.png"))
    assert report.kind == "ranked"
    assert (report.splits[0].rows, report.splits[0].k, report.splits[0].sources) == (5, (3,), 3)
    assert report.build_info["s"] == 0.75
    assert (tmp_path / "figs" / "r.png").stat().st_size > 1000


def test_report_refuses_a_dataset_of_neither_kind(tmp_path: Path) -> None:
    import datasets

    def rows():
        yield {"text": "hello"}

    write_dataset_dict(tmp_path / "other", {"train": (rows, {})}, datasets.Features({"text": datasets.Value("string")}))
    with pytest.raises(InputError, match="neither a labeled nor a ranked-set dataset"):
        dataset_report(InfoConfig(str(tmp_path / "other")))


def test_info_config_requires_a_png_output() -> None:
    with pytest.raises(ConfigError, match="must end in .png"):
        InfoConfig("somewhere", out=Path("hist.jpg"))


def test_info_and_preview_out_below_a_file_is_refused_naming_that_file(tmp_path: Path) -> None:
    """Both said "cannot write F/h.png: File exists" (mkdir's errno), after loading and drawing the dataset."""
    from rankset.preview import render_preview

    (tmp_path / "F").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"--out .*F/h.png: .*F is a file, so no folder can be made there"):
        InfoConfig("somewhere", out=tmp_path / "F" / "h.png")
    with pytest.raises(ConfigError, match=r"--out .*F/h.png: .*F is a file, so no folder can be made there"):
        render_preview(str(tmp_path / "no-dataset"), tmp_path / "F" / "h.png")


def test_cli_info_prints_the_split_table_and_png_path(tmp_path: Path) -> None:
    folder = write_labeled(tmp_path / "ds", {"train": [5, 6]})
    result = CliRunner().invoke(app, ["info", str(folder), "--out", str(tmp_path / "h.png")])
    assert result.exit_code == 0, result.output
    assert "11" in result.output and "h.png" in result.output
    assert (tmp_path / "h.png").is_file()
    missing = CliRunner().invoke(app, ["info", str(tmp_path / "nope")])
    assert missing.exit_code == 1


def test_a_histogram_that_cannot_be_written_fails_naming_the_path_and_out(tmp_path: Path) -> None:
    folder = write_labeled(tmp_path / "ds", {"train": [5, 6]})
    (folder / "info.png").mkdir()  # stands for a dataset folder on a read-only mount: DIR/info.png cannot be written
    result = CliRunner().invoke(app, ["info", str(folder)], env={"COLUMNS": "400"})
    assert result.exit_code == 1 and not isinstance(result.exception, OSError)
    assert "error: cannot write" in result.output and "info.png" in result.output and "--out" in result.output
    assert CliRunner().invoke(app, ["info", str(folder), "--out", str(tmp_path / "h.png")]).exit_code == 0
