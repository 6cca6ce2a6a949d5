"""Small environments for the envs tests, loaded by entry point (``tests.dummy_envs:X``).

All except ``BrokenEnv`` pass Gymnasium's environment checker.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float32]


class EchoEnv(gym.Env[Array, Array]):
    """Observation ``(t, last action)``; reward 0; actions in ``[-bound, bound]``.

    Puts ``info["cost"] = cost`` on each step when ``cost`` is not ``None``.
    """

    def __init__(self, action_bound: float = 1.0, cost: Any = None) -> None:
        """Create the env with the given action bound and per-step cost."""
        self.observation_space = gym.spaces.Box(-100.0, 100.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-action_bound, action_bound, (1,), np.float32)
        self.cost = cost
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Array, dict[str, Any]]:
        """Start at ``t = 0``."""
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        """Advance ``t`` and echo the action."""
        self.t += 1
        obs = np.array([self.t, float(np.asarray(action).reshape(-1)[0])], np.float32)
        info = {} if self.cost is None else {"cost": self.cost}
        return obs, 0.0, False, self.t >= 50, info


class SpeedEnv(EchoEnv):
    """``EchoEnv`` rewarding speed: reward = the action, cost 1.0 on each step whose action is over 0.5 (the
    fastest sequence, all ``+1``, is the unsafe one)."""

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        """Echo the action; reward it, and cost it when it is over 0.5."""
        obs, _, terminated, truncated, _ = super().step(action)
        speed = float(np.asarray(action).reshape(-1)[0])
        return obs, speed, terminated, truncated, {"cost": float(speed > 0.5)}


class WideActionEnv(EchoEnv):
    """``EchoEnv`` with actions in ``[-2, 2]`` (the checker warns about them)."""

    def __init__(self) -> None:
        """Create the env with action bound 2."""
        super().__init__(action_bound=2.0)


class NaNEnv(EchoEnv):
    """``EchoEnv`` whose step ``nan_at_step`` (0-based, per episode) emits NaN.

    ``quantity`` is ``"observation"`` or ``"reward"``.
    """

    def __init__(self, nan_at_step: int = 3, quantity: str = "observation") -> None:
        """Create the env; see the class docstring."""
        super().__init__()
        self.nan_at_step = nan_at_step
        self.quantity = quantity

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step as ``EchoEnv``, but emit NaN at step ``nan_at_step``."""
        bad = self.t == self.nan_at_step
        obs, reward, terminated, truncated, info = super().step(action)
        if bad and self.quantity == "observation":
            obs[1] = np.nan
        if bad and self.quantity == "reward":
            reward = float("nan")
        return obs, reward, terminated, truncated, info


class BrokenEnv(EchoEnv):
    """Its reset returns an observation of the wrong shape: fails the env checker."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Array, dict[str, Any]]:
        """Return a 3-vector although the observation space holds 2-vectors."""
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}


class NotAnEnv:
    """A class that is not a ``gymnasium.Env``."""


class NaNLaterEnv(EchoEnv):
    """``EchoEnv`` that emits a NaN observation once it has taken ``nan_after`` steps in total."""

    def __init__(self, nan_after: int = 150) -> None:
        """Create the env; the step count runs across episodes."""
        super().__init__()
        self.nan_after = nan_after
        self.total_steps = 0

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step as ``EchoEnv``; NaN from total step ``nan_after`` on."""
        obs, reward, terminated, truncated, info = super().step(action)
        self.total_steps += 1
        if self.total_steps >= self.nan_after:
            obs[0] = np.nan
        return obs, reward, terminated, truncated, info


def wrapper_types(env: gym.Env[Any, Any]) -> list[type]:
    """The wrapper classes around ``env``, outermost first."""
    types = []
    while isinstance(env, gym.Wrapper):
        types.append(type(env))
        env = env.env
    return types
