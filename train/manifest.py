"""Manifests: a TOML file or table plus ``--set key=value`` overrides, checked and built into a
:class:`~train.config.RunConfig`, and the resolved config written back as plain data or TOML.

Precedence is dataclass defaults, then the manifest, then ``--set key=value``. Unknown keys and wrong types
are :class:`~train.errors.ConfigError` naming the key, the bad value and the fix (DESIGN.md, "Manifests").
An optional section (``[tasks.segment]``, ``model.masksembles``, ``[rounds]``...) is switched on by its table;
``--set tasks.segment.weight=0.1`` creates the table, so it switches the task on too. The sections themselves
and their value checks are :mod:`train.config`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import tomllib

from train.config import RunConfig
from train.errors import ConfigError


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _section(hint: Any) -> Any:
    """The dataclass a field holds, for ``Section`` and ``Section | None`` hints; None for value fields."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if dataclasses.is_dataclass(o)]
        return options[0] if options else None
    return None


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the field type ``hint``; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} = {value!r} has the wrong type: expected {_type_name(hint)}")
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} = {value!r} has the wrong type: expected a list of {_type_name(item_hint)}")
        return [_coerce(v, item_hint, f"{key}[{i}]") for i, v in enumerate(value)]
    ok = (
        (hint is bool and isinstance(value, bool))
        or (hint is int and isinstance(value, int) and not isinstance(value, bool))
        or (hint is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (hint is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{key} = {value!r} has the wrong type: expected {_type_name(hint)}")
    return float(value) if hint is float else value


FLOAT32_MAX = 3.4028234663852886e38  # every float of a manifest ends up in float32 tensors or arithmetic with them
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32: below it a value is 0 or imprecise
INT64_LIMIT = 2**63  # torch and NumPy hold integers as int64


def _check_range(value: Any, key: str) -> str:
    """Why a coerced number cannot be used (NaN, an infinity, beyond float32 or int64), or "" when it can."""
    if isinstance(value, list):
        return next((why for why in (_check_range(v, f"{key}[{i}]") for i, v in enumerate(value)) if why), "")
    if isinstance(value, float) and not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
        return f"{key} = {value!r} is not a finite number within float32 range (|x| <= 3.4e38)"
    if isinstance(value, float) and 0 < abs(value) < FLOAT32_TINY:
        return f"{key} = {value!r} is so close to 0 that float32 holds it as 0 (or loses its precision: |x| < 1.2e-38)"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= INT64_LIMIT:
        return f"{key} = {value!r} does not fit a 64-bit integer"
    return ""


def _example(cls: type, name: str, full: str, value: Any) -> str:
    """``; write e.g. key = ...``, the fix for a wrong type: a lone string for a list becomes a one-item list, a
    number in quotes loses them, anything else shows the default (nothing where the default says little)."""
    spec = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
    if isinstance(default, list) and isinstance(value, str):
        return f"; write e.g. {full} = {_toml_value([value])} (a list, even of one)"
    if isinstance(default, int | float) and not isinstance(default, bool) and isinstance(value, str):
        try:
            return f"; write e.g. {full} = {_toml_value(type(default)(value))} (a number in quotes is a string in TOML)"
        except ValueError:
            pass
    if default in (None, "", []) or default is dataclasses.MISSING:
        return ""
    return f"; write e.g. {full} = {_toml_value(default)}"


def _build(cls: type, table: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a TOML table, refusing unknown keys and wrong types."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown key {full!r}; valid keys here: {', '.join(prefix + n for n in names)}")
        hint = hints[key]
        section = _section(hint)
        if section is not None and value is None and not dataclasses.is_dataclass(hint):
            kwargs[key] = None  # an optional section switched off (config_to_dict writes None)
        elif section is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"{full} must be a table ([{full}]), got {value!r}")
            kwargs[key] = _build(section, value, f"{full}.")
        else:
            try:
                kwargs[key] = _coerce(value, hint, full)
            except ConfigError as e:
                raise ConfigError(f"{e}{_example(cls, key, full, value)}") from None
            why = _check_range(kwargs[key], full)
            if why:  # nan, inf or 1e308 pass a ">= 0" check (or fail it with a message blaming the sign)
                raise ConfigError(f"{why}{_example(cls, key, full, None) or '; write a plain number'}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # a dataclass refusing a value it cannot even compare
        raise ConfigError(f"invalid [{prefix.rstrip('.') or 'manifest'}]: {e}") from e


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"schedule.steps=500"`` -> (["schedule", "steps"], 500); values are TOML, bare words are strings."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r} is not key=value; e.g. --set schedule.steps=500")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r} has an empty key; e.g. --set schedule.steps=500")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare path or word: data.eval=data/shb
    return key.split("."), value


def apply_overrides(table: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of the manifest table with each ``key=value`` set; the key must name an existing field."""
    result = _deep_copy(table)
    for item in overrides:
        path, value = parse_override(item)
        node: dict[str, Any] = result
        cls: Any = RunConfig
        for depth, part in enumerate(path):
            names = [f.name for f in dataclasses.fields(cls)]
            if part not in names:
                done = ".".join(path[:depth])
                prefix = f"{done}." if done else ""
                raise ConfigError(
                    f"--set {item!r}: unknown key {prefix + part!r}; valid keys: {', '.join(prefix + n for n in names)}"
                )
            hint = _section(_hints(cls)[part]) or _hints(cls)[part]
            last = depth == len(path) - 1
            if dataclasses.is_dataclass(hint) and not last:
                if not isinstance(node.get(part), dict):
                    node[part] = {}  # an absent optional section: setting one of its keys switches it on
                node = node[part]
                cls = hint
            elif last and not dataclasses.is_dataclass(hint):
                node[part] = value
            elif last:
                key = ".".join(path)
                raise ConfigError(
                    f"--set {item!r}: {key} is a section, not a value; set one of its keys: --set {key}.KEY=V"
                )
            else:  # a value with more path after it (--set schedule.steps.max=3)
                key = ".".join(path[: depth + 1])
                raise ConfigError(f"--set {item!r}: {key} is a value, not a section; set it itself: --set {key}=VALUE")
    return result


def _deep_copy(table: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in table.items()}


def config_from_dict(table: dict[str, Any], overrides: list[str] | None = None) -> RunConfig:
    """A validated RunConfig from a manifest table plus ``--set`` overrides."""
    return _build(RunConfig, apply_overrides(table, overrides or []), "")


def load_manifest(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML manifest, apply overrides and validate everything before any work starts."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a TOML file" if path.is_dir() else "does not exist"
        raise ConfigError(f"manifest {path} {what}; pass a TOML file such as manifests/quickstart.toml")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark some editors write is not an error
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"manifest {path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}), as TOML must "
            "be; save it as UTF-8"
        ) from e
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            f'manifest {path} is not valid TOML: {e}. Fix the TOML there: strings in quotes (name = "run"), '
            "each key and [table] written once; manifests/quickstart.toml shows every section"
        ) from e
    try:
        return config_from_dict(table, overrides)
    except ConfigError as e:
        if table:
            raise
        raise ConfigError(
            f"manifest {path} holds no keys (empty, or only comments): {e}. Start from manifests/quickstart.toml"
        ) from e


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The resolved manifest as plain data (saved in the run folder and every checkpoint)."""
    return dataclasses.asdict(config)


# a TOML basic string may not hold these raw: a name or path with a newline would make config.toml unreadable
_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _control_escape(char: str) -> str:
    """Other control characters as ``\\uXXXX``; every other character as itself."""
    return f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_TOML_ESCAPES.get(c) or _control_escape(c) for c in value) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def config_to_toml(config: RunConfig) -> str:
    """The resolved manifest as TOML text; ``load_manifest`` of it gives back an equal config."""
    lines: list[str] = []

    def emit(table: dict[str, Any], header: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
        if header and scalars:
            lines.append(f"\n[{header}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in table.items():
            if isinstance(v, dict):
                emit(v, f"{header}.{k}" if header else k)

    emit(config_to_dict(config), "")
    return "\n".join(lines).lstrip("\n") + "\n"
