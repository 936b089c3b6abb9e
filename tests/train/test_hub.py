"""train push and Hub ids as CKPT: files, card and weights captured at the huggingface_hub boundary, and the pushed
folder read back by eval/predict with the original checkpoint's counts.

No test reaches the network: uploads are recorded by rankset's ``FakeHub`` (monkeypatched ``HfApi`` methods that
write the committed bytes under tmp_path); downloads are the pushed folder handed back by a monkeypatched
``snapshot_download``, or the real one refusing in offline mode.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.rankset.test_publish import FakeHub
from train.checkpoint import load_checkpoint
from train.errors import ConfigError, HubError, ModelError
from train.evaluate import EvalConfig, evaluate_checkpoint
from train.hub import (
    UPLOAD_FILES,
    PushConfig,
    check_checkpoint_argument,
    hub_reference,
    push_model,
    read_inference_state,
)
from train.manifest import config_from_dict
from train.model_card import model_card
from train.predict import PredictConfig, predict_images

from .test_loop import tiny_config


@pytest.fixture(scope="module")
def run(blob_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished test-tiny run with a count-regression head and 2 Masksembles masks: best.pt and eval.json."""
    from train.loop import fit

    folder = tmp_path_factory.mktemp("hub-run") / "run"
    config = tiny_config(
        blob_data,
        model={"arch": "test-tiny", "pretrained": "none", "masksembles": {"masks": 2, "scale": 2.0}},
        tasks={"rank": {"weight": 1.0, "sets_per_batch": 2}, "count_reg": {"weight": 1.0}},
        schedule={"steps": 2, "eval_every": 2, "log_every": 1},
    )
    fit(config, folder, show_progress=False)
    return folder


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(tmp_path / "hub", existing=[])
    fake.install(monkeypatch)
    return fake


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE at import: switch the imported constant too, and remove every token."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


def push(checkpoint: Path, **kwargs: Any) -> Any:
    return push_model(PushConfig(checkpoint, kwargs.pop("repo_id", "me/tiny-counter"), **kwargs))


