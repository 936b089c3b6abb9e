"""DuckDuckGo Images: the JSON the image tab loads (``/i.js``), after a ``vqd`` token from the HTML search page.

Two steps per query: ``GET /?q=...&iax=images&ia=images`` returns an HTML page that embeds a ``vqd`` token; then
``GET /i.js?l=us-en&o=json&q=...&vqd=...&f=,,,,,,&p=1`` returns ``results`` (``image``, ``url``, ``title``,
``width``, ``height``) and, while more exist, ``next``: a relative URL of the following page (``i.js?...&s=100``).
No licence information, so ``license`` is None. Opt-in only: not in ``DEFAULT_SOURCES``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urljoin

from harvest.errors import SourceError
from harvest.sources.base import Candidate, ResultPage, SearchSource, register_source
from harvest.sources.text import absolute_url, as_int, strip_html

# The page writes the token as vqd="4-123...", vqd='4-123...' or in a URL as vqd=4-123...&
_VQD = re.compile(r"""vqd\s*[=:]\s*["']?(?P<token>\d+-[\w-]+)["'&]""")


def parse_vqd(html: str) -> str:
    """The ``vqd`` token embedded in DuckDuckGo's HTML search page; SourceError when the page has none."""
    match = _VQD.search(html or "")
    if match is None:
        raise SourceError(
            "no vqd token in the search page (DuckDuckGo may have changed the page or refused the client)"
        )
    return match.group("token")


def parse_ddg_page(body: Any, query: str) -> ResultPage:
    """Candidates of one ``i.js`` answer and its ``next`` relative URL (None on the last page)."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise SourceError("expected a JSON object with a 'results' list")
    skipped: Counter[str] = Counter()
    candidates = []
    for result in body["results"]:
        if not isinstance(result, dict):
            skipped["bad_result"] += 1
            continue
        if not result.get("image"):
            skipped["no_image_url"] += 1
            continue
        candidates.append(
            Candidate(
                url=absolute_url(result["image"]) or result["image"],
                source="duckduckgo",
                query=query,
                page_url=absolute_url(result.get("url")),
                title=strip_html(result.get("title")),
                width=as_int(result.get("width")),
                height=as_int(result.get("height")),
            )
        )
    next_url = body.get("next")
    return ResultPage(candidates, next_url if isinstance(next_url, str) and next_url else None, dict(skipped))


@register_source("duckduckgo")
class DuckDuckGoSource(SearchSource):
    """DuckDuckGo image results from the endpoint its image tab uses (opt-in; no licence, so ``license`` is None)."""

    default_endpoint = "https://duckduckgo.com"

    def search(self, query: str, limit: int) -> Iterator[Candidate]:
        page = self.get(self.url("/"), params={"q": query, "iax": "images", "ia": "images"})
        try:
            vqd = parse_vqd(page.text)
        except SourceError as e:
            raise SourceError(f"source {self.name!r} (endpoint {self.endpoint}): {e}") from e
        headers = {"Referer": self.url("/"), "Accept": "application/json, text/javascript, */*; q=0.01"}
        base = self.url("/")
        first = "i.js?" + urlencode({"l": "us-en", "o": "json", "q": query, "vqd": vqd, "p": "1"})

        def fetch(relative: str) -> ResultPage:
            # Follow-up pages carry their own query string; add the token if the engine left it out.
            params = None if "vqd=" in relative else {"vqd": vqd}
            body = self.get_json(urljoin(base, relative.lstrip("/")), params=params, headers=headers)
            return self.parse(parse_ddg_page, body, query)

        yield from self.paginate(fetch, first, limit)
