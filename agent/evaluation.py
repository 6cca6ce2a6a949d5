"""Evaluation: K deterministic episodes on separate environments.

:class:`Evaluator` is what the agent holds: its evaluation envs (given, or made on demand) and
the choice between the two ways of playing the episodes below, each plan warm-started from
the previous one of its episode.
:func:`evaluate` plays the episodes one after another on one env with a per-observation
``act``; :func:`evaluate_lockstep` plays them side by side, one env per episode, with
one ``act`` call per time step for all episodes still running (so a planner can solve
them in one batched call). Both reset episode ``j`` with seed ``seed + j``: the same
starts, the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from agent.signals import StopRequest
from envs import EpisodeRecorder
from planners.warm_start import WarmStart


class EvalResult(NamedTuple):
    returns: np.ndarray  # (K,)
    lengths: np.ndarray  # (K,)
    costs: np.ndarray  # (K,)


BatchAct = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``act(obs (k, *obs_shape), episodes (k,) int64) -> actions (k, A)``.

``episodes`` holds the indices (ascending) of the ``k`` episodes still running, and row
``i`` of ``obs`` is episode ``episodes[i]``'s observation; row ``i`` of the result is its
action. ``k`` only ever shrinks during an evaluation.
"""


def evaluate(
    env: gym.Env,
    act: Callable[[np.ndarray], np.ndarray],
    reset_policy: Callable[[], None],
    n_episodes: int,
    seed: int,
    cost_so_far: np.ndarray | None = None,
) -> EvalResult:
    """Run ``n_episodes`` episodes with ``act``; episode ``k`` is reset with seed ``seed + k``.

    ``cost_so_far`` (shape ``(1,)``), when given, holds the running episode's cost so far before each ``act``
    call (what a cost-limited agent has left of its episode's budget follows from it)."""
    returns, lengths, costs = [], [], []
    for k in range(n_episodes):
        obs, _ = env.reset(seed=seed + k)
        reset_policy()
        done, total, cost, steps = False, 0.0, 0.0, 0
        while not done:
            if cost_so_far is not None:
                cost_so_far[0] = cost
            obs, reward, terminated, truncated, info = env.step(act(obs))
            total += float(reward)
            cost += float(info.get("cost", 0.0))
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
        costs.append(cost)
    return EvalResult(np.array(returns), np.array(lengths), np.array(costs))


def evaluate_lockstep(
    envs: Sequence[gym.Env],
    act: BatchAct,
    reset_policy: Callable[[], None],
    n_episodes: int,
    seed: int,
    cost_so_far: np.ndarray | None = None,
) -> EvalResult:
    """Run ``n_episodes`` episodes side by side; episode ``j`` runs on ``envs[j]``, reset with seed ``seed + j``.

    Every time step calls ``act`` once with the observations ``(k, *obs_shape)`` of the
    ``k`` episodes still running (see :data:`BatchAct`) and steps each of their envs;
    an episode leaves the batch when it terminates or is truncated. ``reset_policy`` is
    called once, after all resets. Returns, lengths and costs are per episode, in
    episode order, accumulated exactly as :func:`evaluate` does, so a deterministic
    ``act`` gives the same result either way. Needs ``len(envs) >= n_episodes``
    (distinct env instances). ``cost_so_far`` (shape ``(n_episodes,)``), when given, holds each episode's cost
    so far before each ``act`` call.
    """
    if len(envs) < n_episodes:
        raise ValueError(f"evaluate_lockstep: {n_episodes} episodes need as many envs, got {len(envs)}")
    if len({id(env) for env in envs[:n_episodes]}) < n_episodes:
        raise ValueError("evaluate_lockstep: each episode needs its own env instance")
    obs = [env.reset(seed=seed + j)[0] for j, env in enumerate(envs[:n_episodes])]
    reset_policy()
    totals = np.zeros((3, n_episodes))  # returns, lengths, costs
    running = np.arange(n_episodes)
    while running.size:
        if cost_so_far is not None:
            cost_so_far[:] = totals[2]
        actions = np.asarray(act(np.stack([obs[j] for j in running]), running.copy()))
        if actions.shape[0] != running.size:
            raise ValueError(f"evaluate_lockstep: act returned {actions.shape[0]} actions for {running.size} episodes")
        running = _step_running(envs, running, actions, obs, totals)
    return EvalResult(totals[0], totals[1].astype(np.int64), totals[2])


