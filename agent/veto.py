"""What the cost constraint did with each plan: the proposals it rejected, the plans it let through, the steps
the safety head flagged and what they really cost.

With ``planner.cost_limit`` every plan of :class:`agent.agent.MBRLAgent` is judged once more after the planner
chose it (:meth:`VetoCounter.judge`, from :meth:`agent.acting.Acting.plan`): the proposals' predicted cost
(pessimistic over the ensemble, as the planner judges it) against the plan's budget, and the executed plan's.
Two counters, one for the training loop's plans and one for its evaluations, progress.csv's ``safety/train_*``
(cumulative) and ``safety/eval_*`` (the last evaluation's) keys (docs/safety.md).

A step is **flagged** when the plan whose first action it executes has a predicted pessimistic cost over the
horizon above the plan's budget: the planner returns such a plan only when no candidate fitted
(``planner/feasible_best`` 0). ``flagged_prob`` counts the stricter per-step reading: the safety head's
probability that the executed first step is costly (mean over the ensemble) above the planner's per-step
threshold (``safety/threshold``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from planners.base import CostedObjective
from planners.objective import horizon_cost, imagine_plans

__all__ = ["VetoCounts", "VetoCounter", "attribute_costs"]


@dataclass
class VetoCounts:
    """Counts over plans (one per planning problem) made under a cost budget."""

    plans: int = 0
    """Plans made under a cost budget (the executed first action of each is one step)."""
    proposals: int = 0
    """Proposals offered to those plans."""
    proposals_rejected: int = 0
    """Proposals whose predicted pessimistic cost over the horizon exceeded their plan's budget."""
    proposal_cost: float = 0.0
    """Sum of the proposals' predicted pessimistic costs (divide by ``proposals`` for the mean)."""
    budget: float = 0.0
    """Sum of the plans' budgets (divide by ``plans`` for the mean)."""
    proposal_best: float = 0.0
    """Plans whose best candidate was a proposal (the planner's ``proposal_best``, summed over problems)."""
    proposal_executed: int = 0
    """Plans equal to one of their proposals (a proposal executed as it was)."""
    rejected_executed: int = 0
    """Plans equal to one of their rejected proposals (possible only where no candidate fitted: flagged)."""
    flagged: int = 0
    """Executed steps whose plan's predicted pessimistic cost exceeded the plan's budget (the module docstring)."""
    flagged_prob: int = 0
    """Executed steps whose predicted probability of cost exceeded the planner's per-step threshold."""
    flagged_cost: float = 0.0
    """Real cost of the flagged steps whose cost is known (:meth:`VetoCounter.attribute`)."""
    steps_cost: float = 0.0
    """Real cost of all counted steps whose cost is known."""
    steps_known: int = 0
    """Counted steps whose real cost is known."""

    def scalars(self, prefix: str) -> dict[str, float]:
        """The counts as ``{prefix + name: value}``, plus the means ``proposal_mean_cost`` and ``mean_budget``."""
        out = {f"{prefix}{name}": float(value) for name, value in asdict(self).items()
               if name not in ("proposal_cost", "budget")}
        out[f"{prefix}proposal_mean_cost"] = self.proposal_cost / self.proposals if self.proposals else float("nan")
        out[f"{prefix}mean_budget"] = self.budget / self.plans if self.plans else float("nan")
        return out


def attribute_costs(flags: list[np.ndarray], costs: list[np.ndarray]) -> tuple[float, float, int] | None:
    """Real cost of flagged steps: ``(cost of flagged steps, cost of all steps, steps)``, or ``None`` when the
    calls do not match the episodes.

    ``flags``: one ``(k,)`` bool array per plan call, ``k`` the episodes running then; ``costs``: one array per
    evaluation env of its steps' costs, in order. Env ``j`` runs in call ``t`` when it took more than ``t``
    steps, and the running envs are the call's rows in env order (how lockstep evaluations play, and, with one
    env, one-by-one evaluations)."""
    lengths = np.array([len(c) for c in costs])
    flagged = total = 0.0
    steps = 0
    for t, row_flags in enumerate(flags):
        running = np.flatnonzero(lengths > t)
        if len(running) != len(row_flags):
            return None
        step_costs = np.array([costs[j][t] for j in running], dtype=np.float64)
        flagged += float(step_costs[row_flags].sum())
        total += float(step_costs.sum())
        steps += len(running)
    if steps != int(lengths.sum()):
        return None
    return flagged, total, steps


