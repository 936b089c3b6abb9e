"""Flickr: ``flickr.photos.search`` over the REST API, restricted to Creative Commons and public-domain photos.

Needs an API key in ``FLICKR_API_KEY``. Asks for JSON without a callback (``format=json&nojsoncallback=1``) and
for the original, large and medium URLs with licence, owner name and original size in one call (``extras``).
Pages are numbered; the answer's ``pages`` says where they end. An error comes back as HTTP 200 with
``"stat": "fail"`` and a message, which becomes a SourceError.

Licences are looked up once per run with ``flickr.photos.licenses.getInfo`` and named from each one's URL, so
licences Flickr adds (the CC 4.0 ones, June 2025) are searched and named without a release of this table; the
table below names the ids when that call is not made (parsing saved answers) and covers ids the answer lacks.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

from harvest.errors import ConfigError, SourceError
from harvest.sources.base import Candidate, ResultPage, SearchSource, register_source
from harvest.sources.text import as_int, license_from_url, normalize_license, strip_html

KEY_VARIABLE = "FLICKR_API_KEY"
MAX_PAGE_SIZE = 500

# flickr.photos.licenses.getInfo: id -> (normal form, licence URL). Ids 1-6 are the CC 2.0 licences.
FLICKR_LICENSES: dict[int, tuple[str, str | None]] = {
    0: ("all-rights-reserved", None),
    1: ("cc-by-nc-sa-2.0", "https://creativecommons.org/licenses/by-nc-sa/2.0/"),
    2: ("cc-by-nc-2.0", "https://creativecommons.org/licenses/by-nc/2.0/"),
    3: ("cc-by-nc-nd-2.0", "https://creativecommons.org/licenses/by-nc-nd/2.0/"),
    4: ("cc-by-2.0", "https://creativecommons.org/licenses/by/2.0/"),
    5: ("cc-by-sa-2.0", "https://creativecommons.org/licenses/by-sa/2.0/"),
    6: ("cc-by-nd-2.0", "https://creativecommons.org/licenses/by-nd/2.0/"),
    7: ("nkcr", "https://www.flickr.com/commons/usage/"),  # "No known copyright restrictions" (Flickr Commons)
    8: ("usgov", "http://www.usa.gov/copyright.shtml"),  # "United States Government Work"
    9: ("cc0-1.0", "https://creativecommons.org/publicdomain/zero/1.0/"),
    10: ("pdm", "https://creativecommons.org/publicdomain/mark/1.0/"),
}
# Every id above except "All Rights Reserved": what the search asks for when the licence list cannot be read.
OPEN_LICENSE_IDS: tuple[int, ...] = tuple(sorted(set(FLICKR_LICENSES) - {0}))
# Flickr's own licences for the public domain, by URL: not Creative Commons, but open for reuse.
_FLICKR_OPEN_URLS = {"flickr.com/commons/usage": "nkcr", "usa.gov/copyright": "usgov"}
# Preferred size first: the original, then large (1024 px), then medium (800 px).
_SIZES = ("o", "l", "c")


def _check_answer(body: Any) -> None:
    """Flickr answers errors as HTTP 200 with ``"stat": "fail"``: raise them as a SourceError with its message."""
    if not isinstance(body, dict):
        raise SourceError(f"expected a JSON object, got {type(body).__name__}")
    if body.get("stat") != "ok":
        raise SourceError(f"Flickr said stat={body.get('stat')!r}, code {body.get('code')}: {body.get('message')}")


def parse_flickr_licenses(body: Any) -> dict[int, tuple[str, str | None]]:
    """``flickr.photos.licenses.getInfo`` as id -> (normal form, URL), named from the URL where it is a Creative
    Commons, public-domain or Flickr public-domain licence; otherwise from the name (e.g. all rights reserved)."""
    _check_answer(body)
    table: dict[int, tuple[str, str | None]] = {}
    for entry in body["licenses"]["license"]:
        url = entry.get("url") or None
        flickr_own = next((name for part, name in _FLICKR_OPEN_URLS.items() if url and part in url), None)
        name = flickr_own or license_from_url(url) or normalize_license(entry.get("name"))
        if name is not None:
            table[int(entry["id"])] = (name, url)
    return table


def open_license_ids(table: dict[int, tuple[str, str | None]]) -> tuple[int, ...]:
    """The ids of ``table`` whose licence lets anyone reuse the picture: Creative Commons, CC0, the Public Domain
    Mark and Flickr's two public-domain statements (not "All Rights Reserved", not an unknown name)."""
    return tuple(
        sorted(i for i, (name, url) in table.items() if license_from_url(url) or name in _FLICKR_OPEN_URLS.values())
    )


