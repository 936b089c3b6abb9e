"""rankset push: licence policy, Parquet shards, dataset card and attribution, captured at the huggingface_hub boundary.

No test reaches the network: uploads are recorded by monkeypatched ``HfApi`` methods that write the committed
bytes under tmp_path, and the offline tests switch huggingface_hub / datasets into offline mode.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
from huggingface_hub import DatasetCard, HfApi
from PIL import Image
from typer.testing import CliRunner

from rankset.build import BuildConfig, build_ranked_sets
from rankset.errors import ConfigError, PublishError
from rankset.licenses import LicensePolicy, license_family, license_id, parse_license_list
from rankset.publish import PublishConfig, publish_dataset

# One picture per licence; p2 has none (unknown). Each picture gives 2 sets.
LICENSES = {"p0": "cc-by-4.0", "p1": "CC BY-SA 4.0", "p2": None, "p3": "cc0-1.0", "p4": "cc-by-nc-4.0"}


def jpeg(seed: int, width: int = 48, height: int = 40) -> bytes:
    pixels = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=80)
    return buf.getvalue()


@pytest.fixture
def ranked(tmp_path: Path) -> Path:
    """A ranked-set dataset (train + validation) cut from five pictures with attribution sidecars."""
    pics = tmp_path / "pics"
    pics.mkdir()
    for i, (stem, license) in enumerate(LICENSES.items()):
        (pics / f"{stem}.jpg").write_bytes(jpeg(i))
        meta = {"author": f"Author {i}", "source_url": f"https://example.org/{stem}", "license": license}
        (pics / f"{stem}.jpg.json").write_text(json.dumps(meta))
    cfg = BuildConfig(str(pics), str(tmp_path / "ranked"), k=3, size=16, sets_per_image=2, val_fraction=0.4)
    build_ranked_sets(cfg, progress=False)
    return tmp_path / "ranked"


@pytest.fixture
def labeled(tmp_path: Path) -> Path:
    """A labeled dataset without a license column (as benchmarks are imported)."""
    from rankset.io import write_dataset_dict
    from rankset.schema import labeled_features

    rows = [
        {
            "image_id": f"IMG_{i}",
            "image": {"bytes": jpeg(10 + i), "path": None},
            "points": [[1.0, 2.0]] * i,
            "count": i,
            "dataset": "tiny",
            "split": "test",
        }
        for i in range(3)
    ]
    write_dataset_dict(tmp_path / "labeled", {"test": rows}, labeled_features())
    return tmp_path / "labeled"


class FakeHub:
    """Records what ``HfApi`` is asked to do and writes each committed file's bytes under ``root``."""

    def __init__(self, root: Path, existing: list[str]):
        self.root, self.existing = root, existing
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.operations: list[Any] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        hub = self

        def create_repo(self: HfApi, repo_id: str, **kwargs: Any) -> str:
            hub.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            return f"https://huggingface.co/datasets/{repo_id}"

        def create_branch(self: HfApi, repo_id: str, **kwargs: Any) -> None:
            hub.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

        def list_repo_files(self: HfApi, repo_id: str, **kwargs: Any) -> list[str]:
            hub.calls.append(("list_repo_files", {"repo_id": repo_id, **kwargs}))
            return list(hub.existing)

        def create_commit(self: HfApi, repo_id: str, operations: list[Any], **kwargs: Any) -> Any:
            hub.calls.append(("create_commit", {"repo_id": repo_id, **kwargs}))
            for op in operations:
                hub.operations.append(op)
                if hasattr(op, "path_or_fileobj"):
                    dest = hub.root / op.path_in_repo
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(Path(op.path_or_fileobj).read_bytes())
            return type("Commit", (), {"commit_url": f"https://huggingface.co/datasets/{repo_id}/commit/0"})()

        for name, fn in [("create_repo", create_repo), ("create_branch", create_branch)]:
            monkeypatch.setattr(HfApi, name, fn)
        monkeypatch.setattr(HfApi, "list_repo_files", list_repo_files)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        monkeypatch.setattr("rankset.hub.hub_unreachable", lambda: None)  # the fake Hub is always there,
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # even where CI sets HF_HUB_OFFLINE=1

    def call(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for called, kwargs in self.calls if called == name]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(tmp_path / "hub", existing=["README.md", "data/train-00000-of-00009.parquet", "notes.txt"])
    fake.install(monkeypatch)
    return fake


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """huggingface_hub and datasets read HF_HUB_OFFLINE at import; switch the imported constants too, no token."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


def push(dataset: Path, **kwargs: Any) -> Any:
    return publish_dataset(PublishConfig(str(dataset), kwargs.pop("repo_id", "me/crowd"), **kwargs), progress=False)


def load_parquet_folder(folder: Path) -> datasets.DatasetDict:
    files: dict[str, list[str]] = {}
    for shard in sorted((folder / "data").glob("*.parquet")):
        files.setdefault(shard.name.split("-")[0], []).append(str(shard))
    return datasets.load_dataset("parquet", data_files=files)


def read_card(folder: Path) -> DatasetCard:
    return DatasetCard((folder / "README.md").read_text())


def read_attribution(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((folder / "attribution.csv").read_text())))


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- licence families and policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "family"),
    [
        ("CC BY-SA 4.0", "by-sa"),
        ("cc-by-sa-4.0", "by-sa"),
        ("by-sa", "by-sa"),
        ("cc-by-sa-3.0-de", "by-sa"),
        ("https://creativecommons.org/licenses/by-sa/2.0/", "by-sa"),
        ("Creative Commons Attribution-ShareAlike 4.0 International", "by-sa"),
        ("CC BY-NC-ND 2.5", "by-nc-nd"),
        ("cc0-1.0", "cc0"),
        ("CC0", "cc0"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", "cc0"),
        ("pdm", "pdm"),
        ("Public domain", "pdm"),
        ("gfdl", "gfdl"),
        (None, None),
        ("unknown", None),
        ("  ", None),
    ],
)
def test_license_family_matches_every_spelling_of_a_family(spelling: str | None, family: str | None) -> None:
    assert license_family(spelling) == family


def test_license_id_writes_one_spelling_with_version_and_port() -> None:
    assert license_id("CC BY-SA 4.0") == "cc-by-sa-4.0"
    assert license_id("https://creativecommons.org/licenses/by-sa/3.0/de/") == "cc-by-sa-3.0-de"
    assert license_id("CC0") == "cc0-1.0"
    assert license_id("CC BY 2") == "cc-by-2.0"
    assert license_id(None) is None


def test_policy_refuses_unknown_and_families_outside_the_list() -> None:
    policy = LicensePolicy(parse_license_list("cc0, pdm, CC BY 4.0"))
    assert policy.families == ("cc0", "pdm", "by")
    assert policy.refusal("cc-by-2.0") is None and policy.refusal("Public domain") is None
    assert policy.refusal("cc-by-sa-4.0") == "licence family 'by-sa' not in --licenses"
    assert "unknown licence" in policy.refusal(None)
    assert LicensePolicy(allow_unknown=True).refusal(None) is None
    with pytest.raises(ConfigError, match="--allow-unknown-license"):
        parse_license_list("cc0,unknown")


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"repo_id": "no-slash"}, "--repo-id"),
        ({"max_shard_size": "huge"}, "--max-shard-size"),
        ({"max_shard_size": "10B"}, "--max-shard-size"),
        ({"dataset_license": "CC BY 4.0"}, "--dataset-license"),
        ({"revision": "my branch"}, "--revision"),
    ],
)
def test_config_names_the_bad_flag(kwargs: dict[str, Any], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        PublishConfig("ds", kwargs.pop("repo_id", "me/crowd"), **kwargs)


def test_dry_run_into_a_non_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--dry-run"):
        PublishConfig("ds", "me/crowd", dry_run=tmp_path / "out")


# -- upload ---------------------------------------------------------------------------------------------------


def test_push_commits_shards_card_and_attribution_once_and_they_load_back(ranked: Path, hub: FakeHub) -> None:
    summary = push(ranked, max_shard_size="2KB")
    source = datasets.load_from_disk(str(ranked))
    assert [c["repo_id"] for c in hub.call("create_repo")] == ["me/crowd"]
    assert hub.call("create_repo")[0]["repo_type"] == "dataset" and hub.call("create_repo")[0]["exist_ok"] is True
    assert hub.call("create_branch") == [] and len(hub.call("create_commit")) == 1
    assert hub.call("create_commit")[0]["revision"] == "main"
    added = sorted(op.path_in_repo for op in hub.operations if hasattr(op, "path_or_fileobj"))
    deleted = [op.path_in_repo for op in hub.operations if not hasattr(op, "path_or_fileobj")]
    assert deleted == ["data/train-00000-of-00009.parquet"]  # the previous push's shard, not README or notes
    shards = [p for p in added if p.startswith("data/")]
    n_train = sum(p.startswith("data/train-") for p in shards)
    assert n_train > 1 and f"data/train-{n_train - 1:05d}-of-{n_train:05d}.parquet" in shards
    assert set(added) - set(shards) == {"README.md", "attribution.csv"}

    loaded = load_parquet_folder(hub.root)
    for split in source:
        expected = [r["set_id"] for r in source[split] if r["license"] is not None]
        assert loaded[split]["set_id"] == expected
        assert summary.rows[split] == len(expected)
    assert loaded["train"].features == source["train"].features
    raw = loaded["train"].cast_column("images", datasets.List(datasets.Image(decode=False)))
    original = source["train"].cast_column("images", datasets.List(datasets.Image(decode=False)))
    first = original[[r["set_id"] for r in original].index(raw[0]["set_id"])]
    assert raw[0]["images"][0]["bytes"] == first["images"][0]["bytes"]  # embedded as shipped, not re-encoded


def test_card_declares_other_with_every_licence_configs_size_and_what_was_left_out(ranked: Path, hub: FakeHub) -> None:
    push(ranked)
    card = read_card(hub.root)
    meta = card.data.to_dict()
    assert meta["license"] == "other" and meta["license_link"] == "attribution.csv"
    assert meta["licenses"] == ["cc-by-4.0", "cc-by-nc-4.0", "cc-by-sa-4.0", "cc0-1.0"]
    assert meta["size_categories"] == ["n<1K"]
    assert meta["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train-*"},
                {"split": "validation", "path": "data/validation-*"},
            ],
        }
    ]
    assert "| unknown licence (pass --allow-unknown-license to publish) | 2 |" in card.text
    assert "every known licence; unknown licences refused" in card.text
    assert "| k (patches per set) | 3 |" in card.text and "| seed | 0 |" in card.text


def test_attribution_rows_match_the_published_rows(ranked: Path, hub: FakeHub) -> None:
    push(ranked)
    loaded = load_parquet_folder(hub.root)
    published = Counter((split, r["source_id"]) for split in loaded for r in loaded[split])
    author_of = {r["source_id"]: (r["author"], r["license"], r["source_url"]) for s in loaded for r in loaded[s]}
    rows = read_attribution(hub.root)
    assert {(r["split"], r["source_id"]): int(r["rows"]) for r in rows} == dict(published)
    for r in rows:
        assert (r["author"], r["license"], r["source_url"]) == author_of[r["source_id"]]
    assert "p2" not in {r["source_id"] for r in rows}


def test_license_filter_keeps_exactly_the_listed_family(ranked: Path, tmp_path: Path) -> None:
    summary = push(ranked, licenses=("by-sa",), dry_run=tmp_path / "out")
    loaded = load_parquet_folder(tmp_path / "out")
    assert {r["source_id"] for s in loaded for r in loaded[s]} == {"p1"}
    assert summary.left_out == {
        "licence family 'by' not in --licenses": 2,
        "licence family 'cc0' not in --licenses": 2,
        "licence family 'by-nc' not in --licenses": 2,
        "unknown licence (pass --allow-unknown-license to publish)": 2,
    }
    meta = read_card(tmp_path / "out").data.to_dict()
    assert meta["license"] == "cc-by-sa-4.0" and "license_name" not in meta  # one Hub licence: its own id
    assert "licence families by-sa" in read_card(tmp_path / "out").text


def test_unknown_licences_are_published_only_when_allowed(ranked: Path, tmp_path: Path) -> None:
    summary = push(ranked, allow_unknown_license=True, dry_run=tmp_path / "out")
    loaded = load_parquet_folder(tmp_path / "out")
    assert sum(len(loaded[s]) for s in loaded) == 10 and summary.left_out == {}
    assert "unknown" in read_card(tmp_path / "out").data.to_dict()["licenses"]
    with pytest.raises(PublishError, match="--allow-unknown-license"):
        push(ranked, licenses=("pdm",), dry_run=tmp_path / "none")  # nothing left: refuse, write nothing
    assert not (tmp_path / "none").exists()


def test_dry_run_files_are_byte_identical_to_the_upload(ranked: Path, hub: FakeHub, tmp_path: Path) -> None:
    push(ranked, max_shard_size="2KB", dry_run=tmp_path / "dry")
    assert hub.calls == []  # a dry run talks to nobody
    push(ranked, max_shard_size="2KB")
    dry = files_of(tmp_path / "dry")
    assert dry == files_of(hub.root) and len(dry) > 3


def test_revision_and_private_reach_the_hub(ranked: Path, hub: FakeHub) -> None:
    push(ranked, revision="v1", private=True)
    assert hub.call("create_repo")[0]["private"] is True
    assert hub.call("create_branch") == [
        {"repo_id": "me/crowd", "branch": "v1", "repo_type": "dataset", "exist_ok": True}
    ]
    assert hub.call("list_repo_files")[0]["revision"] == "v1" and hub.call("create_commit")[0]["revision"] == "v1"


def test_missing_token_fails_at_once_naming_hf_token(offline: None, tmp_path: Path) -> None:
    with pytest.raises(PublishError, match=r"HF_TOKEN.*hf auth login"):
        push(tmp_path / "does-not-exist")  # the token is checked before the dataset is even opened


def test_offline_push_fails_before_any_work_saying_dry_run_needs_no_network(
    offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    with pytest.raises(PublishError, match=r"HF_HUB_OFFLINE is set.*--dry-run OUT"):
        push(tmp_path / "does-not-exist")  # before the dataset is even opened
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # offline without saying so
    with pytest.raises(
        PublishError,
        match=r"cannot reach the Hugging Face Hub at https://huggingface.co: cannot "
        r"resolve huggingface.co.*Connect and push again, or use --dry-run OUT",
    ):
        push(tmp_path / "does-not-exist")


def test_upload_failure_becomes_a_publish_error(ranked: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    with pytest.raises(PublishError, match=r"upload to https://huggingface.co/datasets/me/crowd .*failed") as err:
        push(ranked)
    assert "ConnectionError: connection reset by peer" in str(err.value) and "--dry-run OUT" in str(err.value)


# -- labeled datasets -----------------------------------------------------------------------------------------


def test_labeled_dataset_without_license_needs_a_dataset_license(labeled: Path, tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="--dataset-license"):
        push(labeled, dry_run=tmp_path / "refused")
    push(labeled, dataset_license="cc-by-nc-4.0", dry_run=tmp_path / "out")
    card = read_card(tmp_path / "out")
    assert card.data.to_dict()["license"] == "cc-by-nc-4.0"
    assert "`cc-by-nc-4.0` (`--dataset-license`)" in card.text
    rows = read_attribution(tmp_path / "out")
    assert [(r["split"], r["source_id"], r["license"]) for r in rows] == [
        ("test", f"IMG_{i}", "cc-by-nc-4.0") for i in range(3)
    ]
    assert load_parquet_folder(tmp_path / "out")["test"]["count"] == [0, 1, 2]


def test_dataset_license_is_refused_for_rows_that_carry_their_own(ranked: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has a license column"):
        push(ranked, dataset_license="cc-by-4.0", dry_run=tmp_path / "out")


def test_allow_unknown_publishes_a_labeled_dataset_as_license_unknown(labeled: Path, tmp_path: Path) -> None:
    push(labeled, allow_unknown_license=True, dry_run=tmp_path / "out")
    assert read_card(tmp_path / "out").data.to_dict()["license"] == "unknown"


def test_dry_run_leaves_out_skipped_csv_and_the_local_paths_it_names(tmp_path: Path) -> None:
    """skipped.csv lists where each skipped picture lay on the builder's disk: it stays in the local folder."""
    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(2):
        (pics / f"p{i}.jpg").write_bytes(jpeg(i))
    (pics / "damaged.jpg").write_bytes(jpeg(2)[:200])
    build_ranked_sets(BuildConfig(str(pics), str(tmp_path / "ranked"), k=3, size=16), progress=False)
    assert str(pics / "damaged.jpg") in (tmp_path / "ranked" / "skipped.csv").read_text(encoding="utf-8")
    summary = push(tmp_path / "ranked", allow_unknown_license=True, dry_run=tmp_path / "dry")
    files = sorted(p.relative_to(tmp_path / "dry").as_posix() for p in (tmp_path / "dry").rglob("*") if p.is_file())
    assert "skipped.csv" not in files and sorted(summary.files) == files and "README.md" in files
    assert not any(str(pics).encode() in (tmp_path / "dry" / f).read_bytes() for f in files)


