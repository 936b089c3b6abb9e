"""The query-by-example contract: sources that take a picture and answer pictures that look like it.

``harvest qbe`` sends every example picture (a labeled training image, say) to such a source and keeps the
first ``limit`` answers. Unlike a keyword search, each answer carries its rank and, where the engine gives one,
a similarity score; both end up in the pool (``rank``, ``similarity``) through :class:`Match`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harvest.errors import SourceError
from harvest.sources.base import Candidate, SearchSource


@dataclass(frozen=True)
class Example:
    """One example picture: its id (``IMG_12``), a file holding its bytes, and a public URL when one is known.

    ``file_name`` is the name a ``--public-url-prefix`` is joined with (the relative path in an examples folder,
    ``<image_id>.<ext>`` for a dataset row).
    """

    example_id: str
    path: Path
    file_name: str
    public_url: str | None = None


@dataclass(frozen=True)
class Match:
    """One answer to an example: the candidate image, its 1-based rank, the engine's similarity (None if none)."""

    candidate: Candidate
    rank: int
    similarity: float | None = None


class ExampleSearchSource(SearchSource):
    """Base class of query-by-example sources; subclasses implement :meth:`search_example`."""

    def search_example(self, example: Example, limit: int, embedding: Sequence[float] | None = None) -> list[Match]:
        """At most ``limit`` matches for ``example``, best first; ``embedding`` is its CLIP vector when known."""
        raise NotImplementedError

    def search(self, query: str, limit: int) -> Iterator[Candidate]:
        raise SourceError(
            f"source {self.name!r} searches by example picture, not by text; use `harvest qbe --sources {self.name}`"
        )
