"""Planner and proposer contracts.

A planner optimises action sequences against an objective it knows nothing about:
``objective(candidates (N, H, A)) -> scores (N,)``, higher is better, ``-inf`` for
sequences whose score is not finite. Actions live in ``[-1, 1]``. A :class:`CostedObjective` also
predicts each candidate's cost and carries a cost budget: the planner then prefers the candidates that fit it.

A planner may solve ``B`` independent problems in one call (``init (B, H, A)``); it
then still calls the objective with one ``(N, H, A)`` tensor, ``N = B * M``, whose
rows ``b * M : (b + 1) * M`` are problem ``b``'s candidates (see
:func:`planners.objective.make_objective` with ``z0 (B, Z)``).
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch

Objective = Callable[[torch.Tensor], torch.Tensor]
"""``candidates (N, H, A) -> scores (N,)``; never returns NaN (non-finite becomes ``-inf``)."""


@runtime_checkable
class CostedObjective(Protocol):
    """An :data:`Objective` that also predicts each candidate's cost over the horizon, and the budget it must fit.

    Calling it gives the scores, as any objective; :meth:`score_and_cost` gives ``(scores (N,), costs (N,))``,
    ``costs`` the predicted (pessimistic) cost of each candidate over the horizon, ``>= 0``, ``+inf`` where not
    finite. ``cost_budget`` is a float or a ``(B,)`` tensor, one per problem of a batched plan. A planner given
    one ranks the candidates whose cost is at most the budget by score, ahead of all others; when none fits,
    the least-cost ones come first (:func:`planners.sampling.constrained_merit`).
    """

    cost_budget: float | torch.Tensor

    def __call__(self, candidates: torch.Tensor) -> torch.Tensor: ...

    def score_and_cost(self, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class ImaginedRollout(Protocol):
    """The fields of an imagined rollout the objective scores (``world_models.base.Rollout`` has them):
    ``rewards``, ``costs``, ``continuation`` ``(H, B)``; ``terminal_value`` ``(B,)`` or ``None``."""

    @property
    def rewards(self) -> torch.Tensor: ...

    @property
    def costs(self) -> torch.Tensor: ...

    @property
    def continuation(self) -> torch.Tensor: ...

    @property
    def terminal_value(self) -> torch.Tensor | None: ...


Imagine = Callable[[torch.Tensor, torch.Tensor], ImaginedRollout]
"""``imagine(z0 (B, Z), actions (H, B, A)) -> rollout``: a world model's ``imagine``."""


class Planner(Protocol):
    """``plan(objective, init (H, A), proposals (n, H, A) | None) -> (H, A)``.

    Batched: ``plan(objective, init (B, H, A), proposals (n, H, A) | (B, n, H, A) | None)
    -> (B, H, A)``, one independent plan per problem; ``B = 1`` equals the unbatched call.
    """

    def plan(
        self,
        objective: Objective,
        init: torch.Tensor,
        proposals: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


class Proposer(Protocol):
    """Any source of candidate action sequences (a language model, a policy, a human).

    Its sequences join a plan's candidates (the ``proposals`` of :meth:`Planner.plan`) and are
    scored by the same objective as every other candidate."""

    def propose(self, context: dict[str, object], n: int, horizon: int) -> torch.Tensor:
        """Return at most ``n`` action sequences in ``[-1, 1]``: ``(k, H, A)``, ``k <= n`` (``k = 0`` when it has none
        now), or ``(B, k, H, A)`` for ``B`` problems."""
        ...
