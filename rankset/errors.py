"""Exceptions of the rankset stage.

Per-item failures (an unreadable picture, a broken annotation) are recorded and summarised, never raised
past the run. These exceptions stop a run before work starts.
"""

from __future__ import annotations


class RanksetError(Exception):
    """Base class of every error rankset raises on purpose."""


class ConfigError(RanksetError, ValueError):
    """A bad argument: the message names the flag, the bad value and the accepted range."""


class InputError(RanksetError, OSError):
    """An input path is missing or matches no known layout; the message says what was expected where."""


class EmptySplitError(InputError):
    """A dataset has no rows in ``splits``: one being written (its ``--out`` was left as it was), or a saved
    folder ``datasets`` cannot load because of it."""

    def __init__(self, message: str, splits: list[str]) -> None:
        super().__init__(message)
        self.splits = splits


class ImageError(RanksetError, OSError):
    """One picture cannot be decoded; callers turn it into a skipped item with this message as the reason."""


class AnnotationError(RanksetError, ValueError):
    """One annotation file cannot be read; callers turn it into a skipped item."""


class PublishError(RanksetError, RuntimeError):
    """A dataset cannot be pushed or loaded from the Hub (no token, offline, refused licence)."""
