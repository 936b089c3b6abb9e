"""clip-knn: a self-hosted clip-retrieval k-NN back end (``clip-retrieval back``), by example picture or by text.

Request (clip-retrieval's ``KnnService.post``): ``POST {endpoint}/knn-service`` with a JSON body holding the
query as ``image`` (base64 of the encoded picture), ``embedding_input`` (a CLIP vector from the same model as the
index) or ``text``, plus ``modality`` (``"image"``: search the image index), ``num_images``, ``num_result_ids``,
``indice_name``, ``deduplicate``, ``use_safety_model``, ``use_violence_detector``, ``aesthetic_score`` and
``aesthetic_weight``. Answer: a JSON list, best first, of ``{"url", "caption", "id", "similarity"}`` (plus any
other metadata columns the index returns). The public LAION service is down, so there is no default endpoint.
Back ends older than ``embedding_input`` answer an embedding query with an error; the source then sends the
picture itself, for that example and every later one.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from harvest.errors import ConfigError, FetchError, SourceError
from harvest.sources.base import Candidate, register_source
from harvest.sources.by_example import Example, ExampleSearchSource, Match
from harvest.sources.text import as_float, strip_html

DEFAULT_INDEX = "laion5B-L-14"  # the index name of LAION's own deployment; self-hosted ones name theirs
SERVICE_PATH = "/knn-service"
RESULT_ID_FACTOR = 3  # neighbours fetched per result wanted, for the filters to drop from
MAX_RESULT_IDS = 10_000


def parse_knn_answer(body: Any, query: str, mode: str, source: str = "clip-knn") -> tuple[list[Match], Counter[str]]:
    """Matches of one k-NN answer in the order given (best first), and the results left out, by reason."""
    if isinstance(body, dict) and ("error" in body or "message" in body):
        raise SourceError(f"the back end answered an error: {body.get('error') or body.get('message')}")
    if not isinstance(body, list):
        raise SourceError(f"expected a JSON list of results, got {type(body).__name__}")
    matches: list[Match] = []
    skipped: Counter[str] = Counter()
    for position, item in enumerate(body, start=1):
        if not isinstance(item, dict):
            skipped["bad_result"] += 1
            continue
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            skipped["no_image_url"] += 1
            continue
        candidate = Candidate(url=url, source=source, query=query, mode=mode, title=strip_html(item.get("caption")))
        matches.append(Match(candidate, position, as_float(item.get("similarity"))))
    return matches, skipped


@register_source("clip-knn")
class ClipKnnSource(ExampleSearchSource):
    """A clip-retrieval back end: ``search_example`` sends the picture (or its embedding), ``search`` sends text."""

    api_paths = (SERVICE_PATH,)

    def __init__(
        self,
        endpoint: str | None = None,
        session: Any = None,
        timeout: float = 30.0,
        index: str = DEFAULT_INDEX,
        deduplicate: bool = True,
        use_safety_model: bool = True,
        use_violence_detector: bool = True,
        aesthetic_score: int | None = None,
        aesthetic_weight: float | None = None,
    ):
        if not endpoint:
            raise ConfigError(
                "source 'clip-knn' has no default endpoint (the public LAION k-NN service is down); host a "
                "clip-retrieval back end (`clip-retrieval back`) and pass --endpoint clip-knn=URL, e.g. "
                "--endpoint clip-knn=http://my-host:1234"
            )
        super().__init__(endpoint=endpoint, session=session, timeout=timeout)
        if not index.strip():
            raise ConfigError("--knn-index is empty; pass the indice name the back end serves (see /indices-list)")
        self.index = index
        self.embedding_refused = False  # the back end failed an embedding query that succeeded as a picture
        self.options: dict[str, Any] = {
            "deduplicate": deduplicate,
            "use_safety_model": use_safety_model,
            "use_violence_detector": use_violence_detector,
            "use_mclip": False,
            # clip-retrieval reads an empty string as "no aesthetic re-weighting"
            "aesthetic_score": "" if aesthetic_score is None else int(aesthetic_score),
            "aesthetic_weight": "" if aesthetic_weight is None else float(aesthetic_weight),
        }

    def request_body(self, limit: int, **query: Any) -> dict[str, Any]:
        """The JSON body for one query (``image=``, ``embedding_input=`` or ``text=``) asking for ``limit`` results."""
        body = {"text": None, "image": None, "image_url": None, "embedding_input": None, **query}
        # The service fetches num_result_ids neighbours, then drops duplicates and unsafe pictures and returns at
        # most num_images: asking for as many ids as images would come back short whenever a filter is on.
        ids = max(limit, min(limit * RESULT_ID_FACTOR, MAX_RESULT_IDS))
        body.update(self.options, modality="image", indice_name=self.index, num_images=limit, num_result_ids=ids)
        return body

    def _query(self, limit: int, query_name: str, mode: str, **query: Any) -> list[Match]:
        body = self.post_json(self.url(SERVICE_PATH), json=self.request_body(limit, **query))
        try:
            matches, skipped = parse_knn_answer(body, query_name, mode, self.name)
        except (SourceError, AttributeError, TypeError, ValueError) as e:
            raise SourceError(
                f"source {self.name!r} (endpoint {self.endpoint}) answered in an unexpected form: {e}"
            ) from e
        self.skipped.update(skipped)
        return matches[:limit]

    def search_example(self, example: Example, limit: int, embedding: Sequence[float] | None = None) -> list[Match]:
        if limit <= 0:
            return []
        if embedding is None or self.embedding_refused:
            return self._query_picture(example, limit)
        try:
            return self._query(limit, example.example_id, "qbe", embedding_input=[float(v) for v in embedding])
        except (FetchError, SourceError) as refused:
            if isinstance(refused, FetchError) and refused.status is None:
                raise  # the network failed; the back end never judged the query
            try:
                matches = self._query_picture(example, limit)
            except (FetchError, SourceError):
                raise refused from None
            self.embedding_refused = True
            self.notes.append(
                f"clip-knn at {self.endpoint} failed an embedding query ({refused}) that it answered as a picture; "
                "it predates embedding_input, so the example pictures were sent instead (--knn-query image)"
            )
            return matches

    def _query_picture(self, example: Example, limit: int) -> list[Match]:
        encoded = base64.b64encode(example.path.read_bytes()).decode("ascii")
        return self._query(limit, example.example_id, "qbe", image=encoded)

    def search(self, query: str, limit: int) -> Iterator[Candidate]:
        """Text search of the image index (CLIP's text tower on the server): ``harvest keywords`` works too."""
        if limit <= 0:
            return
        for match in self._query(limit, query, "keyword", text=query):
            yield match.candidate
