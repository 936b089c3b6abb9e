"""CLIP filter: the real open_clip path on a tiny random model, the scoring maths, caching and offline errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harvest.clip_filter import (
    CROWD_CLASSES,
    NEGATIVE_CLASSES,
    TEMPLATES,
    FilterConfig,
    class_embeddings,
    crowd_scores,
    filter_pool,
)
from harvest.dedup_pool import DedupConfig, dedup_pool
from harvest.embed import EmbeddingCache, load_clip
from harvest.errors import ConfigError, ModelUnavailableError
from harvest.pool import Pool
from tests.harvest.conftest import TINY
from tests.harvest.imagegen import add_pictures, edited_copies, scene


@pytest.fixture
def pool(tmp_path: Path) -> Pool:
    pool = Pool.create(tmp_path / "pool")
    pictures = {f"scene{seed}": scene(seed, 96, 72) for seed in range(5)}
    pictures["scene0-resized"] = edited_copies(scene(0, 96, 72))["resized"]
    add_pictures(pool, pictures)
    broken_id, broken_path = pool.store_image(b"\xff\xd8\xff\xe0 truncated", "jpg")
    pool.append_rows([{"id": broken_id, "url": "http://b/broken.jpg", "status": "ok", "path": broken_path}])
    return pool


def config(pool: Pool, checkpoint: Path, **overrides) -> FilterConfig:
    options = {"model": TINY, "checkpoint": checkpoint, "device": "cpu", "workers": 0, "batch_size": 4}
    options.update(overrides)
    return FilterConfig(pool.root, progress=False, **options)


def test_crowd_score_is_the_softmax_mass_of_the_crowd_classes() -> None:
    classes = np.eye(4, dtype=np.float32)  # classes 0, 1 are crowd; 2, 3 are negatives
    images = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0.5, 0, 0.5, 0]], dtype=np.float32)
    scores = crowd_scores(images, classes, crowd_classes=2)
    assert scores[0] > 0.99 and scores[1] < 0.01
    assert scores[2] == pytest.approx(np.exp(50) / (np.exp(50) * 2 + 2), rel=1e-6)  # tie between classes 0 and 2


def test_class_embeddings_match_open_clips_zero_shot_classifier(tiny_checkpoint: Path) -> None:
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    bundle = load_clip(TINY, None, tiny_checkpoint, device="cpu")
    names = list(CROWD_CLASSES[:3]) + list(NEGATIVE_CLASSES[:2])
    ours = class_embeddings(bundle.model, bundle.tokenizer, names, TEMPLATES, bundle.device)
    reference = build_zero_shot_classifier(bundle.model, bundle.tokenizer, names, TEMPLATES, device="cpu")
    assert ours.shape == (5, 32)
    np.testing.assert_allclose(ours, reference.T.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_filter_scores_every_picture_and_keeps_those_above_the_threshold(pool: Pool, tiny_checkpoint: Path) -> None:
    summary = filter_pool(config(pool, tiny_checkpoint, threshold=0.5, workers=1))
    df = pool.read_index().set_index("url")
    scored = df[df["clip_score"].notna()]
    assert len(scored) == 6 and summary.embedded == 6 and summary.model_loaded
    assert scored["clip_score"].between(0, 1).all()
    assert (scored["kept"] == (scored["clip_score"] >= 0.5)).all()
    assert scored["clip_model"].str.startswith(f"{TINY}__ckpt-tiny-").all()
    broken = df.loc["http://b/broken.jpg"]
    assert broken["status"] == "decode_error" and not broken["kept"] and summary.failed == 1
    cached_ids, embeddings = EmbeddingCache(pool.root, summary.model).load()
    assert sorted(cached_ids) == sorted(scored["id"]) and embeddings.shape == (6, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)


def test_changing_the_threshold_rescores_from_the_cache_without_loading_the_model(
    pool: Pool, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filter_pool(config(pool, tiny_checkpoint, threshold=0.5))
    first = pool.read_index().set_index("url")["clip_score"]
    median = float(first.dropna().median())

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every embedding is cached")

    monkeypatch.setattr("harvest.embed.load_clip", no_model)
    summary = filter_pool(config(pool, tiny_checkpoint, threshold=median))
    df = pool.read_index().set_index("url")
    assert not summary.model_loaded and summary.from_cache == 6
    pd.testing.assert_series_equal(df["clip_score"], first)
    assert df["kept"].sum() == (first >= median).sum() == summary.above_threshold


def test_missing_weights_name_the_embeddings_the_pool_already_has(
    pool: Pool, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-scoring offline with other flags than the first run's: the error says which flags need no model."""
    import huggingface_hub.constants

    first = filter_pool(config(pool, tiny_checkpoint, threshold=0.5))
    monkeypatch.setattr("harvest.embed.unreachable", lambda *a, **k: "cannot resolve huggingface.co")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelUnavailableError, match="not in the local cache") as info:
        filter_pool(config(pool, None, model="ViT-B-32", pretrained="laion2b_s34b_b79k", threshold=0.6))
    assert f"embeddings cached for {first.model}" in str(info.value) and "--checkpoint" in str(info.value)


