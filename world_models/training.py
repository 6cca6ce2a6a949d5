"""The one optimisation step every world model takes."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "check_loss_weights",
    "ema_update",
    "masked_mean",
    "optimisation_step",
    "rare_event_bce",
    "sparse_reward_error",
    "td0_target",
    "termination_bce",
]


def optimisation_step(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    metrics: dict[str, float],
    what: str,
    clip: tuple[Iterable[nn.Parameter], float] | None = None,
) -> float | None:
    """Refuse a non-finite ``loss`` (naming ``what`` and its ``metrics``), else take one step.

    ``clip``: ``(parameters, max_norm)`` to clip the gradient norm; the norm before
    clipping is returned (``None`` without clipping).
    """
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"{what} loss became non-finite ({metrics}); lower the learning rate "
            "or check the observations and rewards for extreme values"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = float(nn.utils.clip_grad_norm_(clip[0], clip[1])) if clip is not None else None
    optimizer.step()
    return norm


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """One EMA step of a target network: ``target <- target + tau (online - target)``, parameter by parameter."""
    for online_param, target_param in zip(online.parameters(), target.parameters(), strict=True):
        target_param.lerp_(online_param, tau)


def td0_target(
    rewards: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor, discount: float
) -> torch.Tensor:
    """TD(0) target on the reward scale, ``(1 - discount) (r + discount (1 - terminated) V(s'))``.

    All of the same shape; ``next_value`` is the target network's value of the next state.
    Bootstraps through truncation (only ``terminated`` stops it).
    """
    alive = (~terminated.to(torch.bool)).to(torch.float32)
    scale = 1.0 - discount
    return scale * rewards.to(torch.float32) + discount * alive * scale * next_value


def check_loss_weights(**weights: float) -> None:
    """Raise ``ValueError`` naming the first weight that is not a finite number >= 0."""
    for name, value in weights.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def sparse_reward_error(
    pred: torch.Tensor, target: torch.Tensor, rewards: torch.Tensor, weight: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared reward error in which rows with a non-zero reward count ``1 + weight`` times.

    ``pred``, ``target``, ``rewards`` (and ``mask``, 1 for the rows that count and 0 for
    the rest): the same shape (``target`` may be ``rewards`` normalised); the weighted mean
    is divided by the mean weight, so ``weight = 0`` without a mask is the plain mean
    squared error. Sparse rewards (a catch, a goal reached) are a few rows in thousands:
    unweighted, a model learns to predict zero everywhere and a planner sees no reward to
    aim for.
    """
    weights = 1.0 + weight * (rewards != 0).to(pred.dtype)
    if mask is not None:
        weights = weights * mask
    return (weights * (pred - target) ** 2).mean() / weights.mean().clamp_min(1e-12)


def rare_event_bce(
    logit: torch.Tensor, event: torch.Tensor, weight: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """BCE of ``logit`` against ``event`` (bool, the target 1) in which event rows count ``1 + weight`` times.

    ``logit``, ``event``, ``mask`` (as in :func:`sparse_reward_error`): the same shape. Divided by the
    mean weight, so ``weight = 0`` without a mask is the plain BCE. Rare events (an episode's end, a
    costly step) are a few rows in hundreds: unweighted, a model predicts them too seldom.
    """
    rare = event.to(logit.dtype)
    weights = 1.0 + weight * rare
    if mask is not None:
        weights = weights * mask
    return F.binary_cross_entropy_with_logits(logit, rare, weight=weights) / weights.mean().clamp_min(1e-12)


def termination_bce(
    logit: torch.Tensor, terminated: torch.Tensor, weight: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Continuation BCE (target: the episode goes on) in which terminal rows count ``1 + weight`` times:
    :func:`rare_event_bce` of the termination logit ``-logit``. Unweighted, a model can blur where an
    episode ends and a planner walks into the end it did not foresee."""
    return rare_event_bce(-logit, terminated, weight, mask)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` (broadcast over ``x``'s trailing axes) is 1.

    Without a mask: the plain mean.
    """
    if mask is None:
        return x.mean()
    weights = mask.reshape(*mask.shape, *([1] * (x.dim() - mask.dim()))).expand_as(x)
    return (x * weights).sum() / weights.sum().clamp_min(1.0)