def picture(path: Path, seed: int) -> Path:
    """A 40x56 picture of bright discs on dark noise, like the training blobs."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, size=(40, 56, 3), dtype=np.uint8)
    for y, x in rng.integers(4, 36, size=(6, 2)):
        pixels[y - 2 : y + 2, x - 2 : x + 2] = 240
    Image.fromarray(pixels).save(path)
    return path


def counts(checkpoint: Path | str, images: list[Path], out: Path) -> list[float]:
    rows = predict_images(PredictConfig(Path(checkpoint), tuple(images), out, "cpu", overlays=False), False)
    return [row["count"] for row in rows]


# -- what is uploaded -------------------------------------------------------------------------------------------


def test_push_commits_the_four_files_once_to_a_model_repo(run: Path, hub: FakeHub) -> None:
    summary = push(run / "best.pt", private=True)
    assert hub.call("create_repo") == [
        {"repo_id": "me/tiny-counter", "repo_type": "model", "private": True, "exist_ok": True}
    ]
    assert hub.call("create_branch") == [] and len(hub.call("create_commit")) == 1
    commit = hub.call("create_commit")[0]
    assert commit["revision"] == "main" and commit["repo_type"] == "model"
    assert sorted(op.path_in_repo for op in hub.operations) == sorted(UPLOAD_FILES)
    assert summary.destination.endswith("/commit/0") and summary.step == 2


def test_a_revision_is_created_as_a_branch_and_committed_to(run: Path, hub: FakeHub) -> None:
    push(run / "best.pt", revision="v1")
    assert hub.call("create_branch") == [
        {"repo_id": "me/tiny-counter", "branch": "v1", "repo_type": "model", "exist_ok": True}
    ]
    assert hub.call("create_commit")[0]["revision"] == "v1"


def test_safetensors_holds_the_density_model_and_masks_without_any_head(run: Path, hub: FakeHub) -> None:
    summary = push(run / "best.pt")
    weights = load_file(str(hub.root / "model.safetensors"))
    trained = load_checkpoint(run / "best.pt")["model"]
    heads = [k for k in trained if k.startswith("heads.")]
    assert heads and not [k for k in weights if k.startswith("heads.")]
    assert sorted(weights) == sorted(k for k in trained if not k.startswith("heads."))
    assert "masksembles.masks" in weights
    for name, tensor in weights.items():
        assert tensor.equal(trained[name]), name
    assert summary.dropped_values == sum(trained[k].numel() for k in heads) > 0
    assert summary.kept_values == sum(t.numel() for t in weights.values())


def test_metadata_and_config_rebuild_the_run_manifest(run: Path, hub: FakeHub) -> None:
    import tomllib

    push(run / "best.pt")
    metadata = json.loads((hub.root / "crowdrank.json").read_text())
    assert (metadata["arch"], metadata["output_stride"], metadata["density_scale"]) == ("test-tiny", 4, 100.0)
    assert metadata["step"] == 2 and metadata["count_groups"] is None and metadata["crowdrank_version"]
    masks = load_checkpoint(run / "best.pt")["model"]["masksembles.masks"]
    assert metadata["masksembles"]["channel_masks"] == masks.int().tolist()
    assert (metadata["masksembles"]["masks"], metadata["masksembles"]["seed"]) == (2, 0)
    config = config_from_dict(tomllib.loads((hub.root / "config.toml").read_text()))
    trained = config_from_dict(load_checkpoint(run / "best.pt")["config"])
    assert (config.model, config.tasks, config.schedule, config.optim) == (
        trained.model,
        trained.tasks,
        trained.schedule,
        trained.optim,
    )
    # local dataset folders are published by name only: where the trainer keeps its files is nobody's business
    assert config.data.labeled == [Path(p).name for p in trained.data.labeled]
    assert str(Path(trained.data.labeled[0]).parent) not in (hub.root / "config.toml").read_text()


def test_card_carries_tags_license_and_the_run_eval_json_as_model_index(run: Path, hub: FakeHub) -> None:
    push(run / "best.pt", license="cc-by-4.0")
    card = ModelCard.load(hub.root / "README.md")
    meta = card.data.to_dict()
    assert meta["tags"] == ["crowd-counting", "crowdrank", "density-estimation"] and meta["license"] == "cc-by-4.0"
    assert "datasets" not in meta  # the run trained on local folders only
    evaluation = json.loads((run / "eval.json").read_text())
    expected = {m: evaluation[m] for m in ("mae", "rmse", "nae", "game0", "game1", "game2", "game3")}
    expected = {m: v for m, v in expected.items() if v is not None}
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == pytest.approx(expected) and len(results) >= 5
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}
    assert "train predict me/tiny-counter photo.jpg --out counts/" in card.text
    assert f"| {evaluation['mae']:.3f} | {evaluation['rmse']:.3f} |" in card.text  # the metrics table
    assert "count_reg (weight 1, dropped at inference)" in card.text and "2 masks, scale 2" in card.text


def test_pushing_a_checkpoint_of_another_step_claims_no_metrics(run: Path, tmp_path: Path) -> None:
    import shutil

    import torch

    state = load_checkpoint(run / "best.pt")
    state["step"] = 1  # as last.pt of a run whose best.pt (and eval.json) is another step
    (tmp_path / "r").mkdir()
    torch.save(state, tmp_path / "r" / "last.pt")
    shutil.copy(run / "eval.json", tmp_path / "r" / "eval.json")
    push(tmp_path / "r" / "last.pt", dry_run=tmp_path / "dry")
    card = ModelCard.load(tmp_path / "dry" / "README.md")
    assert not card.data.eval_results and "No evaluation results" in card.text


def test_card_lists_hub_datasets_and_hides_local_paths(tmp_path: Path) -> None:
    table = {
        "name": "hubby",
        "model": {"arch": "test-tiny", "pretrained": "none"},
        "data": {"labeled": ["someone/shb-labeled", str(tmp_path)], "ranked": ["someone/keyword-ranked"]},
    }
    metadata = {"arch": "test-tiny", "output_stride": 4, "step": 7, "crowdrank_version": "0.1.0", "masksembles": None}
    card = ModelCard(model_card("me/m", config_from_dict(table), metadata, None, "mit"))
    assert card.data.to_dict()["datasets"] == ["someone/shb-labeled", "someone/keyword-ranked"]
    assert "https://huggingface.co/datasets/someone/shb-labeled" in card.text
    assert str(tmp_path) not in card.text and f"`{tmp_path.name}`" in card.text


def test_dry_run_files_are_byte_identical_to_the_upload(run: Path, hub: FakeHub, tmp_path: Path) -> None:
    push(run / "best.pt", dry_run=tmp_path / "dry")
    assert hub.calls == []  # a dry run talks to nobody
    push(run / "best.pt")
    dry = {name: (tmp_path / "dry" / name).read_bytes() for name in UPLOAD_FILES}
    assert dry == {name: (hub.root / name).read_bytes() for name in UPLOAD_FILES}
    assert sorted(p.name for p in (tmp_path / "dry").iterdir()) == sorted(UPLOAD_FILES)


def test_missing_token_fails_before_the_checkpoint_is_even_read(offline: None, tmp_path: Path) -> None:
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")  # reading it would be a ModelError
    with pytest.raises(HubError, match=r"HF_TOKEN.*hf auth login.*--dry-run"):
        push(tmp_path / "broken.pt")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        push(tmp_path / "broken.pt", dry_run=tmp_path / "dry")  # a dry run needs no token: it gets to the file
    assert not (tmp_path / "dry").exists()


def test_offline_push_fails_before_the_checkpoint_is_read(
    offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")  # reading it would be a ModelError
    with pytest.raises(HubError, match=r"HF_HUB_OFFLINE is set.*--dry-run OUT"):
        push(tmp_path / "broken.pt")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(HubError, match=r"cannot reach the Hugging Face Hub .*cannot resolve huggingface.co"):
        push(tmp_path / "broken.pt")


def test_upload_failure_becomes_a_hub_error(run: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(HfApi, "create_commit", refuse)
    with pytest.raises(HubError, match=r"upload to https://huggingface.co/me/tiny-counter .*failed") as err:
        push(run / "best.pt")
    assert "ConnectionError: connection reset by peer" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"repo_id": "no-slash"}, "--repo-id"),
        ({"revision": "my branch"}, "--revision"),
        ({"license": "CC BY 4.0"}, "--license"),
    ],
)
def test_config_names_the_bad_flag(run: Path, kwargs: dict[str, Any], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        PushConfig(run / "best.pt", kwargs.pop("repo_id", "me/m"), **kwargs)


def test_config_refuses_a_missing_checkpoint_and_a_non_empty_dry_run_folder(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CHECKPOINT .* does not exist"):
        PushConfig(tmp_path / "none.pt", "me/m")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--dry-run"):
        PushConfig(run / "best.pt", "me/m", dry_run=tmp_path / "out")


# -- the way back: a pushed folder or a Hub id as CKPT -----------------------------------------------------------


def test_predict_and_eval_of_the_pushed_folder_equal_the_original_checkpoint(
    run: Path, blob_data: dict[str, Path], tmp_path: Path
) -> None:
    push(run / "best.pt", dry_run=tmp_path / "dry")
    images = [picture(tmp_path / f"p{i}.png", i) for i in range(2)]
    original = counts(run / "best.pt", images, tmp_path / "a")
    assert counts(tmp_path / "dry", images, tmp_path / "b") == pytest.approx(original, rel=1e-6)
    assert len(set(original)) == 2  # two different pictures, two different counts: the comparison means something

    def evaluate(ckpt: Path, out: Path) -> dict[str, Any]:
        return evaluate_checkpoint(EvalConfig(ckpt, str(blob_data["labeled"]), "test", out, "cpu"), False)

    before, after = evaluate(run / "best.pt", tmp_path / "e1"), evaluate(tmp_path / "dry", tmp_path / "e2")
    assert after["mae"] == pytest.approx(before["mae"], rel=1e-6) and after["step"] == before["step"] == 2
    rows = list(csv.DictReader((tmp_path / "e2" / "images.csv").open()))
    assert len(rows) == 4 and math.isfinite(float(rows[0]["predicted"]))


def test_a_hub_id_is_downloaded_with_its_revision_and_loaded(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    push(run / "best.pt", dry_run=tmp_path / "dry")
    asked: list[tuple[str, Any, Any]] = []

    def snapshot_download(repo_id: str, **kwargs: Any) -> str:
        asked.append((repo_id, kwargs.get("revision"), kwargs.get("allow_patterns")))
        return str(tmp_path / "dry")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    image = [picture(tmp_path / "p.png", 5)]
    assert counts("me/tiny-counter@v1", image, tmp_path / "h") == pytest.approx(
        counts(run / "best.pt", image, tmp_path / "o"), rel=1e-6
    )
    assert asked == [("me/tiny-counter", "v1", list(UPLOAD_FILES))]


def test_an_unreachable_hub_reads_the_cached_model_without_trying_the_network(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # offline without saying so
    push(run / "best.pt", dry_run=tmp_path / "dry")
    local_only: list[bool] = []

    def snapshot_download(repo_id: str, **kwargs: Any) -> str:
        local_only.append(kwargs.get("local_files_only", False))
        if repo_id == "me/cached":
            return str(tmp_path / "dry")
        raise huggingface_hub.errors.LocalEntryNotFoundError("not in the cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert read_inference_state("me/cached")["step"] == load_checkpoint(run / "best.pt")["step"]
    with pytest.raises(HubError, match=r"'me/other'.*not in the local Hugging Face cache and cannot reach the Hug"):
        read_inference_state("me/other")
    assert local_only == [True, True]


def test_an_uncached_hub_id_offline_is_a_hub_error_naming_the_id_and_the_fix(offline: None) -> None:
    with pytest.raises(HubError, match=r"'nobody/not-cached-counter'.*HF_HUB_OFFLINE.*train push --dry-run"):
        read_inference_state("nobody/not-cached-counter")


def test_ckpt_forms_are_told_apart_before_any_work(run: Path, tmp_path: Path) -> None:
    assert hub_reference("me/model@v2") == ("me/model", "v2") and hub_reference("me/model") == ("me/model", None)
    assert hub_reference("runs/best.pt") is None  # a missing local checkpoint, not a repo called best.pt
    assert hub_reference(str(run)) is None  # an existing path is never a Hub id
    check_checkpoint_argument(run / "best.pt")
    check_checkpoint_argument("me/model")
    with pytest.raises(ConfigError, match="does not exist"):
        check_checkpoint_argument("runs/best.pt")
    with pytest.raises(ConfigError, match="without crowdrank.json"):
        check_checkpoint_argument(run)


def test_a_pushed_folder_with_a_missing_file_is_a_model_error(run: Path, tmp_path: Path) -> None:
    push(run / "best.pt", dry_run=tmp_path / "dry")
    (tmp_path / "dry" / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="model.safetensors missing"):
        read_inference_state(tmp_path / "dry")


# -- CLI wiring -------------------------------------------------------------------------------------------------


def test_cli_push_dry_run_then_predict_the_folder_and_map_errors(
    run: Path, tmp_path: Path, offline: None, blob_data: dict[str, Path]
) -> None:
    from train.cli import app

    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
    dry = tmp_path / "dry"
    ok = runner.invoke(
        app, ["push", str(run / "best.pt"), "--repo-id", "me/m", "--dry-run", str(dry), "--license", "mit"]
    )
    assert ok.exit_code == 0, ok.output
    assert "would push (dry run)" in ok.output and ModelCard.load(dry / "README.md").data.license == "mit"
    image = picture(tmp_path / "p.png", 1)
    predicted = runner.invoke(app, ["predict", str(dry), str(image), "--out", str(tmp_path / "p"), "--device", "cpu"])
    assert predicted.exit_code == 0, predicted.output
    assert (tmp_path / "p" / "counts.csv").is_file()
    bad = runner.invoke(app, ["push", str(run / "best.pt"), "--repo-id", "nope"])
    assert bad.exit_code == 2 and "--repo-id" in bad.output
    no_token = runner.invoke(app, ["push", str(run / "best.pt"), "--repo-id", "me/m"])
    assert no_token.exit_code == 1 and "HF_TOKEN" in no_token.output
    offline_id = runner.invoke(app, ["eval", "nobody/uncached", "--data", str(blob_data["labeled"])])
    assert offline_id.exit_code == 1 and "nobody/uncached" in offline_id.output


# -- edges found by mutation: what the reader refuses, what the upload says, what the card and config hide -------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "someone-elses-model"}, r"format 'someone-elses-model' version 1; this crowdrank reads"),
        ({"format_version": 2}, r"version 2; this crowdrank reads 'crowdrank-density-model' up to version 1 \(upgrade"),
        ({"arch": "vgg16-density"}, r"crowdrank.json says arch 'vgg16-density', config.toml 'test-tiny'"),
        ({"format_version": "1"}, r"version 1; this crowdrank reads"),  # a str: int() of "x" was a traceback
        ({"step": "x"}, r"crowdrank.json is damaged or was not written by crowdrank: its 'step' is str 'x'"),
        ({"density_scale": None}, r"its 'density_scale' is NoneType None, expected a number > 0"),
        ({"output_stride": 0}, r"its 'output_stride' is int 0, expected an integer >= 1"),
    ],
)
def test_a_pushed_folder_of_another_format_or_arch_is_refused(
    run: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    push(run / "best.pt", dry_run=tmp_path / "dry")
    metadata = json.loads((tmp_path / "dry" / "crowdrank.json").read_text())
    (tmp_path / "dry" / "crowdrank.json").write_text(json.dumps({**metadata, **change}))
    with pytest.raises(ModelError, match=message):
        read_inference_state(tmp_path / "dry")


def test_a_pushed_folder_whose_metadata_is_not_an_object_or_lacks_a_field_is_a_model_error(
    run: Path, tmp_path: Path
) -> None:
    """crowdrank.json holding a list was an AttributeError traceback, one without "step" a KeyError."""
    push(run / "best.pt", dry_run=tmp_path / "dry")
    metadata = json.loads((tmp_path / "dry" / "crowdrank.json").read_text())
    (tmp_path / "dry" / "crowdrank.json").write_text("[]")
    with pytest.raises(ModelError, match=r"crowdrank.json holds a JSON list, not an object; Fix: write the folder"):
        read_inference_state(tmp_path / "dry")
    del metadata["step"]
    (tmp_path / "dry" / "crowdrank.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match=r"crowdrank.json is damaged or was not written by crowdrank: its 'step' is"):
        read_inference_state(tmp_path / "dry")


def test_a_pushed_folder_reads_back_the_checkpoint_scale_stride_and_step(run: Path, tmp_path: Path) -> None:
    import stat

    push(run / "best.pt", dry_run=tmp_path / "dry")
    assert {stat.S_IMODE((tmp_path / "dry" / n).stat().st_mode) for n in UPLOAD_FILES} == {0o644}  # world-readable
    state, original = read_inference_state(tmp_path / "dry"), load_checkpoint(run / "best.pt")
    assert (state["density_scale"], state["output_stride"], state["step"]) == (
        original["density_scale"],
        original["output_stride"],
        original["step"],
    )
    assert original["density_scale"] != 1.0 and state["exported"] is True


def test_the_commit_message_names_the_step(run: Path, hub: FakeHub) -> None:
    push(run / "best.pt")
    assert hub.call("create_commit")[0]["commit_message"] == "train push: density model at step 2"


def test_every_local_data_path_is_published_by_name_only() -> None:
    from train.hub import public_config

    table = {
        "model": {"arch": "test-tiny", "pretrained": "none"},
        "data": {
            "labeled": ["/home/me/data/shb", "someone/shb"],
            "ranked": ["/home/me/ranksets/kw"],
            "eval": "/home/me/data/shb",
            "unlabeled": ["/home/me/pools/real"],
            "depth_dir": "/home/me/depth",
        },
    }
    data = public_config(config_from_dict(table)).data
    assert (data.labeled, data.ranked, data.eval) == (["shb", "someone/shb"], ["kw"], "shb")
    assert (data.unlabeled, data.depth_dir) == (["real"], "depth")


def test_an_existing_folder_named_like_a_hub_id_is_a_local_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "me").mkdir()
    (tmp_path / "me" / "model").write_bytes(b"")  # a local file called me/model, not the Hub repo me/model
    monkeypatch.chdir(tmp_path)
    assert hub_reference("me/model") is None and hub_reference("me/other") == ("me/other", None)


def test_the_card_names_the_paradigm_tasks_split_and_step(tmp_path: Path) -> None:
    metadata = {"arch": "test-tiny", "output_stride": 4, "step": 7, "crowdrank_version": "0.1.0", "masksembles": None}
    table = {"model": {"arch": "test-tiny", "pretrained": "none"}, "data": {"labeled": ["a"], "ranked": ["b"]}}
    table["schedule"] = {"paradigm": "multitask", "steps": 30}
    table["tasks"] = {"rank": {"weight": 2.5, "margin": 0.5}}
    evaluation = {"mae": 1.5, "split": "validation"}
    card = ModelCard(model_card("me/m", config_from_dict(table), metadata, evaluation, "mit"))
    assert "| tasks | count (weight 1), rank (weight 2.5, margin 0.5) |" in card.text
    assert "| checkpoint step | 7 of 30 |" in card.text
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}
    table["schedule"] = {"paradigm": "count-only"}
    alone = ModelCard(model_card("me/m", config_from_dict(table), metadata, None, "mit"))
    assert "| tasks | count (weight 1) |" in alone.text
