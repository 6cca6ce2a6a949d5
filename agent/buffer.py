"""Replay buffer of real environment transitions.

The buffer keeps preallocated numpy arrays and overwrites the oldest entries
first once it is full (FIFO). It serves two kinds of batches:

* :meth:`ReplayBuffer.sample` -- independent transitions, optionally with a
  separate bootstrap batch per ensemble member (leading ``E`` axis);
* :meth:`ReplayBuffer.sample_sequences` -- time-major windows of consecutive
  transitions from one episode, for training world models.

``terminated`` (the MDP ended) and ``truncated`` (a time limit cut the episode)
are stored and returned separately and are never merged.

Shape letters: ``B`` batch, ``T`` time, ``S`` state/obs dim (``*obs_shape``
for images), ``A`` action dim, ``E`` ensemble members.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from agent.atomic import atomic_write
from agent.buffer_io import as_int, buffer_bytes, check_buffer_memory, read_npz
from agent.windows import draw_window_starts

_FORMAT_VERSION = 1
_ARRAY_KEYS = (
    "obs",
    "actions",
    "rewards",
    "costs",
    "terminated",
    "truncated",
    "next_obs",
)
_SCALAR_KEYS = ("format_version", "capacity", "position", "size")


class Transitions(NamedTuple):
    """A batch of single transitions (numpy arrays).

    Every field has a leading ``(B,)`` axis, or ``(E, B)`` when sampled with
    ``ensemble_size=E``.
    """

    obs: np.ndarray  # (B, *obs_shape), obs dtype
    actions: np.ndarray  # (B, A) float32
    rewards: np.ndarray  # (B,) float32
    costs: np.ndarray  # (B,) float32
    terminated: np.ndarray  # (B,) bool
    truncated: np.ndarray  # (B,) bool
    next_obs: np.ndarray  # (B, *obs_shape), obs dtype


class Sequences(NamedTuple):
    """A time-major batch of windows of consecutive transitions.

    ``obs[t]`` is the observation before ``actions[t]``; ``obs[T]`` is the
    observation after the last action. Only the last step of a window may be
    terminated or truncated, unless it was sampled ``across_episodes``: then
    ``mask`` marks the steps up to and including the first end, and the steps
    after it (the next episode's) are to be left out of every loss.
    """

    obs: np.ndarray  # (T+1, B, *obs_shape), obs dtype
    actions: np.ndarray  # (T, B, A) float32
    rewards: np.ndarray  # (T, B) float32
    costs: np.ndarray  # (T, B) float32
    terminated: np.ndarray  # (T, B) bool
    truncated: np.ndarray  # (T, B) bool
    mask: np.ndarray | None = None  # (T, B) float32: 1 up to the window's first end, 0 after; None: all 1


class ReplayBuffer:
    """Circular FIFO buffer of real transitions.

    One transition is ``(obs, action, reward, cost, terminated, truncated, next_obs)``.

    ``obs`` and ``next_obs`` are kept in separate arrays of ``obs_dtype``
    (``uint8`` frames stay ``uint8``); actions, rewards and costs are float32.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        obs_dtype: np.dtype[Any] | type = np.float32,
        *,
        max_memory_fraction: float = 0.8,
    ) -> None:
        """Check the memory budget, then allocate the arrays lazily (``np.zeros``).

        Raises:
            ValueError: non-positive capacity / action_dim / obs dims / memory fraction.
            MemoryError: the arrays need more than ``max_memory_fraction`` of
                the available memory.
        """
        obs_shape = tuple(int(d) for d in obs_shape)
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        if any(d < 1 for d in obs_shape):
            raise ValueError(f"obs_shape dims must be >= 1, got {obs_shape}")
        if not max_memory_fraction > 0:
            raise ValueError(f"max_memory_fraction must be > 0, got {max_memory_fraction}")
        self.capacity = int(capacity)
        self.obs_shape = obs_shape
        self.action_dim = int(action_dim)
        self.obs_dtype: np.dtype[Any] = np.dtype(obs_dtype)
        self._check_memory(max_memory_fraction)

        self._obs = np.zeros((self.capacity, *obs_shape), dtype=self.obs_dtype)
        self._next_obs = np.zeros((self.capacity, *obs_shape), dtype=self.obs_dtype)
        self._actions = np.zeros((self.capacity, self.action_dim), dtype=np.float32)
        self._rewards = np.zeros(self.capacity, dtype=np.float32)
        self._costs = np.zeros(self.capacity, dtype=np.float32)
        self._terminated = np.zeros(self.capacity, dtype=bool)
        self._truncated = np.zeros(self.capacity, dtype=bool)
        self._pos = 0  # next slot to write
        self._size = 0

    # ------------------------------------------------------------------ memory

    @staticmethod
    def estimate_bytes(
        capacity: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        obs_dtype: np.dtype[Any] | type = np.float32,
    ) -> int:
        """Bytes the buffer's arrays take once every slot has been touched (:func:`buffer_bytes`)."""
        return buffer_bytes(capacity, obs_shape, action_dim, obs_dtype)

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated arrays."""
        return sum(getattr(self, f"_{k}").nbytes for k in _ARRAY_KEYS)

    def _check_memory(self, max_memory_fraction: float) -> None:
        check_buffer_memory(self.capacity, self.obs_shape, self.action_dim, self.obs_dtype, max_memory_fraction)

    # ------------------------------------------------------------------ adding

    def __len__(self) -> int:
        """Number of stored transitions (at most ``capacity``)."""
        return self._size

    def stored(self) -> Transitions:
        """Read-only views ``(size, ...)`` of every stored transition, in slot order (no copy)."""
        n = self._size
        views = [self._obs, self._actions, self._rewards, self._costs, self._terminated, self._truncated,
                 self._next_obs]
        out = []
        for array in views:
            view = array[:n]
            view.flags.writeable = False
            out.append(view)
        return Transitions(*out)

    def add(
        self,
        obs: Any,
        action: Any,
        reward: float,
        cost: float,
        terminated: bool,
        truncated: bool,
        next_obs: Any,
    ) -> None:
        """Store one transition, overwriting the oldest one when full.

        Args:
            obs, next_obs: ``(*obs_shape,)``.
            action: ``(A,)``.
            reward, cost: finite scalars.
            terminated, truncated: kept as separate flags.

        Raises:
            ValueError: wrong shape, non-finite value, or obs of a dtype that
                cannot be stored without changing its kind (e.g. float frames
                into a uint8 buffer).
        """
        obs_arr = self._checked_obs(obs, "obs")
        next_arr = self._checked_obs(next_obs, "next_obs")
        act = np.asarray(action, dtype=np.float32)
        if act.shape != (self.action_dim,):
            raise ValueError(f"action: expected shape {(self.action_dim,)}, got {act.shape}")
        if not np.isfinite(act).all():
            raise ValueError(f"action must be finite, got {act}")
        reward, cost = float(reward), float(cost)
        if not (math.isfinite(reward) and math.isfinite(cost)):
            raise ValueError(f"reward and cost must be finite, got reward={reward}, cost={cost}")

        i = self._pos
        self._obs[i] = obs_arr
        self._next_obs[i] = next_arr
        self._actions[i] = act
        self._rewards[i] = reward
        self._costs[i] = cost
        self._terminated[i] = bool(terminated)
        self._truncated[i] = bool(truncated)
        self._pos = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def truncate_last(self) -> None:
        """Mark the newest transition truncated: its episode was cut there, and the next one stored
        starts another (as after resuming from a checkpoint written mid-episode). Empty: nothing."""
        if self._size:
            self._truncated[(self._pos - 1) % self.capacity] = True

    def _checked_obs(self, value: Any, name: str) -> np.ndarray:
        arr = np.asarray(value)
        if arr.shape != self.obs_shape:
            raise ValueError(f"{name}: expected shape {self.obs_shape}, got {arr.shape}")
        if not np.can_cast(arr.dtype, self.obs_dtype, casting="same_kind"):
            raise ValueError(f"{name}: dtype {arr.dtype} cannot be stored as {self.obs_dtype} without loss")
        if np.issubdtype(arr.dtype, np.inexact) and not np.isfinite(arr).all():
            raise ValueError(f"{name} must be finite")
        return arr

    # ---------------------------------------------------------------- sampling

    def sample(
        self,
        batch_size: int,
        rng: np.random.Generator,
        ensemble_size: int | None = None,
        recent: int | None = None,
    ) -> Transitions:
        """Uniform transitions, drawn with replacement.

        ``recent=N`` draws from the ``N`` most recently added transitions only (all when fewer are stored).

        Returns:
            Fields shaped ``(B, ...)``, or ``(E, B, ...)`` with ``ensemble_size=E``
            (independent indices for each member).
        """
        if self._size == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if ensemble_size is not None and ensemble_size < 1:
            raise ValueError(f"ensemble_size must be >= 1, got {ensemble_size}")
        if recent is not None and recent < 1:
            raise ValueError(f"recent must be >= 1, got {recent}")
        shape = (batch_size,) if ensemble_size is None else (ensemble_size, batch_size)
        if recent is None or recent >= self._size:
            idx = rng.integers(0, self._size, size=shape)
        else:  # k transitions back from the newest, in ring-buffer slots
            idx = (self._pos - 1 - rng.integers(0, recent, size=shape)) % self.capacity
        return Transitions(
            obs=self._obs[idx],
            actions=self._actions[idx],
            rewards=self._rewards[idx],
            costs=self._costs[idx],
            terminated=self._terminated[idx],
            truncated=self._truncated[idx],
            next_obs=self._next_obs[idx],
        )

    def sample_sequences(
        self, batch_size: int, length: int, rng: np.random.Generator, *, across_episodes: bool = False
    ) -> Sequences:
        """``B`` windows of ``T = length`` consecutive transitions of one episode each.

        A window never crosses the oldest/newest boundary of the data, and none
        of its first ``T-1`` steps is terminated or truncated (the last may be).

        ``across_episodes=True`` draws every start uniformly instead, so episodes
        shorter than ``T`` and the last steps of every episode are drawn as often as
        any other step. A window may then run past an episode's end: ``obs[t+1]``
        is always the observation that followed ``actions[t]``, and ``mask`` is 0
        for the steps after the first end.

        Returns:
            :class:`Sequences`, time-major: obs ``(T+1, B, *obs_shape)``,
            actions ``(T, B, A)``, the rest ``(T, B)``.

        Raises:
            ValueError: no valid window exists (every episode shorter than ``T``).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        n_starts = self._size - length + 1
        if n_starts < 1:
            raise ValueError(f"cannot sample sequences of length {length}: buffer holds only {self._size} transitions")
        # (B,) logical starts (0 = oldest stored)
        if across_episodes:
            starts = rng.integers(0, n_starts, size=batch_size)
        else:
            starts = draw_window_starts(self._done_at, self._size, batch_size, length, n_starts, rng)
        return self._windows(starts, length, across_episodes)

    def _windows(self, starts: np.ndarray, length: int, across_episodes: bool) -> Sequences:
        """The windows at logical ``starts (B,)``; ``across_episodes``: they may run past an
        episode's end, so ``obs[t+1]`` is read from ``next_obs[t]`` and a mask is returned."""
        idx = self._physical(starts[None, :] + np.arange(length)[:, None])  # (T, B) array slots
        mask = None
        if across_episodes:
            obs = np.concatenate([self._obs[idx[:1]], self._next_obs[idx]], axis=0)
            done = self._terminated[idx] | self._truncated[idx]
            ended_before = np.cumsum(done, axis=0) - done  # (T, B): ends strictly before step t
            mask = (ended_before == 0).astype(np.float32)
        else:
            obs = np.concatenate([self._obs[idx], self._next_obs[idx[-1]][None]], axis=0)
        return Sequences(
            obs=obs,
            actions=self._actions[idx],
            rewards=self._rewards[idx],
            costs=self._costs[idx],
            terminated=self._terminated[idx],
            truncated=self._truncated[idx],
            mask=mask,
        )

    def _physical(self, logical: np.ndarray) -> np.ndarray:
        """Map logical positions (0 = oldest stored) to array slots."""
        origin = self._pos if self._size == self.capacity else 0
        return (origin + logical) % self.capacity

    def _done_at(self, logical: np.ndarray) -> np.ndarray:
        """Whether the episode ended (terminated or truncated) at logical positions ``logical`` (any shape)."""
        idx = self._physical(logical)
        return self._terminated[idx] | self._truncated[idx]

    # ------------------------------------------------------------- persistence

    def state_dict(self) -> dict[str, np.ndarray | int]:
        """Plain ints and arrays (copies, trimmed to ``size``); restores exactly."""
        state: dict[str, np.ndarray | int] = {
            "format_version": _FORMAT_VERSION,
            "capacity": self.capacity,
            "position": self._pos,
            "size": self._size,
        }
        for key in _ARRAY_KEYS:
            state[key] = getattr(self, f"_{key}")[: self._size].copy()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` output, after checking it fits this buffer.

        Raises:
            ValueError: missing keys, other capacity, inconsistent position/size,
                or an array of the wrong shape or dtype.
        """
        missing = [k for k in (*_SCALAR_KEYS, *_ARRAY_KEYS) if k not in state]
        if missing:
            raise ValueError(f"not a ReplayBuffer state: missing keys {missing}")
        version, capacity, pos, size = (as_int(state, k) for k in _SCALAR_KEYS)
        if version != _FORMAT_VERSION:
            raise ValueError(f"ReplayBuffer state format {version} unsupported (expected {_FORMAT_VERSION})")
        if capacity != self.capacity:
            raise ValueError(f"state capacity {capacity} != buffer capacity {self.capacity}")
        if not 0 <= size <= capacity or not 0 <= pos < capacity or (size < capacity and pos != size):
            raise ValueError(f"inconsistent state: position={pos}, size={size}, capacity={capacity}")
        expected = self._expected_layout(size)
        arrays = {k: np.asarray(state[k]) for k in _ARRAY_KEYS}
        for key, (shape, dtype) in expected.items():
            arr = arrays[key]
            if arr.shape != shape or arr.dtype != dtype:
                raise ValueError(
                    f"state[{key!r}]: expected shape {shape} dtype {dtype}, got shape {arr.shape} dtype {arr.dtype}"
                )
        for key, arr in arrays.items():
            dest = getattr(self, f"_{key}")
            dest[:size] = arr
            dest[size:] = 0
        self._pos, self._size = pos, size

    def _expected_layout(self, size: int) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
        f32, b = np.dtype(np.float32), np.dtype(bool)
        return {
            "obs": ((size, *self.obs_shape), self.obs_dtype),
            "actions": ((size, self.action_dim), f32),
            "rewards": ((size,), f32),
            "costs": ((size,), f32),
            "terminated": ((size,), b),
            "truncated": ((size,), b),
            "next_obs": ((size, *self.obs_shape), self.obs_dtype),
        }

    def save(self, path: str | Path) -> None:
        """Write an uncompressed ``.npz`` at exactly ``path``, atomically.

        The data goes to a temporary file in the same directory, which then
        replaces ``path`` with ``os.replace``; a crash never leaves half a file.
        """
        state = self.state_dict()
        atomic_write(path, lambda handle: np.savez(handle, **state))  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path, *, max_memory_fraction: float = 0.8) -> ReplayBuffer:
        """Rebuild a buffer written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is truncated, corrupt, or not a ReplayBuffer file.
        """
        state = read_npz(Path(path))
        missing = [k for k in (*_SCALAR_KEYS, *_ARRAY_KEYS) if k not in state]
        if missing:
            raise ValueError(f"{path} is not a ReplayBuffer file: missing keys {missing}")
        obs, actions = state["obs"], state["actions"]
        if obs.ndim < 1 or actions.ndim != 2:
            raise ValueError(f"{path}: malformed ReplayBuffer arrays (obs {obs.shape}, actions {actions.shape})")
        buf = cls(
            as_int(state, "capacity"),
            tuple(obs.shape[1:]),
            int(actions.shape[1]),
            obs.dtype,
            max_memory_fraction=max_memory_fraction,
        )
        try:
            buf.load_state_dict(state)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        return buf
