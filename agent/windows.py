"""Where the replay buffer's training windows may start: inside one episode, drawn uniformly.

Positions are logical (0 = the oldest stored step); ``done_at(positions)`` says whether an episode
ended (terminated or truncated) at each of them, whatever their shape.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

DoneAt = Callable[[np.ndarray], np.ndarray]
"""``done_at(logical positions, any shape) -> bool array of that shape``."""
REJECTION_ROUNDS = 4
"""Rounds of rejection sampling of window starts before enumerating the valid ones."""


def windows_ok(done_at: DoneAt, starts: np.ndarray, length: int) -> np.ndarray:
    """``(N,)`` bool: no episode ends in the first ``T-1`` steps of each window starting at ``starts (N,)``."""
    if length == 1:
        return np.ones(starts.shape, dtype=bool)
    steps = np.arange(length - 1)
    ended = done_at(starts[:, None] + steps[None, :])  # (N, T-1)
    return np.asarray(~ended.any(axis=1))


def valid_starts(done_at: DoneAt, size: int, length: int, n_starts: int) -> np.ndarray:
    """All window starts that pass :func:`windows_ok` among the first ``n_starts`` of ``size`` stored steps,
    by prefix sums."""
    done = done_at(np.arange(size)).astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(done)])
    k = np.arange(n_starts)
    return np.flatnonzero(cum[k + length - 1] - cum[k] == 0)


def draw_window_starts(
    done_at: DoneAt, size: int, batch_size: int, length: int, n_starts: int, rng: np.random.Generator
) -> np.ndarray:
    """``(B,)`` uniform valid starts: rejection sampling, then enumeration if needed.

    Raises:
        ValueError: no valid window exists (every stored episode is shorter than ``length``).
    """
    accepted: list[np.ndarray] = []
    n_accepted = 0
    for _ in range(REJECTION_ROUNDS):
        cand = rng.integers(0, n_starts, size=2 * batch_size)
        ok = cand[windows_ok(done_at, cand, length)]
        accepted.append(ok)
        n_accepted += ok.size
        if n_accepted >= batch_size:
            return np.concatenate(accepted)[:batch_size]
    valid = valid_starts(done_at, size, length, n_starts)
    if valid.size == 0:
        raise ValueError(
            f"no window of {length} consecutive steps within one episode: "
            f"every stored episode is shorter than {length} steps"
        )
    rest = rng.choice(valid, size=batch_size - n_accepted)
    return np.concatenate([*accepted, rest])