def _step_running(
    envs: Sequence[gym.Env], running: np.ndarray, actions: np.ndarray, obs: list[Any], totals: np.ndarray
) -> np.ndarray:
    """Step episode ``running[i]`` with ``actions[i]``, updating ``obs`` and ``totals`` in place.

    Returns the episodes still running.
    """
    still = []
    for i, j in enumerate(running.tolist()):
        obs[j], reward, terminated, truncated, info = envs[j].step(actions[i])
        totals[0, j] += float(reward)
        totals[1, j] += 1
        totals[2, j] += float(info.get("cost", 0.0))
        if not (terminated or truncated):
            still.append(j)
    return np.array(still, dtype=np.int64)


PlanFn = Callable[[np.ndarray, WarmStart, np.ndarray], np.ndarray]
"""``plan(obs, warm, spent) -> action``: ``obs (*obs_shape) -> (A,)`` or ``(k, *obs_shape) -> (k, A)``,
warm-started by ``warm`` (which it updates); ``spent``: the cost so far of the episode, ``(1,)``, or of each of
the ``k`` episodes, ``(k,)``."""
MakeEnv = Callable[[bool | None, str | None], gym.Env]
"""``make_env(check, render_mode) -> env``, as the agent makes its training env."""


class Evaluator:
    """The evaluation envs and how the episodes are played on them.

    ``given``: the caller's envs (one: episodes one by one on it; at least ``episodes`` distinct ones: side by
    side), used as they are; none: the evaluator makes them with ``make_env``, one per episode with
    ``lockstep`` (else one), the first rendering ``rgb_array`` frames when ``video``.
    """

    def __init__(self, given: Sequence[gym.Env], make_env: MakeEnv, *, lockstep: bool, video: bool) -> None:
        self.envs: list[gym.Env] = list(given)
        self._make_env, self.lockstep, self.video = make_env, lockstep, video
        self._own = False  # made here (more are made when an evaluation needs them)
        self.stop: StopRequest | None = None  # set while training: a stop request abandons an evaluation

    def ensure(self, episodes: int) -> None:
        """Make evaluation envs for ``episodes`` episodes unless the caller gave its own or enough exist."""
        if self.envs and not self._own:
            return
        count = episodes if self.lockstep else 1
        render = "rgb_array" if self.video else None
        # the first is checked like any env we make; its copies need not be
        self.envs += [self._make_env(False if k else None, None if k else render)
                      for k in range(len(self.envs), count)]
        self._own = True

    def record_video(self) -> None:
        """Wrap the first env in an :class:`~envs.EpisodeRecorder` (it plays episode 0 of every evaluation)."""
        if not isinstance(self.envs[0], EpisodeRecorder):
            self.envs[0] = EpisodeRecorder(self.envs[0])

    @property
    def recorder(self) -> EpisodeRecorder | None:
        """The first env when it records episodes, else ``None``."""
        return self.envs[0] if self.envs and isinstance(self.envs[0], EpisodeRecorder) else None

    def run(self, plan: PlanFn, plan_shape: tuple[int, int], device: torch.device, episodes: int,
            seed: int) -> EvalResult:
        """Play ``episodes`` episodes: side by side with one batched ``plan`` per step when there is an env per
        episode (and ``lockstep``), else one by one on the first env. ``plan_shape``: ``(H, A)``.

        While :attr:`stop` is set (during training), a stop request raises
        :class:`~agent.signals.EvaluationAbandoned` before the next action is planned."""
        horizon, action_dim = plan_shape
        stop, plan_given = self.stop, plan
        if stop is not None:  # between two steps, a stop request abandons the evaluation (EvaluationAbandoned)

            def plan(obs: np.ndarray, warm: WarmStart, spent: np.ndarray) -> np.ndarray:
                stop.check()
                return plan_given(obs, warm, spent)

        if self.lockstep and len(self.envs) >= episodes:
            warm = WarmStart(horizon, action_dim, device, batch=episodes)
            spent = np.zeros(episodes)

            def act_running(obs: np.ndarray, running: np.ndarray) -> np.ndarray:
                warm.keep(running)  # drop the warm starts of episodes that ended
                return plan(obs, warm, spent[running])

            return evaluate_lockstep(self.envs, act_running, warm.reset, episodes, seed, cost_so_far=spent)
        single, spent = WarmStart(horizon, action_dim, device), np.zeros(1)
        return evaluate(self.envs[0], lambda o: plan(o, single, spent), single.reset, episodes, seed,
                        cost_so_far=spent)
