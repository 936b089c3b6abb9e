"""Wikimedia Commons: full-text search over the File namespace through the MediaWiki Action API.

One request per page: ``action=query&generator=search&gsrnamespace=6`` finds files, ``prop=imageinfo`` with
``iiprop=url|size|mime|extmetadata`` gives each file's original URL, size, MIME type and its licence and author
(``extmetadata``). Pages continue by sending back the ``continue`` object the API returns (it carries
``gsroffset``). When one batch's image info does not fit in one answer, the ``continue`` object carries
``iicontinue`` instead and the next answer repeats the same pages, giving image info to the ones still missing it.
No key is needed; Wikimedia asks for a descriptive User-Agent, which the session sets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from harvest.errors import SourceError
from harvest.sources.base import Candidate, ResultPage, SearchSource, register_source
from harvest.sources.text import absolute_url, as_int, normalize_license, strip_html

# Raster formats the pipeline decodes. SVG, PDF, DjVu, video and audio files share the File namespace; skip them.
RASTER_MIMES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff", "image/bmp"})
MAX_PAGE_SIZE = 50  # gsrlimit for clients without the apihighlimits right


def _meta(extmetadata: dict[str, Any], key: str) -> str | None:
    entry = extmetadata.get(key)
    value = entry.get("value") if isinstance(entry, dict) else None
    return strip_html(value)


def _file_title(page_title: str) -> str:
    """``File:Crowd at X.jpg`` -> ``Crowd at X``."""
    name = page_title.split(":", 1)[1] if ":" in page_title else page_title
    stem, dot, _ = name.rpartition(".")
    return stem if dot else name


def parse_commons_page(body: Any, query: str, continuing_info: bool = False) -> ResultPage:
    """Candidates of one ``generator=search`` answer, in search rank order, and the ``continue`` object (or None).

    Accepts ``formatversion`` 1 (pages keyed by page id) and 2 (a list). An API error object raises SourceError.
    A page without image info is skipped as ``no_image_url`` only when its batch is complete: not while the answer
    asks for ``iicontinue`` (its info comes next) nor in an answer to ``iicontinue`` (``continuing_info``), which
    repeats the pages already given.
    """
    if not isinstance(body, dict):
        raise SourceError(f"expected a JSON object, got {type(body).__name__}")
    if "error" in body:
        error = body["error"]
        raise SourceError(f"API error {error.get('code')!r}: {error.get('info')}")
    pages = body.get("query", {}).get("pages", [])
    if isinstance(pages, dict):
        pages = list(pages.values())
    next_token = body.get("continue")
    if next_token is not None and not isinstance(next_token, dict):
        raise SourceError(f"'continue' should be an object, got {next_token!r}")
    batch_split = continuing_info or "iicontinue" in (next_token or {})
    skipped: Counter[str] = Counter()
    candidates = []
    for page in sorted(pages, key=lambda p: p.get("index", 0)):
        infos = page.get("imageinfo") or []
        if not infos:
            if not batch_split:
                skipped["no_image_url"] += 1
            continue
        if not infos[0].get("url"):
            skipped["no_image_url"] += 1
            continue
        info = infos[0]
        if info.get("mime") not in RASTER_MIMES:
            skipped["not_raster_image"] += 1
            continue
        meta = info.get("extmetadata") or {}
        license_url = absolute_url(_meta(meta, "LicenseUrl"))
        license_name = _meta(meta, "LicenseShortName") or _meta(meta, "License")
        candidates.append(
            Candidate(
                url=info["url"],
                source="wikimedia",
                query=query,
                page_url=info.get("descriptionurl"),
                title=_meta(meta, "ObjectName") or _file_title(page["title"]),
                author=_meta(meta, "Artist"),
                license=normalize_license(license_name, license_url),
                license_url=license_url,
                width=as_int(info.get("width")),
                height=as_int(info.get("height")),
            )
        )
    return ResultPage(candidates, next_token or None, dict(skipped))


@register_source("wikimedia")
class WikimediaSource(SearchSource):
    """Wikimedia Commons files matching a query; every candidate carries its licence, author and file page."""

    default_endpoint = "https://commons.wikimedia.org/w/api.php"

    def search(self, query: str, limit: int) -> Iterator[Candidate]:
        params = {
            "action": "query",
            "format": "json",
            "generator": "search",
            "gsrsearch": f"{query} filetype:bitmap",  # CirrusSearch: raster files only, no SVG/PDF/video pages
            "gsrnamespace": "6",
            "gsrlimit": str(min(max(limit, 1), MAX_PAGE_SIZE)),
            "prop": "imageinfo",
            "iiprop": "url|size|mime|extmetadata",
            "iiextmetadatafilter": "ObjectName|Artist|LicenseShortName|LicenseUrl|License",
        }

        def fetch(continuation: dict[str, Any]) -> ResultPage:
            body = self.get_json(self.endpoint, params={**params, **continuation})
            return self.parse(parse_commons_page, body, query, "iicontinue" in continuation)

        # The first request has no continuation; an empty dict is a token that is not None.
        yield from self.paginate(fetch, {}, limit)
