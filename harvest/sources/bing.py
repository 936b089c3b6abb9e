"""Bing Images: the HTML results page ``/images/search?q=...&first=N`` (no API key, no licence information).

Each result on the page is an ``<a class="iusc">`` whose ``m`` attribute holds JSON: ``murl`` (the image),
``purl`` (the page it appears on) and ``t`` (its title, with the query terms wrapped in private-use characters).
``first`` is the 1-based rank of the first result on a page; the next page starts after the results this one held.
Bing does not say under which licence an image is published, so ``license`` is None for every candidate and the
publishing stage refuses them unless told otherwise. Opt-in only: not in ``DEFAULT_SOURCES``.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning

from harvest.errors import SourceError
from harvest.sources.base import Candidate, ResultPage, SearchSource, register_source
from harvest.sources.text import absolute_url, strip_html


def parse_bing_page(body: str, query: str, first: int) -> ResultPage:
    """Candidates of one results page and the ``first`` of the next page (None when the page holds no result)."""
    if not isinstance(body, str) or "<" not in body:
        raise SourceError("expected an HTML page")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(body, "html.parser")
    if soup.find(True) is None:
        raise SourceError("expected an HTML page, found no element")
    anchors = soup.select("a.iusc")
    skipped: Counter[str] = Counter()
    candidates = []
    for anchor in anchors:
        try:
            metadata = json.loads(anchor.get("m") or "")
        except ValueError:
            skipped["bad_metadata"] += 1
            continue
        if not isinstance(metadata, dict) or not metadata.get("murl"):
            skipped["no_image_url"] += 1
            continue
        candidates.append(
            Candidate(
                url=absolute_url(metadata["murl"]) or metadata["murl"],
                source="bing",
                query=query,
                page_url=absolute_url(metadata.get("purl")),
                title=strip_html(metadata.get("t")),
            )
        )
    return ResultPage(candidates, first + len(anchors) if anchors else None, dict(skipped))


@register_source("bing")
class BingSource(SearchSource):
    """Bing image results scraped from the public results page (opt-in; no licence, so ``license`` is None)."""

    default_endpoint = "https://www.bing.com"
    api_paths = ("/images/search",)

    def search(self, query: str, limit: int) -> Iterator[Candidate]:
        def fetch(first: int) -> ResultPage:
            params: dict[str, Any] = {"q": query, "first": str(first)}
            response = self.get(self.url("/images/search"), params=params)
            return self.parse(parse_bing_page, response.text, query, first)

        yield from self.paginate(fetch, 1, limit)
