"""The validation helper the manifest's section dataclasses share (:mod:`train.config`, :mod:`train.task_config`):
one place for the wording of a bad-value :class:`~train.errors.ConfigError`.
"""

from __future__ import annotations

from typing import Any

from train.errors import ConfigError


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    """Raise a ConfigError naming the key, the bad value and what is accepted."""
    if not ok:
        raise ConfigError(f"{key} = {value!r} is invalid: expected {expected}")
