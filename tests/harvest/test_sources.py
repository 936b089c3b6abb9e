"""The web search sources: pure parsers on saved responses, pagination and errors against the loopback server.

Saved responses live in ``tests/harvest/data/<source>/`` in each engine's format: Commons Action API JSON,
Openverse ``/v1/images/`` JSON, Flickr REST JSON, Bing's HTML results page, DuckDuckGo's search page and ``i.js``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from harvest.errors import ConfigError, FetchError, SourceError
from harvest.host_guard import BlockedHostError
from harvest.net import DEFAULT_USER_AGENT, make_session
from harvest.sources import DEFAULT_SOURCES, create_source, list_sources
from harvest.sources.bing import parse_bing_page
from harvest.sources.duckduckgo import parse_ddg_page, parse_vqd
from harvest.sources.flickr import (
    FLICKR_LICENSES,
    OPEN_LICENSE_IDS,
    open_license_ids,
    parse_flickr_licenses,
    parse_flickr_page,
)
from harvest.sources.openverse import parse_openverse_page
from harvest.sources.text import normalize_license, strip_html
from harvest.sources.wikimedia import parse_commons_page
from tests.harvest.conftest import Reply, SeenRequest

DATA = Path(__file__).parent / "data"
VQD = "4-211387394873465912384756129384756192"


def saved(source: str, name: str) -> bytes:
    return (DATA / source / name).read_bytes()


def saved_json(source: str, name: str) -> Any:
    return json.loads(saved(source, name))


def params(request: SeenRequest) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(request.query, keep_blank_values=True).items()}


def json_reply(body: bytes) -> Reply:
    return Reply(200, body, {"Content-Type": "application/json; charset=utf-8"})


def html_reply(body: bytes) -> Reply:
    return Reply(200, body, {"Content-Type": "text/html; charset=utf-8"})


# ---------------------------------------------------------------------------------------------- text helpers


@pytest.mark.parametrize(
    ("name", "url", "expected"),
    [
        ("CC BY-SA 4.0", None, "cc-by-sa-4.0"),  # Commons LicenseShortName
        ("by-sa 4.0", None, "cc-by-sa-4.0"),  # Openverse license + license_version
        ("cc-by-sa-4.0", None, "cc-by-sa-4.0"),  # already normal
        ("CC BY-NC-SA 2.0", None, "cc-by-nc-sa-2.0"),
        ("CC BY-SA 3.0 de", None, "cc-by-sa-3.0-de"),  # ported licence keeps its jurisdiction
        ("CC BY-SA 2.5,2.0,1.0", None, "cc-by-sa-2.5"),  # multi-version: the first
        ("CC BY 4.0 International", None, "cc-by-4.0"),
        ("CC0", None, "cc0-1.0"),
        ("cc0 1.0", None, "cc0-1.0"),
        ("Public domain", None, "pdm"),
        ("PD-US", None, "pdm"),
        ("pdm 1.0", None, "pdm"),
        ("sampling+ 1.0", None, "cc-sampling+-1.0"),
        ("GFDL", None, "gfdl"),
        (None, "https://creativecommons.org/licenses/by-nd/3.0/", "cc-by-nd-3.0"),
        (None, "http://creativecommons.org/publicdomain/zero/1.0/deed.en", "cc0-1.0"),
        ("Attribution", "//creativecommons.org/licenses/by/2.0/fr/", "cc-by-2.0-fr"),
        (None, None, None),
        ("  ", None, None),
    ],
)
def test_normalize_license_gives_one_spelling_per_licence(name: str | None, url: str | None, expected: str) -> None:
    assert normalize_license(name, url) == expected


def test_strip_html_keeps_visible_text_only() -> None:
    html = '<a href="//x">Jane &amp; Doe</a><br/>Team <span style="display: none;">hidden</span>\n  Photo'
    assert strip_html(html) == "Jane & Doe Team Photo"
    assert strip_html("Big \ue000crowd\ue001 downtown") == "Big crowd downtown"
    assert strip_html("<b> </b>") is None


# ---------------------------------------------------------------------------------------------- pure parsers


def test_commons_parser_orders_by_rank_strips_html_and_skips_svg() -> None:
    page = parse_commons_page(saved_json("wikimedia", "search_page1.json"), "crowd")
    assert [c.title for c in page.candidates] == [
        "Crowd at Plaza de Mayo, Buenos Aires 2019",
        "Marathon start line 2017",
    ]
    first, second = page.candidates
    assert (
        first.url
        == "https://upload.wikimedia.org/wikipedia/commons/a/a3/Crowd_at_Plaza_de_Mayo%2C_Buenos_Aires_2019.jpg"
    )
    assert first.page_url == "https://commons.wikimedia.org/wiki/File:Crowd_at_Plaza_de_Mayo,_Buenos_Aires_2019.jpg"
    assert first.author == "María Lopez & Juan Pérez"
    assert (first.license, first.license_url) == ("cc-by-sa-4.0", "https://creativecommons.org/licenses/by-sa/4.0")
    assert (first.width, first.height, first.source, first.query) == (5184, 3456, "wikimedia", "crowd")
    assert second.author == "Runner Club Photo Team"  # <br /> becomes a space
    assert second.license == "cc0-1.0"
    assert page.skipped == {"not_raster_image": 1}
    assert page.next_token == {"gsroffset": 3, "continue": "gsroffset||"}


def test_commons_parser_last_page_has_no_token_and_normalises_public_domain() -> None:
    page = parse_commons_page(saved_json("wikimedia", "search_page2.json"), "crowd")
    assert page.next_token is None
    assert [(c.title, c.author, c.license) for c in page.candidates] == [
        ("Pilgrims at Mecca 1889", "Unknown author", "pdm"),
        ("Oktoberfest Theresienwiese", "Diego Delso", "cc-by-sa-3.0-de"),
    ]
    assert page.candidates[0].license_url is None
    assert page.skipped == {"not_raster_image": 1}  # the .webm video


def test_commons_parser_raises_on_api_error_object() -> None:
    with pytest.raises(SourceError, match="badvalue"):
        parse_commons_page(saved_json("wikimedia", "error.json"), "crowd")


def test_openverse_parser_normalises_licence_like_commons_and_counts_pages() -> None:
    page = parse_openverse_page(saved_json("openverse", "images_page1.json"), "crowd", 1)
    assert [(c.title, c.author, c.license) for c in page.candidates] == [
        ("Crowd at the Women's March", "mobilus in mobili", "cc-by-sa-2.0"),
        ("Shibuya crossing", "Chensiyuan", "cc0-1.0"),
        ("Spectators, 1912 Olympic Games", None, "pdm"),
    ]
    first = page.candidates[0]
    assert first.url == "https://live.staticflickr.com/565/32167712345_8a1b2c3d4e_b.jpg"
    assert first.page_url == "https://www.flickr.com/photos/89374612@N00/32167712345"
    assert (first.license_url, first.width, first.height) == (
        "https://creativecommons.org/licenses/by-sa/2.0/",
        1024,
        683,
    )
    assert (page.candidates[2].width, page.candidates[2].height) == (None, None)
    assert page.next_token == 2
    last = parse_openverse_page(saved_json("openverse", "images_page2.json"), "crowd", 2)
    assert last.next_token is None  # page 2 of page_count 2
    assert [c.license for c in last.candidates] == ["cc-by-4.0", "cc-by-nc-sa-2.0"]


def test_openverse_and_commons_spell_the_same_licence_the_same() -> None:
    commons = parse_commons_page(saved_json("wikimedia", "search_page1.json"), "q").candidates[0].license
    openverse = parse_openverse_page({"results": [{"url": "u", "license": "by-sa", "license_version": "4.0"}]}, "q", 1)
    assert commons == openverse.candidates[0].license == "cc-by-sa-4.0"


def test_flickr_parser_prefers_original_size_and_maps_licence_ids() -> None:
    page = parse_flickr_page(saved_json("flickr", "search_page1.json"), "crowd")
    rows = [(c.url.rsplit("/", 1)[1], c.width, c.height, c.license) for c in page.candidates]
    assert rows == [
        ("52781234567_f0e1d2c3b4_o.jpg", 6000, 4000, "cc-by-2.0"),  # url_o
        ("51234567890_0f9e8d7c6b_b.jpg", 1024, 768, "cc0-1.0"),  # no url_o: url_l, sizes given as strings
        ("4912345678_1a2b3c4d5e_c.jpg", 800, 600, "nkcr"),  # only url_c
    ]
    first, second, third = page.candidates
    assert first.page_url == "https://www.flickr.com/photos/98765432@N04/52781234567/"
    assert (first.author, first.license_url) == ("Climate Photos", "https://creativecommons.org/licenses/by/2.0/")
    assert (second.title, second.author) == ("Marathon & runners", "city <sports> desk")
    assert third.title is None
    assert page.next_token == 2
    last = parse_flickr_page(saved_json("flickr", "search_page2.json"), "crowd")
    assert (last.next_token, last.skipped, [c.license for c in last.candidates]) == (None, {"no_image_url": 1}, ["pdm"])


def test_flickr_parser_raises_with_flickr_message_on_stat_fail() -> None:
    with pytest.raises(SourceError, match="Invalid API Key"):
        parse_flickr_page(saved_json("flickr", "invalid_key.json"), "crowd")


def test_bing_parser_reads_m_json_and_skips_broken_metadata() -> None:
    page = parse_bing_page(saved("bing", "search_first1.html").decode(), "crowd", 1)
    assert [(c.url, c.page_url, c.title) for c in page.candidates] == [
        (
            "https://www.example-news.com/media/rally_crowd.jpg",
            "https://www.example-news.com/2019/rally-photos",
            "Huge crowd gathers for the rally & march",
        ),
        ("https://travel.example.org/img/shibuya-crossing.png", "https://travel.example.org/shibuya", "Shibuya Crowd"),
    ]
    assert all(c.license is None and c.source == "bing" for c in page.candidates)
    assert page.skipped == {"bad_metadata": 1}
    assert page.next_token == 4  # first=1 held three results


def test_ddg_parsers_read_token_and_results() -> None:
    assert parse_vqd(saved("duckduckgo", "search_page.html").decode()) == VQD
    page = parse_ddg_page(saved_json("duckduckgo", "ijs_page1.json"), "crowd")
    assert [(c.url, c.page_url, c.title, c.width, c.height) for c in page.candidates] == [
        (
            "https://upload.example.org/photos/crowd-at-concert.jpg",
            "https://www.example.org/blog/concert-crowds",
            "Crowd at a rock concert & festival",
            4000,
            2667,
        ),
        (
            "https://cdn.example.net/img/stadium.webp",
            "https://sports.example.net/stadium",
            "Packed stadium",
            1920,
            1080,
        ),
    ]
    assert page.skipped == {"no_image_url": 1}
    assert page.next_token == "i.js?q=crowd&o=json&p=1&s=100&u=bing&f=,,,,,,&l=us-en"
    assert parse_ddg_page(saved_json("duckduckgo", "ijs_page2.json"), "crowd").next_token is None


def test_vqd_missing_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="vqd"):
        parse_vqd("<html><body>blocked</body></html>")


# ---------------------------------------------------------------------------------------------- registry and keys


def test_registry_lists_every_source_and_defaults_need_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLICKR_API_KEY", raising=False)
    assert {"bing", "duckduckgo", "flickr", "openverse", "wikimedia"} <= set(list_sources())  # tests may add more
    assert DEFAULT_SOURCES == ("wikimedia", "openverse")
    for name in DEFAULT_SOURCES:
        assert create_source(name).session.headers["User-Agent"] == DEFAULT_USER_AGENT


def test_flickr_without_key_fails_at_construction_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLICKR_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"FLICKR_API_KEY.*flickr\.com/services/apps/create"):
        create_source("flickr")


def test_unknown_source_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown source 'altavista'") as caught:
        create_source("altavista")
    known = str(caught.value).split("known sources: ")[1].split(", ")
    assert {"bing", "duckduckgo", "flickr", "openverse", "wikimedia"} <= set(known)


# ---------------------------------------------------------------------------------------------- pagination


def test_wikimedia_follows_continue_until_the_last_page(web) -> None:
    pages = [saved("wikimedia", "search_page1.json"), saved("wikimedia", "search_page2.json")]
    web.route("/w/api.php", handler=lambda r: json_reply(pages[1] if "gsroffset" in params(r) else pages[0]))
    source = create_source("wikimedia", endpoint=web.url("/w/api.php"))
    found = list(source.search("crowd", limit=10))
    assert [c.title for c in found] == [
        "Crowd at Plaza de Mayo, Buenos Aires 2019",
        "Marathon start line 2017",
        "Pilgrims at Mecca 1889",
        "Oktoberfest Theresienwiese",
    ]
    first, second = (params(r) for r in web.requests)
    assert (first["gsrsearch"], first["gsrnamespace"], first["generator"]) == ("crowd filetype:bitmap", "6", "search")
    assert first["iiprop"] == "url|size|mime|extmetadata" and "gsroffset" not in first
    assert (second["gsroffset"], second["continue"]) == ("3", "gsroffset||")
    assert web.requests[0].headers["User-Agent"] == DEFAULT_USER_AGENT
    assert source.skipped == {"not_raster_image": 2}


def test_wikimedia_split_batch_counts_no_pending_page_as_skipped(web) -> None:
    """A batch whose image info spills over (``iicontinue``) is repeated; each file is found once, none skipped."""

    def page(index: int, name: str, info: bool) -> dict:
        url = f"https://upload.wikimedia.org/wikipedia/commons/{name}"
        infos = [{"url": url, "mime": "image/jpeg", "width": 800, "height": 600}] if info else []
        return {"pageid": index, "ns": 6, "title": f"File:{name}", "index": index, "imageinfo": infos}

    first = {
        "continue": {"iicontinue": "Crowd_b.jpg|20190101000000", "continue": "||"},
        "query": {"pages": [page(1, "Crowd_a.jpg", True), page(2, "Crowd_b.jpg", False)]},
    }
    second = {"query": {"pages": [page(1, "Crowd_a.jpg", False), page(2, "Crowd_b.jpg", True)]}}
    web.route(
        "/w/api.php", handler=lambda r: json_reply(json.dumps(second if "iicontinue" in params(r) else first).encode())
    )
    source = create_source("wikimedia", endpoint=web.url("/w/api.php"))
    assert [c.title for c in source.search("crowd", limit=10)] == ["Crowd_a", "Crowd_b"]
    assert params(web.requests[1])["iicontinue"] == "Crowd_b.jpg|20190101000000"
    assert source.skipped == {}
    # The same answers read as complete batches would count each missing info as a skip.
    assert parse_commons_page(second, "crowd").skipped == {"no_image_url": 1}


def test_search_results_whose_url_is_not_a_string_are_skipped_as_no_image_url(web) -> None:
    def page(index: int, url: object) -> dict:
        return {
            "pageid": index,
            "title": f"File:{index}.jpg",
            "index": index,
            "imageinfo": [{"url": url, "mime": "image/jpeg"}],
        }

    urls: list[object] = ["https://upload.wikimedia.org/a.jpg", 5, ["https://upload.wikimedia.org/b.jpg"], None, " "]
    answer = {"query": {"pages": [page(i, url) for i, url in enumerate(urls)]}}
    web.route("/w/api.php", body=json.dumps(answer).encode(), headers={"Content-Type": "application/json"})
    source = create_source("wikimedia", endpoint=web.url("/w/api.php"))
    assert [c.url for c in source.search("crowd", limit=10)] == ["https://upload.wikimedia.org/a.jpg"]
    assert source.skipped == {"no_image_url": 4}


def test_wikimedia_stops_at_limit_without_fetching_more(web) -> None:
    web.route("/w/api.php", body=saved("wikimedia", "search_page1.json"))
    found = list(create_source("wikimedia", endpoint=web.url("/w/api.php")).search("crowd", limit=1))
    assert [c.title for c in found] == ["Crowd at Plaza de Mayo, Buenos Aires 2019"]
    assert web.hits("/w/api.php") == 1
    assert params(web.requests[0])["gsrlimit"] == "1"


def test_openverse_follows_pages_until_page_count(web) -> None:
    pages = {"1": saved("openverse", "images_page1.json"), "2": saved("openverse", "images_page2.json")}
    web.route("/v1/images/", handler=lambda r: json_reply(pages[params(r)["page"]]))
    found = list(create_source("openverse", endpoint=web.base_url).search("crowd", limit=50))
    assert len(found) == 5 and found[-1].title == "Stadium stands"
    assert [params(r)["page"] for r in web.requests] == ["1", "2"]
    assert {params(r)["page_size"] for r in web.requests} == {"20"}  # anonymous maximum, the same on every page
    assert "Authorization" not in web.requests[0].headers


@pytest.mark.parametrize("suffix", ["", "/", "/v1/images/", "/v1/images"])
def test_openverse_endpoint_given_with_or_without_the_api_path_asks_for_it_once(web, suffix: str) -> None:
    web.route("/v1/images/", body=saved("openverse", "images_page1.json"))
    found = list(create_source("openverse", endpoint=web.base_url + suffix).search("crowd", limit=2))
    assert len(found) == 2 and web.hits("/v1/images/") == 1


def test_an_endpoint_ending_in_another_path_is_kept_whole() -> None:
    source = create_source("openverse", endpoint="https://mirror.example/openverse/")
    assert source.url("/v1/images/") == "https://mirror.example/openverse/v1/images/"
    assert create_source("bing", endpoint="http://b.example/images/search").url("/images/search") == (
        "http://b.example/images/search"
    )


def test_openverse_sends_token_and_stops_at_limit(web, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENVERSE_TOKEN", "tok-123")
    web.route("/v1/images/", body=saved("openverse", "images_page1.json"))
    found = list(create_source("openverse", endpoint=web.base_url).search("crowd", limit=2))
    assert [c.title for c in found] == ["Crowd at the Women's March", "Shibuya crossing"]
    assert web.hits("/v1/images/") == 1
    assert web.requests[0].headers["Authorization"] == "Bearer tok-123"
    assert params(web.requests[0])["page_size"] == "2"


def test_openverse_says_an_expired_token_expired_and_how_to_go_on(web, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENVERSE_CLIENT_ID", raising=False)
    monkeypatch.setenv("OPENVERSE_TOKEN", "tok-old")
    web.route("/v1/images/", status=401, body=b'{"detail": "Authentication credentials were not provided."}')
    with pytest.raises(FetchError, match=r"refused OPENVERSE_TOKEN \(HTTP 401\).*expire.*unset OPENVERSE_TOKEN"):
        list(create_source("openverse", endpoint=web.base_url).search("crowd", limit=2))
    monkeypatch.delenv("OPENVERSE_TOKEN")
    with pytest.raises(FetchError, match="answered HTTP 401"):  # no token: the plain error, nothing about tokens
        list(create_source("openverse", endpoint=web.base_url).search("crowd", limit=2))


def token_reply(token: str) -> Reply:
    return json_reply(
        f'{{"access_token": "{token}", "token_type": "Bearer", "expires_in": 43200, "scope": "read"}}'.encode()
    )


def test_openverse_client_credentials_fetch_a_token_once_and_renew_it_when_refused(
    web, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENVERSE_TOKEN", raising=False)
    monkeypatch.setenv("OPENVERSE_CLIENT_ID", "app-id")
    monkeypatch.setenv("OPENVERSE_CLIENT_SECRET", "app-secret")
    web.route("/v1/auth_tokens/token/", responses=[token_reply("fresh-1"), token_reply("fresh-2")])
    valid = {"Bearer fresh-1"}
    page = saved("openverse", "images_page1.json")
    web.route(
        "/v1/images/",
        handler=lambda r: json_reply(page) if r.headers.get("Authorization") in valid else Reply(401, b"{}", {}),
    )
    source = create_source("openverse", endpoint=web.base_url)
    assert len(list(source.search("crowd", limit=2))) == 2
    assert len(list(source.search("march", limit=2))) == 2  # the same token: one request for it per run
    post = next(r for r in web.requests if r.path == "/v1/auth_tokens/token/")
    assert (post.method, parse_qs(post.body.decode())) == (
        "POST",
        {"client_id": ["app-id"], "client_secret": ["app-secret"], "grant_type": ["client_credentials"]},
    )
    assert web.hits("/v1/auth_tokens/token/") == 1
    assert params(next(r for r in web.requests if r.path == "/v1/images/"))["page_size"] == "2"
    valid.clear()
    valid.add("Bearer fresh-2")  # the first token expired: the next search is refused once, then renews
    assert len(list(source.search("stadium", limit=2))) == 2
    assert web.hits("/v1/auth_tokens/token/") == 2


def test_openverse_refused_client_credentials_name_the_variables(web, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENVERSE_CLIENT_ID", "app-id")
    monkeypatch.setenv("OPENVERSE_CLIENT_SECRET", "wrong")
    web.route("/v1/auth_tokens/token/", status=401, body=b'{"error": "invalid_client"}')
    with pytest.raises(FetchError, match="refused the client credentials.*OPENVERSE_CLIENT_ID") as caught:
        list(create_source("openverse", endpoint=web.base_url).search("crowd", limit=2))
    assert "wrong" not in str(caught.value)
    assert web.hits("/v1/images/") == 0


def flickr_api(pages: dict[str, bytes]) -> Callable[[Any], Reply]:
    """The REST endpoint: ``licenses.getInfo`` answers the saved licence list, ``photos.search`` the saved pages."""

    def answer(request: Any) -> Reply:
        if params(request)["method"] == "flickr.photos.licenses.getInfo":
            return json_reply(saved("flickr", "licenses.json"))
        return json_reply(pages[params(request)["page"]])

    return answer


def test_flickr_pages_with_key_and_open_licences_only(web, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLICKR_API_KEY", "k-secret")
    pages = {"1": saved("flickr", "search_page1.json"), "2": saved("flickr", "search_page2.json")}
    web.route("/services/rest/", handler=flickr_api(pages))
    source = create_source("flickr", endpoint=web.url("/services/rest/"))
    found = list(source.search("crowd", limit=10))
    assert [c.license for c in found] == ["cc-by-2.0", "cc0-1.0", "nkcr", "pdm"]
    info, first = params(web.requests[0]), params(web.requests[1])
    assert (info["method"], info["api_key"]) == ("flickr.photos.licenses.getInfo", "k-secret")
    assert (first["method"], first["api_key"], first["text"]) == ("flickr.photos.search", "k-secret", "crowd")
    assert (first["format"], first["nojsoncallback"]) == ("json", "1")
    # every open licence the list names, the CC 4.0 ones Flickr added in 2025 included; never 0 (all rights reserved)
    assert first["license"].split(",") == [str(i) for i in range(1, 17)]
    assert first["extras"] == "url_o,url_l,url_c,license,owner_name,o_dims"
    assert [params(r).get("page") for r in web.requests] == [None, "1", "2"]
    list(source.search("march", limit=3))
    assert [params(r)["method"] for r in web.requests].count("flickr.photos.licenses.getInfo") == 1  # once per run


def test_flickr_licence_list_names_ids_by_url_and_keeps_only_open_ones() -> None:
    table = parse_flickr_licenses(saved_json("flickr", "licenses.json"))
    assert table[11] == ("cc-by-4.0", "https://creativecommons.org/licenses/by/4.0/")
    assert table[16][0] == "cc-by-nc-nd-4.0" and table[7][0] == "nkcr" and table[8][0] == "usgov"
    assert table[0] == ("all-rights-reserved", None)
    assert open_license_ids(table) == tuple(range(1, 17))
    assert open_license_ids(FLICKR_LICENSES) == OPEN_LICENSE_IDS
    photo = {"id": "1", "owner": "o", "license": "12", "url_l": "u"}
    page = {"stat": "ok", "photos": {"page": 1, "pages": 1, "photo": [photo]}}
    assert parse_flickr_page(page, "q", table).candidates[0].license == "cc-by-sa-4.0"
    assert parse_flickr_page(page, "q").candidates[0].license == "flickr-license-12"  # no list: never guessed
    with pytest.raises(SourceError, match="Invalid API Key"):
        parse_flickr_licenses(saved_json("flickr", "invalid_key.json"))


def test_bing_advances_first_and_stops_when_a_page_repeats(web) -> None:
    pages = {"1": saved("bing", "search_first1.html")}

    web.route(
        "/images/search",
        handler=lambda r: html_reply(pages.get(params(r)["first"], saved("bing", "search_first4.html"))),
    )
    found = list(create_source("bing", endpoint=web.base_url).search("crowd", limit=20))
    assert [c.url.rsplit("/", 1)[1] for c in found] == ["rally_crowd.jpg", "shibuya-crossing.png", "stadium.jpg"]
    # first=4 follows the three results of page one; first=6 repeats page two and ends the search
    assert [params(r)["first"] for r in web.requests] == ["1", "4", "6"]


def test_bing_stops_at_limit(web) -> None:
    web.route("/images/search", body=saved("bing", "search_first1.html"))
    assert len(list(create_source("bing", endpoint=web.base_url).search("crowd", limit=2))) == 2
    assert web.hits("/images/search") == 1


def test_duckduckgo_gets_vqd_then_follows_next(web) -> None:
    web.route("/", responses=[html_reply(saved("duckduckgo", "search_page.html"))])
    pages = [saved("duckduckgo", "ijs_page1.json"), saved("duckduckgo", "ijs_page2.json")]
    web.route("/i.js", handler=lambda r: json_reply(pages[1] if params(r).get("s") == "100" else pages[0]))
    found = list(create_source("duckduckgo", endpoint=web.base_url).search("crowd", limit=10))
    assert [c.url.rsplit("/", 1)[1] for c in found] == ["crowd-at-concert.jpg", "stadium.webp", "pilgrims.jpg"]
    home, first, second = web.requests
    assert (home.path, params(home)["q"]) == ("/", "crowd")
    assert (params(first)["vqd"], params(first)["o"], params(first)["q"]) == (VQD, "json", "crowd")
    assert (params(second)["vqd"], params(second)["s"]) == (VQD, "100")  # token added to the relative `next`
    assert first.headers["Referer"] == web.url("/")


def test_limit_zero_requests_nothing(web) -> None:
    web.route("/w/api.php", body=saved("wikimedia", "search_page1.json"))
    assert list(create_source("wikimedia", endpoint=web.url("/w/api.php")).search("crowd", limit=0)) == []
    assert web.hits("/w/api.php") == 0


# ---------------------------------------------------------------------------------------------- failures

ENDPOINT_PATHS = {"wikimedia": "/w/api.php", "openverse": "", "flickr": "/services/rest/", "bing": "", "duckduckgo": ""}
SEARCH_PATHS = {
    "wikimedia": "/w/api.php",
    "openverse": "/v1/images/",
    "flickr": "/services/rest/",
    "bing": "/images/search",
    "duckduckgo": "/i.js",
}


def _make(name: str, web, monkeypatch: pytest.MonkeyPatch, timeout: float = 5.0):
    monkeypatch.setenv("FLICKR_API_KEY", "k-secret")
    if name == "duckduckgo":
        web.route("/", body=saved("duckduckgo", "search_page.html"))
    return create_source(name, endpoint=web.base_url + ENDPOINT_PATHS[name], timeout=timeout)


@pytest.mark.parametrize("name", sorted(SEARCH_PATHS))
def test_malformed_response_is_a_source_error_naming_source_and_endpoint(name: str, web, monkeypatch) -> None:
    source = _make(name, web, monkeypatch)
    web.route(SEARCH_PATHS[name], body=b'"maintenance"', headers={"Content-Type": "application/json"})
    with pytest.raises(SourceError) as caught:
        list(source.search("crowd", limit=5))
    assert f"'{name}'" in str(caught.value) and source.endpoint in str(caught.value)


@pytest.mark.parametrize("name", ["wikimedia", "openverse", "flickr", "duckduckgo"])
def test_html_instead_of_json_is_a_source_error(name: str, web, monkeypatch) -> None:
    source = _make(name, web, monkeypatch)
    web.route(SEARCH_PATHS[name], body=b"<html>Service Unavailable</html>", headers={"Content-Type": "text/html"})
    with pytest.raises(SourceError, match="did not answer JSON"):
        list(source.search("crowd", limit=5))


@pytest.mark.parametrize("name", sorted(SEARCH_PATHS))
def test_http_error_is_a_fetch_error_without_the_api_key(name: str, web, monkeypatch) -> None:
    source = _make(name, web, monkeypatch)
    web.route(SEARCH_PATHS[name], status=503, body=b"busy")
    with pytest.raises(FetchError, match="HTTP 503") as caught:
        list(source.search("crowd", limit=5))
    assert "k-secret" not in str(caught.value)


@pytest.mark.parametrize("name", sorted(SEARCH_PATHS))
def test_every_request_carries_the_timeout(name: str, web, monkeypatch) -> None:
    source = _make(name, web, monkeypatch, timeout=0.2)
    web.route(SEARCH_PATHS[name], handler=lambda r: time.sleep(1.0) or Reply(200, b"{}"))
    with pytest.raises(FetchError, match="timed out"):
        list(source.search("crowd", limit=5))


def test_unreachable_endpoint_is_a_fetch_error_naming_the_source() -> None:
    source = create_source("openverse", endpoint="http://127.0.0.1:1", timeout=2.0)  # nothing listens on port 1
    with pytest.raises(FetchError, match=r"source 'openverse': request to http://127\.0\.0\.1:1/v1/images/ failed"):
        list(source.search("crowd", limit=5))


def test_guarded_session_refusal_passes_through_and_allowed_session_works(web) -> None:
    web.route("/v1/images/", body=saved("openverse", "images_page1.json"))
    guarded = create_source("openverse", endpoint=web.base_url, session=make_session(allow_private_hosts=False))
    with pytest.raises(BlockedHostError, match="allow-private-hosts"):
        list(guarded.search("crowd", limit=1))
    allowed = create_source("openverse", endpoint=web.base_url, session=make_session(allow_private_hosts=True))
    assert [c.title for c in allowed.search("crowd", limit=1)] == ["Crowd at the Women's March"]
