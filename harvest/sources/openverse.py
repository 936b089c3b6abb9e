"""Openverse: openly licensed images indexed from Flickr, Wikimedia, museums and more (``GET /v1/images/``).

Pages are numbered (``page=1, 2, ...``) with a fixed ``page_size``; the answer's ``page_count`` says where they end.
Anonymous clients may ask for at most 20 results a page; with a registered application's access token (sent as
``Authorization: Bearer``) the source asks for up to 100. No key is required. A token comes from
``OPENVERSE_CLIENT_ID`` and ``OPENVERSE_CLIENT_SECRET`` (``POST /v1/auth_tokens/token/``, client credentials; tokens
last 12 hours, so the source asks for a new one when its token expires or is refused) or, as given, from
``OPENVERSE_TOKEN``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from harvest.errors import FetchError, SourceError
from harvest.sources.base import Candidate, ResultPage, SearchSource, register_source
from harvest.sources.text import as_int, normalize_license, strip_html

ANONYMOUS_PAGE_SIZE = 20
AUTHENTICATED_PAGE_SIZE = 100
TOKEN_VARIABLE = "OPENVERSE_TOKEN"
CLIENT_VARIABLES = ("OPENVERSE_CLIENT_ID", "OPENVERSE_CLIENT_SECRET")
TOKEN_PATH = "/v1/auth_tokens/token/"


def parse_openverse_page(body: Any, query: str, page: int) -> ResultPage:
    """Candidates of one ``/v1/images/`` answer and the next page number (None after ``page_count`` or when empty).

    The licence is normalised from ``license`` + ``license_version`` (``by-sa`` + ``4.0`` -> ``cc-by-sa-4.0``).
    """
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise SourceError("expected a JSON object with a 'results' list")
    skipped: Counter[str] = Counter()
    candidates = []
    for result in body["results"]:
        if not isinstance(result, dict):
            skipped["bad_result"] += 1
            continue
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
                width=as_int(result.get("width")),
                height=as_int(result.get("height")),
            )
        )
    page_count = body.get("page_count")
    last = not body["results"] or (page_count is not None and page >= int(page_count))
    return ResultPage(candidates, None if last else page + 1, dict(skipped))


def parse_token(body: Any) -> tuple[str, float]:
    """The access token of a ``/v1/auth_tokens/token/`` answer and its lifetime in seconds."""
    return str(body["access_token"]), float(body.get("expires_in", 3600))


@register_source("openverse")
class OpenverseSource(SearchSource):
    """Openverse image search; an optional ``OPENVERSE_TOKEN`` raises the page size and rate limit."""

    default_endpoint = "https://api.openverse.org"
    api_paths = ("/v1/images/", TOKEN_PATH)

    def __init__(self, endpoint: str | None = None, session: Any = None, timeout: float = 30.0):
        super().__init__(endpoint=endpoint, session=session, timeout=timeout)
        self._token: tuple[str, float] | None = None  # (access token, expiry on time.monotonic())

    def token(self, renew: bool = False) -> str | None:
        """The bearer token: fetched with the client credentials when both are set (again when ``renew`` or within a
        minute of its expiry), else ``OPENVERSE_TOKEN`` as given, else None (anonymous)."""
        client_id, secret = (os.environ.get(name) for name in CLIENT_VARIABLES)
        if not (client_id and secret):
            return os.environ.get(TOKEN_VARIABLE) or None
        if renew or self._token is None or time.monotonic() > self._token[1] - 60:
            self._token = self._fetch_token(client_id, secret)
        return self._token[0]

    def _fetch_token(self, client_id: str, secret: str) -> tuple[str, float]:
        url = self.url(TOKEN_PATH)
        form = {"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"}
        try:
            body = self.post_json(url, data=form)
        except FetchError as e:
            if e.status is None:
                raise
            raise FetchError(
                f"source 'openverse': {url} refused the client credentials (HTTP {e.status}); check "
                f"{CLIENT_VARIABLES[0]} and {CLIENT_VARIABLES[1]}, or unset them to search anonymously"
            ) from e
        token, lifetime = self.parse(parse_token, body)
        return token, time.monotonic() + lifetime

    def search(self, query: str, limit: int) -> Iterator[Candidate]:
        token = self.token()
        # A page number only means the same offset while page_size stays the same, so fix it for the whole search.
        page_size = min(max(limit, 1), AUTHENTICATED_PAGE_SIZE if token else ANONYMOUS_PAGE_SIZE)
        fetched = all(os.environ.get(name) for name in CLIENT_VARIABLES)

        def fetch(page: int) -> ResultPage:
            nonlocal token
            params = {"q": query, "page": str(page), "page_size": str(page_size)}
            for attempt in (0, 1):
                headers = {"Authorization": f"Bearer {token}"} if token else None
                try:
                    body = self.get_json(self.url("/v1/images/"), params=params, headers=headers)
                    break
                except FetchError as e:
                    if not token or e.status != 401:
                        raise
                    if fetched and attempt == 0:  # expired or revoked: a fresh token, once
                        token = self.token(renew=True)
                        continue
                    if fetched:
                        raise FetchError(
                            "source 'openverse' refused a token just issued for OPENVERSE_CLIENT_ID (HTTP 401); "
                            "check the application's status at Openverse, or unset the client variables to search "
                            "anonymously"
                        ) from e
                    raise FetchError(
                        f"source 'openverse' refused {TOKEN_VARIABLE} (HTTP 401): Openverse access tokens expire "
                        "12 hours after they are issued. Get a new one (POST /v1/auth_tokens/token/ with your "
                        f"client_id and client_secret), set {CLIENT_VARIABLES[0]} and {CLIENT_VARIABLES[1]} to let "
                        f"crowdrank renew it, or unset {TOKEN_VARIABLE} to search anonymously"
                    ) from e
            return self.parse(parse_openverse_page, body, query, page)

        yield from self.paginate(fetch, 1, limit)
