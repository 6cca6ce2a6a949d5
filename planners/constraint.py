"""The cost budget of constrained planning and the Lagrange multiplier that holds it in the real environment.

A cost limit ``C`` is a budget per 1,000 environment steps, as Safety-Gymnasium defines it: an episode of
``T`` steps may cost ``C * T / 1000``. The planner's budget for one plan of horizon ``H`` is the limit's share
of those ``H`` steps, ``H * C / 1000``, at most what is left of the episode's budget when that is known, and
shrunk by the multiplier: ``budget = min(H * C / 1000, left) / (1 + lambda)``.

The multiplier ``lambda >= 0`` is learned from the costs the real environment reports: after each training
episode, ``lambda <- clip(lambda + lr * (J - C) / max(C, 1), 0, max_value)`` with ``J`` the episode's cost per
1,000 steps. It rises while the agent overspends (the imagined costs were too optimistic) and falls back to 0
while it keeps to the limit. The objective subtracts ``lambda`` times the predicted cost from each score (on top
of ``planner.cost_weight``), so the same signal both penalises cost and tightens the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["STEPS_PER_LIMIT", "CostMultiplier", "cost_rate"]

STEPS_PER_LIMIT = 1000
"""A cost limit is a budget per this many environment steps (Safety-Gymnasium's definition)."""


def cost_rate(episode_cost: float, episode_length: int) -> float:
    """An episode's cost per :data:`STEPS_PER_LIMIT` steps (what a cost limit bounds); 0.0 for an empty one."""
    return episode_cost * STEPS_PER_LIMIT / episode_length if episode_length > 0 else 0.0


@dataclass
class CostMultiplier:
    """The Lagrange multiplier of a cost limit (see the module docstring); plain floats, checkpoint-safe."""

    cost_limit: float
    """Budget per 1,000 environment steps (>= 0)."""
    learning_rate: float = 0.5
    """Step of the multiplier per episode, per unit of relative overspending ``(J - C) / max(C, 1)``."""
    value: float = 0.0
    """The multiplier ``lambda`` (>= 0)."""
    max_value: float = 100.0
    """Ceiling of the multiplier."""

    def __post_init__(self) -> None:
        for name in ("cost_limit", "learning_rate", "value", "max_value"):
            number = getattr(self, name)
            if not (math.isfinite(number) and number >= 0):
                raise ValueError(f"CostMultiplier: {name} must be a finite number >= 0, got {number}")

    def update(self, episode_cost: float, episode_length: int) -> float:
        """Step the multiplier after an episode that cost ``episode_cost`` in ``episode_length`` steps; the
        new value. An episode of 0 steps changes nothing."""
        if episode_length <= 0:
            return self.value
        if not (math.isfinite(episode_cost) and episode_cost >= 0):
            raise ValueError(f"CostMultiplier.update: episode_cost must be a finite number >= 0, got {episode_cost}")
        excess = (cost_rate(episode_cost, episode_length) - self.cost_limit) / max(self.cost_limit, 1.0)
        self.value = min(max(self.value + self.learning_rate * excess, 0.0), self.max_value)
        return self.value

    def budget(self, horizon: int, left: float | None = None) -> float:
        """The cost a plan of ``horizon`` steps may be predicted to incur: ``min(H * C / 1000, left) / (1 +
        lambda)``; ``left``: what remains of the episode's budget (``None``: not counted)."""
        share = horizon * self.cost_limit / STEPS_PER_LIMIT
        if left is not None:
            share = min(share, max(left, 0.0))
        return share / (1.0 + self.value)

    def episode_budget(self, episode_length: int) -> float:
        """The cost an episode of ``episode_length`` steps may incur: ``C * T / 1000``."""
        return self.cost_limit * episode_length / STEPS_PER_LIMIT

    def state_dict(self) -> dict[str, float]:
        """The multiplier's state (for checkpoints)."""
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Inverse of :meth:`state_dict`."""
        value = float(state["value"])
        if not (math.isfinite(value) and 0.0 <= value <= self.max_value):
            raise ValueError(f"CostMultiplier: a saved value must be in [0, {self.max_value}], got {value}")
        self.value = value
