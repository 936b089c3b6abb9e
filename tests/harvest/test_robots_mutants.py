"""robots.txt and X-Robots-Tag behaviour that hand-made mutants of harvest.robots showed unprotected."""

from __future__ import annotations

from harvest.robots import parse_robots, x_robots_refusal


def test_merged_groups_naming_the_crawler_keep_the_longest_crawl_delay() -> None:
    # RFC 9309 merges every group that names the crawler; of two Crawl-delays the polite (longer) one holds.
    text = (
        "User-agent: crowdrank\nCrawl-delay: 2\n\n"
        "User-agent: crowdrank\nCrawl-delay: 9\n\n"
        "User-agent: *\nCrawl-delay: 1\n"
    )
    assert parse_robots(text, "crowdrank").crawl_delay == 9.0
    reversed_text = "User-agent: crowdrank\nCrawl-delay: 9\n\nUser-agent: crowdrank\nCrawl-delay: 2\n"
    assert parse_robots(reversed_text, "crowdrank").crawl_delay == 9.0


def test_an_x_robots_tag_scope_applies_only_when_it_names_crowdrank_exactly() -> None:
    assert x_robots_refusal(["crowdrank-images: noai"]) is None  # another crawler, whose name merely contains ours
    assert x_robots_refusal(["notcrowdrank: noindex, crowdrank: noimageai"]) == "noimageai"
    assert x_robots_refusal(["CrowdRank: noai"]) == "noai"
