"""The objective: the one place that turns an imagined rollout into a score.

A planner only ever sees ``objective(candidates (N, H, A)) -> scores (N,)``. This
module builds that function from a world model's ``imagine`` and the encoded current observation
(or ``B`` of them, one per planning problem of a batched plan):

    score = sum_t discount**t * alive_t * (reward_t - cost_weight * cost_t)
            + discount**H * alive_H * terminal_value

with ``alive_0 = 1`` and ``alive_{t+1} = alive_t * continuation_t``. Scores that are
not finite (NaN or +-inf anywhere in the sum) become ``-inf``, never a small number,
so a planner can never prefer a sequence the model could not predict.

Given a ``cost_budget``, :func:`make_objective` returns a :class:`~planners.base.CostedObjective`: it also
predicts each candidate's cost over the horizon, ``sum_t alive_t * cost_t`` (the expected number of costly
steps, undiscounted), pessimistic over the particles (their maximum: the ensemble member that predicts the
most cost decides), for the planner to hold against the budget.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from planners.base import CostedObjective, Imagine, ImaginedRollout, Objective


def _check_shape(name: str, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(x.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(x.shape)}")


def score_rollout(rollout: ImaginedRollout, *, discount: float, cost_weight: float) -> torch.Tensor:
    """Discounted, continuation-weighted return of each imagined row: ``(B,)``.

    Uses ``rollout.rewards``, ``rollout.costs`` and ``rollout.continuation`` (all
    ``(H, B)``) and ``rollout.terminal_value`` (``(B,)`` or ``None``, then no
    bootstrap term). Steps whose ``alive`` weight is exactly zero (after a predicted
    termination with continuation 0) contribute nothing, even if the model's
    predictions there are not finite. Any other non-finite value makes the row's
    score ``-inf``.
    """
    rewards = rollout.rewards
    if rewards.dim() != 2:
        raise ValueError(f"rollout.rewards: expected (H, B), got {tuple(rewards.shape)}")
    horizon, batch = rewards.shape
    _check_shape("rollout.costs", rollout.costs, (horizon, batch))
    _check_shape("rollout.continuation", rollout.continuation, (horizon, batch))

    alive = _alive(rollout.continuation, rewards.dtype)  # (H+1, B)
    steps = torch.arange(horizon + 1, dtype=rewards.dtype, device=rewards.device)
    weights = (discount**steps).unsqueeze(1) * alive  # (H+1, B)

    step_values = rewards - cost_weight * rollout.costs.to(rewards.dtype)  # (H, B)
    terms = _weigh(weights[:horizon], step_values)  # (H, B)
    score = terms.sum(dim=0)  # (B,)
    if rollout.terminal_value is not None:
        _check_shape("rollout.terminal_value", rollout.terminal_value, (batch,))
        value = rollout.terminal_value.to(rewards.dtype)  # (B,)
        score = score + _weigh(weights[horizon], value)
    return torch.where(torch.isfinite(score), score, torch.full_like(score, -torch.inf))


def _alive(continuation: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``alive (H+1, B)`` from ``continuation (H, B)``: ``alive_0 = 1``, ``alive_{t+1} = alive_t * continuation_t``."""
    ones = torch.ones(1, continuation.shape[1], dtype=dtype, device=continuation.device)
    return torch.cat([ones, torch.cumprod(continuation.to(dtype), dim=0)])


def horizon_cost(rollout: ImaginedRollout) -> torch.Tensor:
    """Predicted cost of each imagined row over the horizon: ``sum_t alive_t * cost_t``, ``(B,)``.

    With ``rollout.costs (H, B)`` the probability that step ``t`` is costly, this is the expected number of
    costly steps before a predicted termination (undiscounted: a budget counts steps). Steps whose ``alive``
    weight is exactly zero count nothing; any other non-finite value makes the row's cost ``+inf``.
    """
    costs = rollout.costs
    if costs.dim() != 2:
        raise ValueError(f"rollout.costs: expected (H, B), got {tuple(costs.shape)}")
    _check_shape("rollout.continuation", rollout.continuation, tuple(costs.shape))
    dtype = costs.dtype if costs.is_floating_point() else torch.float32
    alive = _alive(rollout.continuation, dtype)[:-1]  # (H, B): alive before each step
    total = _weigh(alive, costs.to(dtype)).sum(dim=0)  # (B,)
    return torch.where(torch.isfinite(total), total, torch.full_like(total, torch.inf))


def imagine_plans(imagine: Imagine, z0: torch.Tensor, plans: torch.Tensor, particles: int) -> ImaginedRollout:
    """Plan ``b`` of ``plans (B, H, A)`` imagined from ``z0[b]`` (``z0 (B, Z)``) by ``particles`` particles: the
    rollout's rows are ``b * P + p`` (``(H, B * P)`` fields), as :func:`make_objective` lays out one candidate per
    problem. Plans are moved to ``z0``'s device and dtype; call it under ``torch.inference_mode()`` to plan."""
    z = z0.repeat_interleave(particles, dim=0)  # (B * P, Z), row b * P + p
    steps = plans.to(device=z0.device, dtype=z0.dtype).transpose(0, 1).repeat_interleave(particles, dim=1)
    return imagine(z, steps)


