"""The one optimisation step every world model takes."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["optimisation_step"]


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
