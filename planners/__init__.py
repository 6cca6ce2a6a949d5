"""Planners: optimisers over action sequences, and the objective they maximise."""

from __future__ import annotations

import torch

from planners.base import Objective, Planner, Proposer
from planners.objective import make_objective, score_rollout
from planners.sampling import CEM, MPPI, RandomShooting, SamplingConfig
from planners.search import PlanningError
from planners.warm_start import WarmStart

__all__ = [
    "CEM",
    "MPPI",
    "Objective",
    "Planner",
    "PlanningError",
    "Proposer",
    "RandomShooting",
    "PLANNER_NAMES",
    "SamplingConfig",
    "WarmStart",
    "make_objective",
    "make_planner",
    "score_rollout",
]

_PLANNERS: dict[str, type[CEM | MPPI | RandomShooting]] = {
    "cem": CEM,
    "mppi": MPPI,
    "random": RandomShooting,
}
PLANNER_NAMES: tuple[str, ...] = tuple(sorted(_PLANNERS))
"""The names :func:`make_planner` accepts."""


def make_planner(
    name: str,
    config: SamplingConfig,
    action_dim: int,
    generator: torch.Generator | None = None,
) -> Planner:
    """Build the planner called ``name`` (``"cem"``, ``"mppi"`` or ``"random"``)."""
    try:
        cls = _PLANNERS[name]
    except KeyError:
        raise ValueError(f"unknown planner {name!r}; valid names: {', '.join(PLANNER_NAMES)}") from None
    return cls(config, action_dim, generator)
