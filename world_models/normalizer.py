"""Feature normalisation that survives constant features (std floored)."""

from __future__ import annotations

import torch
from torch import nn


class Normalizer(nn.Module):
    """Holds a mean and a floored std as buffers, so they travel with ``state_dict``."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, size: int, min_std: float = 1e-2) -> None:
        super().__init__()
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))

    def fit(self, data: torch.Tensor) -> None:
        """Set statistics from ``(B, size)`` data; constant columns get std ``min_std``."""
        if data.dim() != 2 or data.shape[1] != self.mean.shape[0]:
            raise ValueError(f"Normalizer of size {self.mean.shape[0]} got data of shape {tuple(data.shape)}")
        if not torch.isfinite(data).all():
            raise ValueError("Normalizer.fit got non-finite data; check the replay buffer contents")
        self.mean.copy_(data.mean(0))
        self.std.copy_(data.std(0, unbiased=False).clamp_min(self.min_std))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean
