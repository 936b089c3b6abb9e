"""The source contract: a registry of search engines and the candidate rows they yield."""

from __future__ import annotations

import importlib
import os
import pkgutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote_plus

from harvest.errors import ConfigError, FetchError, HarvestError, SourceError

T = TypeVar("T")

# The sources a keyword search uses when none are named: both give licence and author for every image.
DEFAULT_SOURCES: tuple[str, ...] = ("wikimedia", "openverse")
# A search ends after this many pages in a row whose results were all skipped (say, a query matching only SVGs).
MAX_BARREN_PAGES = 10
# An engine answering 429/503 with a Retry-After up to this many seconds is asked again after it, at most twice.
MAX_SEARCH_RETRY_WAIT = 60.0
SEARCH_RETRIES = 2


@dataclass(frozen=True)
class Candidate:
    """One image URL a source found, with the attribution the source gives for it (plain text, HTML stripped)."""

    url: str
    source: str
    query: str
    mode: str = "keyword"
    page_url: str | None = None
    title: str | None = None
    author: str | None = None
    license: str | None = None
    license_url: str | None = None
    width: int | None = None
    height: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.update(row.pop("extra"))
        return row


@dataclass(frozen=True)
class ResultPage:
    """What a source's pure parser makes of one response: candidates, the next-page token, items it skipped.

    ``next_token`` is None on the last page. ``skipped`` counts results left out, by reason (``not_raster_image``,
    ``no_image_url``, ...), so a run summary can say why a page of 50 gave 40 candidates.
    """

    candidates: list[Candidate]
    next_token: Any = None
    skipped: dict[str, int] = field(default_factory=dict)


def base_endpoint(endpoint: str, api_paths: tuple[str, ...]) -> str:
    """``endpoint`` without a trailing API path of ``api_paths`` (a user's copy of the full request URL)."""
    trimmed = endpoint.rstrip("/")
    for path in api_paths:
        if path.strip("/") and trimmed.endswith("/" + path.strip("/")):
            return trimmed[: -len(path.strip("/")) - 1]
    return endpoint


