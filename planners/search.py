"""The book-keeping of one sampling-based plan call over its iterations (:class:`Search`): the best candidate
seen per problem, elite selection by merit, the planner's statistics, and :class:`PlanningError` when a problem
never scored a finite candidate. Used by :mod:`planners.sampling`."""

from __future__ import annotations

import math

import torch

__all__ = ["PlanningError", "Search"]


class PlanningError(RuntimeError):
    """Raised when no candidate of some problem ever received a finite score."""


class Search:
    """Book-keeping over iterations, per problem: best candidate seen, elite selection, statistics.

    Candidates are ranked by their merit (their score, or :func:`constrained_merit` under a cost budget); the
    best candidate is the first feasible one with the highest merit, else the infeasible one with the highest.
    """

    def __init__(self, init: torch.Tensor, first_proposal: int, constrained: bool = False) -> None:
        """``init (B, H, A)``; candidate indices ``>= first_proposal`` are proposals; ``constrained``: the
        candidates have a cost budget (adds ``feasible_best`` to :meth:`stats`)."""
        batch = init.shape[0]
        self.best = init  # (B, H, A); replaced, never written to in place
        self.best_merit = torch.full((batch,), -torch.inf, dtype=torch.float64, device=init.device)
        self.best_feasible = torch.zeros(batch, dtype=torch.bool, device=init.device)
        self.best_score = torch.full_like(self.best_merit, -torch.inf)
        self.best_index = torch.full((batch,), -1, dtype=torch.long, device=init.device)  # in its round's candidates
        self.mean_elite_score = torch.full_like(self.best_merit, -torch.inf)
        self.first_proposal = first_proposal
        self.constrained = constrained
        self.finite = 0  # over all problems
        self.seen = 0  # per problem

    def record(
        self, candidates: torch.Tensor, scores: torch.Tensor, num_elites: int,
        merit: torch.Tensor | None = None, feasible: torch.Tensor | None = None,
    ) -> list[tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]]:
        """Track the best; return the elites, grouped by how many each problem has.

        ``candidates (B, M, H, A)``, ``scores (B, M)``, ``merit (B, M)`` and ``feasible (B, M)`` (default:
        the scores, and finite) -> list of ``(rows (G,), elites (G, k, H, A), elite merits (G, k))``: the
        top ``k = min(num_elites, finite merits)`` candidates by merit of problems ``rows``, sorted best
        first, all finite. Problems with no finite merit this round are in no group. Usually there is one
        group of all ``B`` problems, and then ``rows`` is ``None``.
        """
        merit = scores if merit is None else merit
        feasible = torch.isfinite(scores) if feasible is None else feasible
        self.finite += int(torch.isfinite(scores).sum())
        self.seen += scores.shape[1]
        sizes = [min(c, num_elites) for c in torch.isfinite(merit).sum(dim=1).tolist()]  # (B,) per problem
        ranked = (candidates, scores, merit, feasible)
        if min(sizes) == max(sizes):
            return [self._group(ranked, None, sizes[0])] if sizes[0] else []
        groups = []
        for k in sorted(set(sizes) - {0}):
            rows = torch.tensor([b for b, size in enumerate(sizes) if size == k], device=scores.device)
            groups.append(self._group(tuple(x[rows] for x in ranked), rows, k))
        return groups

    def _group(
        self, ranked: tuple[torch.Tensor, ...], rows: torch.Tensor | None, k: int
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Top ``k`` by merit of ``ranked = (candidates (G, M, H, A), scores, merit, feasible (G, M))`` (problems
        ``rows``; ``None``: all)."""
        candidates, scores, merit, feasible = ranked
        elite_merit, index = merit.topk(k, dim=1)  # (G, k), sorted best first
        elites = torch.take_along_dim(candidates, index[:, :, None, None], dim=1)  # (G, k, H, A)
        elite_scores = torch.take_along_dim(scores, index, dim=1)  # (G, k)
        top = (elites[:, 0], elite_merit[:, 0], feasible.gather(1, index[:, :1])[:, 0], elite_scores)
        self._update(rows, top, index[:, 0])
        return rows, elites, elite_merit

    def _update(self, rows: torch.Tensor | None, top: tuple[torch.Tensor, ...], top_index: torch.Tensor) -> None:
        """Keep ``top = (candidate (G, H, A), merit (G,), feasible (G,), elite scores (G, k))`` as the best of
        problems ``rows`` where it beats their best so far (feasible beats infeasible, then higher merit)."""
        candidate, top_merit, top_feasible, elite_scores = top
        top_merit = top_merit.to(torch.float64)
        values = (self.best, self.best_merit, self.best_feasible, self.best_score, self.best_index,
                  self.mean_elite_score)
        best, best_merit, best_feasible, best_score, best_index, _ = (
            values if rows is None else tuple(v[rows] for v in values)
        )
        improved = (top_feasible & ~best_feasible) | ((top_feasible == best_feasible) & (top_merit > best_merit))
        updated = (
            torch.where(improved[:, None, None], candidate, best),
            torch.where(improved, top_merit, best_merit),
            torch.where(improved, top_feasible, best_feasible),
            torch.where(improved, elite_scores[:, 0].to(torch.float64), best_score),
            torch.where(improved, top_index, best_index),
            elite_scores.mean(dim=1).to(torch.float64),
        )
        if rows is None:
            (self.best, self.best_merit, self.best_feasible, self.best_score, self.best_index,
             self.mean_elite_score) = updated
            return
        self.best = self.best.clone()  # it may still be the planner's initial mean
        targets = (self.best, self.best_merit, self.best_feasible, self.best_score, self.best_index,
                   self.mean_elite_score)
        for value, new in zip(targets, updated, strict=True):
            value[rows] = new

    def keeps(self, merit: torch.Tensor, feasible: torch.Tensor) -> torch.Tensor:
        """``(B,)``: whether a plan of merit ``merit (B,)`` and feasibility ``feasible (B,)`` is at least as good
        as the best seen: it is feasible, or neither is and its merit (``-cost``) is not lower."""
        no_worse = ~self.best_feasible & torch.isfinite(merit) & (merit.to(torch.float64) >= self.best_merit)
        return feasible | no_worse

    def stats(self) -> dict[str, float]:
        """Averages over problems: ``best_score``, ``mean_elite_score`` (last refit), ``finite_fraction``,
        ``proposal_best`` (fraction of problems whose best came from a proposal); under a cost budget also
        ``feasible_best`` (fraction of problems whose best fits it)."""
        batch = self.best_score.shape[0]
        stats = {
            "best_score": float(self.best_score.mean()),
            "mean_elite_score": float(self.mean_elite_score.mean()),
            "finite_fraction": self.finite / max(self.seen * batch, 1),
            "proposal_best": float((self.best_index >= self.first_proposal).to(torch.float64).mean()),
        }
        if self.constrained:
            stats["feasible_best"] = float(self.best_feasible.to(torch.float64).mean())
        return stats

    def raise_if_unsolved(self, name: str, iterations: int, batched: bool) -> None:
        """:class:`PlanningError` naming the problems that never scored a finite candidate."""
        unsolved = [b for b, merit in enumerate(self.best_merit.tolist()) if merit == -math.inf]
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