# -- loading what was pushed, and Hub ids offline -------------------------------------------------------------


def test_load_dataset_dict_reads_a_pushed_folder_as_any_dataset_folder(ranked: Path, tmp_path: Path) -> None:
    from rankset.inputs import describe_input
    from rankset.io import load_dataset_dict
    from rankset.schema import decode_build_info

    push(ranked, dry_run=tmp_path / "snapshot")
    dsd = load_dataset_dict(tmp_path / "snapshot")
    assert sorted(dsd) == ["train", "validation"] and len(dsd["train"]) + len(dsd["validation"]) == 8
    assert describe_input(tmp_path / "snapshot") == "dataset"  # so `rankset build` and manifests take it too
    restored = decode_build_info(dsd["validation"].info.description)  # the card carries how it was built
    assert (restored["k"], restored["size"], restored["sets_per_image"]) == (3, 16, 2)


def test_uncached_hub_id_offline_raises_an_actionable_publish_error(offline: None) -> None:
    from rankset.io import load_dataset_dict

    with pytest.raises(PublishError, match=r"'nobody/not-cached-crowds'.*local folder"):
        load_dataset_dict("nobody/not-cached-crowds")


# -- pools: how the pictures were collected -------------------------------------------------------------------


def test_card_and_attribution_of_a_pool_build_say_how_and_where_pictures_were_found(tmp_path: Path) -> None:
    from harvest.pool import Pool

    pool = Pool.create(tmp_path / "pool")
    rows = []
    for i in range(2):
        sha, rel = pool.store_image(jpeg(20 + i), "jpg")
        rows.append(
            {
                "id": sha,
                "url": f"https://img.example.org/{i}.jpg",
                "page_url": f"https://example.org/{i}",
                "title": f"Crowd {i}",
                "author": f"A{i}",
                "license": "cc-by-4.0",
                "status": "ok",
                "path": rel,
                "license_url": "https://creativecommons.org/licenses/by/4.0/",
                "kept": True,  # the verdict of the dedup and filter runs logged below
            }
        )
    pool.append_rows(rows)
    pool.log_command(["harvest", "keywords"], command="keywords", config={"terms": ["crowd"], "sources": ["openverse"]})
    pool.log_command(["harvest", "dedup"], stage="dedup", threshold=6, exclude_like=["data/shb"])
    pool.log_command(["harvest", "filter"], stage="filter", model="ViT-B-32", threshold=0.25)
    build_ranked_sets(BuildConfig(str(tmp_path / "pool"), str(tmp_path / "ds"), k=3, size=16), progress=False)
    push(tmp_path / "ds", dry_run=tmp_path / "out")

    text = read_card(tmp_path / "out").text
    assert "| 1 | keywords |" in text and 'sources = ["openverse"]; terms = ["crowd"]' in text
    assert 'exclude_like = ["data/shb"]; threshold = 6' in text and 'model = "ViT-B-32"; threshold = 0.25' in text
    attribution = {r["source_id"]: r for r in read_attribution(tmp_path / "out")}
    first = attribution[rows[0]["id"]]
    assert (first["source_url"], first["page_url"], first["title"]) == (rows[0]["url"], rows[0]["page_url"], "Crowd 0")
    assert first["license_url"] == "https://creativecommons.org/licenses/by/4.0/"


