"""Warm starting: each plan starts from the previous one, shifted by one step (DESIGN.md, Performance rules)."""

from __future__ import annotations

import numpy as np
import torch


class WarmStart:
    """Keeps the previous plan and offers it shifted by one step as the next ``init``.

    One problem: ``init (H, A)``. With ``batch=B``: ``B`` problems planned together
    (e.g. the running evaluation episodes), ``init (B, H, A)``, one row per problem;
    :meth:`keep` drops the rows of problems that ended.
    """

    def __init__(self, horizon: int, action_dim: int, device: torch.device, batch: int | None = None) -> None:
        self._full_shape = (horizon, action_dim) if batch is None else (batch, horizon, action_dim)
        self.shape = self._full_shape
        self.device = device
        self.plan: torch.Tensor | None = None
        self.ids = np.arange(batch if batch is not None else 1)  # problem id of each row

    def init(self) -> torch.Tensor:
        """Zeros ``(H, A)`` / ``(B, H, A)`` after a reset, else the stored plan shifted by one step (zero-padded)."""
        if self.plan is None:
            return torch.zeros(self.shape, device=self.device)
        return torch.cat([self.plan[..., 1:, :], torch.zeros_like(self.plan[..., :1, :])], dim=-2)

    def store(self, plan: torch.Tensor) -> None:
        self.plan = plan

    def reset(self) -> None:
        self.plan = None
        self.shape = self._full_shape
        self.ids = np.arange(self.shape[0] if len(self.shape) == 3 else 1)

    def restart(self, rows: np.ndarray) -> None:
        """Batched only: clear the warm start of the problems marked in ``rows (B,)`` (their episodes start)."""
        if len(self.shape) != 3 or rows.shape != (self.shape[0],):
            raise ValueError(f"WarmStart.restart: expects one flag per problem, {self.shape[:1]}, got {rows.shape}")
        if self.plan is not None and rows.any():
            self.plan = self.plan.clone()
            self.plan[torch.as_tensor(rows, device=self.plan.device)] = 0.0  # a cleared row plans from zeros

    def keep(self, ids: np.ndarray) -> None:
        """Batched only: keep the rows of problems ``ids`` (ascending, a subset of the current ones)."""
        if np.array_equal(ids, self.ids):
            return
        rows = np.searchsorted(self.ids, ids)
        if len(self.shape) != 3 or not np.array_equal(self.ids[np.minimum(rows, len(self.ids) - 1)], ids):
            raise ValueError(f"WarmStart.keep: {ids} is not a subset of the problems {self.ids}")
        self.ids = np.asarray(ids)
        self.shape = (len(ids), *self.shape[1:])
        if self.plan is not None:
            self.plan = self.plan[torch.as_tensor(rows, device=self.plan.device)]
