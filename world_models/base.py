"""Contracts shared by every world model.

Shape letters (used everywhere in Rehearse): ``B`` batch, ``T`` time, ``H`` planning
horizon, ``N`` candidate sequences, ``P`` particles, ``E`` ensemble members,
``A`` action dim, ``S`` state dim, ``Z`` latent dim.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch


class Rollout(NamedTuple):
    """What a world model imagines for ``B`` action sequences of length ``H``.

    rewards: ``(H, B)`` predicted reward of each step.
    costs: ``(H, B)`` predicted probability that the step is unsafe (incurs cost).
    continuation: ``(H, B)`` predicted probability that the episode goes on after the step.
    latents: ``(H+1, B, Z)`` the imagined latent states, ``latents[0]`` is ``z0``.
    disagreement: ``(H, B)`` spread of the ensemble's predictions (zeros for single models).
    terminal_value: ``(B,)`` value estimate of ``latents[H]`` or ``None`` when the
        model has no value function.
    """

    rewards: torch.Tensor
    costs: torch.Tensor
    continuation: torch.Tensor
    latents: torch.Tensor
    disagreement: torch.Tensor
    terminal_value: torch.Tensor | None = None


@runtime_checkable
class WorldModel(Protocol):
    """What the agent calls on a world model (RoboticsWorldModel, LatentWorldModel).

    ``encode(obs) -> z``; ``imagine(z0, actions) -> Rollout`` (handed to the planners' objective);
    ``update(batch) -> metrics``, one optimisation step of ``optimizer``; ``state_dict()`` /
    ``load_state_dict()`` (``nn.Module``'s, normaliser statistics included) for checkpoints.
    A model with a learned policy also offers its plans as a :class:`planners.base.Proposer`
    (``agent.models.PolicyProposer``).
    """

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimiser :meth:`update` steps (its state goes into checkpoints)."""
        ...

    def encode(self, obs: Any) -> torch.Tensor:
        """``(B, *obs_shape) -> (B, Z)``."""
        ...

    def imagine(self, z0: torch.Tensor, actions: torch.Tensor) -> Rollout:
        """``z0 (B, Z)``, ``actions (H, B, A)`` -> :class:`Rollout`."""
        ...

    def update(self, batch: Any) -> dict[str, float]:
        """One optimisation step on a training batch (the model's own batch type); its metrics."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Every tensor the model needs to be rebuilt (``nn.Module.state_dict``)."""
        ...

    def load_state_dict(self, state_dict: Any) -> Any:
        """Inverse of :meth:`state_dict` (``nn.Module.load_state_dict``)."""
        ...