# -- CLI wiring -----------------------------------------------------------------------------------------------


def test_cli_push_wires_flags_and_maps_errors(ranked: Path, tmp_path: Path, offline: None) -> None:
    from rankset.cli import app

    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "push",
            str(ranked),
            "--repo-id",
            "me/crowd",
            "--dry-run",
            str(tmp_path / "out"),
            "--licenses",
            "cc0,by",
            "--max-shard-size",
            "1MB",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert {r["source_id"] for r in read_attribution(tmp_path / "out")} == {"p0", "p3"}
    bad = runner.invoke(app, ["push", str(ranked), "--repo-id", "nope"])
    assert bad.exit_code == 2 and "--repo-id" in bad.output
    no_token = runner.invoke(app, ["push", str(ranked), "--repo-id", "me/crowd"])
    assert no_token.exit_code == 1 and "HF_TOKEN" in no_token.output


def test_local_file_paths_never_reach_the_published_files(tmp_path: Path) -> None:
    pics = tmp_path / "private-folder"
    pics.mkdir()
    for i in range(2):
        (pics / f"p{i}.jpg").write_bytes(jpeg(i))
        (pics / f"p{i}.jpg.json").write_text(json.dumps({"license": "cc0-1.0", "author": "A"}))
    build_ranked_sets(BuildConfig(str(pics), str(tmp_path / "ranked"), k=3, size=16), progress=False)
    assert datasets.load_from_disk(str(tmp_path / "ranked"))["train"][0]["source_url"].startswith("file://")
    push(tmp_path / "ranked", dry_run=tmp_path / "dry")
    published = load_parquet_folder(tmp_path / "dry")["train"]
    assert published["source_url"] == [None, None]
    for name in ("README.md", "attribution.csv"):
        text = (tmp_path / "dry" / name).read_text()
        assert "file://" not in text and str(pics) not in text


