"""Errors raised by ``envs``: each message says what was wrong and what to do."""

from __future__ import annotations

__all__ = ["EnvironmentSpecError", "NonFiniteError"]


class EnvironmentSpecError(ValueError):
    """The requested environment cannot be used by Rehearse.

    Raised for unknown environment ids, broken ``package.module:EnvClass`` entry
    points, unsupported observation/action spaces, malformed ``key=value`` env
    kwargs and failures of Gymnasium's environment checker.
    """


class NonFiniteError(RuntimeError):
    """An environment emitted NaN or inf (in an observation, reward or cost)."""
