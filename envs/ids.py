"""Environment ids: entry points versus registered ids, and the registered ids close to a mistyped one.

Imported by both ``envs.make`` and ``envs.pixels`` (which ``envs.make`` imports late), so neither
imports the other to name an id.
"""

from __future__ import annotations

import difflib

import gymnasium as gym

__all__ = ["close_env_ids", "did_you_mean", "is_entry_point"]


def is_entry_point(env_id: str) -> bool:
    """Whether ``env_id`` is ``package.module:EnvClass`` rather than a registered id."""
    module, sep, name = env_id.rpartition(":")
    return bool(sep and module and name.isidentifier())


def close_env_ids(env_id: str, n: int = 5) -> list[str]:
    """Return up to ``n`` registered ids close to ``env_id`` (case-insensitive)."""
    by_lower = {registered.lower(): registered for registered in gym.registry}
    matches = difflib.get_close_matches(env_id.lower(), list(by_lower), n=n)
    return [by_lower[match] for match in matches]


def did_you_mean(env_id: str) -> str:
    """`` Did you mean one of: ...?`` naming the registered ids close to ``env_id``, or ``""`` when none is."""
    matches = [match for match in close_env_ids(env_id) if match != env_id]
    return f" Did you mean one of: {', '.join(matches)}?" if matches else ""