def _photo_page(photo: dict[str, Any]) -> str | None:
    """The photo's page on Flickr (its owner's id and its own); None when the answer lacks either."""
    owner, photo_id = photo.get("owner"), photo.get("id")
    return f"https://www.flickr.com/photos/{owner}/{photo_id}/" if owner and photo_id else None


def parse_flickr_page(
    body: Any, query: str, licenses: dict[int, tuple[str, str | None]] = FLICKR_LICENSES
) -> ResultPage:
    """Candidates of one ``flickr.photos.search`` answer and the next page number (None on the last page)."""
    _check_answer(body)
    photos = body["photos"]
    skipped: Counter[str] = Counter()
    candidates = []
    for photo in photos["photo"]:
        if not isinstance(photo, dict):
            skipped["bad_result"] += 1
            continue
        size = next((s for s in _SIZES if photo.get(f"url_{s}")), None)
        if size is None:
            skipped["no_image_url"] += 1
            continue
        license_id = as_int(photo.get("license"))
        known = licenses.get(license_id) or FLICKR_LICENSES.get(license_id)  # type: ignore[arg-type]
        license_name, license_url = known or (None, None)
        if license_name is None and license_id is not None:
            license_name = f"flickr-license-{license_id}"  # an id newer than the table: keep it, never guess
        candidates.append(
            Candidate(
                url=photo[f"url_{size}"],
                source="flickr",
                query=query,
                page_url=_photo_page(photo),
                title=strip_html(photo.get("title")),
                author=strip_html(photo.get("ownername")),
                license=license_name,
                license_url=license_url,
                width=as_int(photo.get(f"width_{size}")),
                height=as_int(photo.get(f"height_{size}")),
            )
        )
    page, pages = int(photos["page"]), int(photos["pages"])
    return ResultPage(candidates, page + 1 if page < pages and photos["photo"] else None, dict(skipped))


@register_source("flickr")
class FlickrSource(SearchSource):
    """Flickr photo search (opt-in; needs ``FLICKR_API_KEY``), CC and public-domain licences only by default."""

    default_endpoint = "https://api.flickr.com/services/rest/"
    requires_env = (KEY_VARIABLE,)
    secret_params = ("api_key",)
    key_help = "get a free non-commercial key at https://www.flickr.com/services/apps/create/"

    def __init__(
        self,
        endpoint: str | None = None,
        session: Any = None,
        timeout: float = 30.0,
        license_ids: tuple[int, ...] | None = None,
    ):
        super().__init__(endpoint=endpoint, session=session, timeout=timeout)
        if license_ids is not None and not license_ids:
            raise ConfigError("flickr license_ids is empty; pass Flickr licence ids such as (4, 5, 9, 10)")
        self.license_ids = tuple(license_ids) if license_ids is not None else None  # None: every open licence
        self._licenses: dict[int, tuple[str, str | None]] | None = None

    def licenses(self) -> dict[int, tuple[str, str | None]]:
        """Flickr's licence list (one ``licenses.getInfo`` call per source), merged over the built-in table."""
        if self._licenses is None:
            params = {"method": "flickr.photos.licenses.getInfo", "api_key": os.environ[KEY_VARIABLE]}
            body = self.get_json(self.endpoint, params={**params, "format": "json", "nojsoncallback": "1"})
            self._licenses = {**FLICKR_LICENSES, **self.parse(parse_flickr_licenses, body)}
        return self._licenses

    def search(self, query: str, limit: int) -> Iterator[Candidate]:
        per_page = min(max(limit, 1), MAX_PAGE_SIZE)  # fixed: page numbers count in units of per_page
        licenses = self.licenses()
        license_ids = self.license_ids or open_license_ids(licenses)
        params = {
            "method": "flickr.photos.search",
            "api_key": os.environ[KEY_VARIABLE],
            "text": query,
            "license": ",".join(str(i) for i in license_ids),
            "media": "photos",
            "content_type": "1",  # photos only, no screenshots or drawings
            "sort": "relevance",
            "extras": "url_o,url_l,url_c,license,owner_name,o_dims",
            "per_page": str(per_page),
            "format": "json",
            "nojsoncallback": "1",
        }

        def fetch(page: int) -> ResultPage:
            body = self.get_json(self.endpoint, params={**params, "page": str(page)})
            return self.parse(parse_flickr_page, body, query, licenses)

        yield from self.paginate(fetch, 1, limit)