def test_filter_after_dedup_keeps_only_rows_that_pass_both(pool: Pool, tiny_checkpoint: Path) -> None:
    dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    filter_pool(config(pool, tiny_checkpoint, threshold=0.0))
    df = pool.read_index().set_index("url")
    assert df.loc["file:///scene0-resized.jpg", "dup_of"] == df.loc["file:///scene0.jpg", "id"]
    assert not df.loc["file:///scene0-resized.jpg", "kept"]
    assert df.loc["file:///scene0.jpg", "kept"] and df["kept"].sum() == 5


def test_missing_weights_offline_fail_at_once_saying_how_to_supply_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(
        "harvest.embed.unreachable", lambda *a, **k: "cannot resolve huggingface.co"
    )  # never touch the network in tests
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelUnavailableError, match="--checkpoint") as info:
        load_clip("ViT-B-32", "laion2b_s34b_b79k", None, device="cpu")
    assert "cannot be downloaded (cannot resolve huggingface.co)" in str(info.value)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        load_clip("ViT-B-32", "laion2b_s34b_b79k", None, device="cpu")


def test_unknown_model_or_tag_fail_with_the_known_names() -> None:
    with pytest.raises(ConfigError, match="ViT-B-32"):
        load_clip("ViT-Nope", "laion2b_s34b_b79k", None)
    with pytest.raises(ConfigError, match="laion2b_s34b_b79k"):
        load_clip("ViT-B-32", "no-such-tag", None)


def test_a_checkpoint_that_does_not_fit_the_model_is_refused(tmp_path: Path) -> None:
    import torch

    torch.save({"state_dict": {"visual.proj": torch.zeros(3, 3)}}, tmp_path / "other.pt")
    with pytest.raises(ModelUnavailableError, match="other.pt") as info:
        load_clip(TINY, None, tmp_path / "other.pt", device="cpu")
    message = str(info.value)  # counted, not torch's list of every key of the model
    assert f"its weights are not those of {TINY} (" in message and "missing" in message
    assert "positional_embedding" not in message and len(message) < 400


