"""Exceptions of the train stage."""

from __future__ import annotations


class TrainError(Exception):
    """Base class of every error train raises on purpose."""


class ConfigError(TrainError, ValueError):
    """A bad manifest or override: the message names the key, the bad value and the fix."""


class DataError(TrainError, OSError):
    """A dataset named by a manifest is missing or does not match the schema it should."""


class ModelError(TrainError, RuntimeError):
    """An unknown architecture or weights that cannot be loaded."""


class DivergenceError(TrainError, FloatingPointError):
    """A loss became NaN or infinite; the message names the step and the term."""


class HubError(TrainError, OSError):
    """The Hugging Face Hub refused or could not serve a push or a download; the message names the repo and the fix."""
