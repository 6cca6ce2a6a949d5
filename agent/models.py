"""The model-specific half of the agent loop: one small adapter per world-model kind.

An adapter builds its world model and knows how that model wants its data:

- ``obs_dtype``: how the replay buffer stores observations (``float32`` states, ``uint8`` frames);
- ``as_obs(obs)``: one or a batch of environment observations as a numpy array of that dtype;
- ``encode(obs (B, *obs_shape)) -> z0 (B, Z)``: the planner's starting latents;
- ``fit_normalizers(buffer)``: refit input statistics (a no-op without any);
- ``train_step(buffer, rng) -> metrics``: sample a batch and take one optimisation step.

The agent (agent/agent.py) holds one adapter and is otherwise the same for every kind.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from agent.buffer import ReplayBuffer, Transitions
from agent.config import Config, ConfigError
from world_models.base import WorldModel
from world_models.latent import LatentWorldModel, SequenceBatch
from world_models.robotics import ModelBatch, RoboticsWorldModel
from world_models.video import VideoWorldModel


def to_tensor(x: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Numpy -> tensor on ``device`` (read-only views are copied: torch cannot wrap them)."""
    if not x.flags.writeable:
        x = x.copy()
    return torch.as_tensor(x, dtype=dtype, device=device)


class ModelAdapter(Protocol):
    """What the agent loop needs from a world model (see the module docstring)."""

    obs_dtype: type[np.generic]

    @property
    def model(self) -> WorldModel: ...

    def as_obs(self, obs: Any) -> np.ndarray: ...

    def encode(self, obs: np.ndarray) -> torch.Tensor: ...

    def fit_normalizers(self, buffer: ReplayBuffer) -> None: ...

    def train_step(self, buffer: ReplayBuffer, rng: np.random.Generator) -> dict[str, float]: ...


