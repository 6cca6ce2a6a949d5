"""The agent's safety side: the cost limit's multiplier and budgets, ``predict_safety``, the safety head's report.

:class:`Safety` is a part of :class:`agent.agent.MBRLAgent` kept in its own module, as :class:`agent.acting.Acting`
is. With ``planner.cost_limit`` set the agent holds a :class:`planners.constraint.CostMultiplier`: every plan gets
the cost budget :meth:`Safety.cost_budget` and the penalty ``cost_weight + lambda`` (``agent.acting``), and every
training episode's cost steps the multiplier.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from agent.config import Config
from agent.models import ModelAdapter
from agent.veto import VetoCounter
from envs import TransitionLog, cost_reported, find_wrapper
from planners.constraint import STEPS_PER_LIMIT, CostMultiplier
from planners.objective import horizon_cost, imagine_plans
from world_models.safety import SafetyMetrics, safety_metrics

__all__ = ["Safety", "SafetyPrediction"]

_CHUNK = 4096  # transitions per imagination when judging the safety head


class SafetyPrediction(NamedTuple):
    """What :meth:`Safety.predict_safety` returns: for one plan ``(H,)`` and ``()`` arrays, for ``B`` plans
    ``(B, H)`` and ``(B,)``."""

    probability: np.ndarray
    """Predicted probability that each step is costly, the mean over particles (ensemble members), in [0, 1]."""
    disagreement: np.ndarray
    """Standard deviation of that probability over the particles (ensemble disagreement), >= 0."""
    expected_cost: np.ndarray
    """Expected number of costly steps over the plan, ``sum_t alive_t * probability_t`` (mean over particles)."""
    budget_use: np.ndarray
    """``expected_cost`` as a fraction of the episode's cost budget (``cost_limit * T / 1000``, ``T`` the episode
    length); NaN without a cost limit, ``inf`` for a positive cost against a budget of 0."""


class Safety:
    """``predict_safety``, the cost limit's multiplier and the safety head's evaluation of
    :class:`~agent.agent.MBRLAgent`."""

    config: Config
    adapter: ModelAdapter
    model: Any
    env: gym.Env
    obs_shape: tuple[int, ...]
    action_dim: int
    device: torch.device
    cost_multiplier: CostMultiplier | None
    veto: VetoCounter
    _vacuous_checked: bool

    def _make_cost_multiplier(self) -> CostMultiplier | None:
        """The multiplier of ``planner.cost_limit`` (``None`` when unconstrained)."""
        p = self.config.planner
        if p.cost_limit is None:
            return None
        return CostMultiplier(p.cost_limit, p.cost_multiplier_lr, min_value=p.cost_multiplier_min, target=p.cost_target)

    @property
    def episode_steps(self) -> int:
        """Steps of a full episode, which the cost limit is scaled to: the env's time limit, else 1,000."""
        spec = self.env.spec
        limit = spec.max_episode_steps if spec is not None else None
        return int(limit) if limit else STEPS_PER_LIMIT

    def cost_budget(self, spent: float | np.ndarray | None = None) -> float | torch.Tensor | None:
        """The predicted cost a plan may use (:meth:`CostMultiplier.budget` for the planning horizon), ``None``
        when unconstrained; ``spent``: the episode's cost so far (then at most what is left of its budget), or
        ``(B,)`` those of the ``B`` problems of a batched plan (then a ``(B,)`` float64 tensor, one budget each)."""
        multiplier = self.cost_multiplier
        if multiplier is None:
            return None
        horizon, total = self.config.planner.horizon, multiplier.episode_budget(self.episode_steps)
        if spent is None:
            return multiplier.budget(horizon)
        if np.ndim(spent) == 0:
            return multiplier.budget(horizon, total - float(spent))
        return torch.tensor([multiplier.budget(horizon, total - float(c)) for c in np.asarray(spent).reshape(-1)],
                            dtype=torch.float64)

    def cost_penalty(self) -> float:
        """The weight of predicted cost in the objective's score: ``planner.cost_weight`` plus the multiplier's
        positive part."""
        extra = self.cost_multiplier.penalty if self.cost_multiplier is not None else 0.0
        return self.config.planner.cost_weight + extra

    def step_threshold(self) -> float:
        """The probability over which a step uses more than its share of the budget (the planner's per-step
        threshold, ``budget(1)``); 0.5 when unconstrained."""
        return 0.5 if self.cost_multiplier is None else self.cost_multiplier.budget(1)

    def _end_episode_cost(self, episode_cost: float, episode_length: int) -> None:
        """Step the multiplier with a finished training episode; warn once if the env reports no costs."""
        if self.cost_multiplier is not None:
            self.cost_multiplier.update(episode_cost, episode_length)
            if not self._vacuous_checked and not cost_reported(self.env):
                warnings.warn(
                    f"planner.cost_limit is {self.config.planner.cost_limit}, but {self.config.env_id} has not "
                    "reported info['cost'] in a whole episode: every step counts as cost 0, so the constraint is "
                    "vacuous. Use an environment that reports costs (e.g. rehearse/SafetyHalfCheetahVelocity-v1), "
                    "or drop --planner-cost-limit.", UserWarning, stacklevel=2,
                )
        self._vacuous_checked = True

    def predict_safety(self, obs: np.ndarray, actions: np.ndarray | torch.Tensor) -> SafetyPrediction:
        """Predicted safety of action sequences, without acting: "is this plan safe?".

        ``obs (*obs_shape)`` with ``actions (H, A)``, or ``obs (B, *obs_shape)`` with ``actions (B, H, A)``;
        actions in the planner's ``[-1, 1]`` units. Each sequence is imagined by ``planner.particles``
        particles (each ensemble member equally often); see :class:`SafetyPrediction` for what comes back.

        Raises:
            ValueError: shapes that do not match, or actions that are not finite.
        """
        observations = self.adapter.as_obs(obs)
        plan = torch.as_tensor(np.asarray(actions) if not isinstance(actions, torch.Tensor) else actions)
        batched = observations.ndim == len(self.obs_shape) + 1
        single_ok = observations.shape == self.obs_shape and plan.dim() == 2
        batch_ok = batched and plan.dim() == 3 and plan.shape[0] == observations.shape[0] > 0
        if not (single_ok or batch_ok) or plan.shape[-1] != self.action_dim or plan.shape[-2] < 1:
            raise ValueError(
                f"predict_safety takes obs {self.obs_shape} with actions (H, {self.action_dim}), or obs "
                f"(B, {', '.join(map(str, self.obs_shape))}) with actions (B, H, {self.action_dim}); got obs "
                f"{observations.shape} and actions {tuple(plan.shape)}"
            )
        if not torch.isfinite(plan).all():
            raise ValueError("predict_safety: actions must be finite (in the planner's [-1, 1] units)")
        plan = plan if batched else plan.unsqueeze(0)  # (B, H, A)
        with torch.inference_mode():
            z0 = self.adapter.encode(observations if batched else observations[None])  # (B, Z)
            probability, disagreement, expected = self._imagine_costs(z0, plan)
        return self._prediction(probability, disagreement, expected, batched)

    def _imagine_costs(self, z0: torch.Tensor, plan: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``z0 (B, Z)``, ``plan (B, H, A)`` -> probability, disagreement ``(B, H)`` and expected cost ``(B,)``."""
        particles = self.config.planner.particles
        batch, horizon, _ = plan.shape
        rollout = imagine_plans(self.model.imagine, z0, plan, particles)  # (H, B * P) fields, row b * P + p
        costs = rollout.costs.float().reshape(horizon, batch, particles)
        probability = costs.mean(dim=2).transpose(0, 1)  # (B, H)
        disagreement = costs.std(dim=2, unbiased=False).transpose(0, 1)
        expected = horizon_cost(rollout).float().view(batch, particles).mean(dim=1)  # (B,)
        return probability, disagreement, expected

    def _prediction(self, probability: torch.Tensor, disagreement: torch.Tensor, expected: torch.Tensor,
                    batched: bool) -> SafetyPrediction:
        """The numpy :class:`SafetyPrediction` (the batch axis dropped unless ``batched``)."""
        expected_np = expected.cpu().numpy().astype(np.float64)
        if self.cost_multiplier is None:
            use = np.full_like(expected_np, np.nan)
        else:
            budget = self.cost_multiplier.episode_budget(self.episode_steps)
            with np.errstate(divide="ignore", invalid="ignore"):
                use = np.where(expected_np > 0, expected_np / budget, 0.0) if budget == 0 else expected_np / budget
        fields = (probability.cpu().numpy().astype(np.float64), disagreement.cpu().numpy().astype(np.float64),
                  expected_np, np.asarray(use, dtype=np.float64))
        return SafetyPrediction(*(f if batched else f[0] for f in fields))

    def _start_evaluation(self, envs: list[gym.Env]) -> None:
        """Before an evaluation: drop what the evaluation envs' :class:`~envs.TransitionLog` kept and the last
        evaluation's veto counts."""
        self.veto.start_evaluation()
        for log in (find_wrapper(env, TransitionLog) for env in envs):
            if log is not None:
                log.take()

    def _training_safety(self) -> dict[str, float]:
        """progress.csv's safety values of the training loop: the multiplier and the training veto counts."""
        if self.cost_multiplier is None:
            return {}
        return {"safety/cost_multiplier": self.cost_multiplier.value, **self.veto.train.scalars("safety/train_")}

    def _evaluation_safety(self, envs: list[gym.Env]) -> dict[str, float]:
        """progress.csv's safety values of the evaluation just played on ``envs``: the safety head's report
        (:meth:`_safety_head_report`) and, under a cost limit, the evaluation's veto counts."""
        report = self._safety_head_report(envs)
        vetoes = self.veto.eval.scalars("safety/eval_") if self.cost_multiplier is not None else {}
        return {**({} if report is None else report.scalars()), **vetoes}

    def _safety_head_report(self, envs: list[gym.Env]) -> SafetyMetrics | None:
        """The safety head judged on the transitions the evaluation envs' :class:`~envs.TransitionLog` kept
        (held out: never trained on), or ``None`` when they kept none or the env reports no costs. Their costs
        also go to the evaluation's :class:`~agent.veto.VetoCounter` counts (the real cost of flagged steps)."""
        logs = [log for log in (find_wrapper(env, TransitionLog) for env in envs) if log is not None]
        taken = [log.take() for log in logs]
        if self.cost_multiplier is not None and len(logs) == len(envs):
            self.veto.attribute([t[2] for t in taken])
        if not taken or not any(cost_reported(log) for log in logs) or sum(len(t[2]) for t in taken) == 0:
            return None
        obs = np.concatenate([t[0] for t in taken])
        actions = np.concatenate([t[1] for t in taken])
        costs = np.concatenate([t[2] for t in taken])
        return safety_metrics(self.step_cost_probability(obs, actions), costs, threshold=self.step_threshold())

    def step_cost_probability(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``(n,)`` in ``[0, 1]``: the predicted probability that each transition's step is costly, for ``obs (n,
        *obs_shape)`` and ``actions (n, A)`` (planner units): :meth:`predict_safety` of each one-step plan, in
        chunks. What the safety head is judged on, here and by ``benchmarks.safety_head``."""
        probability = np.concatenate([
            self.predict_safety(obs[i:i + _CHUNK], actions[i:i + _CHUNK, None, :]).probability[:, 0]
            for i in range(0, len(obs), _CHUNK)
        ])
        return np.clip(probability, 0.0, 1.0)
