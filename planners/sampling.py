"""Sampling-based planners: CEM, MPPI and random shooting, sharing one loop.

Every planner keeps a Gaussian ``mean (H, A)``, ``std (H, A)`` over action sequences,
starting at ``init`` (the warm start) and ``config.init_std``. Each iteration it

1. samples ``N`` sequences ``mean + std * eps`` from its own ``torch.Generator``,
   clamped to ``[-1, 1]``;
2. appends the current mean and the proposals (both clamped) to them;
3. scores all of them with the objective, treating NaN (and any non-finite score)
   as ``-inf``;
4. refits ``mean``/``std`` from the best finite candidates with the method's rule,
   mixed with the old values by ``config.momentum``, ``std`` floored at ``min_std``.

The methods differ only in step 4 and in what they return:

- :class:`CEM` refits to the plain mean/std of the top ``num_elites`` and returns the
  final mean;
- :class:`MPPI` refits to the softmax-weighted mean/std of the top ``num_elites``
  (max subtracted before ``exp``) and returns the final mean;
- :class:`RandomShooting` does a single iteration and returns the best candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from planners.base import Objective


class PlanningError(RuntimeError):
    """Raised when no candidate ever received a finite score."""


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
    """``elites (k, H, A)``, ``scores (k,)`` -> mean, std ``(H, A)``: unweighted moments."""
    del scores, config
    return elites.mean(dim=0), elites.std(dim=0, unbiased=False)


def _mppi_refit(
    elites: torch.Tensor, scores: torch.Tensor, config: SamplingConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """``elites (k, H, A)``, ``scores (k,)`` finite -> mean, std ``(H, A)``: softmax-weighted moments."""
    # (k,): subtract the max before exp, so the largest weight is exactly 1
    weights = torch.exp((scores - scores.max()) / config.temperature)
    weights = (weights / weights.sum()).view(-1, 1, 1)
    mean = (weights * elites).sum(dim=0)
    std = (weights * (elites - mean) ** 2).sum(dim=0).sqrt()
    return mean, std


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
        raise NotImplementedError("_refit(elites (k, H, A), scores (k,)) -> mean (H, A), std (H, A)")

    def plan(
        self,
        objective: Objective,
        init: torch.Tensor,
        proposals: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Optimise ``objective`` from warm start ``init (H, A)``, also trying ``proposals (n, H, A)``.

        Returns ``(H, A)`` in ``[-1, 1]`` on ``init``'s device and dtype; ``init`` and
        ``proposals`` are left unchanged. Sets ``self.last_stats``. Raises
        :class:`PlanningError` if no candidate ever scored finite.
        """
        with torch.no_grad():
            return self._plan(objective, init, proposals)

    def _plan(self, objective: Objective, init: torch.Tensor, proposals: torch.Tensor | None) -> torch.Tensor:
        extra = self._extra_candidates(init, proposals)  # (n, H, A)
        cfg = self.config
        mean = init.clamp(-1.0, 1.0)  # a new tensor: init is never written to
        std = torch.full_like(mean, cfg.init_std)
        search = _Search(mean, first_proposal=cfg.num_candidates + 1)
        iterations = 1 if self._single_iteration else cfg.iterations
        for _ in range(iterations):
            samples = (mean + std * self._noise(init)).clamp(-1.0, 1.0)  # (N, H, A)
            # (N + 1 + n, H, A): samples, then the current mean, then proposals
            candidates = torch.cat([samples, mean.unsqueeze(0), extra])
            scores = self._score(objective, candidates)
            elites, elite_scores = search.record(candidates, scores, cfg.num_elites)
            if elites is None:  # nothing finite this round: keep the distribution
                continue
            new_mean, new_std = self._refit(elites, elite_scores)
            mean = cfg.momentum * mean + (1.0 - cfg.momentum) * new_mean
            std = (cfg.momentum * std + (1.0 - cfg.momentum) * new_std).clamp(min=cfg.min_std)
        self.last_stats = search.stats()
        if search.best_score == -torch.inf:
            raise PlanningError(
                f"{self._name}: the world model produced non-finite predictions for every candidate "
                f"({search.seen} scored over {iterations} iteration(s)). "
                "Check the world model's training loss for NaN/inf and that its inputs "
                "(observations, actions, normaliser statistics) are finite."
            )
        return search.best.clone() if self._returns_best else mean.clamp(-1.0, 1.0)

    def _extra_candidates(self, init: torch.Tensor, proposals: torch.Tensor | None) -> torch.Tensor:
        """Check ``init (H, A)``; return the proposals clamped, ``(n, H, A)`` (``n = 0`` when none)."""
        if init.dim() != 2 or init.shape[1] != self.action_dim or not init.is_floating_point():
            raise ValueError(
                f"{self._name}: init must be a float (H, A={self.action_dim}) tensor, "
                f"got {init.dtype} of shape {tuple(init.shape)}"
            )
        if proposals is None:
            return init.new_empty((0, *init.shape))
        if proposals.dim() != 3 or tuple(proposals.shape[1:]) != tuple(init.shape):
            raise ValueError(
                f"{self._name}: proposals must be (n, H, A) = (n, {init.shape[0]}, {init.shape[1]}), "
                f"got shape {tuple(proposals.shape)}"
            )
        return proposals.to(device=init.device, dtype=init.dtype).clamp(-1.0, 1.0)

    def _noise(self, init: torch.Tensor) -> torch.Tensor:
        """``(N, H, A)`` standard normal noise from ``self.generator``, moved to ``init``'s device/dtype."""
        shape = (self.config.num_candidates, *init.shape)
        eps = torch.randn(shape, generator=self.generator, device=self.generator.device)
        return eps.to(device=init.device, dtype=init.dtype)

    def _score(self, objective: Objective, candidates: torch.Tensor) -> torch.Tensor:
        """``objective(candidates (M, H, A)) -> (M,)`` with every non-finite score as ``-inf``."""
        scores = objective(candidates)
        if tuple(scores.shape) != (candidates.shape[0],):
            raise ValueError(
                f"{self._name}: objective must map candidates {tuple(candidates.shape)} to scores "
                f"({candidates.shape[0]},), got shape {tuple(scores.shape)}"
            )
        scores = scores.to(device=candidates.device)
        return torch.where(torch.isfinite(scores), scores, torch.full_like(scores, -torch.inf))


