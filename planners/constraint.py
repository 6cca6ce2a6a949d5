"""The cost budget of constrained planning and the Lagrange multiplier that holds it in the real environment.

A cost limit ``C`` is a budget per 1,000 environment steps, as Safety-Gymnasium defines it: an episode of
``T`` steps may cost ``C * T / 1000``. The planner's budget for one plan of horizon ``H`` is the limit's share
of those ``H`` steps, ``H * C / 1000``, scaled by the multiplier and at most what is left of the episode's
budget when that is known: ``budget = min(H * C / 1000 * s(lambda), left * min(s(lambda), 1))``, with
``s(lambda) = 1 / (1 + lambda)`` for ``lambda >= 0`` (tighter) and ``exp(-lambda)`` below 0 (looser).

The multiplier is learned from the costs the real environment reports: after each training episode,
``lambda <- clip(lambda + lr * (J - target * C) / max(C, 1), min_value, max_value)`` with ``J`` the episode's
cost per 1,000 steps. It rises while the agent overspends (the imagined costs were too optimistic). With
``min_value = 0`` (the default) it falls back to 0 while the agent keeps to the limit; with ``min_value < 0``
it goes on falling while the real episodes cost less than ``target * C``, loosening a budget that a cautious
cost head makes too tight (the conservative-and-adaptive penalty of CAP, both ways), down to ``s = exp(-min_value)``
times the share. The objective subtracts ``max(lambda, 0)`` times the predicted cost from each score (on top of
``planner.cost_weight``), so the same signal both penalises cost and tightens the budget.
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
    """The multiplier ``lambda`` (in ``[min_value, max_value]``)."""
    max_value: float = 100.0
    """Ceiling of the multiplier."""
    min_value: float = 0.0
    """Floor of the multiplier (<= 0): below 0 the budget loosens, up to ``exp(-min_value)`` times the share."""
    target: float = 1.0
    """The episode cost, as a fraction of the limit (in (0, 1]), that the multiplier steers training towards."""

    def __post_init__(self) -> None:
        for name in ("cost_limit", "learning_rate", "max_value"):
            number = getattr(self, name)
            if not (math.isfinite(number) and number >= 0):
                raise ValueError(f"CostMultiplier: {name} must be a finite number >= 0, got {number}")
        if not (math.isfinite(self.min_value) and self.min_value <= 0):
            raise ValueError(f"CostMultiplier: min_value must be a finite number <= 0, got {self.min_value}")
        if not (math.isfinite(self.target) and 0 < self.target <= 1):
            raise ValueError(f"CostMultiplier: target must be in (0, 1], got {self.target}")
        self._check_value(self.value, "value")

    def _check_value(self, value: float, what: str) -> None:
        """``ValueError`` unless ``value`` is finite and in ``[min_value, max_value]``."""
        if not (math.isfinite(value) and self.min_value <= value <= self.max_value):
            raise ValueError(f"CostMultiplier: {what} must be in [{self.min_value}, {self.max_value}], got {value}")

    def update(self, episode_cost: float, episode_length: int) -> float:
        """Step the multiplier after an episode that cost ``episode_cost`` in ``episode_length`` steps; the
        new value. An episode of 0 steps changes nothing."""
        if episode_length <= 0:
            return self.value
        if not (math.isfinite(episode_cost) and episode_cost >= 0):
            raise ValueError(f"CostMultiplier.update: episode_cost must be a finite number >= 0, got {episode_cost}")
        target = self.target * self.cost_limit
        excess = (cost_rate(episode_cost, episode_length) - target) / max(self.cost_limit, 1.0)
        self.value = min(max(self.value + self.learning_rate * excess, self.min_value), self.max_value)
        return self.value

    @property
    def scale(self) -> float:
        """``s(lambda)``, the factor on the plan's share: ``1 / (1 + lambda)`` for ``lambda >= 0``, else
        ``exp(-lambda)`` (> 1)."""
        return 1.0 / (1.0 + self.value) if self.value >= 0 else math.exp(-self.value)

    @property
    def penalty(self) -> float:
        """The multiplier's weight on predicted cost in the objective: ``max(lambda, 0)``."""
        return max(self.value, 0.0)

    def budget(self, horizon: int, left: float | None = None) -> float:
        """The cost a plan of ``horizon`` steps may be predicted to incur: ``H * C / 1000 * s(lambda)``, at most
        ``left * min(s(lambda), 1)``; ``left``: what remains of the episode's budget (``None``: not counted)."""
        scale = self.scale
        share = horizon * self.cost_limit / STEPS_PER_LIMIT * scale
        if left is not None:
            share = min(share, max(left, 0.0) * min(scale, 1.0))
        return share

    def episode_budget(self, episode_length: int) -> float:
        """The cost an episode of ``episode_length`` steps may incur: ``C * T / 1000``."""
        return self.cost_limit * episode_length / STEPS_PER_LIMIT

    def state_dict(self) -> dict[str, float]:
        """The multiplier's state (for checkpoints)."""
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Inverse of :meth:`state_dict`."""
        value = float(state["value"])
        self._check_value(value, "a saved value")
        self.value = value
