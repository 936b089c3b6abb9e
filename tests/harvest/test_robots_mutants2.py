"""robots.txt rules where hand-made mutants of harvest.robots survived: a rule that ends in an escape, a space in a
rule, a ``$`` that is not the last character, a ``$`` reached along several paths, and the spellings of the
``user-agent`` key that RFC 9309 parsers accept."""

from __future__ import annotations

import pytest

from harvest.robots import parse_robots


@pytest.mark.parametrize(
    ("robots_txt", "path", "allowed"),
    [
        # An escape as the last three characters of a rule or URL is normalised like any other.
        ("User-agent: *\nDisallow: /%7E\n", "/~joe/a.jpg", False),
        ("User-agent: *\nDisallow: /~\n", "/%7e", False),
        ("User-agent: *\nDisallow: /a%2f\n", "/a%2F", False),
        # A space inside a rule is the %20 of the URL that names the same path.
        ("User-agent: *\nDisallow: /my photos/\n", "/my%20photos/a.jpg", False),
        ("User-agent: *\nDisallow: /my photos/\n", "/my-photos/a.jpg", True),
        # A $ before the end of a rule is a plain character, not the end of the path.
        ("User-agent: *\nDisallow: /price$/\n", "/price$/a.jpg", False),
        ("User-agent: *\nDisallow: /price$/\n", "/price", True),
        # The pattern reaches the end of the path along a later branch of the * than the first.
        ("User-agent: *\nDisallow: /*.jpg$\n", "/a.jpg.jpg", False),
        ("User-agent: *\nDisallow: /*a$\n", "/banana", False),
    ],
)
def test_paths_compare_as_rfc_9309_normalises_and_matches_them(robots_txt: str, path: str, allowed: bool) -> None:
    assert parse_robots(robots_txt, "crowdrank").allowed(f"http://a.example{path}") is allowed


@pytest.mark.parametrize("key", ["User-agent", "user-agent", "USER-AGENT", "Useragent", "User agent"])
def test_every_spelling_of_the_user_agent_key_opens_a_group(key: str) -> None:
    rules = parse_robots(f"{key}: crowdrank\nDisallow: /private/\n", "crowdrank")
    assert rules.allowed("http://a.example/private/a.jpg") is False
    assert rules.allowed("http://a.example/public/a.jpg") is True


@pytest.mark.parametrize("url", ["http://a.example", "http://a.example?id=5", "http://a.example#top"])
def test_a_url_without_a_path_is_judged_as_the_root_path(url: str) -> None:
    # An image URL with only a query (http://img.example?id=5) asks for "/": "Disallow: /" must refuse it.
    assert parse_robots("User-agent: *\nDisallow: /\n", "crowdrank").allowed(url) is False
    assert parse_robots("User-agent: *\nDisallow: /?\n", "crowdrank").allowed("http://a.example?id=5") is False