class SearchSource:
    """Base class. Subclasses set ``name`` and implement :meth:`search`.

    ``endpoint`` overrides the API URL (mirrors, proxies, tests); ``session`` is a ``requests.Session``
    prepared by the caller (User-Agent, timeouts, private-host guard).
    """

    name: str = ""
    default_endpoint: str = ""
    # Paths this source asks for under its endpoint with :meth:`url`; an endpoint given with one of them on the end
    # (``--endpoint openverse=https://api.openverse.org/v1/images/``) has it cut off, so it is not asked for twice.
    api_paths: tuple[str, ...] = ()
    requires_env: tuple[str, ...] = ()
    key_help: str = ""  # where to get the key named in requires_env
    secret_params: tuple[str, ...] = ()  # query parameters whose values never appear in an error message

    def __init__(self, endpoint: str | None = None, session: Any = None, timeout: float = 30.0):
        for variable in self.requires_env:
            if not os.environ.get(variable):
                raise ConfigError(
                    f"source {self.name!r} needs an API key in the environment variable {variable}, which is not set; "
                    f"{self.key_help or 'see the source documentation'}. Set it (export {variable}=...) or leave "
                    f"{self.name!r} out of --sources"
                )
        if timeout <= 0:
            raise ConfigError(f"timeout for source {self.name!r} is {timeout}; expected a number of seconds > 0")
        self.endpoint = base_endpoint(endpoint or self.default_endpoint, self.api_paths)
        if session is None:  # standalone use: a plain session that still says who is asking
            import requests

            from harvest.net import DEFAULT_USER_AGENT

            session = requests.Session()
            session.headers["User-Agent"] = DEFAULT_USER_AGENT
        self.session = session
        self.timeout = timeout
        self.skipped: Counter[str] = Counter()  # results left out over this source's searches, by reason
        self.notes: list[str] = []  # what the run summary should say about this source (a fallback taken, say)

    def search(self, query: str, limit: int) -> Iterator[Candidate]:
        """Yield at most ``limit`` candidates for ``query``, following the engine's pagination."""
        raise NotImplementedError

    def url(self, path: str) -> str:
        """``path`` under the endpoint (``url("/v1/images/")``), whether or not the endpoint ends with a slash."""
        return self.endpoint.rstrip("/") + path

    def get(self, url: str, params: Any = None, headers: dict[str, str] | None = None) -> Any:
        """GET with this source's timeout; a network failure or an HTTP error status raises :class:`FetchError`."""
        return self.request("GET", url, params=params, headers=headers)

    def request(self, method: str, url: str, params: Any = None, **kwargs: Any) -> Any:
        """``method`` with this source's timeout; a network failure or an HTTP error status raises
        :class:`FetchError` (its ``status`` is the HTTP status), with API keys in ``params`` redacted.

        A 429 or 503 that says when to come back (``Retry-After``, at most :data:`MAX_SEARCH_RETRY_WAIT` s) is
        waited out and asked again, up to :data:`SEARCH_RETRIES` times: an engine's rate limit then slows the
        search down instead of failing it and every search after it.
        """
        import requests

        from harvest.net import network_failure, parse_retry_after

        for attempt in range(SEARCH_RETRIES + 1):
            try:
                response = self.session.request(method, url, params=params, timeout=self.timeout, **kwargs)
            except HarvestError:
                raise
            except requests.RequestException as e:
                reason = network_failure(e, url)
                raise FetchError(
                    self._redact(f"source {self.name!r}: request to {url} failed: {reason}", params)
                ) from e
            if response.status_code not in (429, 503) or attempt == SEARCH_RETRIES:
                break
            wait = parse_retry_after(response.headers.get("Retry-After"))
            if wait is None or wait > MAX_SEARCH_RETRY_WAIT:
                break
            response.close()
            time.sleep(wait)
        if response.status_code >= 400:
            snippet = " ".join(response.text[:200].split())
            message = f"source {self.name!r}: {response.url} answered HTTP {response.status_code}"
            raise FetchError(self._redact(message + (f": {snippet}" if snippet else ""), params), response.status_code)
        return response

    def _redact(self, message: str, params: Any) -> str:
        """``message`` with the values of :attr:`secret_params` (API keys) replaced, since errors end up in logs."""
        if not isinstance(params, dict):
            return message
        for name in self.secret_params:
            secret = str(params.get(name) or "")
            if secret:
                message = message.replace(quote_plus(secret), "***").replace(secret, "***")
        return message

    def get_json(self, url: str, params: Any = None, headers: dict[str, str] | None = None) -> Any:
        """GET and decode JSON; a body that is not JSON raises :class:`SourceError` naming source and endpoint."""
        return self.json_of(self.get(url, params=params, headers=headers))

    def post_json(self, url: str, **kwargs: Any) -> Any:
        """POST (``json=`` or ``data=``) and decode the JSON answer, with :meth:`get_json`'s errors."""
        return self.json_of(self.request("POST", url, **kwargs))

    def json_of(self, response: Any) -> Any:
        """The decoded JSON body of ``response``; a body that is not JSON raises :class:`SourceError`."""
        try:
            return response.json()
        except ValueError as e:
            kind = response.headers.get("Content-Type", "no Content-Type")
            raise SourceError(
                f"source {self.name!r} (endpoint {self.endpoint}): {response.url} did not answer JSON ({kind}): "
                f"{' '.join(response.text[:120].split())!r}"
            ) from e

    def parse(self, parser: Callable[..., T], body: Any, *args: Any) -> T:
        """Run a pure parser; a response of the wrong shape raises :class:`SourceError` naming source and endpoint."""
        try:
            return parser(body, *args)
        except (SourceError, KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            detail = f"{type(e).__name__}: {e}" if not isinstance(e, SourceError) else str(e)
            raise SourceError(
                f"source {self.name!r} (endpoint {self.endpoint}) answered in an unexpected form: {detail}"
            ) from e

    def paginate(self, fetch_page: Callable[[Any], ResultPage], first_token: Any, limit: int) -> Iterator[Candidate]:
        """Follow next-page tokens from ``first_token``, yielding at most ``limit`` distinct image URLs.

        No page is requested once ``limit`` candidates are out. Stops on the last page (token None), on a token
        already followed, on a page that brings nothing new: no unseen URL and nothing skipped (some engines
        repeat their last page instead of ending), and after :data:`MAX_BARREN_PAGES` pages of skipped results only.
        A candidate whose URL is not a non-empty string (an engine answering ``"url": 5``, ``null`` or a list) is
        skipped as ``no_image_url``: it could be neither fetched nor recorded under its URL.
        """
        if limit <= 0:
            return
        seen: set[str] = set()
        followed: list[Any] = []
        token, barren = first_token, 0
        while token is not None and token not in followed and barren < MAX_BARREN_PAGES:
            followed.append(token)
            page = fetch_page(token)
            self.skipped.update(page.skipped)
            fresh, unusable = 0, 0
            for candidate in page.candidates:
                if not isinstance(candidate.url, str) or not candidate.url.strip():
                    unusable += 1
                    continue
                if candidate.url in seen:
                    continue
                seen.add(candidate.url)
                fresh += 1
                yield candidate
                if len(seen) >= limit:
                    return
            if unusable:
                self.skipped["no_image_url"] += unusable
            if not fresh and not page.skipped and not unusable:
                return
            barren = 0 if fresh else barren + 1
            token = page.next_token


_REGISTRY: dict[str, type[SearchSource]] = {}


def register_source(name: str) -> Callable[[type[SearchSource]], type[SearchSource]]:
    def wrap(cls: type[SearchSource]) -> type[SearchSource]:
        if name in _REGISTRY:
            raise ValueError(f"source {name!r} is registered twice ({_REGISTRY[name].__module__} and {cls.__module__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _import_all() -> None:
    import harvest.sources as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "base":
            importlib.import_module(f"harvest.sources.{info.name}")


def list_sources() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def create_source(name: str, **kwargs: Any) -> SearchSource:
    _import_all()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown source {name!r}; known sources: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)
