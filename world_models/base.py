"""Contracts shared by every world model.

Shape letters (used everywhere in Rehearse): ``B`` batch, ``T`` time, ``H`` planning
horizon, ``N`` candidate sequences, ``P`` particles, ``E`` ensemble members,
``A`` action dim, ``S`` state dim, ``Z`` latent dim.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

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


class WorldModel(Protocol):
    """``encode(obs) -> z``; ``imagine(z0, actions) -> Rollout``; ``update(batch) -> metrics``."""

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, *obs_shape) -> (B, Z)``."""
        ...

    def imagine(self, z0: torch.Tensor, actions: torch.Tensor) -> Rollout:
        """``z0 (B, Z)``, ``actions (H, B, A)`` -> :class:`Rollout`."""
        ...
