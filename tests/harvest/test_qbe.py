"""harvest qbe: clip-retrieval k-NN and SerpApi Google Lens against the loopback server, the local backend on
embeddings the test provides, example loading (folder / dataset train split), the leakage guard and failures.

Saved responses: ``tests/harvest/data/clip_knn/`` (clip-retrieval ``/knn-service`` answer: a JSON list of
``url``/``caption``/``id``/``similarity``) and ``tests/harvest/data/google_lens/`` (SerpApi ``engine=google_lens``
answers: ``visual_matches``, the "no results" error and the invalid-key error).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from harvest.cli import app
from harvest.errors import ConfigError, FetchError, ModelUnavailableError, SourceError
from harvest.fetch import FetchConfig
from harvest.net import make_session
from harvest.pool import Pool
from harvest.qbe import QbeConfig, harvest_qbe
from harvest.qbe_examples import open_examples
from harvest.qbe_local import exact_knn
from harvest.sources import create_source
from harvest.sources.by_example import Example
from harvest.sources.clip_knn import ClipKnnSource, parse_knn_answer
from harvest.sources.google_lens import GoogleLensSource, parse_lens_answer
from tests.harvest.conftest import Reply, SeenRequest
from tests.harvest.imagegen import add_pictures, edited_copies, encode, scene, write_folder

DATA = Path(__file__).parent / "data"
JPEG = {"Content-Type": "image/jpeg"}
JSON = {"Content-Type": "application/json"}


def saved_json(source: str, name: str) -> Any:
    return json.loads((DATA / source / name).read_text())


def fetch_config(**overrides: object) -> FetchConfig:
    settings: dict[str, object] = dict(
        workers=2, host_rate=0, timeout=2.0, retries=0, min_side=8, allow_private_hosts=True, show_progress=False
    )
    settings.update(overrides)
    return FetchConfig(**settings)  # type: ignore[arg-type]


def picture(seed: int) -> bytes:
    return encode(scene(seed, 64, 48))


def knn_server(web, answers: dict[bytes, list[dict[str, Any]]]) -> str:
    """``POST /knn-service`` answering, in clip-retrieval's format, by the example picture it was sent."""

    def answer(request: SeenRequest) -> Reply:
        sent = base64.b64decode(json.loads(request.body)["image"])
        if sent not in answers:
            return Reply(500, b'{"message": "Internal Server Error"}', JSON)
        return Reply(200, json.dumps(answers[sent]).encode(), JSON)

    web.route("/knn-service", handler=answer)
    return web.base_url


def knn_bodies(web) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in web.requests if r.path == "/knn-service"]


def labeled_dataset(root: Path, splits: dict[str, dict[str, bytes]], source_urls: dict[str, str | None] | None = None):
    """A labeled-style dataset folder (image_id, image[, source_url]) written with save_to_disk."""
    import datasets

    columns = {"image_id": datasets.Value("string"), "image": datasets.Image()}
    if source_urls is not None:
        columns["source_url"] = datasets.Value("string")
    built = {}
    for split, images in splits.items():
        data: dict[str, list[Any]] = {
            "image_id": list(images),
            "image": [{"bytes": b, "path": None} for b in images.values()],
        }
        if source_urls is not None:
            data["source_url"] = [source_urls.get(i) for i in images]
        built[split] = datasets.Dataset.from_dict(data, features=datasets.Features(columns))
    datasets.DatasetDict(built).save_to_disk(str(root))
    return root


def qbe_config(out: Path, examples: Path | str, **overrides: Any) -> QbeConfig:
    options: dict[str, Any] = {"fetch": fetch_config()}
    options.update(overrides)
    return QbeConfig(out=out, examples=str(examples), **options)


# ------------------------------------------------------------------------------------------------ parsers


def test_knn_parser_keeps_order_and_scores_and_skips_results_without_an_http_url() -> None:
    matches, skipped = parse_knn_answer(saved_json("clip_knn", "knn_answer.json"), "IMG_1", "qbe")
    assert [m.candidate.url for m in matches] == [
        "https://upload.example.org/crowd1.jpg",
        "https://img.example.net/marathon.jpg",
        "http://photos.example.com/festival.png",
    ]
    assert [m.rank for m in matches] == [1, 2, 5]
    assert matches[0].similarity == pytest.approx(0.8312378525733948)
    assert matches[0].candidate.title == "Crowd at the Love Parade 2006" and matches[2].candidate.title is None
    assert {m.candidate.mode for m in matches} == {"qbe"} and {m.candidate.query for m in matches} == {"IMG_1"}
    assert skipped == {"no_image_url": 2}


