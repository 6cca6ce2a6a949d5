"""How the agent chooses actions: planners, one plan, and Stable-Baselines3's ``predict``.

:class:`Acting` is a part of :class:`agent.agent.MBRLAgent` kept in its own module; it reads the agent's
configuration, model adapter and the warm starts and generators the agent owns.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from agent.config import Config, sampling_config
from agent.models import ModelAdapter
from agent.safety import Safety
from agent.veto import VetoCounter
from language_models import LLMProposer
from planners import make_objective, make_planner
from planners.base import Planner, Proposer
from planners.warm_start import WarmStart


def join_proposals(proposals: torch.Tensor, more: torch.Tensor) -> torch.Tensor:
    """``proposals (n, H, A)`` or ``(B, n, H, A)`` followed by ``more (k, H, A)`` (shared by the problems)."""
    if len(more) == 0:
        return proposals
    more = more.to(proposals)
    if proposals.dim() == 4:
        more = more.unsqueeze(0).expand(proposals.shape[0], *more.shape)
    return torch.cat([proposals, more], dim=-3)


class Acting(Safety):
    """``make_planner``, ``plan`` and ``predict`` of :class:`~agent.agent.MBRLAgent` (and, from
    :class:`~agent.safety.Safety`, its cost budgets and ``predict_safety``)."""

    config: Config
    adapter: ModelAdapter
    model: Any
    obs_shape: tuple[int, ...]
    action_dim: int
    device: torch.device
    proposer: Proposer | None
    llm: LLMProposer | None
    veto: VetoCounter
    _predict_planner: Planner
    _predict_ws: WarmStart
    _predict_batch_ws: WarmStart | None
    _predict_rng: np.random.Generator
    _env_action_bounds: tuple[np.ndarray, np.ndarray]
    rng: np.random.Generator
    _exploring = False  # this training episode is led by the language model's proposals (llm.explore)

    def make_planner(self, generator: torch.Generator, acting: bool = False) -> Planner:
        """The training loop's planner; ``acting``: the one for acting without exploration (evaluations,
        ``evaluate``, ``predict``), which searches ``planner.eval_num_candidates`` candidates where set."""
        return make_planner(self.config.planner.name, sampling_config(self.config, acting), self.action_dim, generator)

    def draw_exploring(self) -> bool:
        """At a training episode's start: whether it is led by the language model's proposals (probability
        ``llm.explore``, drawn from the training loop's generator only when that is set; counted)."""
        self._exploring = bool(self.llm is not None and self.config.llm.explore > 0
                               and self.rng.random() < self.config.llm.explore)
        if self._exploring and self.llm is not None:
            self.llm.record_explored(episodes=1)
        return self._exploring

    def plan(self, obs: np.ndarray, planner: Planner | None = None, warm: WarmStart | None = None,
             times: list[float] | None = None, cost_spent: float | np.ndarray | None = None,
             explore: bool = False) -> np.ndarray:
        """First action (in ``[-1, 1]``) of the plan for ``obs``; stores the plan in ``warm`` for warm starting.

        ``obs (*obs_shape) -> (A,)``; or ``obs (B, *obs_shape) -> (B, A)``: ``B`` independent
        problems in one batched planner call (``warm`` then holds ``(B, H, A)``).
        ``planner``: default the one ``predict`` acts with (:meth:`make_planner` makes others);
        ``warm``: default a fresh one (the plan starts from zeros).
        ``times`` (training's ``planner/plan_ms``, evaluation's ``eval/plan_ms``; none for ``predict``) gets
        the call's milliseconds per problem, once per problem.
        With ``planner.cost_limit`` the objective carries the cost budget of :meth:`cost_budget` (``cost_spent``:
        the episode's cost so far, as the training loop and evaluations count it; ``(B,)``, one per problem, for a
        batched plan; ``None``: not counted, as in ``predict``) and the penalty :meth:`cost_penalty`.
        ``explore`` (the training loop's, in an episode led by the proposals, ``llm.explore``): the proposal the
        objective scores best is the plan, without searching, where there is one of finite score.
        """
        planner = self._predict_planner if planner is None else planner
        p = self.config.planner
        obs = self.adapter.as_obs(obs)
        with torch.inference_mode():
            z0 = self.adapter.encode(obs)  # (B, Z); B = 1 for one observation
        batched = obs.ndim == len(self.obs_shape) + 1
        if cost_spent is not None and not batched:  # one problem: the episode's cost, a number
            cost_spent = float(np.asarray(cost_spent).reshape(-1)[0])
        objective = make_objective(
            self.model.imagine, z0 if batched else z0[0], particles=p.particles, discount=p.discount,
            cost_weight=self.cost_penalty(), pessimism=p.pessimism, cost_budget=self.cost_budget(cost_spent),
        )
        start = time.perf_counter()
        if warm is None:
            warm = WarmStart(p.horizon, self.action_dim, self.device, batch=len(z0) if batched else None)
        proposals = words = None  # extra candidates, scored with the planner's own: the proposer's, the LLM's
        before = 0
        generator = getattr(planner, "generator", None) or torch.Generator().manual_seed(0)
        context = {"obs": obs, "z0": z0, "generator": generator, "episode_start": warm.plan is None,
                   "imagine": self.model.imagine, "particles": p.particles}
        if self.proposer is not None and p.proposals:  # the learned policy's (or the caller's) plans
            proposals = self.proposer.propose(context, p.proposals, p.horizon)  # (B, n, H, A) or (n, H, A)
            proposals = proposals[0] if proposals.dim() == 4 and not batched else proposals
        if self.llm is not None:  # beside them; planner.proposals caps the LLM's where it has no others
            cap = p.proposals if self.proposer is None and p.proposals else self.llm.num_proposals
            words = self.llm.propose(context, cap, p.horizon)  # (k, H, A), k = 0 when none at hand
            objective = self.llm.rescore(objective, words)  # the judge's ratings, where it gave some
            before = 0 if proposals is None else proposals.shape[-3]  # the LLM's come after the others
            proposals = words if proposals is None else join_proposals(proposals, words)
        plan = self._best_proposal(objective, words) if explore and not batched else None
        stats: dict[str, float] = {}  # the search's, where the plan came from one
        if plan is None:
            plan = planner.plan(objective, warm.init(), proposals)
            stats = getattr(planner, "last_stats", {})
            if self.llm is not None:
                self.llm.record_plan(getattr(planner, "last_best_proposal", None), words, before)
        if times is not None:
            times += [1000 * (time.perf_counter() - start) / len(z0)] * len(z0)
        if self.cost_multiplier is not None:  # what the constraint let through (agent/veto.py)
            self.veto.judge(objective, self.model.imagine, z0, p.particles, self.step_threshold(), proposals, plan,
                            stats, training=planner is getattr(self, "planner", None))
        warm.store(plan)
        return plan[..., 0, :].cpu().numpy().astype(np.float32)

    def _best_proposal(self, objective: Any, proposals: torch.Tensor | None) -> torch.Tensor | None:
        """The proposal ``(H, A)`` of ``proposals (k, H, A)`` that ``objective`` scores best (counted as an explored
        step), or ``None`` when there is none of finite score."""
        if proposals is None or len(proposals) == 0:
            return None
        with torch.no_grad():
            candidates = proposals.to(self.device).clamp(-1.0, 1.0)
            scores = objective(candidates)
        best = int(torch.argmax(scores))
        if not torch.isfinite(scores[best]):
            return None
        if self.llm is not None:
            self.llm.record_explored(steps=1)
        return candidates[best]

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | bool | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Stable-Baselines3's ``predict``: the action in the environment's own action space (its bounds, not
        the [-1, 1] the planner works in), so that ``env.step`` of the unwrapped environment takes it.

        One observation ``obs_shape`` -> ``(A,)``; ``n`` observations ``(n, *obs_shape)`` (a VecEnv's, as
        SB3's ``evaluate_policy`` passes them) -> ``(n, A)``, planned as ``n`` problems in one batched call.
        ``episode_start`` (a bool, or ``(n,)`` flags) clears the warm start of the episodes that start.
        ``deterministic=False`` adds the training exploration noise. No training side effects. The signature
        is SB3's ``PolicyPredictor``, so ``evaluate_policy`` takes the agent; ``state`` is unused (no
        recurrent state) and the second value returned is always ``None``.
        """
        del state
        if isinstance(observation, dict):
            raise TypeError(f"predict takes array observations ({self.obs_shape}), got a dict with keys "
                            f"{sorted(observation)}: flatten the environment's Dict observation space first "
                            "(gymnasium.wrappers.FlattenObservation)")
        obs = self.adapter.as_obs(observation)
        batched = obs.ndim == len(self.obs_shape) + 1 and obs.shape[1:] == self.obs_shape and len(obs) > 0
        if obs.shape != self.obs_shape and not batched:
            raise ValueError(f"predict expects one observation of shape {self.obs_shape} or n of them "
                             f"(n, {', '.join(map(str, self.obs_shape))}), got {obs.shape}")
        starts = np.asarray(False if episode_start is None else episode_start, dtype=bool).reshape(-1)
        if batched:
            warm = self._predict_batch_ws
            if warm is None or warm.shape[0] != len(obs):
                warm = self._predict_batch_ws = WarmStart(self.config.planner.horizon, self.action_dim, self.device,
                                                          batch=len(obs))
            if episode_start is not None:
                warm.restart(np.full(len(obs), starts[0]) if starts.size == 1 else starts)  # one flag: all
        else:
            warm = self._predict_ws
            if starts.any():
                warm.reset()
        action = self.plan(obs, self._predict_planner, warm)  # (A,) or (n, A) in [-1, 1]
        if not deterministic:
            noise = self.config.train.exploration_noise * self._predict_rng.normal(size=action.shape)
            action = np.clip(action + noise, -1.0, 1.0).astype(np.float32)
        low, high = self._env_action_bounds
        return (low + (action + 1.0) * 0.5 * (high - low)).astype(np.float32), None
