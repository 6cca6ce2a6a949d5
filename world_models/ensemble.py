"""Batched ensemble layers: ``E`` independent MLPs evaluated as one ``baddbmm``.

Every tensor that flows through an ensemble carries the member axis first:
``(E, M, features)``, where ``M`` rows are handled by each member.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # (weight (G, in, out), bias (G, 1, out)) per layer


class EnsembleLinear(nn.Module):
    """``E`` linear maps at once: ``(E, M, in) -> (E, M, out)``; weights ``(E, in, out)``."""

    def __init__(self, ensemble_size: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.trunc_normal_(self.weight, std=bound, a=-2 * bound, b=2 * bound)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[0] != self.ensemble_size:
            raise ValueError(
                f"EnsembleLinear expects (E={self.ensemble_size}, M, in) input, got {tuple(x.shape)}"
            )
        return torch.baddbmm(self.bias, x, self.weight)


def hidden_layer(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``silu(x @ weight + bias)``: ``x (G, M, in)``, ``weight (G, in, out)``, ``bias (G, 1, out)`` -> ``(G, M, out)``.

    ``x`` is cast to ``weight``'s dtype (bfloat16 layers in planning take float32 inputs). Without
    gradients the SiLU overwrites the product instead of allocating another tensor.
    """
    return F.silu(torch.baddbmm(bias, x.to(weight.dtype), weight), inplace=not torch.is_grad_enabled())


class EnsembleMLP(nn.Module):
    """``num_layers`` hidden ensemble layers with SiLU, then a linear head: ``(E, M, in) -> (E, M, out)``."""

    def __init__(
        self, ensemble_size: int, in_features: int, out_features: int, hidden_dim: int, num_layers: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(num_layers):
            layers += [EnsembleLinear(ensemble_size, width, hidden_dim), nn.SiLU()]
            width = hidden_dim
        layers.append(EnsembleLinear(ensemble_size, width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.first
        if x.dim() != 3 or x.shape[0] != first.ensemble_size or x.shape[2] != first.weight.shape[1]:
            raise ValueError(
                f"EnsembleMLP expects (E={first.ensemble_size}, M, {first.weight.shape[1]}) input, "
                f"got {tuple(x.shape)}"
            )
        linear = [layer for layer in self.net if isinstance(layer, EnsembleLinear)]
        for layer in linear[:-1]:  # each hidden layer with its SiLU; none when num_layers is 0
            x = hidden_layer(x, layer.weight, layer.bias)
        return self.last(x)

    @property
    def first(self) -> EnsembleLinear:
        """The input layer (its weights ``(E, in, hidden)`` can be folded with a normaliser)."""
        layer = self.net[0]
        assert isinstance(layer, EnsembleLinear)
        return layer

    @property
    def last(self) -> EnsembleLinear:
        """The output layer (its weights ``(E, hidden, out)`` can be folded with a de-normaliser)."""
        layer = self.net[-1]
        assert isinstance(layer, EnsembleLinear)
        return layer

    def hidden_after_first(self) -> list[EnsembleLinear]:
        """The hidden layers between the input and output layers (each followed by SiLU)."""
        return [layer for layer in list(self.net)[2:-1] if isinstance(layer, EnsembleLinear)]


def to_members(x: torch.Tensor, ensemble_size: int) -> torch.Tensor:
    """Route rows to members: ``(B, ...) -> (E, B // E, ...)``, row ``b`` goes to member ``b % E``."""
    batch = x.shape[0]
    if batch % ensemble_size:
        raise ValueError(
            f"batch of {batch} rows cannot be split over {ensemble_size} ensemble members; "
            "use a particle count that is a multiple of the ensemble size"
        )
    return x.reshape(batch // ensemble_size, ensemble_size, *x.shape[1:]).transpose(0, 1)


def from_members(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_members`: ``(E, M, ...) -> (M * E, ...)``."""
    return x.transpose(0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def ensemble_step(z: torch.Tensor, action: torch.Tensor, layers: Layers) -> torch.Tensor:
    """One imagined step: raw ``z (G, M, Z)`` and ``action (G, M, A)`` through ``layers`` (``G`` groups of
    weights; each layer's input cast to its weights' dtype) -> the last layer's output ``(G, M, out)``."""
    h = torch.cat([z, action], dim=-1)
    for weight, bias in layers[:-1]:
        h = hidden_layer(h, weight, bias)  # (G, M, hidden)
    weight, bias = layers[-1]
    return torch.baddbmm(bias, h.to(weight.dtype), weight)


def imagine_reference(z0: torch.Tensor, actions: torch.Tensor, layers: Layers) -> tuple[torch.Tensor, torch.Tensor]:
    """Imagination by plain batched torch, step by step out of place (the reference path, and the path
    with gradients): ``z0 (B, Z)``, ``actions (H, B, A)``, ``layers`` of ``E`` members whose last layer
    outputs ``[delta z (Z), heads (K)]`` -> heads ``(H, B, K)`` and latents ``(H+1, B, Z)``. Row ``b`` is
    member ``b % E``'s (:func:`to_members`) for the whole horizon."""
    e, width = layers[0][0].shape[0], z0.shape[1]
    z = to_members(z0, e)  # (E, B / E, Z)
    heads, latents = [], [z0]
    for t in range(actions.shape[0]):
        out = ensemble_step(z, to_members(actions[t], e), layers)  # (E, B / E, Z + K)
        z = z + out[..., :width]
        heads.append(from_members(out[..., width:]))
        latents.append(from_members(z))
    return torch.stack(heads), torch.stack(latents)
