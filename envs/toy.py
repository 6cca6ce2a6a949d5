"""Tiny tasks with a known best answer, for learning tests and smoke runs."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

__all__ = ["GoalPointMassEnv", "PointMassEnv", "goal_point_mass_reward"]

_DT = 0.1
_LIMIT = 2.0  # |x| and |v| are clipped to this
_ACTION_COST = 0.01
_FRAME = 64  # side of the rgb_array frame, in pixels


class PointMassEnv(gym.Env[NDArray[np.float32], NDArray[np.float32]]):
    """A unit mass on a line; the agent pushes it and is paid for staying at 0.

    State and observation ``(x, v)`` (float32, both clipped to ``[-2, 2]``);
    ``x0 ~ U[-1, 1]`` from ``self.np_random``, ``v0 = 0``. Action ``a`` in
    ``[-1, 1]`` (shape ``(1,)``). Dynamics with ``dt = 0.1``::

        v' = v + 0.1 a,   x' = x + 0.1 v',   reward = -x'^2 - 0.01 a^2

    The reward is never positive and is 0 exactly when the mass rests at 0 with
    no push, so the best policy drives ``x`` to 0 and holds it there. The episode
    never terminates and is truncated after ``max_episode_steps`` steps.
    """

    # Gymnasium reads metadata from the class and types it as a plain dict.
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def __init__(self, max_episode_steps: int = 50, render_mode: str | None = None) -> None:
        """Create the task; ``max_episode_steps`` must be positive."""
        if max_episode_steps < 1:
            raise ValueError(
                f"max_episode_steps must be >= 1, got {max_episode_steps}; pass a positive episode length."
            )
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"PointMassEnv supports render_mode None or 'rgb_array', got {render_mode!r}.")
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        bound = np.full(2, _LIMIT, dtype=np.float32)
        self.observation_space = gym.spaces.Box(-bound, bound, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.state = np.zeros(2, dtype=np.float32)
        self.steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Start an episode at ``x0 ~ U[-1, 1]``, ``v0 = 0``."""
        super().reset(seed=seed)
        x0 = self.np_random.uniform(-1.0, 1.0)
        self.state = np.array([x0, 0.0], dtype=np.float32)
        self.steps = 0
        return self.state.copy(), {}

    def step(
        self, action: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        """Push with ``action`` (clipped to ``[-1, 1]``) for one ``dt``."""
        push = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        x, v = (float(s) for s in self.state)
        v = float(np.clip(v + _DT * push, -_LIMIT, _LIMIT))
        x = float(np.clip(x + _DT * v, -_LIMIT, _LIMIT))
        self.state = np.array([x, v], dtype=np.float32)
        self.steps += 1
        reward = point_mass_reward(float(self.state[0]), push)
        truncated = self.steps >= self.max_episode_steps
        return self.state.copy(), reward, False, truncated, {}

    def render(self) -> NDArray[np.uint8] | None:
        """Return a ``(64, 64, 3)`` frame with the mass as a white square (``rgb_array``)."""
        if self.render_mode != "rgb_array":
            return None
        frame = np.zeros((_FRAME, _FRAME, 3), dtype=np.uint8)
        frame[:, _FRAME // 2] = 80  # the target, x = 0
        column = round((float(self.state[0]) + _LIMIT) / (2 * _LIMIT) * (_FRAME - 1))
        frame[_FRAME // 2 - 2 : _FRAME // 2 + 3, max(column - 2, 0) : column + 3] = 255
        return frame


def point_mass_reward(x_next: float, action: float) -> float:
    """Reward of ``PointMassEnv``: ``-x'^2 - 0.01 a^2`` (maximal, 0, at ``x' = a = 0``)."""
    return -(x_next**2) - _ACTION_COST * action**2


_GOAL_BOUND = 1.0  # goals and positions of GoalPointMassEnv lie in [-1, 1]^2


class GoalPointMassEnv(gym.Env[NDArray[np.float32], NDArray[np.float32]]):
    """A unit mass on a plane, paid for reaching a goal that it does not observe.

    Observation ``(x, y, vx, vy)`` (float32; positions clipped to ``[-1, 1]``, velocities to ``[-2, 2]``), starting
    at rest at the centre. Action ``(ax, ay)`` in ``[-1, 1]^2``. Dynamics per axis with ``dt = 0.1``, as
    :class:`PointMassEnv`'s: ``v' = v + 0.1 a``, ``p' = p + 0.1 v'``. Reward: :func:`goal_point_mass_reward`.

    The goal ``(gx, gy)`` in ``[-1, 1]^2`` is drawn uniformly at reset from ``self.np_random``, or given as
    ``reset(options={"goal": (gx, gy)})``; it is in ``info["goal"]`` but never in the observation, so an agent
    must be told it (in numbers, or in words: ``benchmarks/llm_language_goals.py``). Never terminates;
    truncated after ``max_episode_steps`` steps.
    """

    metadata = {"render_modes": [], "render_fps": 10}  # noqa: RUF012

    def __init__(self, max_episode_steps: int = 50) -> None:
        """Create the task; ``max_episode_steps`` must be positive."""
        if max_episode_steps < 1:
            raise ValueError(
                f"max_episode_steps must be >= 1, got {max_episode_steps}; pass a positive episode length."
            )
        self.max_episode_steps = max_episode_steps
        high = np.array([_GOAL_BOUND, _GOAL_BOUND, _LIMIT, _LIMIT], dtype=np.float32)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.state = np.zeros(4, dtype=np.float32)
        self.goal = np.zeros(2, dtype=np.float32)
        self.steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Start at rest at the centre; the goal from ``options["goal"]`` (two numbers in ``[-1, 1]``) or drawn."""
        super().reset(seed=seed)
        goal = (options or {}).get("goal")
        if goal is None:
            self.goal = self.np_random.uniform(-_GOAL_BOUND, _GOAL_BOUND, 2).astype(np.float32)
        else:
            given = np.asarray(goal, dtype=np.float64).reshape(-1)
            if given.shape != (2,) or not np.isfinite(given).all() or np.abs(given).max() > _GOAL_BOUND:
                raise ValueError(f"GoalPointMassEnv: options['goal'] must be two finite numbers in [-1, 1], "
                                 f"got {goal!r}")
            self.goal = given.astype(np.float32)
        self.state = np.zeros(4, dtype=np.float32)
        self.steps = 0
        return self.state.copy(), {"goal": self.goal.copy()}

    def step(
        self, action: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        """Push with ``action`` (clipped to ``[-1, 1]^2``) for one ``dt``."""
        push = np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[:2], -1.0, 1.0)
        position, velocity = self.state[:2].astype(np.float64), self.state[2:].astype(np.float64)
        velocity = np.clip(velocity + _DT * push, -_LIMIT, _LIMIT)
        position = np.clip(position + _DT * velocity, -_GOAL_BOUND, _GOAL_BOUND)
        self.state = np.concatenate([position, velocity]).astype(np.float32)
        self.steps += 1
        reward = goal_point_mass_reward(self.state[:2], self.goal, push)
        return self.state.copy(), reward, False, self.steps >= self.max_episode_steps, {"goal": self.goal.copy()}


def goal_point_mass_reward(position: NDArray[Any], goal: NDArray[Any], action: NDArray[Any]) -> float:
    """Reward of ``GoalPointMassEnv``: ``-|p' - g|^2 - 0.01 |a|^2`` (maximal, 0, resting on the goal)."""
    offset = np.asarray(position, dtype=np.float64) - np.asarray(goal, dtype=np.float64)
    return float(-(offset**2).sum() - _ACTION_COST * (np.asarray(action, dtype=np.float64) ** 2).sum())