def pool_of_one_picture(folder: Path, seed: int) -> Any:
    """A harvest pool at ``folder/pool`` holding one kept CC0 picture."""
    from harvest.pool import Pool

    pool = Pool.create(folder / "pool")
    sha, rel = pool.store_image(jpeg(seed), "jpg")
    pool.append_rows([{"id": sha, "url": "https://img.example.org/0.jpg", "license": "cc0-1.0", "status": "ok",
                       "path": rel, "kept": True}])  # fmt: skip
    return pool


def test_local_paths_in_the_pool_commands_and_the_import_root_never_reach_the_card(tmp_path: Path) -> None:
    from rankset.importers import ImportConfig, import_benchmark

    private = tmp_path / "private-folder"
    pool = pool_of_one_picture(private, 30)
    argv = [str(private / "venv" / "bin" / "harvest"), "local", str(private / "photos"), "--out", str(private / "pool")]
    pool.log_command(argv, command="local", config={"root": str(private / "photos"), "out": str(private / "pool")})
    pool.log_command(["harvest", "dedup"], stage="dedup", exclude_like=[str(private / "shb"), "data/shb", "me/shb"])
    build_ranked_sets(BuildConfig(str(private / "pool"), str(tmp_path / "ranked"), k=3, size=16), progress=False)
    push(tmp_path / "ranked", dry_run=tmp_path / "dry")
    card = (tmp_path / "dry" / "README.md").read_text()
    assert str(private) not in card and "file://" not in card
    assert 'root = "photos"' in card and '"harvest"' in card  # the names stay: what was run on which folder
    assert 'exclude_like = ["shb", "data/shb", "me/shb"]' in card

    (private / "points").mkdir()
    (private / "points" / "a.jpg").write_bytes(jpeg(31))
    (private / "points" / "a.txt").write_text("1 2\n")
    import_benchmark(ImportConfig("points", private / "points", tmp_path / "labeled"), progress=False)
    push(tmp_path / "labeled", dataset_license="mit", dry_run=tmp_path / "dry-labeled")
    card = (tmp_path / "dry-labeled" / "README.md").read_text()
    assert str(private) not in card and 'root: "points"' in card