def test_a_file_that_is_no_checkpoint_is_refused_in_one_line_without_torchs_unsafe_advice(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))  # a picture passed as --checkpoint
    with pytest.raises(ModelUnavailableError, match="photo.jpg") as info:
        load_clip(TINY, None, tmp_path / "photo.jpg", device="cpu")
    message = str(info.value)
    assert "is not a PyTorch checkpoint" in message and "--checkpoint" in message
    assert "weights_only" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("content", "said"),
    [(None, "is empty or cut short"), ({"state_dict": {}}, "holds no state dict"), ([1, 2], "holds no state dict")],
)
def test_an_empty_or_objectless_checkpoint_is_refused_saying_what_the_file_holds(
    tmp_path: Path, content: object, said: str
) -> None:
    """They were refused as "EOFError: ." and "StopIteration: .", which named nothing."""
    import torch

    path = tmp_path / "weights.pt"
    if content is None:
        path.write_bytes(b"")  # a download that never started
    else:
        torch.save(content, path)
    with pytest.raises(ModelUnavailableError, match="weights.pt") as info:
        load_clip(TINY, None, path, device="cpu")
    assert said in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [({"threshold": 1.5}, "--threshold"), ({"batch_size": 0}, "--batch-size"), ({"device": "gpu"}, "--device")],
)
def test_bad_options_fail_naming_the_flag(pool: Pool, tiny_checkpoint: Path, overrides: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        config(pool, tiny_checkpoint, **overrides)
    with pytest.raises(ConfigError, match="--checkpoint"):
        config(pool, pool.root / "missing.pt")


def test_cli_filter_wiring(pool: Pool, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from harvest.cli import app

    args = ["filter", str(pool.root), "--model", TINY, "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--workers", "0", "--threshold", "0.3"])
    assert result.exit_code == 0, result.output
    assert "embedded now" in result.output
    monkeypatch.setattr("harvest.embed.unreachable", lambda *a, **k: "cannot resolve huggingface.co")
    offline = CliRunner().invoke(app, ["filter", str(pool.root), "--device", "cpu"])
    assert offline.exit_code == 1 and "--checkpoint" in offline.output


def test_a_pool_without_stored_pictures_is_filtered_without_loading_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded for a pool with nothing to score")

    monkeypatch.setattr("harvest.embed.load_clip", no_model)
    empty = Pool.create(tmp_path / "empty")
    empty.append_rows([{"url": "http://x/a.jpg", "status": "http_404"}])
    summary = filter_pool(FilterConfig(empty.root, progress=False))
    assert summary.eligible == 0 and not summary.model_loaded
    assert pd.isna(empty.read_index().loc[0, "clip_score"])


def test_a_score_equal_to_the_threshold_is_kept_and_a_picture_found_twice_is_embedded_once(
    pool: Pool, tiny_checkpoint: Path
) -> None:
    from harvest.clip_filter import prompt_fingerprint

    first_row = pool.read_index().iloc[0]
    pool.append_rows([{"id": first_row["id"], "url": "http://b/again.jpg", "status": "ok", "path": first_row["path"]}])
    first = filter_pool(config(pool, tiny_checkpoint, threshold=0.5))
    assert first.eligible == 7 and first.embedded == 6  # the re-found bytes are not embedded a second time
    cache = EmbeddingCache(pool.root, first.model)
    cached_ids, embeddings = cache.load()
    assert sorted(cached_ids) == sorted(set(cached_ids))
    classes = cache.load_text(prompt_fingerprint(list(CROWD_CLASSES) + list(NEGATIVE_CLASSES), TEMPLATES))
    scores = crowd_scores(embeddings, classes, len(CROWD_CLASSES))  # as the filter computes them
    middle = int(np.argsort(scores)[len(scores) // 2])
    summary = filter_pool(config(pool, tiny_checkpoint, threshold=float(scores[middle])))
    df = pool.read_index()
    at_threshold = df[df["id"] == cached_ids[middle]]
    assert len(at_threshold) >= 1 and at_threshold["kept"].all()
    assert summary.above_threshold == int((scores >= scores[middle]).sum()) == len(scores) - len(scores) // 2
    again = df[df["id"] == first_row["id"]]
    assert len(again) == 2 and again["clip_score"].nunique() == 1


def test_no_pretrained_tag_and_no_checkpoint_fails_saying_how_to_name_the_weights(tmp_path: Path) -> None:
    for pretrained in (None, ""):
        with pytest.raises(ConfigError, match="pass --pretrained TAG .* or --checkpoint PATH"):
            FilterConfig(tmp_path, pretrained=pretrained)


def test_a_picture_that_failed_to_decode_is_scored_once_its_file_is_put_back(pool: Pool, tiny_checkpoint: Path) -> None:
    row = pool.read_index().set_index("url").loc["file:///scene3.jpg"]
    path = pool.path_of(row["path"])
    original = path.read_bytes()
    path.write_bytes(original[:150])
    filter_pool(config(pool, tiny_checkpoint))
    failed = pool.read_index().set_index("url").loc["file:///scene3.jpg"]
    assert failed["status"] == "decode_error" and failed["error"].startswith("stored file missing or damaged: ")

    path.write_bytes(original)
    summary = filter_pool(config(pool, tiny_checkpoint))
    again = pool.read_index().set_index("url").loc["file:///scene3.jpg"]
    assert (summary.revived, summary.embedded, summary.failed) == (1, 1, 0)
    broken = pool.read_index().set_index("url").loc["http://b/broken.jpg"]  # bytes that never decoded: not read again
    assert broken["status"] == "decode_error" and not broken["error"].startswith("stored file missing")
    assert again["status"] == "ok" and pd.isna(again["error"]) and again["clip_score"] >= 0
    assert again["kept"] == (again["clip_score"] >= 0.5)


def test_a_filter_killed_mid_run_keeps_what_it_saved_and_the_rerun_embeds_only_the_rest(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """kill -9 while the 8th of 12 pictures is being read (a FIFO no one writes: the run blocks there), after three
    saves of two pictures each; the rerun embeds the 6 not saved and scores exactly as an uninterrupted run."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    killed = Pool.create(tmp_path / "killed")
    add_pictures(killed, {f"scene{seed}": scene(seed, 96, 72) for seed in range(12)})
    shutil.copytree(killed.root, tmp_path / "whole")
    whole = Pool.open(tmp_path / "whole")
    blocking = killed.path_of(killed.read_index().set_index("url").loc["file:///scene7.jpg", "path"])
    original = blocking.read_bytes()
    blocking.unlink()
    os.mkfifo(blocking)
    df = killed.read_index()
    df["bytes"] = df["bytes"].astype(object).where(df["url"].ne("file:///scene7.jpg"), None)  # size unknown: else
    killed.rewrite(df)  # the filter's stat finds the 0-byte FIFO lost and never blocks reading it
    script = (
        "import sys; from pathlib import Path; from harvest.clip_filter import FilterConfig, filter_pool; "
        f"filter_pool(FilterConfig(Path(sys.argv[1]), model={TINY!r}, checkpoint=Path(sys.argv[2]), device='cpu', "
        "workers=0, batch_size=2, save_every=2, progress=False))"
    )
    repo = Path(__file__).resolve().parents[2]
    run = subprocess.Popen([sys.executable, "-c", script, str(killed.root), str(tiny_checkpoint)], cwd=repo)
    shards = killed.root / "embeddings"
    try:
        deadline = time.monotonic() + 120  # "gone wrong", not a speed bound: the run blocks at the FIFO for ever
        while len(list(shards.glob("*.shards/*.npz"))) < 3 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.poll() is None, "the filter run ended instead of blocking at the FIFO"
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    (tag,) = EmbeddingCache.tags(killed.root)
    saved_ids, _ = EmbeddingCache(killed.root, tag).load()
    assert len(saved_ids) == 6  # the three saves before the blocked batch: two pictures each

    blocking.unlink()
    blocking.write_bytes(original)
    rerun = filter_pool(config(killed, tiny_checkpoint, batch_size=2, save_every=2))
    assert (rerun.embedded, rerun.from_cache, rerun.eligible) == (6, 6, 12)
    assert not list(shards.glob("*.shards")) and EmbeddingCache(killed.root, tag).load()[1].shape == (12, 32)
    uninterrupted = filter_pool(config(whole, tiny_checkpoint))
    assert uninterrupted.embedded == 12
    resumed = killed.read_index().set_index("url")["clip_score"]
    expected = whole.read_index().set_index("url")["clip_score"].loc[resumed.index]
    np.testing.assert_allclose(resumed.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-6)


def test_a_picture_deleted_after_filter_is_no_longer_kept_though_its_embedding_is_cached(
    pool: Pool, tiny_checkpoint: Path
) -> None:
    filter_pool(config(pool, tiny_checkpoint, threshold=0.0))  # every decodable picture kept
    row = pool.read_index().set_index("url").loc["file:///scene2.jpg"]
    pool.path_of(row["path"]).unlink()
    summary = filter_pool(config(pool, tiny_checkpoint, threshold=0.0))
    lost = pool.read_index().set_index("url").loc["file:///scene2.jpg"]
    assert (summary.lost_files, summary.embedded, summary.model_loaded) == (1, 0, False)
    assert lost["status"] == "decode_error" and lost["error"].startswith("stored file missing or damaged: ")
    assert not lost["kept"] and "--retry-failed" in summary.notes()[0]


def test_the_summary_says_why_no_weights_were_loaded() -> None:
    from harvest.clip_filter import FilterSummary

    assert FilterSummary(model_loaded=True, embedded=3).weights_line() == "yes"
    assert FilterSummary(from_cache=5).weights_line() == "no (cached embeddings)"
    assert FilterSummary().weights_line() == "no (no pictures to score)"  # an empty pool: nothing was cached either
