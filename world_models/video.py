"""VideoWorldModel: a Sora-style world model on pixels, small enough for a CPU.

1. A frame autoencoder maps each 64x64 RGB frame to a latent grid ``(C, 8, 8)`` (``C = latent_channels``),
   standardised per channel by running statistics of its encodings.
2. A diffusion transformer (:class:`~world_models.video_nets.SpacetimeDiT`) over the spacetime patches of a
   window of ``k`` clean context latent frames and one noisy next frame, conditioned through adaptive layer
   norm on the diffusion time and on the action that leads to the next frame, predicts the next frame's
   flow-matching velocity (rectified flow: ``x_t = t x_1 + (1 - t) eps``, velocity ``x_1 - eps``, ``t = 1``
   clean). A frame is sampled from noise by a few Euler steps (``sampling_steps`` <= 4).
3. Rollouts are autoregressive: each sampled frame joins the context window, the oldest frame leaves it.
4. Reward, continuation and cost heads read two consecutive latent frames and the action between them.

Observations are ``k`` stacked channel-last uint8 frames ``(B, Hp, Wp, 3k)`` (``frame_stack: k``, oldest
first). The model's latent ``z (B, Z)`` is the flattened window of their ``k`` latent frames,
``Z = k * C * 8 * 8``; :meth:`VideoWorldModel.imagine` returns those windows for every imagined step.
"""

from __future__ import annotations

import math
from typing import AbstractSet

import torch
import torch.nn.functional as F
from torch import nn

from world_models.base import Rollout
from world_models.config import VideoConfig
from world_models.latent import SequenceBatch
from world_models.latent_nets import float_to_pixels, mlp, pixels_to_float
from world_models.training import (
    check_loss_weights,
    masked_mean,
    optimisation_step,
    sparse_reward_error,
    termination_bce,
)
from world_models.video_nets import FrameAutoencoder, SpacetimeDiT

__all__ = ["PARTS", "VideoWorldModel", "flow_matching_error", "sample_flow"]

PARTS = frozenset({"autoencoder", "dynamics", "heads"})
"""What :meth:`VideoWorldModel.update` can train: the autoencoder, the transformer, the heads."""

MAX_SAMPLING_STEPS = 4


