"""Velocity-constrained MuJoCo tasks: Gymnasium's v5 locomotion tasks with Safety-Gymnasium's velocity costs.

Each task is the v5 task itself (same observations, actions, reward, termination and 1,000-step limit) with
``info["cost"] = 1.0`` on each step whose speed is over the task's threshold, else ``0.0``. The speed is the
step's x-velocity (``info["x_velocity"]``) for HalfCheetah, Hopper and Walker2d, and the planar speed
``sqrt(x_velocity**2 + y_velocity**2)`` for Ant; the thresholds are Safety-Gymnasium's
(:data:`VELOCITY_THRESHOLDS`). Importing :mod:`envs` registers them as ``rehearse/Safety<Task>Velocity-v1``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
from numpy.typing import NDArray

__all__ = [
    "VELOCITY_THRESHOLDS",
    "SafetyAntVelocityEnv",
    "SafetyHalfCheetahVelocityEnv",
    "SafetyHopperVelocityEnv",
    "SafetyWalker2dVelocityEnv",
    "velocity_cost",
]

VELOCITY_THRESHOLDS: dict[str, float] = {
    "HalfCheetah": 3.2096,
    "Hopper": 0.7402,
    "Walker2d": 2.3415,
    "Ant": 2.6222,
}
"""Speed (m/s) above which a step costs 1.0, per task (Safety-Gymnasium's velocity tasks)."""


def velocity_cost(info: dict[str, Any], threshold: float, planar: bool = False) -> float:
    """1.0 when the step's speed is over ``threshold``, else 0.0.

    The speed is ``info["x_velocity"]``, or with ``planar`` ``sqrt(x_velocity**2 + y_velocity**2)``.
    """
    speed = math.hypot(info["x_velocity"], info["y_velocity"]) if planar else float(info["x_velocity"])
    return 1.0 if speed > threshold else 0.0


_Step = tuple[NDArray[np.float64], np.float64, bool, bool, dict[str, np.float64]]
"""What a v5 MuJoCo task's ``step`` returns: observation, reward, terminated, truncated, info."""


def _with_cost(result: _Step, threshold: float, planar: bool = False) -> _Step:
    """A v5 task's ``step`` result with ``info["cost"]`` (:func:`velocity_cost`) added; the rest unchanged."""
    obs, reward, terminated, truncated, info = result
    return obs, reward, terminated, truncated, {**info, "cost": np.float64(velocity_cost(info, threshold, planar))}


class SafetyHalfCheetahVelocityEnv(HalfCheetahEnv):
    """HalfCheetah-v5 with cost 1.0 on steps whose x-velocity is over 3.2096 m/s."""

    def step(self, action: NDArray[np.float32]) -> _Step:
        """HalfCheetah-v5's step, with ``info["cost"]``."""
        return _with_cost(super().step(action), VELOCITY_THRESHOLDS["HalfCheetah"])


class SafetyHopperVelocityEnv(HopperEnv):
    """Hopper-v5 with cost 1.0 on steps whose x-velocity is over 0.7402 m/s."""

    def step(self, action: NDArray[np.float32]) -> _Step:
        """Hopper-v5's step, with ``info["cost"]``."""
        return _with_cost(super().step(action), VELOCITY_THRESHOLDS["Hopper"])


class SafetyWalker2dVelocityEnv(Walker2dEnv):
    """Walker2d-v5 with cost 1.0 on steps whose x-velocity is over 2.3415 m/s."""

    def step(self, action: NDArray[np.float32]) -> _Step:
        """Walker2d-v5's step, with ``info["cost"]``."""
        return _with_cost(super().step(action), VELOCITY_THRESHOLDS["Walker2d"])


class SafetyAntVelocityEnv(AntEnv):
    """Ant-v5 with cost 1.0 on steps whose planar speed ``sqrt(vx**2 + vy**2)`` is over 2.6222 m/s."""

    def step(self, action: NDArray[np.float32]) -> _Step:
        """Ant-v5's step, with ``info["cost"]``."""
        return _with_cost(super().step(action), VELOCITY_THRESHOLDS["Ant"], planar=True)
