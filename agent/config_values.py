"""Values of configuration fields as they come from YAML presets and the command line, converted to the
fields' types."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from agent.preset_files import ConfigError

__all__ = ["OptionalFloat", "coerce", "field_types"]


class OptionalFloat:
    """Marker type of ``float | None`` fields (``None``, ``null`` or ``none`` mean unset)."""


def coerce(value: Any, kind: type, key: str) -> Any:
    """``value`` (from YAML or the command line) as a field of type ``kind`` (:func:`field_types`), or
    :class:`ConfigError` naming ``key``."""
    if kind is OptionalFloat:
        unset = value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))
        return None if unset else coerce(value, float, key)
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
    elif kind is int and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if number.is_integer():
            return int(number)
    elif kind is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif kind is str:
        return str(value)
    elif kind is dict and isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")


def field_types(cls: type) -> dict[str, type]:
    """Field name -> the type :func:`coerce` converts to, for the dataclass ``cls``."""
    hints = {"int": int, "float": float, "str": str, "bool": bool, "float | None": OptionalFloat}
    out: dict[str, type] = {}
    for f in dataclasses.fields(cls):
        name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        out[f.name] = hints.get(name, dict if name.startswith("dict") else object)
    return out