def _weigh(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``weights * values``, but exactly 0 where the weight is 0 (dead rows ignore NaN)."""
    return torch.where(weights == 0, torch.zeros_like(values), weights * values)


def make_objective(
    imagine: Imagine,
    z0: torch.Tensor,
    *,
    particles: int,
    discount: float,
    cost_weight: float,
    pessimism: float = 0.0,
    cost_budget: float | torch.Tensor | None = None,
) -> Objective:
    """Objective ``candidates (N, H, A) -> scores (N,)`` imagined from latent ``z0 (Z,)``, or from ``B`` latents.

    With ``z0 (B, Z)`` (one latent per planning problem, as a batched planner call
    needs) the candidates are ``B`` equal consecutive blocks of ``M = N / B`` rows:
    rows ``b * M : (b + 1) * M`` are imagined from ``z0[b]``. ``N`` must be divisible
    by ``B``. ``z0 (Z,)`` is the case ``B = 1``.

    Each candidate is repeated ``P = particles`` times (``repeat_interleave``), so
    row ``r = c * P + p`` of the imagined batch is particle ``p`` of candidate ``c``;
    inside problem ``b``'s block that is ``r = b * M * P + n * P + p`` for its
    candidate ``n``. ``imagine`` (a world model's) imagines all ``N * P`` rows in one call under
    ``torch.inference_mode()`` and each candidate's score is the mean of its
    particles' scores (``-inf`` if any particle's score is ``-inf``), minus
    ``pessimism`` times their standard deviation: where the ensemble members disagree
    (states the model has not seen), a candidate is worth less, so the planner does
    not exploit model errors.

    Ensembles route row ``r`` to member ``r % E``: with ``P`` a multiple of ``E``
    every candidate, in every block, is imagined by every member equally often (and
    ``N * P`` is divisible by ``E`` whatever ``N`` the planner uses, which the
    ensemble requires).

    Candidates are moved to ``z0``'s device and dtype for the model; scores come back
    on the candidates' device as an ordinary (non-inference) tensor. Nothing is clamped:
    keeping actions in bounds is the planner's job.

    ``cost_budget`` (a float, or ``(B,)`` one per problem): return a :class:`~planners.base.CostedObjective`
    whose ``score_and_cost`` also gives each candidate's predicted horizon cost (:func:`horizon_cost`, the
    maximum over its particles), with this budget; ``None`` (the default): a plain objective.
    """
    if z0.dim() not in (1, 2):
        raise ValueError(
            f"make_objective: z0 must be one latent (Z,) or one per problem (B, Z), got shape {tuple(z0.shape)}"
        )
    if particles < 1:
        raise ValueError(f"make_objective: particles must be >= 1, got {particles}")
    latents = z0 if z0.dim() == 2 else z0.unsqueeze(0)  # (B, Z)
    batch, width = latents.shape

    def evaluate(candidates: torch.Tensor, with_cost: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if candidates.dim() != 3:
            raise ValueError(f"objective: candidates must be (N, H, A), got shape {tuple(candidates.shape)}")
        num = candidates.shape[0]
        if num % batch:
            raise ValueError(
                f"objective: {num} candidates cannot be split into {batch} equal blocks, "
                f"one per latent of z0 {tuple(z0.shape)}"
            )
        cost = None
        with torch.inference_mode():
            actions = candidates.to(device=z0.device, dtype=z0.dtype)
            # (H, N*P, A), row r = c * P + p
            actions = actions.transpose(0, 1).repeat_interleave(particles, dim=1)
            # (N*P, Z): block b (M*P rows) starts from z0[b]; a stride-0 view, no copy, when B = 1
            z = latents[:, None].expand(batch, num // batch * particles, width).reshape(num * particles, width)
            rollout = imagine(z, actions)
            scores = score_rollout(rollout, discount=discount, cost_weight=cost_weight)
            _check_shape("objective: imagined row scores", scores, (num * particles,))
            per_particle = scores.view(num, particles)  # (N, P)
            mean = per_particle.mean(dim=1)  # (N,); -inf stays -inf
            if pessimism and particles > 1:
                spread = per_particle.std(dim=1)
                mean = torch.where(torch.isfinite(spread), mean - pessimism * spread, mean)
            if with_cost:  # (N,): the most any particle predicts
                cost = horizon_cost(rollout).view(num, particles).amax(dim=1).clone().to(candidates.device)
        return mean.clone().to(candidates.device), cost

    if cost_budget is None:
        return lambda candidates: evaluate(candidates, False)[0]
    return _Constrained(evaluate, cost_budget)


class _Constrained:
    """A :class:`~planners.base.CostedObjective` over ``evaluate(candidates, with_cost) -> (scores, costs)``."""

    def __init__(
        self,
        evaluate: Callable[[torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor | None]],
        cost_budget: float | torch.Tensor,
    ) -> None:
        self._evaluate = evaluate
        self.cost_budget = cost_budget

    def __call__(self, candidates: torch.Tensor) -> torch.Tensor:
        """``candidates (N, H, A) -> scores (N,)``."""
        return self._evaluate(candidates, False)[0]

    def score_and_cost(self, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``candidates (N, H, A) -> (scores (N,), costs (N,))`` from one imagination."""
        scores, costs = self._evaluate(candidates, True)
        assert costs is not None
        return scores, costs


def add_to_scores(objective: Objective, extra: Callable[[torch.Tensor], torch.Tensor]) -> Objective:
    """``objective`` with ``extra(candidates (N, H, A)) -> (N,)`` added to its scores (a judge's bonus, say).

    A :class:`~planners.base.CostedObjective` stays one: same predicted costs, same budget, so a cost limit
    still holds for the candidates whose scores changed."""
    if isinstance(objective, CostedObjective):
        costed = objective

        def evaluate(candidates: torch.Tensor, with_cost: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
            if not with_cost:
                return costed(candidates) + extra(candidates), None
            scores, costs = costed.score_and_cost(candidates)
            return scores + extra(candidates), costs

        return _Constrained(evaluate, costed.cost_budget)
    return lambda candidates: objective(candidates) + extra(candidates)