def test_knn_parser_raises_on_the_back_ends_error_object() -> None:
    with pytest.raises(SourceError, match="Internal Server Error"):
        parse_knn_answer({"message": "Internal Server Error"}, "IMG_1", "qbe")


def test_lens_parser_takes_full_pictures_only_with_their_page_and_position() -> None:
    matches, skipped = parse_lens_answer(saved_json("google_lens", "visual_matches.json"), "IMG_1")
    assert [(m.rank, m.candidate.url) for m in matches] == [
        (1, "https://cdn.example.com/photos/times-square-crowd.jpg"),
        (3, "https://sports.example.org/img/stadium.jpg"),
    ]
    first = matches[0].candidate
    assert (first.page_url, first.title) == (
        "https://news.example.com/2024/12/times-square-crowd",
        "Crowd gathers in Times Square & waits",
    )
    assert (first.width, first.height, matches[1].candidate.width) == (1920, 1080, 1024)
    assert matches[0].similarity is None and skipped == {"thumbnail_only": 1}


def test_lens_no_results_is_an_empty_answer_but_another_error_is_a_source_error() -> None:
    assert parse_lens_answer(saved_json("google_lens", "no_results.json"), "IMG_1") == ([], {})
    with pytest.raises(SourceError, match="Invalid API key"):
        parse_lens_answer(saved_json("google_lens", "invalid_key.json"), "IMG_1")


def test_knn_request_body_carries_every_clip_retrieval_field() -> None:
    source = ClipKnnSource(endpoint="http://knn.example", index="my_index", aesthetic_score=9, aesthetic_weight=0.5)
    body = source.request_body(10, image="QUJD")
    assert body["image"] == "QUJD" and body["text"] is None and body["embedding_input"] is None
    assert (body["modality"], body["indice_name"], body["num_images"], body["num_result_ids"]) == (
        "image",
        "my_index",
        10,
        30,  # three neighbours per result wanted: deduplication and the safety filters drop some
    )
    assert (body["deduplicate"], body["use_safety_model"], body["use_violence_detector"]) == (True, True, True)
    assert (body["aesthetic_score"], body["aesthetic_weight"]) == (9, 0.5)


# ------------------------------------------------------------------------------------------------ k-NN maths


def test_exact_knn_over_several_chunks_equals_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 8)).astype(np.float32)
    queries = rng.normal(size=(3, 8)).astype(np.float32)
    sims, idx = exact_knn(queries, base, k=5, chunk=7)
    full = queries @ base.T
    assert idx.tolist() == np.argsort(-full, axis=1)[:, :5].tolist()
    assert np.allclose(sims, np.take_along_axis(full, idx, axis=1))
    assert exact_knn(queries, base[:3], k=5)[1].shape == (3, 3)  # fewer pictures than k: all of them


# ------------------------------------------------------------------------------------------------ config and keys


