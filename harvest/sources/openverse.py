"""Openverse: openly licensed images indexed from Flickr, Wikimedia, museums and more (``GET /v1/images/``).

Pages are numbered (``page=1, 2, ...``) with a fixed ``page_size``; the answer's ``page_count`` says where they end.
Anonymous clients may ask for at most 20 results a page; with a registered application's access token in
``OPENVERSE_TOKEN`` (sent as ``Authorization: Bearer``) the source asks for up to 100. No key is required.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

from harvest.errors import FetchError, SourceError
from harvest.sources.base import Candidate, ResultPage, SearchSource, register_source
from harvest.sources.text import normalize_license, strip_html

ANONYMOUS_PAGE_SIZE = 20
AUTHENTICATED_PAGE_SIZE = 100
TOKEN_VARIABLE = "OPENVERSE_TOKEN"


def _dimension(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def parse_openverse_page(body: Any, query: str, page: int) -> ResultPage:
    """Candidates of one ``/v1/images/`` answer and the next page number (None after ``page_count`` or when empty).

    The licence is normalised from ``license`` + ``license_version`` (``by-sa`` + ``4.0`` -> ``cc-by-sa-4.0``).
    """
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise SourceError("expected a JSON object with a 'results' list")
    skipped: Counter[str] = Counter()
    candidates = []
    for result in body["results"]:
        if not result.get("url"):
            skipped["no_image_url"] += 1
            continue
        name = " ".join(str(part) for part in (result.get("license"), result.get("license_version")) if part)
        candidates.append(
            Candidate(
                url=result["url"],
                source="openverse",
                query=query,
                page_url=result.get("foreign_landing_url"),
                title=strip_html(result.get("title")),
                author=strip_html(result.get("creator")),
                license=normalize_license(name or None, result.get("license_url")),
                license_url=result.get("license_url"),
                width=_dimension(result.get("width")),
                height=_dimension(result.get("height")),
            )
        )
    page_count = body.get("page_count")
    last = not body["results"] or (page_count is not None and page >= int(page_count))
    return ResultPage(candidates, None if last else page + 1, dict(skipped))


@register_source("openverse")
class OpenverseSource(SearchSource):
    """Openverse image search; an optional ``OPENVERSE_TOKEN`` raises the page size and rate limit."""

    default_endpoint = "https://api.openverse.org"

    def search(self, query: str, limit: int) -> Iterator[Candidate]:
        token = os.environ.get(TOKEN_VARIABLE)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        # A page number only means the same offset while page_size stays the same, so fix it for the whole search.
        page_size = min(max(limit, 1), AUTHENTICATED_PAGE_SIZE if token else ANONYMOUS_PAGE_SIZE)

        def fetch(page: int) -> ResultPage:
            params = {"q": query, "page": str(page), "page_size": str(page_size)}
            try:
                body = self.get_json(self.url("/v1/images/"), params=params, headers=headers)
            except FetchError as e:
                if token and getattr(e, "status", None) == 401:
                    raise FetchError(
                        f"source 'openverse' refused {TOKEN_VARIABLE} (HTTP 401): Openverse access tokens expire "
                        "12 hours after they are issued. Get a new one (POST /v1/auth_tokens/token/ with your "
                        f"client_id and client_secret) or unset {TOKEN_VARIABLE} to search anonymously"
                    ) from e
                raise
            return self.parse(parse_openverse_page, body, query, page)

        yield from self.paginate(fetch, 1, limit)
