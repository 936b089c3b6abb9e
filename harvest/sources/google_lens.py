"""google-lens: Google Lens visual matches through SerpApi (``GET /search.json?engine=google_lens&url=...``).

Needs an API key in ``SERPAPI_API_KEY`` and the example at a public URL (Google fetches it from there), taken
from ``--public-url-prefix`` or a dataset's ``source_url`` column. The answer lists ``visual_matches``, best first,
each with ``position``, ``title``, ``link`` (the page), ``source`` (the site), ``thumbnail`` (Google's small copy)
and, when Google knows it, ``image`` (the full picture) with ``image_width`` / ``image_height``. Only matches with
a full picture become candidates: a thumbnail is far below any useful size. Lens gives no similarity score, so
``similarity`` stays empty and ``rank`` is the position. Errors come back as ``{"error": "..."}``; "no results"
is one of them and means an empty answer, not a failure.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from harvest.errors import SourceError
from harvest.sources.base import Candidate
from harvest.sources.by_example import Example, ExampleSearchSource, Match
from harvest.sources.text import as_int, strip_html

KEY_VARIABLE = "SERPAPI_API_KEY"
_NO_RESULTS = "hasn't returned any results"


class NoPublicUrlError(SourceError):
    """An example has no public URL, so Google Lens cannot be asked about it (a per-example failure)."""


def parse_lens_answer(body: Any, query: str, mode: str = "qbe") -> tuple[list[Match], Counter[str]]:
    """Matches of one SerpApi Google Lens answer (best first) and the visual matches left out, by reason."""
    if not isinstance(body, dict):
        raise SourceError(f"expected a JSON object, got {type(body).__name__}")
    error = body.get("error")
    if error and _NO_RESULTS not in str(error):
        raise SourceError(f"SerpApi said: {error}")
    matches: list[Match] = []
    skipped: Counter[str] = Counter()
    for order, item in enumerate(body.get("visual_matches") or [], start=1):
        if not isinstance(item, dict):
            skipped["bad_result"] += 1
            continue
        image = item.get("image")
        if not isinstance(image, str) or not image.startswith(("http://", "https://")):
            skipped["thumbnail_only"] += 1
            continue
        candidate = Candidate(
            url=image,
            source="google-lens",
            query=query,
            mode=mode,
            page_url=item.get("link"),
            title=strip_html(item.get("title")),
            width=as_int(item.get("image_width")),
            height=as_int(item.get("image_height")),
        )
        matches.append(Match(candidate, as_int(item.get("position")) or order))
    return matches, skipped


class GoogleLensSource(ExampleSearchSource):
    """SerpApi's Google Lens engine (opt-in; needs ``SERPAPI_API_KEY``); by example picture only."""

    name = "google-lens"
    default_endpoint = "https://serpapi.com/search.json"
    requires_env = (KEY_VARIABLE,)
    secret_params = ("api_key",)
    key_help = "get a key at https://serpapi.com/manage-api-key (each search costs one SerpApi credit)"

    def search_example(self, example: Example, limit: int, embedding: Sequence[float] | None = None) -> list[Match]:
        if limit <= 0:
            return []
        if not example.public_url:
            raise NoPublicUrlError(
                f"example {example.example_id!r} has no public URL; Google Lens fetches the picture itself, so pass "
                f"--public-url-prefix (prefix + {example.file_name!r}) or give a dataset with a source_url column"
            )
        params = {"engine": "google_lens", "url": example.public_url, "api_key": os.environ[KEY_VARIABLE]}
        body = self.get_json(self.endpoint, params=params)
        try:
            matches, skipped = parse_lens_answer(body, example.example_id)
        except (SourceError, AttributeError, TypeError, ValueError) as e:
            raise SourceError(
                f"source {self.name!r} (endpoint {self.endpoint}) answered in an unexpected form: {e}"
            ) from e
        self.skipped.update(skipped)
        return matches[:limit]