def test_clip_knn_without_endpoint_fails_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--endpoint clip-knn=URL"):
        qbe_config(tmp_path / "pool", tmp_path, sources=("clip-knn",))
    with pytest.raises(ConfigError, match=r"--endpoint clip-knn=URL"):
        create_source("clip-knn")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sources": ("local",)}, "--from-pool"),
        ({"sources": ("bing",)}, "clip-knn, google-lens, local"),
        ({"sources": ("google-lens",), "per_query": 0}, "--per-query"),
        ({"sources": ("google-lens",), "knn_query": "text"}, "--knn-query"),
        ({"sources": ("google-lens",), "public_url_prefix": "ftp://x/"}, "--public-url-prefix"),
    ],
)
def test_bad_options_fail_naming_the_flag(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        qbe_config(tmp_path / "pool", tmp_path, **overrides)


def test_from_pool_cannot_be_the_output_pool(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="another pool"):
        qbe_config(tmp_path / "pool", tmp_path, sources=("local",), from_pool=tmp_path / "pool")


def test_google_lens_without_key_fails_before_the_pool_exists(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SERPAPI_API_KEY", raising=False)
    folder = write_folder(tmp_path / "examples", {"IMG_1": scene(1, 64, 48)})
    with pytest.raises(ConfigError, match="SERPAPI_API_KEY"):
        harvest_qbe(qbe_config(tmp_path / "pool", folder, sources=("google-lens",)))
    assert not (tmp_path / "pool").exists()


def test_missing_clip_weights_offline_fail_before_the_pool_exists(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = write_folder(tmp_path / "examples", {"IMG_1": scene(1, 64, 48)})
    Pool.create(tmp_path / "candidates")
    config = qbe_config(tmp_path / "pool", folder, sources=("local",), from_pool=tmp_path / "candidates", device="cpu")
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        harvest_qbe(config)
    assert not (tmp_path / "pool").exists()


def test_missing_examples_are_named_before_missing_clip_weights(tmp_path: Path, monkeypatch) -> None:
    """Both are wrong: the user hears first about the examples (cheap to check), not the model download."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    Pool.create(tmp_path / "candidates")
    missing = tmp_path / "no-such-examples"
    config = qbe_config(tmp_path / "pool", missing, sources=("local",), from_pool=tmp_path / "candidates", device="cpu")
    with pytest.raises(ConfigError, match="no-such-examples"):
        harvest_qbe(config)
    assert not (tmp_path / "pool").exists()


# ------------------------------------------------------------------------------------------------ examples


def test_folder_examples_that_are_no_pictures_are_skipped_with_a_note_before_any_search(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "ex", {"IMG_1": scene(1, 32, 24)})
    (folder / "IMG_2.jpg").write_bytes(b"")
    (folder / "IMG_3.jpg").write_text("<html>a saved web page</html>")
    with open_examples(str(folder)) as example_set:
        assert [e.example_id for e in example_set.examples] == ["IMG_1"]
        assert example_set.notes == [
            "example 'IMG_2' skipped: it is empty (0 bytes)",
            "example 'IMG_3' skipped: its bytes are not a known picture format",
        ]
    (folder / "IMG_1.jpg").write_bytes(b"")
    with pytest.raises(ConfigError, match="none of its pictures can be read"), open_examples(str(folder)):
        pass


def test_folder_examples_are_every_picture_with_ids_and_public_urls(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "ex", {"IMG_1": scene(1, 32, 24), "IMG_2": scene(2, 32, 24)})
    write_folder(folder / "more", {"IMG 3": scene(3, 32, 24)})
    (folder / "notes.txt").write_text("not a picture")
    with open_examples(str(folder), "https://data.example.org/shb") as example_set:
        found = [(e.example_id, e.public_url) for e in example_set.examples]
    assert found == [
        ("IMG_1", "https://data.example.org/shb/IMG_1.jpg"),
        ("IMG_2", "https://data.example.org/shb/IMG_2.jpg"),
        ("more/IMG 3", "https://data.example.org/shb/more/IMG%203.jpg"),
    ]
    assert example_set.test_split_of is None


def test_dataset_examples_are_the_train_split_and_the_test_split_goes_to_the_guard(tmp_path: Path) -> None:
    root = labeled_dataset(
        tmp_path / "shb", {"train": {"IMG_1": picture(1), "IMG_2": picture(2)}, "test": {"IMG_9": picture(9)}}
    )
    with open_examples(str(root)) as example_set:
        ids = [e.example_id for e in example_set.examples]
        assert [e.path.read_bytes() for e in example_set.examples] == [picture(1), picture(2)]
        written = example_set.examples[0].path
    assert ids == ["IMG_1", "IMG_2"] and example_set.test_split_of == str(root)
    assert example_set.examples[0].file_name == "IMG_1.jpg" and not written.exists()  # temporary files are gone


# ------------------------------------------------------------------------------------------------ clip-knn


def test_a_url_found_by_two_examples_is_fetched_once_with_both_in_found_by(web, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "ex", {"IMG_1": scene(1, 64, 48), "IMG_2": scene(2, 64, 48)})
    url = {
        name: web.route(f"/img/{name}.jpg", body=picture(seed), headers=JPEG)
        for name, seed in [("a", 11), ("b", 12), ("c", 13)]
    }
    endpoint = knn_server(web, {
        (folder / "IMG_1.jpg").read_bytes(): [
            {"url": url["a"], "caption": "a", "id": 1, "similarity": 0.91},
            {"url": url["b"], "caption": "b", "id": 2, "similarity": 0.85},
        ],
        (folder / "IMG_2.jpg").read_bytes(): [
            {"url": url["b"], "caption": "b", "id": 2, "similarity": 0.88},
            {"url": url["c"], "caption": "c", "id": 3, "similarity": 0.80},
        ],
    })  # fmt: skip
    config = qbe_config(tmp_path / "pool", folder, sources=("clip-knn",), endpoints={"clip-knn": endpoint}, per_query=2)
    summary = harvest_qbe(config)

    df = Pool.open(tmp_path / "pool").read_index().set_index("url")
    assert sorted(df.index) == sorted(url.values()) and web.hits("/img/b.jpg") == 1
    shared = df.loc[url["b"]]
    assert list(shared["found_by"]) == ["clip-knn:IMG_1", "clip-knn:IMG_2"]
    assert (shared["mode"], shared["query"], shared["rank"]) == ("qbe", "IMG_1", 2)
    assert shared["similarity"] == pytest.approx(0.85) and df["similarity"].dtype == np.float64
    assert df.loc[url["c"], "similarity"] == pytest.approx(0.80) and df.loc[url["a"], "title"] == "a"
    assert (summary.searches, summary.matches, summary.fetch.ok, summary.fetch.repeats) == (2, 4, 3, 1)
    bodies = knn_bodies(web)
    assert [(b["num_images"], b["modality"], b["indice_name"]) for b in bodies] == [(2, "image", "laion5B-L-14")] * 2


def test_an_example_the_back_end_refuses_is_a_counted_failure_and_the_others_go_on(web, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "ex", {"IMG_1": scene(1, 64, 48), "IMG_2": scene(2, 64, 48)})
    good = web.route("/img/a.jpg", body=picture(11), headers=JPEG)
    endpoint = knn_server(
        web, {(folder / "IMG_2.jpg").read_bytes(): [{"url": good, "caption": "", "id": 1, "similarity": 0.7}]}
    )
    summary = harvest_qbe(
        qbe_config(tmp_path / "pool", folder, sources=("clip-knn",), endpoints={"clip-knn": endpoint})
    )
    assert summary.failures == {("clip-knn", "search_error"): 1} and summary.searches == 1
    assert (
        summary.fetch.search_failures[0].startswith("clip-knn IMG_1: FetchError")
        and "HTTP 500" in summary.fetch.search_failures[0]
    )
    assert Pool.open(tmp_path / "pool").read_index()["url"].tolist() == [good]


def test_a_killed_runs_rows_get_their_similarity_on_the_next_run(web, tmp_path: Path) -> None:
    from harvest.collect import collect
    from harvest.sources.base import Candidate

    folder = write_folder(tmp_path / "ex", {"IMG_1": scene(1, 64, 48)})
    url = web.route("/img/a.jpg", body=picture(11), headers=JPEG)
    endpoint = knn_server(
        web, {(folder / "IMG_1.jpg").read_bytes(): [{"url": url, "caption": "", "id": 1, "similarity": 0.66}]}
    )
    pool = Pool.create(tmp_path / "pool")  # what a run killed after its fetch, before its last rewrite, leaves
    collect(pool, [Candidate(url=url, source="clip-knn", query="IMG_1", mode="qbe")], fetch_config())
    assert "similarity" not in pool.read_index().columns

    again = harvest_qbe(qbe_config(tmp_path / "pool", folder, sources=("clip-knn",), endpoints={"clip-knn": endpoint}))
    row = Pool.open(tmp_path / "pool").read_index().iloc[0]
    assert (again.fetch.rows, again.fetch.known, web.hits("/img/a.jpg")) == (0, 1, 1)
    assert row["similarity"] == pytest.approx(0.66) and row["rank"] == 1


def qbe_answering_a_test_copy(web, tmp_path: Path) -> tuple[Path, str, str, Any]:
    """A labeled set (train IMG_1, test IMG_9) and a clip-knn back end answering IMG_1 with a resized copy of IMG_9
    and an unrelated picture; runs qbe into ``tmp_path / "pool"``: (set root, copy URL, other URL, summary)."""
    test_image = scene(9, 96, 72)
    root = labeled_dataset(tmp_path / "shb", {"train": {"IMG_1": picture(1)}, "test": {"IMG_9": encode(test_image)}})
    copy = web.route("/img/copy.jpg", body=encode(edited_copies(test_image)["resized"]), headers=JPEG)
    other = web.route("/img/other.jpg", body=picture(12), headers=JPEG)
    answer = [
        {"url": copy, "caption": "", "id": 1, "similarity": 0.9},
        {"url": other, "caption": "", "id": 2, "similarity": 0.8},
    ]
    endpoint = knn_server(web, {picture(1): answer})
    summary = harvest_qbe(qbe_config(tmp_path / "pool", root, sources=("clip-knn",), endpoints={"clip-knn": endpoint}))
    return root, copy, other, summary


def test_train_examples_only_are_sent_and_a_copy_of_a_test_image_is_marked_leak(web, tmp_path: Path) -> None:
    root, copy, other, summary = qbe_answering_a_test_copy(web, tmp_path)

    assert [base64.b64decode(b["image"]) for b in knn_bodies(web)] == [picture(1)]  # IMG_9 was never a query
    df = Pool.open(tmp_path / "pool").read_index().set_index("url")
    assert (df.loc[copy, "leak_of"], df.loc[copy, "kept"]) == ("shb/IMG_9", False)
    assert pd.isna(df.loc[other, "leak_of"]) and pd.isna(df.loc[other, "kept"]) and df.loc[other, "phash"]
    assert (summary.leaks, summary.exclusion_images) == (1, 1)
    commands = json.loads((tmp_path / "pool" / "pool.json").read_text())["commands"]
    assert commands[-1]["command"] == "qbe" and commands[-1]["leakage_guard"] == [str(root)]


def test_dedup_clear_leaks_drops_a_wrong_exclude_like_and_keeps_the_qbe_guards_marks(web, tmp_path: Path) -> None:
    from harvest.dedup_pool import DedupConfig, dedup_pool

    root, copy, other, _ = qbe_answering_a_test_copy(web, tmp_path)
    pool = Pool.open(tmp_path / "pool")
    wrong = write_folder(tmp_path / "wrong", {"x": scene(12, 64, 48).resize((48, 36))})  # not an evaluation set
    dedup_pool(DedupConfig(pool.root, exclude_like=(str(wrong),), progress=False, workers=1))
    df = pool.read_index().set_index("url")
    assert df.loc[[copy, other], "leak_of"].tolist() == ["shb/IMG_9", "wrong/x"]
    assert df.loc[[copy, other], "leak_by"].tolist() == ["qbe", "dedup"] and not df.loc[[copy, other], "kept"].any()

    summary = dedup_pool(DedupConfig(pool.root, clear_leaks=True, progress=False, workers=1))
    df = pool.read_index().set_index("url")
    assert (df.loc[copy, "leak_of"], df.loc[copy, "kept"]) == ("shb/IMG_9", False)  # the guard's mark stays
    assert pd.isna(df.loc[other, "leak_of"]) and df.loc[other, "kept"]
    assert (summary.leaks_cleared, summary.leaks_kept_guard) == (1, 1)
    assert "cleared 1 earlier leak_of mark(s) and kept 1 made by `harvest qbe`'s test-split guard" in summary.notes()[0]

    everything = dedup_pool(DedupConfig(pool.root, clear_all_leaks=True, progress=False, workers=1))
    df = pool.read_index().set_index("url")
    assert df["leak_of"].isna().all() and df.loc[copy, "kept"] and df["leak_by"].isna().all()
    assert (everything.leaks_cleared, everything.leaks_kept_guard) == (1, 0)


# ------------------------------------------------------------------------------------------------ google-lens


def test_google_lens_asks_with_the_public_url_and_an_example_without_one_is_a_failure(
    web, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("SERPAPI_API_KEY", "serp-secret")
    answer = saved_json("google_lens", "visual_matches.json")
    answer["visual_matches"][0]["image"] = web.route("/img/times.jpg", body=picture(21), headers=JPEG)
    answer["visual_matches"][2]["image"] = web.route("/img/stadium.jpg", body=picture(22), headers=JPEG)
    web.route("/search.json", body=json.dumps(answer), headers=JSON)
    public = "https://data.example.org/shb/train/IMG_1.jpg"
    root = labeled_dataset(tmp_path / "shb", {"train": {"IMG_1": picture(1), "IMG_2": picture(2)}}, {"IMG_1": public})
    config = qbe_config(
        tmp_path / "pool", root, sources=("google-lens",), endpoints={"google-lens": web.url("/search.json")}
    )
    summary = harvest_qbe(config)

    asked = [parse_qs(r.query) for r in web.requests if r.path == "/search.json"]
    assert asked == [{"engine": ["google_lens"], "url": [public], "api_key": ["serp-secret"]}]
    assert summary.failures == {("google-lens", "no_public_url"): 1} and "IMG_2" in summary.fetch.search_failures[0]
    df = Pool.open(tmp_path / "pool").read_index().sort_values("rank")
    assert df["rank"].tolist() == [1, 3] and df["similarity"].isna().all()
    assert df["page_url"].tolist() == [
        "https://news.example.com/2024/12/times-square-crowd",
        "https://sports.example.org/stadium",
    ]
    assert summary.notes == [
        "--examples " + str(root) + " has no test split: the leakage guard has only --exclude-like"
    ]


def test_google_lens_invalid_key_is_a_fetch_error_without_the_key(web, monkeypatch) -> None:
    monkeypatch.setenv("SERPAPI_API_KEY", "serp-secret")
    web.route("/search.json", status=401, body=(DATA / "google_lens" / "invalid_key.json").read_bytes(), headers=JSON)
    source = GoogleLensSource(endpoint=web.url("/search.json"), timeout=2.0)
    example = Example("IMG_1", Path("IMG_1.jpg"), "IMG_1.jpg", "https://data.example.org/IMG_1.jpg")
    with pytest.raises(FetchError, match="HTTP 401") as caught:
        source.search_example(example, 10)
    assert "serp-secret" not in str(caught.value) and "Invalid API key" in str(caught.value)


# ------------------------------------------------------------------------------------------------ local


class LookupEmbedder:
    """Embeddings the test chose, looked up by the sha256 of each file's bytes; counts what it was asked."""

    tag = "test-lookup"

    def __init__(self, vectors: dict[bytes, Sequence[float]]) -> None:
        self.vectors = {hashlib.sha256(k).hexdigest(): np.asarray(v, dtype=np.float32) for k, v in vectors.items()}
        self.asked = 0

    def __call__(
        self, paths: Sequence[Path], on_progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        self.asked += len(paths)
        out = np.zeros((len(paths), 3), dtype=np.float32)
        errors = []
        for k, path in enumerate(paths):
            vector = self.vectors.get(hashlib.sha256(Path(path).read_bytes()).hexdigest())
            errors.append("" if vector is not None else "unknown picture")
            if vector is not None:
                out[k] = vector / np.linalg.norm(vector)
        return out, errors


def test_local_copies_the_nearest_pictures_once_with_similarity_and_every_finder(tmp_path: Path) -> None:
    candidates = Pool.create(tmp_path / "keyword-pool")
    pictures = {f"c{seed}": scene(seed, 48, 40) for seed in range(4)}
    ids = add_pictures(candidates, pictures, source="wikimedia")
    folder = write_folder(tmp_path / "ex", {"A": scene(10, 48, 40), "B": scene(11, 48, 40)})
    embedder = LookupEmbedder({
        (folder / "A.jpg").read_bytes(): [1, 0, 0], (folder / "B.jpg").read_bytes(): [0, 1, 0],
        encode(pictures["c0"]): [0.9, 0.1, 0], encode(pictures["c1"]): [0.6, 0.6, 0],
        encode(pictures["c2"]): [0.1, 0.9, 0], encode(pictures["c3"]): [0, 0, 1],
    })  # fmt: skip
    config = qbe_config(tmp_path / "pool", folder, sources=("local",), from_pool=candidates.root, per_query=2)
    summary = harvest_qbe(config, embedder=embedder)

    df = Pool.open(tmp_path / "pool").read_index().set_index("title")
    assert sorted(df.index) == ["c0", "c1", "c2"]
    assert list(df.loc["c1", "found_by"]) == ["local:A", "local:B"] and df.loc["c1", "query"] == "A"
    assert df.loc["c1", "similarity"] == pytest.approx(np.sqrt(0.5)) and df.loc["c1", "rank"] == 2
    assert (df.loc["c2", "query"], df.loc["c2", "rank"]) == ("B", 1)
    assert (df.loc["c0", "mode"], df.loc["c0", "source"], df.loc["c0", "from_source"]) == ("qbe", "local", "wikimedia")
    assert (tmp_path / "pool" / df.loc["c0", "path"]).read_bytes() == encode(pictures["c0"])
    assert df.loc["c0", "id"] == ids["c0"] and df.loc["c0", "url"] == "file:///c0.jpg"
    assert (summary.fetch.ok, summary.fetch.repeats, embedder.asked) == (3, 1, 2 + 4)

    again = harvest_qbe(config, embedder=embedder)  # cached pool embeddings; every URL already in the pool
    assert (again.fetch.rows, again.fetch.known, embedder.asked) == (0, 4, 6 + 2)
    assert len(Pool.open(tmp_path / "pool").read_index()) == 3


def test_local_leaves_out_pictures_added_after_the_candidate_pools_dedup_and_says_so(tmp_path: Path) -> None:
    candidates = Pool.create(tmp_path / "keyword-pool")
    judged = {"c0": scene(0, 48, 40)}
    late = {"c1": scene(1, 48, 40)}  # harvested after dedup ran: never checked against the test split
    add_pictures(candidates, judged, kept=True)
    candidates.log_command(stage="dedup")
    add_pictures(candidates, late)
    folder = write_folder(tmp_path / "ex", {"A": scene(10, 48, 40)})
    embedder = LookupEmbedder({
        (folder / "A.jpg").read_bytes(): [1, 0, 0], encode(judged["c0"]): [0.9, 0.1, 0], encode(late["c1"]): [1, 0, 0],
    })  # fmt: skip
    config = qbe_config(tmp_path / "pool", folder, sources=("local",), from_pool=candidates.root, per_query=2)
    summary = harvest_qbe(config, embedder=embedder)
    assert list(Pool.open(tmp_path / "pool").read_index()["title"]) == ["c0"]
    assert any(note.startswith("1 pictures of --from-pool were added after") for note in summary.notes), summary.notes


def test_local_on_a_tiny_real_clip_finds_an_examples_own_picture_first(tmp_path: Path) -> None:
    import open_clip
    import torch

    from harvest.embed import register_model_configs
    from harvest.qbe_local import ClipEmbedder

    register_model_configs()
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"state_dict": open_clip.create_model("crowdrank-test-tiny", pretrained=None).state_dict()}, checkpoint)
    candidates = Pool.create(tmp_path / "keyword-pool")
    add_pictures(candidates, {f"c{seed}": scene(seed, 48, 40) for seed in range(3)})
    folder = write_folder(tmp_path / "ex", {"same-as-c1": scene(1, 48, 40)})
    embedder = ClipEmbedder("crowdrank-test-tiny", None, checkpoint, device="cpu", batch_size=4, workers=0)
    config = qbe_config(tmp_path / "pool", folder, sources=("local",), from_pool=candidates.root, per_query=1)
    harvest_qbe(config, embedder=embedder)
    row = Pool.open(tmp_path / "pool").read_index().iloc[0]
    assert row["title"] == "c1" and row["similarity"] == pytest.approx(1.0, abs=1e-4)


# ------------------------------------------------------------------------------------------------ CLI wiring


def test_cli_qbe_without_endpoint_is_a_usage_error_naming_the_flag(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "ex", {"IMG_1": scene(1, 32, 24)})
    result = CliRunner().invoke(app, ["qbe", "--examples", str(folder), "--out", str(tmp_path / "pool")])
    assert result.exit_code == 2 and "--endpoint clip-knn=URL" in " ".join(result.output.split())


def test_cli_qbe_runs_against_a_back_end_and_prints_the_summary(web, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "ex", {"IMG_1": scene(1, 64, 48)})
    url = web.route("/img/a.jpg", body=picture(11), headers=JPEG)
    endpoint = knn_server(
        web, {(folder / "IMG_1.jpg").read_bytes(): [{"url": url, "caption": "", "id": 1, "similarity": 0.5}]}
    )
    args = ["qbe", "--examples", str(folder), "--out", str(tmp_path / "pool"), "--endpoint", f"clip-knn={endpoint}",
            "--allow-private-hosts", "--min-side", "8", "--host-rate", "0"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "harvest qbe: 1 examples, 1 searches answered" in result.output
    assert Pool.open(tmp_path / "pool").read_index()["query"].tolist() == ["IMG_1"]


def test_knn_query_embedding_sends_the_examples_vector_instead_of_the_picture(web, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "ex", {"IMG_1": scene(1, 64, 48)})
    url = web.route("/img/a.jpg", body=picture(11), headers=JPEG)
    reply = [{"url": url, "caption": "", "id": 1, "similarity": 0.5}]
    web.route("/knn-service", handler=lambda request: Reply(200, json.dumps(reply).encode(), JSON))
    embedder = LookupEmbedder({(folder / "IMG_1.jpg").read_bytes(): [0, 3, 4]})
    config = qbe_config(
        tmp_path / "pool", folder, sources=("clip-knn",), endpoints={"clip-knn": web.base_url}, knn_query="embedding"
    )
    harvest_qbe(config, embedder=embedder)
    (body,) = knn_bodies(web)
    assert body["image"] is None and body["embedding_input"] == pytest.approx([0.0, 0.6, 0.8])


def test_a_back_end_older_than_embedding_input_gets_the_pictures_instead(web, tmp_path: Path) -> None:
    """An old clip-retrieval fails a query without text, image or image_url; the source falls back once, for good."""
    folder = write_folder(tmp_path / "ex", {"IMG_1": scene(1, 64, 48), "IMG_2": scene(2, 64, 48)})
    url = {
        name: web.route(f"/img/{name}.jpg", body=picture(seed), headers=JPEG) for name, seed in [("a", 11), ("b", 12)]
    }
    by_picture = {
        (folder / "IMG_1.jpg").read_bytes(): [{"url": url["a"], "caption": "", "id": 1, "similarity": 0.9}],
        (folder / "IMG_2.jpg").read_bytes(): [{"url": url["b"], "caption": "", "id": 2, "similarity": 0.8}],
    }

    def old_back_end(request: SeenRequest) -> Reply:
        picture_sent = json.loads(request.body)["image"]
        if picture_sent is None:  # it never reads embedding_input
            return Reply(500, b'{"message": "Internal Server Error"}', JSON)
        return Reply(200, json.dumps(by_picture[base64.b64decode(picture_sent)]).encode(), JSON)

    web.route("/knn-service", handler=old_back_end)
    embedder = LookupEmbedder({(folder / f"{name}.jpg").read_bytes(): [1, 0, 0] for name in ("IMG_1", "IMG_2")})
    config = qbe_config(
        tmp_path / "pool", folder, sources=("clip-knn",), endpoints={"clip-knn": web.base_url}, knn_query="embedding"
    )
    summary = harvest_qbe(config, embedder=embedder)

    sent = [("embedding" if b["image"] is None else "picture") for b in knn_bodies(web)]
    assert sent == ["embedding", "picture", "picture"]  # one refused embedding query, then pictures only
    assert (summary.searches, summary.failures) == (2, {}), summary.fetch.search_failures
    assert sorted(Pool.open(tmp_path / "pool").read_index()["url"]) == sorted(url.values())
    assert any(note.startswith("clip-knn: ") and "predates embedding_input" in note for note in summary.fetch.notes)
    assert summary.to_record()["notes"] == summary.fetch.notes


def test_an_embedding_query_the_back_end_fails_either_way_reports_the_embedding_error(web, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "ex", {"IMG_1": scene(1, 64, 48)})
    web.route("/knn-service", handler=lambda request: Reply(503, b'{"message": "index loading"}', JSON))
    embedder = LookupEmbedder({(folder / "IMG_1.jpg").read_bytes(): [1, 0, 0]})
    config = qbe_config(
        tmp_path / "pool", folder, sources=("clip-knn",), endpoints={"clip-knn": web.base_url}, knn_query="embedding"
    )
    summary = harvest_qbe(config, embedder=embedder)
    assert summary.failures == {("clip-knn", "search_error"): 1} and "HTTP 503" in summary.fetch.search_failures[0]
    assert not summary.notes and not summary.fetch.notes


def test_clip_knn_also_answers_keyword_searches_by_text(web) -> None:
    reply = saved_json("clip_knn", "knn_answer.json")
    web.route("/knn-service", handler=lambda request: Reply(200, json.dumps(reply).encode(), JSON))
    source = create_source("clip-knn", endpoint=web.base_url, session=make_session(allow_private_hosts=True))
    found = list(source.search("a crowded square", limit=2))
    (body,) = knn_bodies(web)
    assert (body["text"], body["image"], body["num_images"]) == ("a crowded square", None, 2)
    assert [(c.url, c.mode, c.query) for c in found] == [
        ("https://upload.example.org/crowd1.jpg", "keyword", "a crowded square"),
        ("https://img.example.net/marathon.jpg", "keyword", "a crowded square"),
    ]


def test_cli_qbe_takes_the_downloaders_flags_as_keywords_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[QbeConfig] = []

    def record(config: QbeConfig) -> None:
        seen.append(config)
        raise SystemExit(0)  # the flags reached the library: nothing to download

    monkeypatch.setattr("harvest.qbe.harvest_qbe", record)
    folder = write_folder(tmp_path / "ex", {"IMG_1": scene(1, 32, 24)})
    args = ["qbe", "--examples", str(folder), "--out", str(tmp_path / "pool"), "--endpoint", "clip-knn=http://knn:1",
            "--user-agent", "crowdrank/0.1 (mailto:me@lab.org)", "--retries", "1", "--max-retry-wait", "5",
            "--max-bytes", "4096", "--max-pixels", "2000"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    fetch = seen[0].fetch
    assert (fetch.user_agent, fetch.retries, fetch.max_retry_wait, fetch.max_bytes, fetch.max_pixels) == (
        "crowdrank/0.1 (mailto:me@lab.org)", 1, 5.0, 4096, 2000,
    )  # fmt: skip


def test_the_output_pool_is_refused_as_an_exclude_like_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds the pool's own pictures"):
        qbe_config(
            tmp_path / "pool", tmp_path / "examples", exclude_like=(str(tmp_path),),
            endpoints={"clip-knn": "http://127.0.0.1:9/"},
        )  # fmt: skip


def test_a_folder_example_whose_name_is_not_utf8_gets_a_storable_id_and_its_bytes_in_the_public_url(
    tmp_path: Path,
) -> None:
    """Its surrogate-escaped name went into the pool rows (query, found_by) and `harvest qbe` ended in a
    UnicodeEncodeError traceback when it wrote them; public_url's quote() of it raised too."""
    folder = tmp_path / "ex"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9.jpg")).write_bytes(encode(scene(1, 32, 24)))  # a Latin-1 name
    with open_examples(str(folder), "https://data.example.org/shb") as example_set:
        [example] = example_set.examples
    assert example.example_id == "caf\\xe9"
    example.example_id.encode("utf-8")  # storable
    assert example.public_url == "https://data.example.org/shb/caf%E9.jpg"