def test_a_local_path_given_as_flag_equals_value_in_the_pool_commands_never_reaches_the_card(tmp_path: Path) -> None:
    """`harvest local DIR --out=/abs/pool` keeps the path inside one argv item: it is cut to its last name too."""
    private = tmp_path / "private-folder"
    pool = pool_of_one_picture(private, 32)
    argv = ["harvest", "dedup", f"--exclude-like={private / 'shb'}", f"-o={private / 'pool'}", "--threshold=12"]
    pool.log_command(argv, stage="dedup", exclude_like=[str(private / "shb")])
    build_ranked_sets(BuildConfig(str(private / "pool"), str(tmp_path / "ranked"), k=3, size=16), progress=False)
    push(tmp_path / "ranked", dry_run=tmp_path / "dry")
    card = (tmp_path / "dry" / "README.md").read_text()
    assert str(private) not in card
    assert '"--exclude-like=shb"' in card and '"-o=pool"' in card and '"--threshold=12"' in card


# -- sizes and licences the Hub reads from the card ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "category"), [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (99_999, "10K<n<100K"), (10**6, "1M<n<10M")]
)
def test_size_category_puts_each_power_of_ten_in_the_next_bucket(rows: int, category: str) -> None:
    from rankset.card import size_category

    assert size_category(rows) == category


