"""The source contract: a registry of search engines and the candidate rows they yield."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from harvest.errors import ConfigError


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


class SearchSource:
    """Base class. Subclasses set ``name`` and implement :meth:`search`.

    ``endpoint`` overrides the API URL (mirrors, proxies, tests); ``session`` is a ``requests.Session``
    prepared by the caller (User-Agent, timeouts, private-host guard).
    """

    name: str = ""
    default_endpoint: str = ""
    requires_env: tuple[str, ...] = ()

    def __init__(self, endpoint: str | None = None, session: Any = None, timeout: float = 30.0):
        self.endpoint = endpoint or self.default_endpoint
        self.session = session
        self.timeout = timeout

    def search(self, query: str, limit: int) -> Iterator[Candidate]:
        """Yield at most ``limit`` candidates for ``query``, following the engine's pagination."""
        raise NotImplementedError


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