class _Search:
    """Book-keeping over iterations: best candidate seen, elite selection, statistics."""

    def __init__(self, init: torch.Tensor, first_proposal: int) -> None:
        self.best = init  # (H, A)
        self.best_score = -torch.inf
        self.best_from_proposal = False
        self.first_proposal = first_proposal
        self.mean_elite_score = -torch.inf
        self.finite = 0
        self.seen = 0

    def record(
        self, candidates: torch.Tensor, scores: torch.Tensor, num_elites: int
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Track the best; return the top ``k <= num_elites`` finite candidates ``(k, H, A)`` and scores ``(k,)``.

        Returns ``(None, empty)`` when no score is finite.
        """
        num_finite = int(torch.isfinite(scores).sum())
        self.finite += num_finite
        self.seen += scores.shape[0]
        if num_finite == 0:
            return None, scores[:0]
        # sorted best first; k <= num_finite keeps every elite finite
        elite_scores, index = scores.topk(min(num_elites, num_finite))
        top = float(elite_scores[0])
        if top > self.best_score:
            self.best_score = top
            self.best = candidates[index[0]]
            self.best_from_proposal = int(index[0]) >= self.first_proposal
        self.mean_elite_score = float(elite_scores.mean())
        return candidates[index], elite_scores

    def stats(self) -> dict[str, float]:
        """``best_score``, ``mean_elite_score`` (last refit), ``finite_fraction``, ``proposal_best``."""
        return {
            "best_score": self.best_score,
            "mean_elite_score": self.mean_elite_score,
            "finite_fraction": self.finite / max(self.seen, 1),
            "proposal_best": float(self.best_from_proposal),
        }


class CEM(_SamplingPlanner):
    """Cross-entropy method: refit to the elites' mean/std, return the final mean ``(H, A)``."""

    _name = "CEM"

    def _refit(self, elites: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _cem_refit(elites, scores, self.config)


class MPPI(_SamplingPlanner):
    """MPPI: refit to the softmax(score / temperature)-weighted top-k, return the final mean ``(H, A)``."""

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
