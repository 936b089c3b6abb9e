"""Search sources: each module registers one engine that turns a query into candidate image URLs.

``create_source(name, ...)`` builds one; ``list_sources()`` lists the registered names. A source module
registers itself on import with ``@register_source("name")``; this package imports them all below.
"""

from harvest.sources.base import (
    DEFAULT_SOURCES,
    Candidate,
    ResultPage,
    SearchSource,
    create_source,
    list_sources,
    register_source,
)

__all__ = [
    "DEFAULT_SOURCES",
    "Candidate",
    "ResultPage",
    "SearchSource",
    "create_source",
    "list_sources",
    "register_source",
]
