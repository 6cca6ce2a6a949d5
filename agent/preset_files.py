"""Preset files: where an environment's preset lives, reading one (with ``extends``), and the error a bad
preset or override raises. :mod:`agent.config` applies what is read here to the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A preset or override names an unknown key or has a value of the wrong type."""


def safe_name(env_id: str) -> str:
    """``env_id`` usable as a file name (``/`` and ``:`` replaced by ``_``)."""
    return env_id.replace("/", "_").replace(":", "_")


def preset_path(env_id: str) -> Path:
    """Where the preset for ``env_id`` lives (``/`` and ``:`` replaced by ``_``)."""
    return PRESET_DIR / f"{safe_name(env_id)}.yaml"


def load_preset(env_id: str, preset: str | None = None) -> dict[str, Any]:
    """A preset by name (``debug``) or path, else the one for ``env_id``, else ``default``.

    A preset may start from another: ``extends: HalfCheetah-v5`` takes that preset's values, then its own."""
    if preset is not None:
        path = Path(preset) if preset.endswith((".yaml", ".yml")) else PRESET_DIR / f"{preset}.yaml"
        if not path.exists():
            names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
            raise ConfigError(f"no preset {preset!r}; give a YAML path or one of {names}")
    else:
        path = preset_path(env_id)
        if not path.exists():
            path = PRESET_DIR / "default.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path} must be a mapping of sections to values")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str) or base == path.stem or len(_extends_chain) > 8:
        raise ConfigError(f"preset {path}: extends must name another preset (no cycle), got {base!r}")
    _extends_chain.append(base)
    try:
        return merge_presets(load_preset(env_id, base), data)
    finally:
        _extends_chain.pop()


_extends_chain: list[str] = []


def merge_presets(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``, section by section (a preset's ``extends``): a section both set is merged
    key by key, the child's values winning."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged
