"""Wrappers every Rehearse environment wears: a finite-value guard and ``info["cost"]``.

``make_env`` applies them in the order raw env -> ``RescaleAction`` -> ``CostInfo``
-> ``FiniteCheck``, so ``FiniteCheck`` sees the agent's ``[-1, 1]`` actions and the
cost that ``CostInfo`` guarantees. Pixel tasks may also wear :class:`FrameStack`
(innermost, before those), which puts the last ``k`` frames side by side in the
channel axis so that velocities are visible in one observation.
"""

from __future__ import annotations

import collections
from typing import Any, SupportsFloat, TypeVar

import gymnasium as gym
import numpy as np

from envs.errors import EnvironmentSpecError, NonFiniteError

__all__ = [
    "CostInfo", "FiniteCheck", "FrameStack", "TransitionLog", "as_cost", "cost_reported", "env_name",
    "find_wrapper", "nonfinite_entries",
]

W = TypeVar("W", bound=gym.Wrapper[Any, Any, Any, Any])

_MAX_LISTED = 5  # how many non-finite entries an error message lists


def env_name(env: gym.Env[Any, Any]) -> str:
    """Return the registered id of ``env`` or, without a spec, its class name."""
    spec = env.unwrapped.spec
    return spec.id if spec is not None else type(env.unwrapped).__name__


def nonfinite_entries(value: Any) -> list[str]:
    """Describe the non-finite entries of a numeric scalar or array.

    Returns an empty list when every entry is finite, else up to five strings
    such as ``"[1]=nan"`` (or ``"nan"`` for a scalar) followed by ``"..."``.
    """
    array = np.asarray(value)
    if array.dtype.kind in "biu":  # integers (e.g. uint8 frames) are always finite
        return []
    array = array.astype(np.float64, copy=False)
    if array.ndim == 0:
        return [] if np.isfinite(array) else [str(float(array))]
    bad = np.argwhere(~np.isfinite(array))
    described = [f"[{', '.join(str(int(i)) for i in index)}]={array[tuple(index)]}" for index in bad[:_MAX_LISTED]]
    return described + (["..."] if len(bad) > _MAX_LISTED else [])


def as_cost(value: Any, env_id: str) -> float:
    """Convert an environment's ``info["cost"]`` to a python float (``None`` -> 0.0).

    Raises:
        EnvironmentSpecError: when the cost is not a single number.
    """
    if value is None:
        return 0.0
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "biuf":
        raise EnvironmentSpecError(
            f"environment {env_id} put a non-numeric info['cost'] ({value!r}, "
            f"{type(value).__name__}); Rehearse expects one number per step "
            "(the step's safety cost, 0.0 when safe). Make the environment return "
            "a float cost, or drop the 'cost' key if it has no costs."
        )
    return float(array.reshape(()))


class FiniteCheck(gym.Wrapper[Any, Any, Any, Any]):
    """Raise :class:`NonFiniteError` as soon as the environment emits NaN or inf.

    Checks the observation after ``reset`` and the observation, reward and (when
    present) ``info["cost"]`` after each ``step``. Episodes are counted from 0
    (the first ``reset``) and steps from 0 within each episode, so the error
    names exactly where the bad value appeared.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        """Wrap ``env``; counting starts at the first ``reset``."""
        super().__init__(env)
        self.episode = -1
        self.step_in_episode = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the environment, start a new episode count and check the observation."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode += 1
        self.step_in_episode = 0
        self._check("observation", obs, action=None)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the environment and check observation, reward and cost are finite."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._check("observation", obs, action)
        self._check("reward", reward, action)
        if "cost" in info:
            self._check("cost", info["cost"], action)
            self._check_cost_sign(info["cost"], action)
        self.step_in_episode += 1
        return obs, reward, terminated, truncated, info

    def _check(self, quantity: str, value: Any, action: Any) -> None:
        bad = nonfinite_entries(value)
        if bad:
            raise NonFiniteError(self._message(quantity, bad, action))

    def _check_cost_sign(self, cost: Any, action: Any) -> None:
        """:class:`EnvironmentSpecError` for a negative ``info["cost"]`` (a cost is a float >= 0)."""
        array = np.asarray(cost)
        if array.dtype.kind in "biuf" and np.any(array < 0):
            raise EnvironmentSpecError(
                f"environment {env_name(self)} put a negative info['cost'] ({array.tolist()}) {self._where(action)}; "
                "a safety cost is a number >= 0 per step (0.0 when the step is safe). Make the environment "
                "report costs >= 0 (e.g. max(0, violation)), or drop the 'cost' key if it has no costs."
            )

    def _where(self, action: Any) -> str:
        if action is None:
            return f"at reset of episode {self.episode}"
        rounded = [round(float(a), 4) for a in np.ravel(np.asarray(action, dtype=np.float64))]
        return f"in episode {self.episode}, step {self.step_in_episode} (counted from 0), after action {rounded}"

    def _message(self, quantity: str, bad: list[str], action: Any) -> str:
        where = self._where(action)
        return (
            f"environment {env_name(self)} emitted a non-finite {quantity} "
            f"({', '.join(bad)}) {where}. Check the environment's dynamics for this "
            "state and action, clip the action range if extreme actions blow it up, "
            "or report it to the environment's authors; the replay buffer and "
            "checkpoints written so far are unaffected."
        )


class CostInfo(gym.Wrapper[Any, Any, Any, Any]):
    """Guarantee ``info["cost"]`` is a python float on every step (0.0 when absent).

    Raises :class:`EnvironmentSpecError` when the environment gives a cost that is
    not a single number. The environment's own ``info`` dict is not modified.
    ``reported`` tells whether the environment itself has put a ``"cost"`` in any step's ``info``.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        """Wrap ``env``; ``reported`` starts ``False``."""
        super().__init__(env)
        self.reported = False

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the environment and return a copy of ``info`` with a float ``cost``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.reported = self.reported or "cost" in info
        cost = as_cost(info.get("cost"), env_name(self))
        return obs, reward, terminated, truncated, {**info, "cost": cost}


def find_wrapper(env: gym.Env[Any, Any], kind: type[W]) -> W | None:
    """The outermost wrapper of class ``kind`` that ``env`` is or wears, else ``None``."""
    inner: Any = env
    while isinstance(inner, gym.Wrapper):
        if isinstance(inner, kind):
            return inner
        inner = inner.env
    return None


def cost_reported(env: gym.Env[Any, Any]) -> bool:
    """Whether the environment beneath ``env``'s :class:`CostInfo` has reported an ``info["cost"]`` so far
    (``False`` when ``env`` wears no CostInfo)."""
    wrapper = find_wrapper(env, CostInfo)
    return wrapper is not None and wrapper.reported


