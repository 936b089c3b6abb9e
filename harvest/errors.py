"""Exceptions of the harvest stage.

A failure of one item (a URL, a file) is never an exception that escapes: it becomes a pool row with a
``status`` and an ``error``. These exceptions are for failures of the whole run, raised before work starts.
"""

from __future__ import annotations


class HarvestError(Exception):
    """Base class of every error harvest raises on purpose."""


class ConfigError(HarvestError, ValueError):
    """A bad argument, flag or option value; the message names the value, what was expected and the fix."""


class FetchError(HarvestError, OSError):
    """A network failure of a whole source (not of one image, which becomes a row); ``status`` is the HTTP status
    when the server answered one (None for a network failure)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PoolError(HarvestError, OSError):
    """The pool on disk is missing, of an unknown format version, or inconsistent."""


class SourceError(HarvestError):
    """A search source answered in a form its parser does not understand."""


class ModelUnavailableError(HarvestError, RuntimeError):
    """Model weights cannot be loaded (offline, no cache, no local file)."""