class _OnDevice:
    """Moves numpy batches to the adapter's device."""

    device: torch.device

    def _tensor(self, x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return to_tensor(x, self.device, dtype)


class RoboticsAdapter(_OnDevice):
    """RoboticsWorldModel on state vectors ``(S,)``: per-member minibatches of single transitions."""

    obs_dtype: type[np.generic] = np.float32

    def __init__(self, config: Config, state_dim: int, action_dim: int, device: torch.device) -> None:
        self.model = RoboticsWorldModel(
            state_dim, action_dim, config.robotics, config.value, discount=config.planner.discount
        ).to(device)
        self.value_window = config.value.window if config.value.function else 0
        self.value_rows = config.value.batch_size if config.value.function else 0
        self.model.eval()
        self.state_dim, self.device = state_dim, device
        self.batch_size, self.ensemble_size = config.train.batch_size, config.robotics.ensemble_size

    def as_obs(self, obs: Any) -> np.ndarray:
        return np.asarray(obs, dtype=np.float32)

    def encode(self, obs: np.ndarray) -> torch.Tensor:
        rows = torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(-1, self.state_dim)
        return self.model.encode(rows)

    def fit_normalizers(self, buffer: ReplayBuffer) -> None:
        data = buffer.stored()
        t = self._tensor
        self.model.fit_normalizers(t(data.obs), t(data.actions), t(data.rewards), t(data.next_obs))

    def train_step(self, buffer: ReplayBuffer, rng: np.random.Generator) -> dict[str, float]:
        batch = self._batch(buffer.sample(self.batch_size, rng, ensemble_size=self.ensemble_size))
        value_batch = None
        # (E, B) rows for the value by default; (1, value.batch_size) when that is set
        members, rows = (1, self.value_rows) if self.value_rows else (self.ensemble_size, self.batch_size)
        if self.value_window or self.value_rows:
            value_batch = self._batch(
                buffer.sample(rows, rng, ensemble_size=members, recent=self.value_window or None)
            )
        noise = None
        if self.model.actor is not None:  # TD3's target smoothing: N(0, 0.2) clipped to +-0.5, from the run's rng
            shape = (members, rows, self.model.action_dim)
            noise = self._tensor(np.clip(0.2 * rng.standard_normal(shape), -0.5, 0.5))
        return self.model.update(batch, value_batch, noise)

    def _batch(self, batch: Transitions) -> ModelBatch:
        t = self._tensor
        return ModelBatch(
            obs=t(batch.obs), actions=t(batch.actions), rewards=t(batch.rewards), costs=t(batch.costs),
            terminated=t(batch.terminated, torch.bool), next_obs=t(batch.next_obs),
        )


class LatentAdapter(_OnDevice):
    """LatentWorldModel on channel-last uint8 frames ``(Hp, Wp, C)``: time-major sequence windows."""

    obs_dtype: type[np.generic] = np.uint8

    def __init__(self, config: Config, obs_shape: tuple[int, ...], action_dim: int, device: torch.device) -> None:
        height, width, channels = obs_shape
        if height != width or height % 16:
            raise ConfigError(
                f"model.kind latent needs square frames whose side is a multiple of 16, got {obs_shape}; "
                "render at 64x64 (the default of pixels: true) or resize the frames"
            )
        v = config.value
        if v.kind != "state":
            raise ConfigError(f"value.kind {v.kind} is for the robotics model (state observations); the latent "
                              "model learns a state value: set value.kind: state")
        if v.function and (v.window or v.batch_size):
            raise ConfigError(
                "value.window and value.batch_size are for the robotics model; the latent model learns its value "
                "on its training windows: set both to 0"
            )
        self.model = LatentWorldModel(
            action_dim, config.latent, v, image_size=height, channels=channels, discount=config.planner.discount
        ).to(device)
        self.model.eval()
        self.obs_shape, self.device = tuple(obs_shape), device
        self.batch_size, self.sequence_length = config.train.batch_size, config.latent.sequence_length
        self.across_episodes = config.latent.windows_across_episodes

    def as_obs(self, obs: Any) -> np.ndarray:
        return np.asarray(obs, dtype=np.uint8)

    def encode(self, obs: np.ndarray) -> torch.Tensor:
        frames = to_tensor(obs, self.device, torch.uint8).reshape(-1, *self.obs_shape)
        return self.model.encode(frames)

    def fit_normalizers(self, buffer: ReplayBuffer) -> None:
        """Nothing to fit: the encoder scales pixels itself."""

    def train_step(self, buffer: ReplayBuffer, rng: np.random.Generator) -> dict[str, float]:
        seq = buffer.sample_sequences(self.batch_size, self.sequence_length, rng,
                                      across_episodes=self.across_episodes)
        t = self._tensor
        return self.model.update(SequenceBatch(
            obs=t(seq.obs, torch.uint8), actions=t(seq.actions), rewards=t(seq.rewards),
            terminated=t(seq.terminated, torch.bool), costs=t(seq.costs),
            mask=None if seq.mask is None else t(seq.mask),
        ))


class VideoAdapter(LatentAdapter):
    """VideoWorldModel on ``k`` stacked channel-last uint8 frames ``(Hp, Wp, 3k)`` (``frame_stack: k`` =
    ``video.context_frames``): the same time-major windows as the latent model, drawn inside episodes."""

    model: VideoWorldModel  # type: ignore[assignment]  # the latent adapter's batches and steps, another model

    def __init__(self, config: Config, obs_shape: tuple[int, ...], action_dim: int, device: torch.device) -> None:
        height, width, channels = obs_shape
        k = config.video.context_frames
        if height != width or channels != 3 * k:
            raise ConfigError(
                f"model.kind video reads square RGB frames stacked k={k} deep (video.context_frames), so "
                f"observations (Hp, Hp, {3 * k}); the env observes {obs_shape}: set frame_stack: {k} and pixels"
            )
        if config.value.function:
            raise ConfigError("the video model has no value function: set value.function: false")
        try:
            self.model = VideoWorldModel(action_dim, config.video, image_size=height, seed=config.seed).to(device)
        except ValueError as exc:
            raise ConfigError(f"video settings: {exc}") from None
        self.model.eval()
        self.obs_shape, self.device = tuple(obs_shape), device
        self.batch_size, self.sequence_length = config.train.batch_size, config.video.sequence_length
        self.across_episodes = False


class PolicyProposer:
    """The learned policy's plans as a :class:`planners.base.Proposer` (``value.kind`` policy): rolled through
    the model from ``context["z0"] (B, Z)``, the first without noise, the others with noise ``noise`` on every
    action from ``context["generator"]``; ``(B, n, H, A)``."""

    def __init__(self, model: RoboticsWorldModel, noise: float) -> None:
        self.model, self.noise = model, noise

    def propose(self, context: dict[str, object], n: int, horizon: int) -> torch.Tensor:
        z0, generator = context["z0"], context["generator"]
        assert isinstance(z0, torch.Tensor) and isinstance(generator, torch.Generator)
        with torch.inference_mode():
            return self.model.propose(z0, horizon, n, self.noise, generator)


def make_adapter(
    config: Config, kind: str, obs_shape: tuple[int, ...], action_dim: int, device: torch.device
) -> ModelAdapter:
    """The adapter (and so the world model) for ``kind`` (``robotics``, ``latent`` or ``video``, already resolved)."""
    if kind in ("latent", "video"):
        if len(obs_shape) != 3:
            raise ConfigError(
                f"model.kind {kind} needs image observations (Hp, Wp, C), but the env observes {obs_shape}; "
                "set pixels: true (--pixels), use an env with image observations, or model.kind robotics"
            )
        return (VideoAdapter if kind == "video" else LatentAdapter)(config, obs_shape, action_dim, device)
    if len(obs_shape) != 1:
        raise ConfigError(
            f"model.kind robotics needs a state vector (S,), but the env observes {obs_shape}; "
            "use model.kind latent (or auto) for image observations"
        )
    return RoboticsAdapter(config, obs_shape[0], action_dim, device)
