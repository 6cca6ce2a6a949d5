"""LatentWorldModel: conv encoder -> latent dynamics -> reward/continuation/safety heads.

Observations are channel-last ``uint8`` frames ``(B, Hp, Wp, C)`` (``C = 3k`` for ``k``
stacked RGB frames, channels concatenated), optionally with a proprioceptive vector:
``{"pixels": (B, Hp, Wp, C), "state": (B, S)}``. Pixels become floats in ``[-0.5, 0.5]``
inside; the state is squashed with ``symlog`` and joins the conv features before the
last encoder layer, so ``Z`` does not depend on it.

Latents live on one fixed-scale set: every latent, encoded or imagined, is layer-normalised
without a learned scale (zero mean, unit RMS over its ``Z`` entries), so imagined latents
stay where encodings are (a read-out fitted on encodings applies to them).

Latent step: ``z_{t+1} = norm(z_t + f(z_t, a_t))``; the heads read ``(z_t, a_t)``.
Two objectives (``objective=``):

- ``"reconstruction"``: a conv decoder reconstructs frame 0 from its encoding ``z_0`` and
  frames ``1..T`` from the open-loop rollout from ``z_0`` (next-frame prediction, squared
  pixel error per frame); the rollout also matches the stop-gradient encodings of frames
  ``1..T`` (latent consistency).
- ``"jepa"``: no pixels are predicted. The open-loop rollout from ``z_0`` matches an
  EMA target encoder's embeddings of frames ``1..T`` (MSE), a VICReg-style
  variance/covariance term on the online embeddings keeps them from collapsing, and a
  temporal smoothness term keeps consecutive embeddings close.

Reward, continuation and safety heads are trained on the open-loop latents in both cases,
so they see the same kind of latents that :meth:`LatentWorldModel.imagine` produces.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from world_models.base import Rollout
from world_models.config import LatentConfig, ValueConfig
from world_models.latent_nets import (
    ConvDecoder,
    ConvEncoder,
    effective_rank,
    float_to_pixels,
    mlp,
    normalise_latent,
    pixels_to_float,
    symlog,
    variance_covariance,
)
from world_models.training import (
    check_loss_weights,
    ema_update,
    masked_mean,
    optimisation_step,
    sparse_reward_error,
    td0_target,
    termination_bce,
)

Observation = torch.Tensor | Mapping[str, torch.Tensor]
"""Pixels ``(..., Hp, Wp, C)`` uint8, or ``{"pixels": ..., "state": (..., S)}``."""

Objective = Literal["reconstruction", "jepa"]


class SequenceBatch(NamedTuple):
    """Time-major training windows (``obs[t]`` is seen before ``actions[t]``).

    ``costs=None`` means no cost was recorded: every step counts as safe. ``mask=None``
    means every step counts; else steps with mask 0 (after an episode's end inside the
    window) are left out of every loss.
    """

    obs: Observation  # (T+1, B, Hp, Wp, C) uint8, or a dict with "pixels" and "state" (T+1, B, S)
    actions: torch.Tensor  # (T, B, A)
    rewards: torch.Tensor  # (T, B)
    terminated: torch.Tensor  # (T, B) bool or float
    costs: torch.Tensor | None = None  # (T, B)
    mask: torch.Tensor | None = None  # (T, B) float, 1: the step counts


class LatentWorldModel(nn.Module):
    """Pixel (+ optional proprio) world model with a reconstruction or a JEPA objective."""

    def __init__(self, action_dim: int, config: LatentConfig | None = None, value: ValueConfig | None = None, *,
                 image_size: int = 64, channels: int = 3, state_dim: int = 0, safety_head: bool = True,
                 discount: float = 0.99, grad_clip: float = 20.0, ema_tau: float = 0.02, variance_weight: float = 1.0,
                 covariance_weight: float = 0.04, smoothness_weight: float = 1.0) -> None:
        """Build the networks and an Adam optimizer over the trainable parameters.

        Args:
            action_dim: ``A``.
            config: the networks and their training (:class:`~world_models.config.LatentConfig`, whose
                fields say what each does); default its defaults.
            value: with ``value.function``, learn a terminal value ``V(z) = u(z) / (1 - discount)`` by
                TD(0) on the open-loop latents of the training windows (target network EMA rate
                ``value.tau``); :meth:`imagine` adds it after the last imagined step. ``None``: no value.
            image_size: ``Hp = Wp``, a multiple of 16.
            channels: ``C`` (``3k`` for ``k`` stacked RGB frames).
            state_dim: ``S`` of the optional proprioceptive vector (0: pixels only).
            safety_head: predict the probability that a step incurs cost (else costs are 0).
            discount: the value's discount, in ``[0, 1)`` (the planner's).
            grad_clip: max global gradient norm per update.
            ema_tau: JEPA target update ``target <- target + tau (online - target)``.
            variance_weight: JEPA weight of the per-dimension std hinge.
            covariance_weight: JEPA weight of the off-diagonal covariance penalty.
            smoothness_weight: JEPA weight of the temporal smoothness term, the mean squared
                change of the online embedding between consecutive frames. With the variance
                term it makes embeddings vary across episodes but slowly within one, which
                keeps them predictable (without it consecutive frames of a fast object embed
                almost independently).
        """
        config = LatentConfig() if config is None else config
        value_function = value is not None and value.function
        value_tau = 0.02 if value is None else value.tau
        latent_dim, depth, hidden_dim = config.latent_dim, config.depth, config.hidden_dim
        objective, learning_rate = config.objective, config.learning_rate
        sparse_reward_weight, termination_weight = config.sparse_reward_weight, config.termination_weight
        super().__init__()
        _check_config(image_size, channels, objective, ema_tau)
        self.action_dim, self.latent_dim, self.state_dim = action_dim, latent_dim, state_dim
        self.image_shape = (image_size, image_size, channels)  # (Hp, Wp, C), channel-last
        self.objective: Objective = objective  # type: ignore[assignment]  # checked above
        self.grad_clip, self.ema_tau = grad_clip, ema_tau
        self.variance_weight, self.covariance_weight = variance_weight, covariance_weight
        self.smoothness_weight = smoothness_weight
        check_loss_weights(sparse_reward_weight=sparse_reward_weight, termination_weight=termination_weight)
        self.sparse_reward_weight, self.termination_weight = sparse_reward_weight, termination_weight
        self.encoder = ConvEncoder(image_size, channels, depth, state_dim, latent_dim)
        self.dynamics = mlp(latent_dim + action_dim, hidden_dim, latent_dim)
        self.num_heads = 3 if safety_head else 2  # [reward, continuation logit, cost logit]
        self.heads = mlp(latent_dim + action_dim, hidden_dim, self.num_heads)
        if value_function and not 0.0 <= discount < 1.0:
            raise ValueError(f"discount must be in [0, 1) with value_function=True, got {discount}")
        self.discount, self.value_tau = discount, value_tau
        self.value_net: nn.Sequential | None = None
        self.value_target: nn.Sequential | None = None
        if value_function:
            self.value_net = mlp(latent_dim, hidden_dim, 1)
            self.value_target = copy.deepcopy(self.value_net).requires_grad_(False)
        self.decoder: ConvDecoder | None = None
        self.target_encoder: ConvEncoder | None = None
        if objective == "reconstruction":
            self.decoder = ConvDecoder(image_size, channels, depth, state_dim, latent_dim)
        else:
            self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.trainable = [p for p in self.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.trainable, lr=learning_rate)

    # ----------------------------------------------------------------- small pieces
    def encode(self, obs: Observation) -> torch.Tensor:
        """``(B, Hp, Wp, C)`` uint8 pixels (or a dict with ``"state" (B, S)``) -> ``(B, Z)``."""
        pixels, state = self._split_obs(obs, lead=1)
        return self.encoder(pixels, state)

    def next(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``z (M, Z)``, ``action (M, A)`` -> next latent ``(M, Z)`` (normalised like an encoding)."""
        return normalise_latent(z + self.dynamics(torch.cat([z, action], dim=-1)))

    def head_outputs(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``z (..., Z)``, ``action (..., A)`` -> ``(..., 2 or 3)`` = [reward, continuation logit, cost logit]."""
        return self.heads(torch.cat([z, action], dim=-1))

    def reward(self, out: torch.Tensor) -> torch.Tensor:
        """Predicted reward ``(...)`` from head outputs."""
        return out[..., 0]

    def continuation(self, out: torch.Tensor) -> torch.Tensor:
        """Probability ``(...)`` that the episode goes on after the step."""
        return torch.sigmoid(out[..., 1])

    def value(self, z: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """Terminal value ``(...)`` of latents ``(..., Z)`` (needs ``value_function=True``)."""
        net = self.value_net if net is None else net
        if net is None:
            raise RuntimeError("value() needs a model built with value_function=True")
        return net(z)[..., 0] / (1.0 - self.discount)

    def safety(self, out: torch.Tensor) -> torch.Tensor:
        """Probability ``(...)`` that the step is unsafe (zeros without a safety head)."""
        return torch.sigmoid(out[..., 2]) if self.num_heads == 3 else torch.zeros_like(out[..., 0])

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Open-loop latents ``(H+1, N, Z)`` from ``z0 (N, Z)`` under ``actions (H, N, A)``."""
        latents = [z0]
        for action in actions:
            latents.append(self.next(latents[-1], action))
        return torch.stack(latents)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, Z)`` -> reconstructed frames ``(B, Hp, Wp, C)`` uint8 (reconstruction objective only)."""
        if self.decoder is None:
            raise RuntimeError(
                "decode() needs a decoder, but this LatentWorldModel uses objective='jepa', which "
                "predicts no pixels; build it with objective='reconstruction' to decode latents"
            )
        images, _ = self.decoder(z)
        return float_to_pixels(images)

    # ----------------------------------------------------------------- imagination
    def imagine(self, z0: torch.Tensor, actions: torch.Tensor) -> Rollout:
        """``z0 (N, Z)``, ``actions (H, N, A)`` -> Rollout of ``(H, N)`` tensors, latents ``(H+1, N, Z)``."""
        shapes_ok = actions.dim() == 3 and actions.shape[2] == self.action_dim
        if not shapes_ok or tuple(z0.shape) != (actions.shape[1], self.latent_dim):
            raise ValueError(
                f"imagine expects z0 (N, {self.latent_dim}) and actions (H, N, {self.action_dim}); "
                f"got {tuple(z0.shape)} and {tuple(actions.shape)}"
            )
        latents = self.rollout(z0, actions)
        out = self.head_outputs(latents[:-1], actions)  # (H, N, heads): one call for all steps
        rewards = self.reward(out)
        return Rollout(
            rewards=rewards,
            costs=self.safety(out),
            continuation=self.continuation(out),
            latents=latents,
            disagreement=torch.zeros_like(rewards),
            terminal_value=None if self.value_net is None else self.value(latents[-1]),
        )

    # ----------------------------------------------------------------- training
    def update(self, batch: SequenceBatch) -> dict[str, float]:
        """One optimisation step on a time-major :class:`SequenceBatch`; returns metrics.

        For ``objective="jepa"`` the EMA target encoder moves after the step.
        """
        self.train()
        total, metrics = self.loss(batch)
        grad_norm = optimisation_step(self.optimizer, total, metrics, "latent world-model",
                                      (self.trainable, self.grad_clip))
        if self.target_encoder is not None:
            self.update_target()
        if self.value_net is not None and self.value_target is not None:
            ema_update(self.value_target, self.value_net, self.value_tau)
        self.eval()
        metrics["world_model/grad_norm"] = float(grad_norm or 0.0)
        return metrics

    @torch.no_grad()
    def update_target(self) -> None:
        """EMA step of the JEPA target encoder: ``target <- target + tau (online - target)``."""
        if self.target_encoder is None:
            raise RuntimeError("update_target() is only for objective='jepa' (reconstruction has no target encoder)")
        ema_update(self.target_encoder, self.encoder, self.ema_tau)

    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and metrics (floats) for one :class:`SequenceBatch`."""
        pixels, state, horizon, batch_size = self._check_batch(batch)
        z = self._encode_window(pixels, state)  # (T+1, B, Z)
        latents = self.rollout(z[0], batch.actions)  # (T+1, B, Z), open loop from z_0
        if self.objective == "reconstruction":
            total, metrics = self._reconstruction_terms(pixels, state, z, latents, batch.mask)
        else:
            total, metrics = self._jepa_terms(pixels, state, z, latents, batch.mask)
        head_total, head_metrics = self._head_terms(batch, latents)
        total = total + head_total
        metrics.update(head_metrics)
        if self.value_net is not None:
            value_loss = self._value_loss(batch, latents.detach())
            total = total + value_loss
            metrics["world_model/value_loss"] = value_loss.item()
        metrics.update(self._collapse_metrics(z))
        metrics["world_model/loss"] = total.item()
        return total, metrics

    def _encode_window(self, pixels: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """Encodings ``(T+1, B, Z)`` of a window's frames ``(T+1, B, ...)``.

        JEPA's variance/covariance guard needs every frame's online embedding with its
        gradient; reconstruction needs a gradient through ``z_0`` only (later frames are
        consistency targets without gradient), which saves most of the encoder's backward pass.
        """
        if self.objective == "jepa":
            return self.encoder(pixels.flatten(0, 1), _flat(state)).unflatten(0, pixels.shape[:2])
        z0 = self.encoder(pixels[0], None if state is None else state[0])
        with torch.no_grad():
            rest = self.encoder(pixels[1:].flatten(0, 1), _flat(None if state is None else state[1:]))
        return torch.cat([z0[None], rest.unflatten(0, pixels[1:].shape[:2])])

    def _reconstruction_terms(
        self, pixels: torch.Tensor, state: torch.Tensor | None, z: torch.Tensor, latents: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Squared pixel error (summed over each frame, so a small object's pixels weigh as much
        as the latent terms) of the frames decoded from ``latents (T+1, B, Z)`` (``z_0``, then
        the open-loop prediction), + state MSE, + latent consistency with the encodings ``z (T+1, B, Z)``.
        ``mask (T, B)``: which predicted frames ``1..T`` count (frame 0 always does)."""
        assert self.decoder is not None
        frames = pixels.shape[:2]  # (T+1, B)
        frame_mask = None if mask is None else torch.cat([torch.ones_like(mask[:1]), mask])
        images, state_pred = self.decoder(latents.flatten(0, 1))
        error = (images - pixels_to_float(pixels.flatten(0, 1))).pow(2).sum(dim=(1, 2, 3))  # per frame
        recon = masked_mean(error.unflatten(0, frames), frame_mask)
        if state is not None and state_pred is not None:
            state_error = (state_pred - symlog(state.flatten(0, 1).to(torch.float32))).pow(2)
            recon = recon + masked_mean(state_error.unflatten(0, frames), frame_mask)
        consistency = masked_mean((latents[1:] - z[1:].detach()).pow(2), mask)
        metrics = {"world_model/reconstruction_loss": recon.item(), "world_model/consistency_loss": consistency.item()}
        return recon + consistency, metrics

    def _jepa_terms(
        self, pixels: torch.Tensor, state: torch.Tensor | None, z: torch.Tensor, latents: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE of the rollout against EMA-target embeddings of frames ``1..T`` (the steps that
        ``mask (T, B)`` keeps) + VICReg guard on every frame."""
        assert self.target_encoder is not None
        horizon, batch_size = pixels.shape[0] - 1, pixels.shape[1]
        with torch.no_grad():
            target = self.target_encoder(pixels[1:].flatten(0, 1), _flat(None if state is None else state[1:]))
        target = target.unflatten(0, (horizon, batch_size))  # (T, B, Z)
        prediction = masked_mean((latents[1:] - target).pow(2), mask)
        variance, covariance, _ = variance_covariance(z.flatten(0, 1))
        smoothness = masked_mean((z[1:] - z[:-1]).pow(2), mask)
        total = (prediction + self.variance_weight * variance + self.covariance_weight * covariance
                 + self.smoothness_weight * smoothness)
        metrics = {
            "world_model/jepa_loss": prediction.item(),
            "world_model/variance_loss": variance.item(),
            "world_model/covariance_loss": covariance.item(),
            "world_model/smoothness_loss": smoothness.item(),
        }
        return total, metrics

    def _head_terms(self, batch: SequenceBatch, latents: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Reward MSE, continuation BCE and cost BCE on the open-loop latents ``(T+1, B, Z)``."""
        out = self.head_outputs(latents[:-1], batch.actions)  # (T, B, heads)
        rewards = batch.rewards.to(torch.float32)
        reward = sparse_reward_error(self.reward(out), rewards, rewards, self.sparse_reward_weight, batch.mask)
        continuation = termination_bce(out[..., 1], batch.terminated, self.termination_weight, batch.mask)
        total = reward + continuation
        metrics = {"world_model/reward_loss": reward.item(), "world_model/continuation_loss": continuation.item()}
        if self.num_heads == 3:
            unsafe = torch.zeros_like(out[..., 2]) if batch.costs is None else (batch.costs > 0).to(torch.float32)
            cost = masked_mean(F.binary_cross_entropy_with_logits(out[..., 2], unsafe, reduction="none"), batch.mask)
            total = total + cost
            metrics["safety/cost_bce"] = cost.item()
        return total, metrics

    def _value_loss(self, batch: SequenceBatch, latents: torch.Tensor) -> torch.Tensor:
        """TD(0) on the open-loop latents ``(T+1, B, Z)`` (no gradient into them) against the EMA
        target, on the reward scale; bootstraps through truncation, not through termination."""
        assert self.value_target is not None
        scale = 1.0 - self.discount
        with torch.no_grad():
            target = td0_target(batch.rewards, batch.terminated, self.value(latents[1:], self.value_target),
                                self.discount)
        return masked_mean((scale * self.value(latents[:-1]) - target).pow(2), batch.mask)

    @torch.no_grad()
    def _collapse_metrics(self, z: torch.Tensor) -> dict[str, float]:
        """Mean per-dimension std across the batch and effective rank of the online embeddings ``(T+1, B, Z)``."""
        flat = z.detach().flatten(0, 1)
        return {
            "world_model/embedding_std": flat.std(dim=0).mean().item(),
            "world_model/embedding_rank": effective_rank(flat),
        }

    # ----------------------------------------------------------------- input checks
    def _split_obs(self, obs: Observation, lead: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Check and split an observation with ``lead`` leading axes into ``(pixels, state or None)``."""
        if isinstance(obs, Mapping):
            if "pixels" not in obs:
                raise ValueError(f"dict observations need a 'pixels' entry, got keys {sorted(obs)}")
            pixels, state = obs["pixels"], obs.get("state")
        else:
            pixels, state = obs, None
        self._check_pixels(pixels, lead)
        if (state is None) != (self.state_dim == 0):
            raise ValueError(
                f"this model was built with state_dim={self.state_dim}: pass "
                + ("{'pixels': ..., 'state': (..., S)}" if self.state_dim else "pixels only (no 'state' entry)")
            )
        if state is not None and tuple(state.shape) != (*pixels.shape[:lead], self.state_dim):
            raise ValueError(
                f"expected state of shape {(*pixels.shape[:lead], self.state_dim)}, got {tuple(state.shape)}"
            )
        return pixels, state

    def _check_pixels(self, pixels: torch.Tensor, lead: int) -> None:
        """Raise ValueError unless ``pixels`` is uint8 with shape ``(*lead axes, Hp, Wp, C)``."""
        expected = self.image_shape
        if pixels.dtype != torch.uint8:
            raise ValueError(
                f"expected uint8 pixels (0..255) of shape (..., {expected[0]}, {expected[1]}, {expected[2]}), "
                f"got dtype {pixels.dtype}; pass raw frames, the model scales them itself"
            )
        if pixels.dim() == lead + 3 and tuple(pixels.shape[-3:]) == expected:
            return
        hint = "resize frames or build the model with matching image_size/channels"
        if pixels.dim() == lead + 3 and tuple(pixels.shape[-3:]) == (expected[2], expected[0], expected[1]):
            hint = "frames look channel-first: permute them to channel-last (..., Hp, Wp, C)"
        raise ValueError(
            f"expected pixels of shape ({'N, ' * lead}{expected[0]}, {expected[1]}, {expected[2]}) "
            f"(channel-last), got {tuple(pixels.shape)}; {hint}"
        )

    def _check_batch(self, batch: SequenceBatch) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
        """Validate a :class:`SequenceBatch`; returns ``(pixels (T+1, B, ...), state or None, T, B)``."""
        pixels, state = self._split_obs(batch.obs, lead=2)
        horizon, batch_size = pixels.shape[0] - 1, pixels.shape[1]
        expected = {"actions": (horizon, batch_size, self.action_dim), "rewards": (horizon, batch_size),
                    "terminated": (horizon, batch_size)}
        if batch.costs is not None:
            expected["costs"] = (horizon, batch_size)
        if batch.mask is not None:
            expected["mask"] = (horizon, batch_size)
        for name, shape in expected.items():
            got = tuple(getattr(batch, name).shape)
            if got != shape or horizon < 1:
                raise ValueError(
                    f"with obs of length T+1={horizon + 1} and batch B={batch_size}, expected {name} "
                    f"of shape {shape} (time-major, T >= 1), got {got}"
                )
        return pixels, state, horizon, batch_size


def _flat(state: torch.Tensor | None) -> torch.Tensor | None:
    """``(T, B, S) -> (T*B, S)``; None stays None."""
    return None if state is None else state.flatten(0, 1)


def _check_config(image_size: int, channels: int, objective: str, ema_tau: float) -> None:
    """Refuse constructor arguments the networks cannot use."""
    if image_size < 16 or image_size % 16:
        raise ValueError(f"image_size must be a positive multiple of 16 (four stride-2 convs), got {image_size}")
    if channels < 1:
        raise ValueError(f"channels must be >= 1 (3k for k stacked RGB frames), got {channels}")
    if objective not in ("reconstruction", "jepa"):
        raise ValueError(f"objective must be 'reconstruction' or 'jepa', got {objective!r}")
    if not 0.0 < ema_tau <= 1.0 or not math.isfinite(ema_tau):
        raise ValueError(f"ema_tau must be in (0, 1], got {ema_tau}")