class VetoCounter:
    """The :class:`VetoCounts` of the training loop (``train``) and of the current evaluation (``eval``)."""

    def __init__(self) -> None:
        self.train = VetoCounts()
        self.eval = VetoCounts()
        self.eval_flags: list[np.ndarray] = []  # the current evaluation's flags, one (k,) array per plan call
        self.last_flags: np.ndarray | None = None  # the last training plan's flags (B,), until its step's cost

    def start_evaluation(self) -> None:
        """Forget the last evaluation's counts."""
        self.eval, self.eval_flags = VetoCounts(), []

    def judge(self, objective: object, imagine: object, z0: torch.Tensor, particles: int, threshold: float,
              proposals: torch.Tensor | None, plan: torch.Tensor, stats: dict[str, float], training: bool) -> None:
        """Count one plan call: ``z0 (B, Z)``, ``plan (H, A)`` or ``(B, H, A)``, ``proposals (n, H, A)`` or ``(B, n,
        H, A)`` or ``None``, ``objective`` the plan's (a :class:`~planners.base.CostedObjective`, else nothing is
        counted), ``stats`` the planner's ``last_stats`` (none where the plan came without a search)."""
        if not isinstance(objective, CostedObjective) or not callable(imagine):
            return
        counts = self.train if training else self.eval
        plans = plan.reshape(-1, *plan.shape[-2:])  # (B, H, A)
        batch, horizon = plans.shape[:2]
        budget = torch.as_tensor(objective.cost_budget, dtype=torch.float64).expand(batch)  # (B,)
        with torch.inference_mode():
            rollout = imagine_plans(imagine, z0, plans, particles)  # type: ignore[arg-type]  # row b * P + p
            pessimistic = horizon_cost(rollout).double().view(batch, particles).amax(dim=1).cpu()  # (B,)
            first = rollout.costs[0].double().view(batch, particles).mean(dim=1).cpu()  # (B,)
        flags = (~(pessimistic <= budget)).numpy()  # NaN counts as over the budget
        counts.plans += batch
        counts.budget += float(budget.sum())
        counts.flagged += int(flags.sum())
        counts.flagged_prob += int((~(first <= threshold)).sum())
        counts.proposal_best += stats.get("proposal_best", 0.0) * batch if proposals is not None else 0.0
        if proposals is not None and proposals.numel():
            self._judge_proposals(counts, objective, proposals, plans, budget)
        if training:
            self.last_flags = flags
        else:
            self.eval_flags.append(flags)

    @staticmethod
    def _judge_proposals(counts: VetoCounts, objective: CostedObjective, proposals: torch.Tensor,
                         plans: torch.Tensor, budget: torch.Tensor) -> None:
        """Count the proposals of one plan call (clamped to ``[-1, 1]``, as the planner takes them)."""
        batch = plans.shape[0]
        rows = proposals.to(plans.device, plans.dtype).clamp(-1.0, 1.0)
        rows = rows.expand(batch, *rows.shape) if rows.dim() == 3 else rows  # (B, n, H, A)
        with torch.no_grad():
            _, cost = objective.score_and_cost(rows.reshape(-1, *rows.shape[-2:]))
        cost = cost.double().cpu().view(batch, -1)  # (B, n)
        counts.proposals += cost.numel()
        counts.proposals_rejected += int((~(cost <= budget[:, None])).sum())
        counts.proposal_cost += float(torch.nan_to_num(cost, posinf=0.0).sum())
        executed = (rows == plans[:, None]).flatten(2).all(dim=2)  # (B, n): the proposal is the plan
        counts.proposal_executed += int(executed.any(dim=1).sum())
        counts.rejected_executed += int((executed & ~(cost <= budget[:, None])).any(dim=1).sum())

    def add_step_cost(self, cost: float) -> None:
        """The real cost of a training step: counted when it executed the first action of a plan judged since
        the last call (a planned step; random steps before ``train.learning_starts`` are not)."""
        if self.last_flags is None:
            return
        self.train.steps_cost += cost
        self.train.steps_known += 1
        if self.last_flags.any():
            self.train.flagged_cost += cost
        self.last_flags = None

    def attribute(self, costs: list[np.ndarray]) -> None:
        """The evaluation's real costs (one array per env, see :func:`attribute_costs`) on its flagged steps."""
        found = attribute_costs(self.eval_flags, costs) if self.eval_flags else None
        if found is not None:
            self.eval.flagged_cost, self.eval.steps_cost, self.eval.steps_known = found

    def state_dict(self) -> dict[str, float]:
        """The training counts (for checkpoints: resume keeps counting)."""
        return {f.name: getattr(self.train, f.name) for f in fields(VetoCounts)}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.train = VetoCounts(**{f.name: type(getattr(VetoCounts(), f.name))(state[f.name])
                                   for f in fields(VetoCounts) if f.name in state})
