"""Sampling-based planners: CEM, MPPI and random shooting, sharing one loop.

A planner solves ``B`` independent planning problems at once (``B = 1`` for the plain
``init (H, A)`` call). Every problem ``b`` keeps a Gaussian ``mean[b] (H, A)``,
``std[b] (H, A)`` over action sequences, starting at ``init[b]`` (the warm start) and
``config.init_std``. Each iteration the planner

1. draws noise ``(B, N, H, A)`` in one call from its own ``torch.Generator`` (problem
   ``b`` gets slice ``b``; for ``B = 1`` this is the same stream as an ``(N, H, A)`` draw)
   and samples ``N`` sequences ``mean[b] + std[b] * eps`` per problem, clamped to ``[-1, 1]``;
2. appends each problem's current mean and the proposals (both clamped), giving
   ``M = N + 1 + n`` candidates per problem;
3. scores all ``B * M`` candidates with **one** objective call on ``(B * M, H, A)``,
   rows ``b * M : (b + 1) * M`` belonging to problem ``b``, treating NaN (and any
   non-finite score) as ``-inf``;
4. refits each problem's ``mean``/``std`` from its own best finite candidates with the
   method's rule, mixed with the old values by ``config.momentum``, ``std`` floored at
   ``min_std``. A problem with no finite score this round keeps its distribution.

Problems never mix: elites, refits, best-so-far and statistics are per problem, so a
problem's plan depends only on its own objective rows and its slice of the noise.

The methods differ only in step 4 and in what they return:

- :class:`CEM` refits to the plain mean/std of the top ``num_elites`` and returns the
  final mean;
- :class:`MPPI` refits to the softmax-weighted mean/std of the top ``num_elites``
  (max subtracted before ``exp``) and returns the final mean;
- :class:`RandomShooting` does a single iteration and returns the best candidate.

With a :class:`~planners.base.CostedObjective` (predicted costs and a cost budget) the elites of step 4 and
the best candidate are chosen by :func:`constrained_merit`: the candidates whose cost fits the budget, ranked
by score; when none fits, the least-cost ones. CEM and MPPI score their final mean once more, and return the
best candidate seen instead when the mean does not fit the budget but some candidate did (or, none fitting,
costs less): a plan the cost prediction rejects is never returned while one it accepts was found.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from planners.base import CostedObjective, Objective
from planners.search import Search


@dataclass(frozen=True)
class SamplingConfig:
    """Settings shared by the sampling planners."""

    num_candidates: int = 256
    """``N`` sequences sampled per iteration (the current mean and the proposals are added on top)."""
    iterations: int = 4
    """Sample-score-refit rounds per plan (random shooting always does one)."""
    num_elites: int = 32
    """CEM elites / MPPI top-k used to refit the mean and std."""
    init_std: float = 0.5
    """Standard deviation of the sampling distribution at the start of each plan."""
    min_std: float = 0.05
    """Floor of the standard deviation after each refit (keeps exploring)."""
    momentum: float = 0.1
    """Weight of the old mean/std in each refit (0 = replace by the new estimate)."""
    temperature: float = 0.5
    """MPPI only: elite weights are ``softmax((score - max) / temperature)`` over the top-k."""

    def __post_init__(self) -> None:
        checks = {
            "num_candidates >= 1": self.num_candidates >= 1,
            "iterations >= 1": self.iterations >= 1,
            "1 <= num_elites <= num_candidates": 1 <= self.num_elites <= self.num_candidates,
            "init_std > 0": self.init_std > 0,
            "0 <= min_std": self.min_std >= 0,
            "0 <= momentum < 1": 0 <= self.momentum < 1,
            "temperature > 0": self.temperature > 0,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"SamplingConfig: {', '.join(failed)} does not hold ({self})")


def constrained_merit(
    scores: torch.Tensor, costs: torch.Tensor, budget: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """What elite selection ranks by under a cost budget: ``(merit (B, M), feasible (B, M))``.

    ``scores (B, M)`` (``-inf`` where not finite), ``costs (B, M)`` (NaN counts as ``+inf``), ``budget (B,)``.
    A candidate is feasible when its score is finite and its cost is at most its problem's budget. In a problem
    with a feasible candidate, merit is the score of the feasible ones and ``-inf`` for the rest; in a problem
    with none, it is ``-cost`` (least cost first) for candidates with a finite score, else ``-inf``.
    """
    finite = torch.isfinite(scores)
    costs = torch.nan_to_num(costs.to(scores.dtype), nan=torch.inf)
    feasible = finite & (costs <= budget.to(scores.dtype)[:, None])
    minus_inf = torch.full_like(scores, -torch.inf)
    fallback = torch.where(finite, -costs, minus_inf)
    merit = torch.where(feasible.any(dim=1, keepdim=True), torch.where(feasible, scores, minus_inf), fallback)
    return merit, feasible


def _cem_refit(elites: torch.Tensor, scores: torch.Tensor, config: SamplingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``elites (G, k, H, A)``, ``scores (G, k)`` -> mean, std ``(G, H, A)``: unweighted moments per problem."""
    del scores, config
    return elites.mean(dim=1), elites.std(dim=1, unbiased=False)