class VideoWorldModel(nn.Module):
    """Frame autoencoder + spacetime diffusion transformer + reward/continuation/cost heads."""

    latent_mean: torch.Tensor  # (C,) buffers: the latent channels' statistics
    latent_std: torch.Tensor

    def __init__(self, action_dim: int, config: VideoConfig | None = None, *, image_size: int = 64,
                 safety_head: bool = True, grad_clip: float = 10.0, stats_momentum: float = 0.01,
                 seed: int = 0) -> None:
        """Build the networks and one Adam optimizer over all of them.

        Args:
            action_dim: ``A``.
            config: :class:`~world_models.config.VideoConfig` (its fields say what each does); default its defaults.
            image_size: ``Hp = Wp``, a multiple of ``8 * patch_size``.
            safety_head: predict the probability that a step incurs cost (else costs are 0).
            grad_clip: max global gradient norm per update.
            stats_momentum: EMA rate of the latent channels' mean and std while the autoencoder trains.
            seed: seeds the generators of training noise and of :meth:`imagine`'s sampling noise.
        """
        config = VideoConfig() if config is None else config
        _check_config(config, image_size)
        super().__init__()
        self.config, self.action_dim, self.image_size = config, action_dim, image_size
        self.context_frames, self.sampling_steps = config.context_frames, config.sampling_steps
        self.grid = (image_size // 8, image_size // 8)
        self.frame_latent = config.latent_channels * self.grid[0] * self.grid[1]
        self.latent_dim = self.context_frames * self.frame_latent
        self.grad_clip, self.stats_momentum = grad_clip, stats_momentum
        self.foreground_weight = config.foreground_weight
        check_loss_weights(sparse_reward_weight=config.sparse_reward_weight,
                           termination_weight=config.termination_weight)
        self.autoencoder = FrameAutoencoder(3, config.latent_channels, config.autoencoder_depth)
        self.dit = SpacetimeDiT(config.latent_channels, self.grid, config.patch_size, self.context_frames + 1,
                                action_dim, config.width, config.depth, config.heads)
        self.num_heads = 3 if safety_head else 2  # [reward, continuation logit, cost logit]
        self.heads = mlp(2 * self.frame_latent + action_dim, 256, self.num_heads)
        self.register_buffer("latent_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latent_std", torch.ones(config.latent_channels))
        self.optimizer = torch.optim.Adam(self.parameters(), lr=config.learning_rate)
        self.train_generator = torch.Generator().manual_seed(seed)
        self.imagine_generator = torch.Generator().manual_seed(seed + 1)

    # ----------------------------------------------------------------- frames <-> latents
    def frames_to_latents(self, frames: torch.Tensor) -> torch.Tensor:
        """``(M, Hp, Wp, 3)`` uint8 -> standardised latent frames ``(M, C, h, w)``."""
        return self._standardise(self.autoencoder.encode(pixels_to_float(frames)))

    def latents_to_frames(self, latents: torch.Tensor) -> torch.Tensor:
        """``(M, C, h, w)`` standardised latent frames -> ``(M, Hp, Wp, 3)`` uint8."""
        mean, std = self.latent_mean[:, None, None], self.latent_std[:, None, None]
        return float_to_pixels(self.autoencoder.decode(latents * std + mean))

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, Hp, Wp, 3k)`` uint8 stacked frames (oldest first) -> ``(B, Z)``, ``Z = k * C * h * w``."""
        frames = self._split_stack(obs)  # (B, k, Hp, Wp, 3)
        latents = self.frames_to_latents(frames.flatten(0, 1))
        return latents.reshape(obs.shape[0], self.latent_dim)

    def window(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., Z)`` -> the latent frames ``(..., k, C, h, w)`` it holds, oldest first."""
        return z.reshape(*z.shape[:-1], self.context_frames, self.config.latent_channels, *self.grid)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, Z)`` -> the newest frame of each window, ``(B, Hp, Wp, 3)`` uint8."""
        return self.latents_to_frames(self.window(z)[:, -1])

    # ----------------------------------------------------------------- generation
    def sample_next(self, context: torch.Tensor, action: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``context (M, k, C, h, w)``, ``action (M, A)`` -> a sampled next latent frame ``(M, C, h, w)``:
        ``sampling_steps`` Euler steps of the learned flow from Gaussian noise (drawn on the CPU from
        ``generator``, so a seed gives the same frames on every device)."""
        return sample_flow(self.dit, context, action, self.sampling_steps, generator)

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Autoregressive windows ``(H+1, N, Z)`` from ``z0 (N, Z)`` under ``actions (H, N, A)``."""
        windows = [self.window(z0)]
        for action in actions:
            nxt = self.sample_next(windows[-1], action, generator)
            windows.append(torch.cat([windows[-1][:, 1:], nxt[:, None]], dim=1))
        return torch.stack(windows).flatten(2)

    def predict_frames(self, context: torch.Tensor, actions: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Imagine frames: ``context (B, k', Hp, Wp, 3)`` uint8 with ``k' >= k`` (the last ``k`` are used),
        ``actions (H, B, A)`` (``actions[0]`` follows the last context frame) -> ``(H, B, Hp, Wp, 3)`` uint8."""
        k = self.context_frames
        if context.dim() != 5 or context.shape[1] < k:
            raise ValueError(
                f"predict_frames needs at least k={k} context frames, (B, k', {self.image_size}, "
                f"{self.image_size}, 3) with k' >= {k}; got shape {tuple(context.shape)}"
            )
        self._check_actions(actions, context.shape[0])
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        stacked = context[:, -k:].permute(0, 2, 3, 1, 4).flatten(3)  # (B, Hp, Wp, 3k), oldest first
        windows = self.rollout(self.encode(stacked), actions, generator)  # (H+1, B, Z)
        newest = self.window(windows[1:])[:, :, -1]  # (H, B, C, h, w)
        return self.latents_to_frames(newest.flatten(0, 1)).unflatten(0, newest.shape[:2])

    # ----------------------------------------------------------------- heads and imagination
    def head_outputs(self, before: torch.Tensor, after: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Latent frames ``before``, ``after (..., C, h, w)``, ``action (..., A)`` -> ``(..., 2 or 3)``
        = [reward, continuation logit, cost logit] of the step between them."""
        return self.heads(torch.cat([before.flatten(-3), after.flatten(-3), action], dim=-1))

    def imagine(self, z0: torch.Tensor, actions: torch.Tensor) -> Rollout:
        """``z0 (N, Z)``, ``actions (H, N, A)`` -> Rollout of ``(H, N)`` tensors, latents ``(H+1, N, Z)``.

        Sampling noise comes from the model's own ``imagine_generator`` (seeded at construction)."""
        self._check_actions(actions, z0.shape[0])
        if tuple(z0.shape) != (actions.shape[1], self.latent_dim):
            raise ValueError(f"imagine expects z0 (N, {self.latent_dim}), got {tuple(z0.shape)}")
        latents = self.rollout(z0, actions, self.imagine_generator)
        frames = self.window(latents)[:, :, -1]  # (H+1, N, C, h, w): the newest frame of each window
        out = self.head_outputs(frames[:-1], frames[1:], actions)
        rewards = out[..., 0]
        costs = torch.sigmoid(out[..., 2]) if self.num_heads == 3 else torch.zeros_like(rewards)
        return Rollout(rewards=rewards, costs=costs, continuation=torch.sigmoid(out[..., 1]), latents=latents,
                       disagreement=torch.zeros_like(rewards))

    # ----------------------------------------------------------------- training
    def update(self, batch: SequenceBatch, parts: AbstractSet[str] = PARTS) -> dict[str, float]:
        """One optimisation step of ``parts`` (of :data:`PARTS`) on a time-major :class:`SequenceBatch` whose
        observations stack ``k`` frames; returns metrics."""
        unknown = set(parts) - PARTS
        if unknown or not parts:
            raise ValueError(f"parts must be a non-empty subset of {sorted(PARTS)}, got {sorted(parts)}")
        self.train()
        total, metrics = self.loss(batch, parts)
        grad_norm = optimisation_step(self.optimizer, total, metrics, "video world-model",
                                      (list(self.parameters()), self.grad_clip))
        self.eval()
        metrics["world_model/grad_norm"] = float(grad_norm or 0.0)
        return metrics

    def loss(self, batch: SequenceBatch, parts: AbstractSet[str] = PARTS) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss of ``parts`` and metrics for one :class:`SequenceBatch` ``(T+1, B, Hp, Wp, 3k)``."""
        frames = self._batch_frames(batch)  # (k+T, B, Hp, Wp, 3): every distinct frame of the windows
        total = torch.zeros((), device=frames.device)
        metrics: dict[str, float] = {}
        pixels = pixels_to_float(frames.flatten(0, 1))  # (M, 3, Hp, Wp)
        with torch.set_grad_enabled("autoencoder" in parts and torch.is_grad_enabled()):
            raw = self.autoencoder.encode(pixels)
        if "autoencoder" in parts:
            total = total + self._reconstruction_loss(pixels, raw, metrics)
            self._track_statistics(raw.detach())
        z = self._standardise(raw.detach()).unflatten(0, frames.shape[:2])  # (k+T, B, C, h, w)
        if "dynamics" in parts:
            total = total + self._flow_loss(z, batch, metrics)
        if "heads" in parts:
            total = total + self._head_loss(z, batch, metrics)
        metrics["world_model/loss"] = total.item()
        return total, metrics

    def _reconstruction_loss(self, pixels: torch.Tensor, raw: torch.Tensor, metrics: dict[str, float]) -> torch.Tensor:
        """Squared error of the decoded frames, where the pixels that differ from the batch's per-pixel median
        frame (what moves) count ``1 + foreground_weight`` times."""
        error = (self.autoencoder.decode(raw) - pixels).pow(2)  # (M, 3, Hp, Wp)
        moving = (pixels - pixels.median(dim=0, keepdim=True).values).abs().sum(1, keepdim=True) > 0.05
        weights = 1.0 + self.foreground_weight * moving.to(error.dtype)
        recon = (weights * error).sum() / weights.expand_as(error).sum()
        metrics["world_model/reconstruction_mse"] = error.mean().item()
        metrics["world_model/reconstruction_loss"] = recon.item()
        return recon

    def _flow_loss(self, z: torch.Tensor, batch: SequenceBatch, metrics: dict[str, float]) -> torch.Tensor:
        """Flow matching on every next frame of the windows: frame ``k + t`` from frames ``t .. k+t-1`` and
        action ``t``, at a logit-normal diffusion time; steps masked out by ``batch.mask`` do not count."""
        k, horizon, batch_size = self.context_frames, batch.actions.shape[0], batch.actions.shape[1]
        windows = torch.stack([z[t:t + k + 1] for t in range(horizon)])  # (T, k+1, B, C, h, w)
        windows = windows.transpose(1, 2).flatten(0, 1)  # (T*B, k+1, C, h, w)
        error = flow_matching_error(self.dit, windows, batch.actions.flatten(0, 1), self.train_generator)
        flow = masked_mean(error.reshape(horizon, batch_size), batch.mask)
        metrics["world_model/flow_loss"] = flow.item()
        return flow

    def _head_loss(self, z: torch.Tensor, batch: SequenceBatch, metrics: dict[str, float]) -> torch.Tensor:
        """Reward MSE, continuation BCE and cost BCE of the heads on the encoded frames ``z (k+T, B, ...)``."""
        k = self.context_frames
        out = self.head_outputs(z[k - 1:-1], z[k:], batch.actions.to(z.dtype))  # (T, B, heads)
        rewards = batch.rewards.to(torch.float32)
        reward = sparse_reward_error(out[..., 0], rewards, rewards, self.config.sparse_reward_weight, batch.mask)
        continuation = termination_bce(out[..., 1], batch.terminated, self.config.termination_weight, batch.mask)
        total = reward + continuation
        metrics["world_model/reward_loss"] = reward.item()
        metrics["world_model/continuation_loss"] = continuation.item()
        if self.num_heads == 3:
            unsafe = torch.zeros_like(out[..., 2]) if batch.costs is None else (batch.costs > 0).to(out.dtype)
            cost = masked_mean(F.binary_cross_entropy_with_logits(out[..., 2], unsafe, reduction="none"), batch.mask)
            total = total + cost
            metrics["safety/cost_bce"] = cost.item()
        return total

    @torch.no_grad()
    def fit_latent_statistics(self, frames: torch.Tensor) -> None:
        """Set the latent channels' mean and std from the encodings of ``frames (M, Hp, Wp, 3)`` uint8."""
        raw = self.autoencoder.encode(pixels_to_float(frames))
        self.latent_mean.copy_(raw.mean(dim=(0, 2, 3)))
        self.latent_std.copy_(raw.std(dim=(0, 2, 3)).clamp_min(1e-3))

    @torch.no_grad()
    def _track_statistics(self, raw: torch.Tensor) -> None:
        """EMA step of the latent channels' mean and std towards those of ``raw (M, C, h, w)``."""
        self.latent_mean.lerp_(raw.mean(dim=(0, 2, 3)), self.stats_momentum)
        self.latent_std.lerp_(raw.std(dim=(0, 2, 3)).clamp_min(1e-3), self.stats_momentum)

    def _standardise(self, raw: torch.Tensor) -> torch.Tensor:
        """``(M, C, h, w)`` encoder outputs -> per-channel standardised latents."""
        return (raw - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    # ----------------------------------------------------------------- input checks
    def _split_stack(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, Hp, Wp, 3k)`` uint8 -> ``(B, k, Hp, Wp, 3)``, refusing anything else with the fix."""
        k, side = self.context_frames, self.image_size
        if obs.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames (0..255), got dtype {obs.dtype}; pass raw frames")
        if obs.dim() != 4 or tuple(obs.shape[1:3]) != (side, side):
            raise ValueError(
                f"expected stacked frames (B, {side}, {side}, {3 * k}) (channel-last), got {tuple(obs.shape)}; "
                f"render frames at {side}x{side} or build the model with image_size={obs.shape[-2]}"
            )
        if obs.shape[3] != 3 * k:
            raise ValueError(
                f"the video model reads k={k} context frames, stacked as {3 * k} channels, got {obs.shape[3]} "
                f"channels ({obs.shape[3] / 3:g} frames); set frame_stack: {k} (or video.context_frames to match)"
            )
        return obs.unflatten(3, (k, 3)).permute(0, 3, 1, 2, 4)

    def _batch_frames(self, batch: SequenceBatch) -> torch.Tensor:
        """Every distinct frame of a batch's windows, ``(k+T, B, Hp, Wp, 3)``: the ``k`` frames stacked in
        ``obs[0]``, then the newest frame of each of ``obs[1:]``."""
        obs = batch.obs
        if not isinstance(obs, torch.Tensor) or obs.dim() != 5:
            raise ValueError("the video model trains on pixel windows obs (T+1, B, Hp, Wp, 3k), not dicts")
        horizon, batch_size = obs.shape[0] - 1, obs.shape[1]
        if horizon < 1 or tuple(batch.actions.shape) != (horizon, batch_size, self.action_dim):
            raise ValueError(f"with obs (T+1={horizon + 1}, B={batch_size}, ...), expected actions "
                             f"(T, B, {self.action_dim}) with T >= 1, got {tuple(batch.actions.shape)}")
        first = self._split_stack(obs[0]).transpose(0, 1)  # (k, B, Hp, Wp, 3)
        newest = obs[1:, ..., -3:]  # (T, B, Hp, Wp, 3)
        self._split_stack(obs[1:].flatten(0, 1))  # checks the later observations too
        return torch.cat([first, newest])

    def _check_actions(self, actions: torch.Tensor, batch: int) -> None:
        if actions.dim() != 3 or actions.shape[1:] != (batch, self.action_dim):
            raise ValueError(f"expected actions (H, {batch}, {self.action_dim}), got {tuple(actions.shape)}")


def sample_flow(dit: SpacetimeDiT, context: torch.Tensor, action: torch.Tensor, steps: int,
                generator: torch.Generator) -> torch.Tensor:
    """A next frame ``(M, C, h, w)`` after ``context (M, k, C, h, w)`` under ``action (M, A)``: ``steps`` Euler
    steps of the transformer's flow from Gaussian noise (``t`` from 0 to 1)."""
    x = torch.randn(context[:, 0].shape, generator=generator).to(context.device, context.dtype)
    for i in range(steps):
        t = torch.full((context.shape[0],), i / steps, device=context.device)
        x = x + dit(torch.cat([context, x[:, None]], dim=1), t, action) / steps
    return x


def flow_matching_error(dit: SpacetimeDiT, windows: torch.Tensor, actions: torch.Tensor,
                        generator: torch.Generator) -> torch.Tensor:
    """Rectified-flow error of each window's last frame, ``(M,)``: ``windows (M, k+1, C, h, w)`` (clean),
    ``actions (M, A)``; the last frame is noised to ``x_t = t x_1 + (1 - t) eps`` at a logit-normal time ``t``
    and the transformer's velocity is compared with ``x_1 - eps`` (noise and times drawn on the CPU from
    ``generator``)."""
    target = windows[:, -1]
    noise = torch.randn(target.shape, generator=generator).to(target.device)
    t = torch.sigmoid(torch.randn(target.shape[0], generator=generator)).to(target.device)
    tb = t[:, None, None, None]
    noisy = tb * target + (1 - tb) * noise
    velocity = dit(torch.cat([windows[:, :-1], noisy[:, None]], dim=1), t, actions)
    return (velocity - (target - noise)).pow(2).mean(dim=(1, 2, 3))


def _check_config(config: VideoConfig, image_size: int) -> None:
    """Refuse settings the networks cannot use, saying which and why."""
    if image_size < 8 or image_size % (8 * config.patch_size):
        raise ValueError(f"image_size must be a positive multiple of 8 * patch_size = {8 * config.patch_size} "
                         f"(three stride-2 convs, then patches), got {image_size}")
    if not 1 <= config.sampling_steps <= MAX_SAMPLING_STEPS:
        raise ValueError(f"sampling_steps must be in 1..{MAX_SAMPLING_STEPS}, got {config.sampling_steps}")
    if config.context_frames < 1:
        raise ValueError(f"context_frames must be >= 1, got {config.context_frames}")
    if config.width % config.heads:
        raise ValueError(f"width ({config.width}) must be divisible by heads ({config.heads})")
    if not (math.isfinite(config.foreground_weight) and config.foreground_weight >= 0):
        raise ValueError(f"foreground_weight must be a finite number >= 0, got {config.foreground_weight}")