def test_card_licence_is_a_hub_id_only_when_the_hub_knows_it() -> None:
    from rankset.card import card_license, license_fields

    assert card_license({"cc-by-4.0": 3, "cc0-1.0": 0}) == "cc-by-4.0"
    assert card_license({"gfdl": 3}) == "other" and card_license({}) == "unknown"
    assert license_fields({"gfdl": 3}) == {
        "license": "other",
        "license_name": "gfdl",
        "license_link": "attribution.csv",
        "licenses": ["gfdl"],
    }


def test_shard_count_keeps_every_shard_under_the_size_and_at_least_one_row(labeled: Path) -> None:
    from rankset.publish import shard_count

    ds = datasets.load_from_disk(str(labeled))["test"]
    whole = ds.data.nbytes
    assert shard_count(ds, int(whole * 0.4)) == 3  # 2.5 shards' worth: 3 shards, not 2 over-size ones
    assert shard_count(ds, whole) == 1 and shard_count(ds, 1) == len(ds) == 3


def test_a_push_deletes_only_the_old_shards_it_does_not_write_again(ranked: Path, hub: FakeHub) -> None:
    hub.existing[:] = ["data/train-00000-of-00001.parquet", "data/validation-00000-of-00003.parquet", "README.md"]
    push(ranked)
    deleted = [op.path_in_repo for op in hub.operations if not hasattr(op, "path_or_fileobj")]
    added = {op.path_in_repo for op in hub.operations if hasattr(op, "path_or_fileobj")}
    assert deleted == ["data/validation-00000-of-00003.parquet"]
    assert "data/train-00000-of-00001.parquet" in added


