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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from planners.base import Objective


class PlanningError(RuntimeError):
    """Raised when no candidate of some problem ever received a finite score."""


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
        ``proposals`` are left unchanged. Sets ``self.last_stats`` (averaged over
        problems). Raises :class:`PlanningError`, naming the problems, if some problem
        never scored a finite candidate.
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
        search = _Search(mean, first_proposal=cfg.num_candidates + 1)
        iterations = 1 if self._single_iteration else cfg.iterations
        for _ in range(iterations):
            samples = (mean.unsqueeze(1) + std.unsqueeze(1) * self._noise(mean)).clamp(-1.0, 1.0)  # (B, N, H, A)
            # (B, M = N + 1 + n, H, A): samples, then the current mean, then proposals
            candidates = torch.cat([samples, mean.unsqueeze(1), extra], dim=1)
            scores = self._score(objective, candidates)  # (B, M)
            for rows, elites, elite_scores in search.record(candidates, scores, cfg.num_elites):
                new_mean, new_std = self._refit(elites, elite_scores)  # (G, H, A) for problems `rows`
                mean = _blend(mean, rows, new_mean, cfg.momentum)
                std = _blend(std, rows, new_std, cfg.momentum, floor=cfg.min_std)
        self.last_stats = search.stats()
        search.raise_if_unsolved(self._name, iterations, batched)
        return search.best.clone() if self._returns_best else mean.clamp(-1.0, 1.0)

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


class _Search:
    """Book-keeping over iterations, per problem: best candidate seen, elite selection, statistics."""

    def __init__(self, init: torch.Tensor, first_proposal: int) -> None:
        """``init (B, H, A)``; candidate indices ``>= first_proposal`` are proposals."""
        batch = init.shape[0]
        self.best = init  # (B, H, A); replaced, never written to in place
        self.best_score = torch.full((batch,), -torch.inf, dtype=torch.float64, device=init.device)
        self.best_from_proposal = torch.zeros(batch, dtype=torch.bool, device=init.device)
        self.mean_elite_score = torch.full_like(self.best_score, -torch.inf)
        self.first_proposal = first_proposal
        self.finite = 0  # over all problems
        self.seen = 0  # per problem

    def record(
        self, candidates: torch.Tensor, scores: torch.Tensor, num_elites: int
    ) -> list[tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]]:
        """Track the best; return the elites, grouped by how many each problem has.

        ``candidates (B, M, H, A)``, ``scores (B, M)`` -> list of ``(rows (G,), elites
        (G, k, H, A), elite scores (G, k))``: the top ``k = min(num_elites, finite)``
        candidates of problems ``rows``, sorted best first, all finite. Problems with no
        finite score this round are in no group. Usually there is one group of all ``B``
        problems, and then ``rows`` is ``None``.
        """
        counts = torch.isfinite(scores).sum(dim=1).tolist()  # (B,) finite scores per problem
        self.finite += sum(counts)
        self.seen += scores.shape[1]
        sizes = [min(c, num_elites) for c in counts]
        if min(sizes) == max(sizes):
            return [self._group(candidates, scores, None, sizes[0])] if sizes[0] else []
        groups = []
        for k in sorted(set(sizes) - {0}):
            rows = torch.tensor([b for b, size in enumerate(sizes) if size == k], device=scores.device)
            groups.append(self._group(candidates[rows], scores[rows], rows, k))
        return groups

    def _group(
        self, candidates: torch.Tensor, scores: torch.Tensor, rows: torch.Tensor | None, k: int
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Top ``k`` of ``candidates (G, M, H, A)``, ``scores (G, M)`` (problems ``rows``; ``None``: all)."""
        elite_scores, index = scores.topk(k, dim=1)  # (G, k), sorted best first
        elites = torch.take_along_dim(candidates, index[:, :, None, None], dim=1)  # (G, k, H, A)
        self._update(rows, elites[:, 0], elite_scores, index[:, 0] >= self.first_proposal)
        return rows, elites, elite_scores

    def _update(
        self, rows: torch.Tensor | None, top: torch.Tensor, elite_scores: torch.Tensor, from_proposal: torch.Tensor
    ) -> None:
        """Keep ``top (G, H, A)`` as the best of problems ``rows`` where its score beats their best so far."""
        top_score = elite_scores[:, 0].to(torch.float64)
        values = (self.best, self.best_score, self.best_from_proposal, self.mean_elite_score)
        best, best_score, from_prop, _ = values if rows is None else tuple(v[rows] for v in values)
        improved = top_score > best_score
        updated = (
            torch.where(improved[:, None, None], top, best),
            torch.where(improved, top_score, best_score),
            torch.where(improved, from_proposal, from_prop),
            elite_scores.mean(dim=1).to(torch.float64),
        )
        if rows is None:
            self.best, self.best_score, self.best_from_proposal, self.mean_elite_score = updated
            return
        self.best = self.best.clone()  # it may still be the planner's initial mean
        targets = (self.best, self.best_score, self.best_from_proposal, self.mean_elite_score)
        for value, new in zip(targets, updated, strict=True):
            value[rows] = new

    def stats(self) -> dict[str, float]:
        """Averages over problems: ``best_score``, ``mean_elite_score`` (last refit), ``finite_fraction``,
        ``proposal_best`` (fraction of problems whose best came from a proposal)."""
        batch = self.best_score.shape[0]
        return {
            "best_score": float(self.best_score.mean()),
            "mean_elite_score": float(self.mean_elite_score.mean()),
            "finite_fraction": self.finite / max(self.seen * batch, 1),
            "proposal_best": float(self.best_from_proposal.to(torch.float64).mean()),
        }

    def raise_if_unsolved(self, name: str, iterations: int, batched: bool) -> None:
        """:class:`PlanningError` naming the problems that never scored a finite candidate."""
        unsolved = [b for b, score in enumerate(self.best_score.tolist()) if score == -math.inf]
        if not unsolved:
            return
        which = f" of problem(s) {unsolved}" if batched else ""
        per = " per problem" if batched else ""
        raise PlanningError(
            f"{name}: the world model produced non-finite predictions for every candidate{which} "
            f"({self.seen} scored{per} over {iterations} iteration(s)). "
            "Check the world model's training loss for NaN/inf and that its inputs "
            "(observations, actions, normaliser statistics) are finite."
        )


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