class TransitionLog(gym.Wrapper[Any, Any, Any, Any]):
    """Keep ``(observation, action, info["cost"])`` of every step, for judging predictions of the cost.

    :meth:`take` returns them as ``obs (n, *obs_shape)``, ``actions (n, A)`` float32 and ``costs (n,)`` float64
    (``obs`` is the observation the action was taken in) and forgets them.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        """Wrap ``env``; nothing is kept until the first ``reset``."""
        super().__init__(env)
        self._obs: Any = None
        self._rows: list[tuple[np.ndarray, np.ndarray, float]] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env; remember its observation."""
        self._obs, info = self.env.reset(seed=seed, options=options)
        return self._obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; keep the observation before it, the action and the step's cost."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        cost = float(info.get("cost", 0.0))
        self._rows.append((np.asarray(self._obs), np.asarray(action, dtype=np.float32).reshape(-1), cost))
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(obs, actions, costs)`` of the steps kept since the last call (see the class docstring)."""
        rows, self._rows = self._rows, []
        if not rows:
            shape = self.observation_space.shape or ()
            action_dim = (self.action_space.shape or (0,))[0]
            return np.zeros((0, *shape), np.float32), np.zeros((0, action_dim), np.float32), np.zeros(0)
        obs, actions, costs = zip(*rows, strict=True)
        return np.stack(obs), np.stack(actions), np.asarray(costs, dtype=np.float64)


class FrameStack(gym.Wrapper[Any, Any, Any, Any]):
    """Observe the last ``k`` frames concatenated along the channel axis (oldest first).

    The env's observations must be channel-last images ``Box(0, 255, (Hp, Wp, C), uint8)``;
    this wrapper's are ``(Hp, Wp, k * C)`` uint8, channels ``[i * C, (i + 1) * C)`` holding
    the frame from ``k - 1 - i`` steps ago. At ``reset`` the first frame fills every slot.

    Raises:
        EnvironmentSpecError: when the observation space is not such an image, or ``k < 1``.
    """

    def __init__(self, env: gym.Env[Any, Any], k: int) -> None:
        """Wrap ``env``; see the class docstring."""
        super().__init__(env)
        space = env.observation_space
        if not (isinstance(k, int) and k >= 1):
            raise EnvironmentSpecError(f"frame_stack must be an int >= 1, got {k!r}.")
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8):
            raise EnvironmentSpecError(
                f"FrameStack needs image observations Box(0, 255, (Hp, Wp, C), uint8), but "
                f"{env_name(env)} has {space}; use pixels (e.g. pixels=True or obs_mode=pixels) to stack frames."
            )
        height, width, channels = space.shape
        self.k = k
        self.observation_space = gym.spaces.Box(0, 255, shape=(height, width, k * channels), dtype=np.uint8)
        self._frames: collections.deque[np.ndarray] = collections.deque(maxlen=k)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and fill the stack with its first frame."""
        obs, info = self.env.reset(seed=seed, options=options)
        frame = np.asarray(obs, dtype=np.uint8)
        self._frames.extend([frame] * self.k)
        return self._stacked(), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env and push its frame, dropping the oldest."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(np.asarray(obs, dtype=np.uint8))
        return self._stacked(), reward, terminated, truncated, info

    def _stacked(self) -> np.ndarray:
        return np.concatenate(list(self._frames), axis=-1)


class EpisodeRecorder(gym.Wrapper[Any, Any, Any, Any]):
    """Keep the rendered frames of one episode on request (evaluation videos).

    After :meth:`arm`, the next ``reset`` starts a recording: the frame after the reset and
    after every step, until the episode terminates or is truncated. :meth:`take` returns
    them as ``(T + 1, Hr, Wr, 3)`` uint8 for a ``T``-step episode and forgets them. When not
    armed the wrapper renders nothing and costs nothing.

    Raises:
        EnvironmentSpecError: when the env does not render ``rgb_array`` frames (make it
            with ``render_mode="rgb_array"``), or a frame is not an ``(Hr, Wr, 3)`` image.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        """Wrap ``env``, which must have ``render_mode="rgb_array"``."""
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise EnvironmentSpecError(
                f"recording {env_name(env)} needs render_mode='rgb_array', got {env.render_mode!r}; make the "
                "evaluation env with render_mode='rgb_array' (one whose metadata lists it), or turn videos off."
            )
        self._armed = self._recording = False
        self._frames: list[np.ndarray] = []

    @property
    def fps(self) -> float:
        """Frames per second of the env's rendering (``metadata["render_fps"]``; 30 when it gives none)."""
        return float(self.env.metadata.get("render_fps") or 30)

    def arm(self) -> None:
        """Record the episode that the next ``reset`` starts."""
        self._armed, self._frames = True, []

    def take(self) -> np.ndarray:
        """The recorded frames ``(T + 1, Hr, Wr, 3)`` uint8 (``(0, 0, 0, 3)`` when none); forgets them."""
        frames = np.stack(self._frames) if self._frames else np.zeros((0, 0, 0, 3), dtype=np.uint8)
        self._frames, self._recording = [], False
        return frames

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env; start recording if armed."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._recording, self._armed = self._armed, False
        if self._recording:
            self._capture()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; keep its frame while recording, and stop at the episode's end."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._recording:
            self._capture()
            self._recording = not (terminated or truncated)
        return obs, reward, terminated, truncated, info

    def _capture(self) -> None:
        frame = np.asarray(self.env.render())
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise EnvironmentSpecError(
                f"{env_name(self)} rendered a frame of shape {frame.shape}; a video needs (H, W, 3) RGB images."
            )
        self._frames.append(frame.astype(np.uint8, copy=False))
