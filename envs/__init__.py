"""Environments for Rehearse: making, checking and wrapping them, plus our own toy tasks.

Importing this package registers ``"rehearse/PointMass-v0"``, ``"rehearse/GoalPointMass-v0"``,
``"rehearse/BallCatch-v0"``, ``"rehearse/BlockTower-v0"`` and the
velocity-constrained MuJoCo tasks of :data:`SAFETY_VELOCITY_IDS` (``envs.safety``, imported when made)
with Gymnasium. Pixel observations for render-capable envs live in ``envs.pixels`` (not
imported here: importing it sets ``MUJOCO_GL``).
"""

from __future__ import annotations

import gymnasium

from envs.ball_catch import BallCatchEnv
from envs.errors import EnvironmentSpecError, NonFiniteError
from envs.make import env_action_bounds, env_dims, env_shapes, is_image_space, make_env, parse_env_kwargs, wrap_env
from envs.toy import GoalPointMassEnv, PointMassEnv
from envs.wrappers import (
    CostInfo,
    EpisodeRecorder,
    FiniteCheck,
    FrameStack,
    TransitionLog,
    cost_reported,
    find_wrapper,
)

__all__ = [
    "BALL_CATCH_ID",
    "BLOCK_TOWER_ID",
    "GOAL_POINT_MASS_ID",
    "SAFETY_VELOCITY_IDS",
    "POINT_MASS_ID",
    "BallCatchEnv",
    "CostInfo",
    "EpisodeRecorder",
    "EnvironmentSpecError",
    "FiniteCheck",
    "FrameStack",
    "NonFiniteError",
    "GoalPointMassEnv",
    "PointMassEnv",
    "TransitionLog",
    "cost_reported",
    "find_wrapper",
    "env_action_bounds",
    "env_dims",
    "env_shapes",
    "is_image_space",
    "make_env",
    "parse_env_kwargs",
    "wrap_env",
]

POINT_MASS_ID = "rehearse/PointMass-v0"
GOAL_POINT_MASS_ID = "rehearse/GoalPointMass-v0"
BALL_CATCH_ID = "rehearse/BallCatch-v0"
BLOCK_TOWER_ID = "rehearse/BlockTower-v0"

if POINT_MASS_ID not in gymnasium.registry:
    # PointMassEnv truncates itself (max_episode_steps kwarg), so no TimeLimit here.
    gymnasium.register(id=POINT_MASS_ID, entry_point="envs.toy:PointMassEnv", max_episode_steps=None)

if GOAL_POINT_MASS_ID not in gymnasium.registry:
    # GoalPointMassEnv truncates itself too (max_episode_steps kwarg).
    gymnasium.register(id=GOAL_POINT_MASS_ID, entry_point="envs.toy:GoalPointMassEnv", max_episode_steps=None)

if BALL_CATCH_ID not in gymnasium.registry:
    # BallCatchEnv truncates itself too (max_episode_steps kwarg).
    gymnasium.register(id=BALL_CATCH_ID, entry_point="envs.ball_catch:BallCatchEnv", max_episode_steps=None)

if BLOCK_TOWER_ID not in gymnasium.registry:
    # BlockTowerEnv ends its own episodes (max_steps kwarg); envs.block_tower is imported when made.
    gymnasium.register(id=BLOCK_TOWER_ID, entry_point="envs.block_tower:BlockTowerEnv", max_episode_steps=None)

SAFETY_VELOCITY_IDS: dict[str, str] = {
    "rehearse/SafetyHalfCheetahVelocity-v1": "envs.safety:SafetyHalfCheetahVelocityEnv",
    "rehearse/SafetyHopperVelocity-v1": "envs.safety:SafetyHopperVelocityEnv",
    "rehearse/SafetyWalker2dVelocity-v1": "envs.safety:SafetyWalker2dVelocityEnv",
    "rehearse/SafetyAntVelocity-v1": "envs.safety:SafetyAntVelocityEnv",
}
"""Registered id -> entry point of each velocity-constrained task (the v5 task with ``info["cost"]``)."""

for _safety_id, _entry_point in SAFETY_VELOCITY_IDS.items():
    if _safety_id not in gymnasium.registry:  # the v5 tasks' own 1,000-step limit
        gymnasium.register(id=_safety_id, entry_point=_entry_point, max_episode_steps=1000)
