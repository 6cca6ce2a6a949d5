"""The VideoWorldModel's networks: a frame autoencoder (pixels <-> latent grid), spacetime patches of latent
frames, and a diffusion transformer over those patches conditioned through adaptive layer norm.

Shapes: ``M`` rows (windows or frames), ``F`` frames per window, ``C`` latent channels, ``h x w`` the latent
grid, ``p`` the patch side, ``L = F * (h/p) * (w/p)`` tokens, ``D`` the transformer width, ``A`` the action dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FrameAutoencoder", "SpacetimeDiT", "patchify", "timestep_embedding", "unpatchify"]


class FrameAutoencoder(nn.Module):
    """``(M, 3, 64, 64)`` floats in ``[-0.5, 0.5]`` <-> a latent grid ``(M, C, 8, 8)`` in ``(-1, 1)``.

    Three stride-2 convs (``d, 2d, 2d`` channels) and a 3x3 conv to ``C`` channels, squashed by ``tanh``;
    the decoder mirrors it with transposed convs. The frame side must be a multiple of 8.
    """

    def __init__(self, channels: int = 3, latent_channels: int = 8, depth: int = 32) -> None:
        super().__init__()
        d = depth
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, d, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(d, 2 * d, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * d, 2 * d, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * d, latent_channels, 3, 1, 1), nn.Tanh(),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 2 * d, 3, 1, 1), nn.SiLU(),
            nn.ConvTranspose2d(2 * d, 2 * d, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(2 * d, d, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(d, channels, 4, 2, 1),
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(M, 3, Hp, Wp)`` -> ``(M, C, Hp/8, Wp/8)``."""
        return self.encoder(images)

    def decode(self, grid: torch.Tensor) -> torch.Tensor:
        """``(M, C, h, w)`` -> ``(M, 3, 8h, 8w)`` in pixel-float space (about ``[-0.5, 0.5]``)."""
        return self.decoder(grid)


def patchify(latents: torch.Tensor, patch: int) -> torch.Tensor:
    """Spacetime patches: ``(M, F, C, h, w)`` -> tokens ``(M, F * h/p * w/p, C * p * p)``, frame-major, then
    row-major within a frame."""
    m, f, c, h, w = latents.shape
    if h % patch or w % patch:
        raise ValueError(f"latent grid {h}x{w} is not divisible by the patch size {patch}")
    x = latents.reshape(m, f, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 3, 5, 2, 4, 6)  # (M, F, h/p, w/p, C, p, p)
    return x.reshape(m, f * (h // patch) * (w // patch), c * patch * patch)


def unpatchify(tokens: torch.Tensor, frames: int, channels: int, grid: tuple[int, int], patch: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(M, L, C * p * p)`` -> ``(M, F, C, h, w)``."""
    h, w = grid
    m = tokens.shape[0]
    x = tokens.reshape(m, frames, h // patch, w // patch, channels, patch, patch)
    x = x.permute(0, 1, 4, 2, 5, 3, 6)  # (M, F, C, h/p, p, w/p, p)
    return x.reshape(m, frames, channels, h, w)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features ``(..., dim)`` of diffusion times ``t (...)`` in ``[0, 1]`` (scaled by 1000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.to(torch.float32)[..., None] * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class AdaLNBlock(nn.Module):
    """Transformer block whose two layer norms are shifted, scaled and gated per token by its conditioning
    (adaLN-Zero: the gates start at zero, so each block starts as the identity)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(modulation.weight)
        nn.init.zeros_(modulation.bias)
        self.modulation = nn.Sequential(nn.SiLU(), modulation)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x (M, L, D)``, ``cond (M, L, D)`` -> ``(M, L, D)``; full self-attention over all ``L`` tokens."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond).chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        m, length, width = h.shape
        q, k, v = self.qkv(h).reshape(m, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(m, length, width)
        x = x + gate1 * self.proj(attended)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class SpacetimeDiT(nn.Module):
    """Diffusion transformer over the spacetime patches of a window of ``F`` latent frames.

    Each token is its patch (linear) + a learned spatial position (which patch of the frame) + a learned
    temporal position (which frame of the window). Each frame has a conditioning vector: the embedding of
    its diffusion time (1 for a clean context frame) plus, for the last frame, the embedding of the action
    that led to it (context frames get a learned "no action" vector); every token of the frame is modulated
    by it. The output is the predicted flow velocity of the last frame only.
    """

    def __init__(self, latent_channels: int, grid: tuple[int, int], patch: int, frames: int, action_dim: int,
                 width: int = 128, depth: int = 4, heads: int = 4) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        if grid[0] % patch or grid[1] % patch:
            raise ValueError(f"latent grid {grid} is not divisible by the patch size {patch}")
        self.channels, self.grid, self.patch, self.frames = latent_channels, grid, patch, frames
        self.per_frame = (grid[0] // patch) * (grid[1] // patch)
        token_dim = latent_channels * patch * patch
        self.patch_in = nn.Linear(token_dim, width)
        self.spatial_pos = nn.Parameter(0.02 * torch.randn(1, 1, self.per_frame, width))
        self.temporal_pos = nn.Parameter(0.02 * torch.randn(1, frames, 1, width))
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.action_in = nn.Sequential(nn.Linear(action_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.no_action = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(AdaLNBlock(width, heads) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        final_modulation, self.out = nn.Linear(width, 2 * width), nn.Linear(width, token_dim)
        for layer in (final_modulation, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.final_modulation = nn.Sequential(nn.SiLU(), final_modulation)

    def forward(self, window: torch.Tensor, t: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``window (M, F, C, h, w)`` (clean context frames, then the noisy last frame), ``t (M,)`` the last
        frame's diffusion time in ``[0, 1]`` (1: clean), ``action (M, A)`` -> velocity ``(M, C, h, w)``."""
        m, f = window.shape[:2]
        if f != self.frames:
            raise ValueError(f"the transformer was built for windows of {self.frames} frames, got {f}")
        width = self.patch_in.out_features
        tokens = self.patch_in(patchify(window, self.patch)).reshape(m, f, self.per_frame, width)
        tokens = (tokens + self.spatial_pos + self.temporal_pos).reshape(m, f * self.per_frame, width)
        times = torch.ones(m, f, device=window.device, dtype=window.dtype)
        times = torch.cat([times[:, :-1], t.reshape(m, 1).to(window.dtype)], dim=1)  # (M, F)
        cond = self.time_mlp(timestep_embedding(times, width))  # (M, F, D)
        actions = torch.cat([self.no_action.expand(m, f - 1, width), self.action_in(action)[:, None]], dim=1)
        cond = (cond + actions).repeat_interleave(self.per_frame, dim=1)  # (M, L, D)
        for block in self.blocks:
            tokens = block(tokens, cond)
        last_tokens, last_cond = tokens[:, -self.per_frame:], cond[:, -self.per_frame:]
        shift, scale = self.final_modulation(last_cond).chunk(2, dim=-1)
        out = self.out(self.final_norm(last_tokens) * (1 + scale) + shift)
        return unpatchify(out, 1, self.channels, self.grid, self.patch)[:, 0]