def test_a_dry_run_removes_the_staging_folder_of_a_killed_dry_run_and_notes_it(ranked: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from rankset.io import HOST

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    left = tmp_path / f".out.tmp-{HOST}-{child.pid}-0123abcd"
    (left / "data").mkdir(parents=True)
    summary = push(ranked, allow_unknown_license=True, dry_run=tmp_path / "out")
    assert not left.exists() and (tmp_path / "out" / "README.md").is_file()
    assert len(summary.notes) == 1 and str(left) in summary.notes[0]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


class StagingSeen:
    """Where the fake Hub read the committed files from: the push's staging folder."""

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub

    @property
    def folder(self) -> Path:
        shard = next(Path(op.path_or_fileobj) for op in self.hub.operations if hasattr(op, "path_or_fileobj"))
        return shard.parent.parent if shard.parent.name == "data" else shard.parent


@pytest.fixture
def system_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A system temp folder of the test's own, to see what a push leaves there."""
    import tempfile

    temp = tmp_path / "system-temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def test_a_push_stages_beside_the_dataset_not_in_the_system_temp_folder(
    ranked: Path, hub: FakeHub, system_temp: Path
) -> None:
    push(ranked)
    staged = StagingSeen(hub).folder
    assert staged.parent == ranked.parent.resolve() and staged.name.startswith(f".{ranked.name}.push.tmp-")
    assert not staged.exists() and list(system_temp.iterdir()) == []


