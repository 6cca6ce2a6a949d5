"""Evaluation: K deterministic episodes on a separate environment."""

from __future__ import annotations

from typing import Callable, NamedTuple

import gymnasium as gym
import numpy as np


class EvalResult(NamedTuple):
    returns: np.ndarray  # (K,)
    lengths: np.ndarray  # (K,)
    costs: np.ndarray  # (K,)


def evaluate(
    env: gym.Env,
    act: Callable[[np.ndarray], np.ndarray],
    reset_policy: Callable[[], None],
    n_episodes: int,
    seed: int,
) -> EvalResult:
    """Run ``n_episodes`` episodes with ``act``; episode ``k`` is reset with seed ``seed + k``."""
    returns, lengths, costs = [], [], []
    for k in range(n_episodes):
        obs, _ = env.reset(seed=seed + k)
        reset_policy()
        done, total, cost, steps = False, 0.0, 0.0, 0
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            total += float(reward)
            cost += float(info.get("cost", 0.0))
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
        costs.append(cost)
    return EvalResult(np.array(returns), np.array(lengths), np.array(costs))
