"""One malformed result costs one result, not the page: each parser skips it, counts it, and keeps the others."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus

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
from tests.harvest.conftest import Reply, SeenRequest

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


def test_an_api_key_is_redacted_from_errors_in_its_url_encoded_form_too(web, monkeypatch) -> None:
    key = "k+sec/ret=1"
    monkeypatch.setenv("FLICKR_API_KEY", key)
    web.route("/services/rest/", status=503, body=b"busy")
    with pytest.raises(FetchError) as caught:
        list(create_source("flickr", endpoint=web.url("/services/rest/")).search("crowd", limit=5))
    assert key not in str(caught.value) and quote_plus(key) not in str(caught.value) and "***" in str(caught.value)


def _commons_page(index: int, mime: str, cont: int | None) -> bytes:
    url = f"https://upload.wikimedia.org/wikipedia/commons/{index}.{mime.split('/')[1]}"
    page = {"pageid": index, "title": f"File:{index}", "index": 1, "imageinfo": [{"url": url, "mime": mime}]}
    body: dict[str, Any] = {"query": {"pages": [page]}}
    if cont is not None:
        body["continue"] = {"gsroffset": cont, "continue": "gsroffset||"}
    return json.dumps(body).encode()


def test_a_search_goes_on_past_pages_whose_results_were_all_skipped(web) -> None:
    def answer(request: SeenRequest) -> Reply:
        offset = int(parse_qs(request.query).get("gsroffset", ["0"])[0])
        if offset < 3:  # three pages of SVGs only, then a picture
            return Reply(200, _commons_page(offset, "image/svg+xml", offset + 1))
        return Reply(200, _commons_page(offset, "image/jpeg", None))

    web.route("/w/api.php", handler=answer)
    source = create_source("wikimedia", endpoint=web.url("/w/api.php"))
    assert [c.url.rsplit("/", 1)[1] for c in source.search("crowd", limit=5)] == ["3.jpeg"]
    assert source.skipped == {"not_raster_image": 3}


def test_a_search_of_skipped_results_only_ends_after_ten_pages(web) -> None:
    def answer(request: SeenRequest) -> Reply:
        offset = int(parse_qs(request.query).get("gsroffset", ["0"])[0])
        return Reply(200, _commons_page(offset, "image/svg+xml", offset + 1))

    web.route("/w/api.php", handler=answer)
    assert list(create_source("wikimedia", endpoint=web.url("/w/api.php")).search("crowd", limit=5)) == []
    assert web.hits("/w/api.php") == 10


def test_a_search_whose_next_token_repeats_ends_at_once(web) -> None:
    web.route("/w/api.php", body=_commons_page(0, "image/svg+xml", 7))  # always "continue from 7", all skipped
    assert list(create_source("wikimedia", endpoint=web.url("/w/api.php")).search("crowd", limit=5)) == []
    assert web.hits("/w/api.php") == 2  # the first page, then offset 7 once


def test_commons_results_come_in_search_rank_order_whatever_the_page_id_order() -> None:
    def page(pageid: int, rank: int) -> dict[str, Any]:
        info = {"url": f"https://upload.wikimedia.org/{rank}.jpg", "mime": "image/jpeg"}
        return {"pageid": pageid, "title": f"File:{rank}.jpg", "index": rank, "imageinfo": [info]}

    body = {"query": {"pages": {"300": page(300, 2), "100": page(100, 3), "200": page(200, 1)}}}
    assert [c.title for c in parse_commons_page(body, "crowd").candidates] == ["1", "2", "3"]


def test_keyword_parsers_end_on_an_empty_page_or_a_next_that_is_no_url() -> None:
    flickr = saved_json("flickr", "search_page1.json")
    flickr["photos"]["photo"] = []  # Flickr past its last result still says pages = N
    assert parse_flickr_page(flickr, "crowd").next_token is None
    ddg = saved_json("duckduckgo", "ijs_page1.json")
    for junk in (5, {"s": 100}, ""):
        ddg["next"] = junk
        assert parse_ddg_page(ddg, "crowd").next_token is None


def test_a_lens_match_whose_image_is_no_web_url_is_thumbnail_only() -> None:
    body = saved_json("google_lens", "visual_matches.json")
    first = body["visual_matches"][0]["image"]
    body["visual_matches"][0]["image"] = "data:image/jpeg;base64,/9j/4AAQ"
    matches, skipped = parse_lens_answer(body, "IMG_1")
    assert first not in [m.candidate.url for m in matches]
    assert all(m.candidate.url.startswith("http") for m in matches) and skipped["thumbnail_only"] >= 1


def test_clip_knn_does_not_fall_back_to_the_picture_when_the_network_failed(tmp_path: Path, monkeypatch) -> None:
    from harvest.sources.by_example import Example
    from harvest.sources.clip_knn import ClipKnnSource

    picture = tmp_path / "IMG_1.jpg"
    picture.write_bytes(b"\xff\xd8\xff")
    source = ClipKnnSource(endpoint="http://knn.example:1234")
    sent: list[str] = []

    def post_json(url: str, json: dict[str, Any]) -> Any:
        sent.append("embedding" if json.get("embedding_input") else "image")
        raise FetchError("connection refused", status=None)

    monkeypatch.setattr(source, "post_json", post_json)
    with pytest.raises(FetchError, match="connection refused"):
        source.search_example(Example("IMG_1", picture, "IMG_1.jpg"), 5, embedding=[0.1, 0.2])
    assert sent == ["embedding"] and source.embedding_refused is False


def test_a_search_that_cannot_connect_says_why_in_one_line(monkeypatch) -> None:
    import socket

    from tests.harvest.test_fetch import free_port

    port = free_port()
    with pytest.raises(FetchError) as refused:
        list(create_source("openverse", endpoint=f"http://127.0.0.1:{port}").search("crowd", limit=2))
    assert "127.0.0.1 refused the connection" in str(refused.value)
    assert "Max retries" not in str(refused.value)  # not urllib3's nested repr

    def offline(*args: Any, **kwargs: Any) -> Any:  # as getaddrinfo fails with no network: no DNS query is sent
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    with pytest.raises(FetchError) as unresolved:
        list(create_source("openverse", endpoint="https://api.openverse.example").search("crowd", limit=2))
    assert "cannot resolve api.openverse.example (Name or service not known): offline" in str(unresolved.value)


def test_a_search_endpoint_whose_certificate_does_not_verify_says_so_in_one_line(tls_web) -> None:
    with pytest.raises(FetchError) as refused:
        list(create_source("openverse", endpoint=tls_web.base_url).search("crowd", limit=2))
    assert "the TLS certificate of 127.0.0.1 does not verify (self-signed certificate)" in str(refused.value)
    assert "Max retries" not in str(refused.value)
