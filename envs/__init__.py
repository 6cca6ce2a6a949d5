"""Environments for Rehearse: making, checking and wrapping them, plus our own toy tasks.

Importing this package registers ``"rehearse/PointMass-v0"`` with Gymnasium.
"""

from __future__ import annotations

import gymnasium

from envs.errors import EnvironmentSpecError, NonFiniteError
from envs.make import env_dims, make_env, parse_env_kwargs, wrap_env
from envs.toy import PointMassEnv
from envs.wrappers import CostInfo, FiniteCheck

__all__ = [
    "POINT_MASS_ID",
    "CostInfo",
    "EnvironmentSpecError",
    "FiniteCheck",
    "NonFiniteError",
    "PointMassEnv",
    "env_dims",
    "make_env",
    "parse_env_kwargs",
    "wrap_env",
]

POINT_MASS_ID = "rehearse/PointMass-v0"

if POINT_MASS_ID not in gymnasium.registry:
    # PointMassEnv truncates itself (max_episode_steps kwarg), so no TimeLimit here.
    gymnasium.register(id=POINT_MASS_ID, entry_point="envs.toy:PointMassEnv", max_episode_steps=None)
