"""One malformed result costs one result, not the page: each parser skips it, counts it, and keeps the others."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harvest.errors import FetchError
from harvest.sources import create_source
from harvest.sources.clip_knn import parse_knn_answer
from harvest.sources.duckduckgo import parse_ddg_page
from harvest.sources.flickr import parse_flickr_page
from harvest.sources.google_lens import parse_lens_answer
from harvest.sources.openverse import parse_openverse_page
from harvest.sources.text import as_float, as_int
from harvest.sources.wikimedia import parse_commons_page
from tests.harvest.conftest import Reply

DATA = Path(__file__).parent / "data"


def saved_json(source: str, name: str) -> Any:
    return json.loads((DATA / source / name).read_bytes())


def _candidates(result: Any) -> list[Any]:
    """Candidates of a keyword parser's page or of a by-example parser's (matches, skipped)."""
    if isinstance(result, tuple):
        return [match.candidate for match in result[0]]
    return result.candidates


def _skipped(result: Any) -> dict[str, int]:
    return dict(result[1]) if isinstance(result, tuple) else result.skipped


def _items(body: Any, source: str) -> list[Any]:
    """The list of results inside a saved answer, to break one of them."""
    return {
        "openverse": lambda: body["results"],
        "duckduckgo": lambda: body["results"],
        "flickr": lambda: body["photos"]["photo"],
        "google_lens": lambda: body["visual_matches"],
        "clip_knn": lambda: body,
        "wikimedia": lambda: list(body["query"]["pages"].values()),
    }[source]()


PARSERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "openverse": ("images_page1.json", lambda body: parse_openverse_page(body, "crowd", 1)),
    "duckduckgo": ("ijs_page1.json", lambda body: parse_ddg_page(body, "crowd")),
    "flickr": ("search_page1.json", lambda body: parse_flickr_page(body, "crowd")),
    "google_lens": ("visual_matches.json", lambda body: parse_lens_answer(body, "IMG_1")),
    "clip_knn": ("knn_answer.json", lambda body: parse_knn_answer(body, "IMG_1", "qbe")),
}


@pytest.mark.parametrize("source", sorted(PARSERS))
@pytest.mark.parametrize("junk", [None, "a string", 7, ["a", "list"]])
def test_a_result_that_is_not_an_object_is_skipped_and_the_others_kept(source: str, junk: Any) -> None:
    name, parse = PARSERS[source]
    body = saved_json(source, name)
    expected = [c.url for c in _candidates(parse(copy.deepcopy(body)))]
    _items(body, source).append(junk)
    result = parse(body)
    assert [c.url for c in _candidates(result)] == expected
    assert _skipped(result).get("bad_result") == 1


@pytest.mark.parametrize(
    ("source", "field", "value"),
    [
        ("openverse", "width", "n/a"),
        ("duckduckgo", "width", "?"),
        ("flickr", "width_o", "wide"),
        ("google_lens", "image_width", "big"),
        ("wikimedia", "width", "big"),
    ],
)
def test_a_size_that_is_no_number_is_left_empty_and_the_result_kept(source: str, field: str, value: str) -> None:
    name, parse = PARSERS.get(source) or ("search_page1.json", lambda body: parse_commons_page(body, "crowd"))
    body = saved_json(source, name)
    expected = [c.url for c in _candidates(parse(copy.deepcopy(body)))]
    items = _items(body, source)
    target = next(item for item in items if item_url(item, source) == expected[0])
    (target["imageinfo"][0] if source == "wikimedia" else target)[field] = value
    candidates = _candidates(parse(body))
    assert [c.url for c in candidates] == expected
    assert candidates[0].width is None


def item_url(item: dict[str, Any], source: str) -> str | None:
    if source == "wikimedia":
        return (item.get("imageinfo") or [{}])[0].get("url")
    if source == "flickr":
        return item.get("url_o") or item.get("url_l") or item.get("url_c")
    return item.get({"openverse": "url", "duckduckgo": "image", "google_lens": "image"}[source])


def test_a_flickr_photo_without_owner_keeps_its_picture_without_a_page_url() -> None:
    body = saved_json("flickr", "search_page1.json")
    del body["photos"]["photo"][0]["owner"]
    body["photos"]["photo"][0]["license"] = "not a number"
    page = parse_flickr_page(body, "crowd")
    assert page.candidates[0].page_url is None and page.candidates[0].license is None
    assert len(page.candidates) == len(parse_flickr_page(saved_json("flickr", "search_page1.json"), "crowd").candidates)


def test_lens_and_knn_scores_that_are_no_numbers_fall_back() -> None:
    lens = saved_json("google_lens", "visual_matches.json")
    lens["visual_matches"][0]["position"] = "first"
    matches, _ = parse_lens_answer(lens, "IMG_1")
    assert matches[0].rank == 1  # its place in the list
    knn = saved_json("clip_knn", "knn_answer.json")
    knn[0]["similarity"] = "high"
    matches, _ = parse_knn_answer(knn, "IMG_1", "qbe")
    assert matches[0].similarity is None and matches[1].similarity == pytest.approx(0.8011220097541809)


@pytest.mark.parametrize(
    ("value", "integer", "number"),
    [
        (4000, 4000, 4000.0),
        ("4000", 4000, 4000.0),
        (" 4000 ", 4000, 4000.0),
        (4000.0, 4000, 4000.0),
        ("4000.0", 4000, 4000.0),
        (0.83, None, 0.83),
        ("0.83", None, 0.83),
        (True, None, None),  # JSON true is no size
        ("n/a", None, None),
        ("", None, None),
        (None, None, None),
        (float("nan"), None, None),
        ("inf", None, None),
        ([4000], None, None),
    ],
)
def test_as_int_and_as_float_take_faithful_numbers_only(value: Any, integer: int | None, number: float | None) -> None:
    assert as_int(value) == integer
    assert as_float(value) == number


@pytest.mark.parametrize("status", [429, 503])
def test_a_search_rate_limited_with_retry_after_waits_and_asks_again(web, status: int) -> None:
    page = (DATA / "openverse" / "images_page2.json").read_bytes()
    web.route(
        "/v1/images/",
        responses=[
            Reply(status, b"slow down", {"Retry-After": "0"}),
            Reply(200, page, {"Content-Type": "application/json"}),
        ],
    )
    found = list(create_source("openverse", endpoint=web.base_url).search("crowd", limit=2))
    assert len(found) == 2 and web.hits("/v1/images/") == 2


def test_a_search_retry_after_over_a_minute_fails_at_once(web) -> None:
    web.route("/v1/images/", status=429, headers={"Retry-After": "3600"})
    with pytest.raises(FetchError, match="HTTP 429"):
        list(create_source("openverse", endpoint=web.base_url).search("crowd", limit=2))
    assert web.hits("/v1/images/") == 1


def test_a_search_still_rate_limited_after_two_retries_fails(web) -> None:
    web.route("/v1/images/", status=429, headers={"Retry-After": "0"})
    with pytest.raises(FetchError, match="HTTP 429"):
        list(create_source("openverse", endpoint=web.base_url).search("crowd", limit=2))
    assert web.hits("/v1/images/") == 3