def test_a_push_removes_the_staging_folder_of_a_killed_push_and_notes_it(
    ranked: Path, hub: FakeHub, system_temp: Path
) -> None:
    from rankset.io import HOST

    left = ranked.parent / f".{ranked.name}.push.tmp-{HOST}-{dead_pid()}-0123abcd"
    (left / "data").mkdir(parents=True)
    old_temp = system_temp / ".rankset-push-ab12cd_3"  # what an earlier version's killed push left in /tmp
    (old_temp / "data").mkdir(parents=True)
    day_ago = time.time() - 25 * 3600
    for path in (old_temp / "data", old_temp):
        os.utime(path, (day_ago, day_ago))
    summary = push(ranked)
    assert not left.exists() and [str(left) in note for note in summary.notes].count(True) == 1
    assert old_temp.exists()  # beside the dataset was writable: the system temp folder is not looked at


def test_a_push_whose_dataset_folder_takes_no_new_entries_stages_in_temp_saying_why(
    ranked: Path, hub: FakeHub, system_temp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import rankset.io

    real = rankset.io.staging_path
    beside = ranked.parent.resolve()

    def read_only_beside_dataset(target: Path, kind: str = "tmp") -> Path:
        if target.parent == beside:  # stands for a read-only mount: running as root, chmod would not refuse
            raise PermissionError(errno.EACCES, "Permission denied", str(beside))
        return real(target, kind)

    monkeypatch.setattr(rankset.io, "staging_path", read_only_beside_dataset)
    old_temp = system_temp / ".rankset-push-ab12cd_3"  # an earlier version's push killed over a day ago
    (old_temp / "data").mkdir(parents=True)
    day_ago = time.time() - 25 * 3600
    for path in (old_temp / "data", old_temp):
        os.utime(path, (day_ago, day_ago))
    summary = push(ranked)
    staged = StagingSeen(hub).folder
    assert staged.parent == system_temp and staged.name.startswith(".rankset-push.tmp-")
    assert list(system_temp.iterdir()) == []  # the push's own staging and the old leftover are both gone
    [why] = [note for note in summary.notes if "cannot stage" in note]
    assert str(beside) in why and "Permission denied" in why and "TMPDIR" in why
    assert any(str(old_temp) in note and note.startswith("removed") for note in summary.notes)