def _mppi_refit(
    elites: torch.Tensor, scores: torch.Tensor, config: SamplingConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """``elites (G, k, H, A)``, ``scores (G, k)`` finite -> mean, std ``(G, H, A)``: softmax-weighted moments."""
    # (G, k): subtract each problem's max before exp, so its largest weight is exactly 1
    weights = torch.exp((scores - scores.amax(dim=1, keepdim=True)) / config.temperature)
    weights = (weights / weights.sum(dim=1, keepdim=True))[:, :, None, None]  # (G, k, 1, 1)
    mean = (weights * elites).sum(dim=1)  # (G, H, A)
    std = (weights * (elites - mean.unsqueeze(1)) ** 2).sum(dim=1).sqrt()
    return mean, std


def _blend(
    old: torch.Tensor, rows: torch.Tensor | None, new: torch.Tensor, momentum: float, floor: float | None = None
) -> torch.Tensor:
    """``momentum * old + (1 - momentum) * new``, floored at ``floor``, for problems ``rows`` (``None``: all).

    ``old (B, H, A)``, ``new (G, H, A)``; returns a new ``(B, H, A)`` tensor, other rows unchanged.
    """
    part = old if rows is None else old[rows]
    mixed = momentum * part + (1.0 - momentum) * new
    if floor is not None:
        mixed = mixed.clamp(min=floor)
    if rows is None:
        return mixed
    out = old.clone()
    out[rows] = mixed
    return out


class _SamplingPlanner:
    """The loop shared by every sampling planner; subclasses set the three class attributes."""

    _name = "sampling"
    _returns_best = False
    _single_iteration = False

    def __init__(
        self,
        config: SamplingConfig,
        action_dim: int,
        generator: torch.Generator | None = None,
    ) -> None:
        """``generator`` drives all sampling; a fresh (default-seeded, CPU) one when ``None``."""
        if action_dim < 1:
            raise ValueError(f"{self._name}: action_dim must be >= 1, got {action_dim}")
        self.config = config
        self.action_dim = action_dim
        self.generator = generator if generator is not None else torch.Generator()
        self.last_stats: dict[str, float] = {}
        self.last_best_proposal = torch.empty(0, dtype=torch.long)

    def _refit(
        self, elites: torch.Tensor, scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - overridden
        raise NotImplementedError("_refit(elites (G, k, H, A), scores (G, k)) -> mean, std (G, H, A)")

    def plan(
        self,
        objective: Objective,
        init: torch.Tensor,
        proposals: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Optimise ``objective`` from warm start ``init``, also trying ``proposals``.

        One problem: ``init (H, A)``, ``proposals (n, H, A)`` -> plan ``(H, A)``.
        ``B`` problems: ``init (B, H, A)``, ``proposals (n, H, A)`` (shared) or
        ``(B, n, H, A)`` -> plans ``(B, H, A)``; the objective then gets
        ``(B * M, H, A)`` candidates, problem ``b`` in rows ``b * M : (b + 1) * M``, and
        must return ``(B * M,)`` scores. ``B = 1`` gives bit-identical results to the
        ``(H, A)`` call with the same generator state.

        Plans are in ``[-1, 1]`` on ``init``'s device and dtype; ``init`` and
        ``proposals`` are left unchanged. Sets ``self.last_stats`` (averaged over problems) and
        ``self.last_best_proposal`` ``(B,)``: which proposal was the best candidate, -1 where none was.
        Raises :class:`PlanningError`, naming the problems, if some problem never scored a finite candidate.
        """
        batched = init.dim() == 3
        with torch.no_grad():
            plans = self._plan(objective, self._check_init(init), self._extra_candidates(init, proposals), batched)
        return plans if batched else plans[0]

    def _plan(self, objective: Objective, init: torch.Tensor, extra: torch.Tensor, batched: bool) -> torch.Tensor:
        """``init (B, H, A)``, ``extra (B, n, H, A)`` clamped -> plans ``(B, H, A)``."""
        cfg = self.config
        mean = init.clamp(-1.0, 1.0)  # (B, H, A), a new tensor: init is never written to
        std = torch.full_like(mean, cfg.init_std)
        budget = self._budget(objective, mean.shape[0], mean.device)  # (B,), or None without costs
        search = Search(mean, first_proposal=cfg.num_candidates + 1, constrained=budget is not None)
        iterations = 1 if self._single_iteration else cfg.iterations
        for _ in range(iterations):
            samples = (mean.unsqueeze(1) + std.unsqueeze(1) * self._noise(mean)).clamp(-1.0, 1.0)  # (B, N, H, A)
            # (B, M = N + 1 + n, H, A): samples, then the current mean, then proposals
            candidates = torch.cat([samples, mean.unsqueeze(1), extra], dim=1)
            scores, merit, feasible = self._rank(objective, candidates, budget)  # (B, M) each
            for rows, elites, elite_merit in search.record(candidates, scores, cfg.num_elites, merit, feasible):
                new_mean, new_std = self._refit(elites, elite_merit)  # (G, H, A) for problems `rows`
                mean = _blend(mean, rows, new_mean, cfg.momentum)
                std = _blend(std, rows, new_std, cfg.momentum, floor=cfg.min_std)
        self.last_stats = search.stats()
        self.last_best_proposal = (search.best_index - search.first_proposal).clamp(min=-1)  # (B,); -1: no proposal
        search.raise_if_unsolved(self._name, iterations, batched)
        if self._returns_best:
            return search.best.clone()
        plan = mean.clamp(-1.0, 1.0)
        if budget is None:
            return plan
        _, merit, feasible = self._rank(objective, plan.unsqueeze(1), budget)  # the final mean, scored once more
        keep = search.keeps(merit[:, 0], feasible[:, 0])  # (B,)
        return torch.where(keep[:, None, None], plan, search.best)

    def _budget(self, objective: Objective, batch: int, device: torch.device) -> torch.Tensor | None:
        """The objective's ``cost_budget`` as ``(B,)`` float64 (``None`` for an objective without costs)."""
        if not isinstance(objective, CostedObjective):
            return None
        budget = torch.as_tensor(objective.cost_budget, dtype=torch.float64).to(device)
        if budget.dim() > 1 or (budget.dim() == 1 and budget.shape[0] != batch) or torch.isnan(budget).any():
            raise ValueError(
                f"{self._name}: the objective's cost_budget must be a number or one per problem ({batch},), "
                f"not NaN; got {objective.cost_budget!r}"
            )
        return budget.expand(batch)

    def _rank(
        self, objective: Objective, candidates: torch.Tensor, budget: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(scores, merit, feasible)``, each ``(B, M)``, of ``candidates (B, M, H, A)``: without a budget the
        merit is the score and every finite candidate is feasible; with one, :func:`constrained_merit`."""
        if budget is None:
            scores = self._score(objective, candidates)
            return scores, scores, torch.isfinite(scores)
        assert isinstance(objective, CostedObjective)
        scores, costs = self._score_and_cost(objective, candidates)
        return (scores, *constrained_merit(scores, costs, budget))

    def _check_init(self, init: torch.Tensor) -> torch.Tensor:
        """Check ``init (H, A)`` or ``(B, H, A)``; return it as ``(B, H, A)`` (a view)."""
        empty_batch = init.dim() == 3 and init.shape[0] == 0
        if init.dim() not in (2, 3) or init.shape[-1] != self.action_dim or not init.is_floating_point() or empty_batch:
            raise ValueError(
                f"{self._name}: init must be a float (H, A={self.action_dim}) or (B >= 1, H, A={self.action_dim}) "
                f"tensor, got {init.dtype} of shape {tuple(init.shape)}"
            )
        return init if init.dim() == 3 else init.unsqueeze(0)

    def _extra_candidates(self, init: torch.Tensor, proposals: torch.Tensor | None) -> torch.Tensor:
        """The proposals clamped, as ``(B, n, H, A)`` (``n = 0`` when none); shared ones are expanded."""
        batch = init.shape[0] if init.dim() == 3 else 1
        horizon, action_dim = init.shape[-2:]
        if proposals is None:
            return init.new_empty((batch, 0, horizon, action_dim))
        shape = tuple(proposals.shape)
        shared = len(shape) == 3 and shape[1:] == (horizon, action_dim)
        per_problem = init.dim() == 3 and len(shape) == 4 and shape[:1] + shape[2:] == (batch, horizon, action_dim)
        if not (shared or per_problem):
            expected = f"(n, H, A) = (n, {horizon}, {action_dim})"
            if init.dim() == 3:
                expected += f" or (B, n, H, A) = ({batch}, n, {horizon}, {action_dim})"
            raise ValueError(f"{self._name}: proposals must be {expected}, got shape {shape}")
        extra = proposals.to(device=init.device, dtype=init.dtype).clamp(-1.0, 1.0)
        return extra.expand(batch, *extra.shape) if shared else extra

    def _noise(self, mean: torch.Tensor) -> torch.Tensor:
        """``(B, N, H, A)`` standard normal noise from ``self.generator`` (one draw), on ``mean``'s device/dtype."""
        batch, horizon, action_dim = mean.shape
        shape = (batch, self.config.num_candidates, horizon, action_dim)
        eps = torch.randn(shape, generator=self.generator, device=self.generator.device)
        return eps.to(device=mean.device, dtype=mean.dtype)

    def _score(self, objective: Objective, candidates: torch.Tensor) -> torch.Tensor:
        """``objective(candidates (B * M, H, A)) -> (B * M,)``, returned as ``(B, M)`` with non-finite as ``-inf``."""
        batch, num = candidates.shape[:2]
        flat = candidates.reshape(batch * num, *candidates.shape[2:])
        scores = objective(flat)
        if tuple(scores.shape) != (flat.shape[0],):
            raise ValueError(
                f"{self._name}: objective must map candidates {tuple(flat.shape)} to scores "
                f"({flat.shape[0]},), got shape {tuple(scores.shape)}"
            )
        scores = scores.to(device=candidates.device).view(batch, num)
        return torch.where(torch.isfinite(scores), scores, torch.full_like(scores, -torch.inf))

    def _score_and_cost(
        self, objective: CostedObjective, candidates: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_score` through ``objective.score_and_cost``: ``(scores (B, M), costs (B, M))``, one call."""
        costs: list[torch.Tensor] = []

        def scores_only(flat: torch.Tensor) -> torch.Tensor:
            scores, cost = objective.score_and_cost(flat)
            costs.append(cost)
            return scores

        scores = self._score(scores_only, candidates)
        if tuple(costs[0].shape) != (scores.numel(),):
            raise ValueError(
                f"{self._name}: score_and_cost must give costs ({scores.numel()},), got shape {tuple(costs[0].shape)}"
            )
        return scores, costs[0].to(device=candidates.device).view(scores.shape)


class CEM(_SamplingPlanner):
    """Cross-entropy method: refit to the elites' mean/std, return the final mean ``(H, A)`` / ``(B, H, A)``."""

    _name = "CEM"

    def _refit(self, elites: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _cem_refit(elites, scores, self.config)


class MPPI(_SamplingPlanner):
    """MPPI: refit to the softmax(score / temperature)-weighted top-k, return the final mean."""

    _name = "MPPI"

    def _refit(self, elites: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _mppi_refit(elites, scores, self.config)


class RandomShooting(_SamplingPlanner):
    """Random shooting: one round of ``N`` samples around ``init`` (plus mean and proposals); return the best."""

    _name = "RandomShooting"
    _returns_best = True
    _single_iteration = True

    def _refit(self, elites: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # one round only: the refitted distribution is never sampled again
        return _cem_refit(elites, scores, self.config)
