"""The world models' settings: one dataclass per model, one for the value function / policy.

These are the ``robotics``, ``latent`` and ``value`` sections of the agent's configuration
(``agent/config.py``; ``model.kind`` picks the model); the constructors of
:class:`~world_models.robotics.RoboticsWorldModel` and :class:`~world_models.latent.LatentWorldModel`
take them. Each field's docstring is its documentation (``--help`` and the docs are generated from it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RoboticsConfig:
    """RoboticsWorldModel (``model.kind`` robotics, state observations): an ensemble of probabilistic MLPs."""

    ensemble_size: int = 5
    """Number of ensemble members E."""
    hidden_dim: int = 200
    """Width of each hidden layer (the value, policy and critic networks' too)."""
    num_layers: int = 4
    """Number of hidden layers."""
    learning_rate: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-5
    """AdamW weight decay."""
    sparse_reward_weight: float = 0.0
    """Extra weight of transitions with a non-zero reward in the reward loss (each counts 1 + this):
    for sparse rewards, which a model otherwise learns to predict as zero everywhere. 0: off."""
    termination_weight: float = 0.0
    """Extra weight of terminal transitions in the continuation loss (each counts 1 + this), so the
    model marks sharply where episodes end. 0: off."""
    continuation_from: str = "transition"
    """Where the continuation (the episode goes on) is read from. ``transition``: an output of the
    dynamics network, from (z, a). ``next_state``: a small network of its own on the next state,
    applied to every imagined state; for tasks that end when the state leaves a healthy range
    (Hopper, Walker2d), whose end the dynamics network blurs."""
    cost_head: str = "network"
    """Where the safety head reads the probability that a step is costly. ``network``: an output of the
    dynamics network, from (z, a). ``linear``: a logistic regression per ensemble member on the normalised
    state and next state (the imagined next state in planning). It learns from a few costly steps and
    extrapolates: a state further along the direction that made steps costly (a higher speed) is predicted
    more likely costly, where the network predicts ~0 outside its data. Suits costs that grow along a
    direction of the state (speed limits), not costly regions of it."""
    costly_weight: float = 0.0
    """Extra weight of costly transitions in the safety loss (each counts 1 + this): costly steps are
    rare, and an unweighted head predicts them too seldom. 0: off."""
    imagination_dtype: str = "float32"
    """Dtype of the dynamics network's hidden-to-hidden products while planning, ``float32`` or
    ``bfloat16``, about 3 significant digits in those layers; the input and output layers, the
    latents and all training stay float32. Without native bf16 products it is emulated and slower;
    measurements in benchmarks/results/imagination_dtype.md. float32 in every preset."""


@dataclass
class LatentConfig:
    """LatentWorldModel (``model.kind`` latent, image observations): conv encoder + latent dynamics."""

    latent_dim: int = 64
    """Latent size Z."""
    depth: int = 16
    """Channels of the first conv (then 2d, 4d, 8d)."""
    hidden_dim: int = 200
    """Width of the dynamics, head and value MLPs."""
    objective: str = "jepa"
    """jepa (EMA-target embedding prediction) or reconstruction (pixel decoder)."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    sparse_reward_weight: float = 0.0
    """Extra weight of steps with a non-zero reward in the reward loss (each counts 1 + this). 0: off."""
    termination_weight: float = 0.0
    """Extra weight of terminal steps in the continuation loss (each counts 1 + this). 0: off."""
    sequence_length: int = 8
    """Length T of the training windows (open-loop rollout steps)."""
    windows_across_episodes: bool = False
    """Start training windows at any stored step, leaving the steps after an episode's end out of
    the losses. false: only windows inside one episode, so episodes shorter than sequence_length
    never reach the model and each episode's last steps are drawn rarely."""


@dataclass
class ValueConfig:
    """A terminal value after the planning horizon: a state value, or a learned policy and its critics."""

    function: bool = False
    """Learn a terminal value V(z) by TD(0) on stored transitions; the planner adds it after H steps."""
    kind: str = "state"
    """With function: ``state``, V(z) by TD(0) on stored transitions (the value of the behaviour that
    filled the buffer); or ``policy`` (robotics model), a learned deterministic policy pi(z) and twin
    Q(z, a) trained off-policy (TD3's clipped double Q and target smoothing), the terminal value then
    being min Q(z_H, pi(z_H)): the value of acting by the learned policy after the horizon."""
    tau: float = 0.02
    """EMA rate of the value's (and policy's, critics') target networks."""
    window: int = 0
    """Robotics model: train the value on the most recent N transitions only (0: all stored): the
    current planner's behaviour rather than the random warm-up's."""
    batch_size: int = 0
    """Robotics model: rows of each value (or policy and critics) update, one minibatch drawn for it
    alone. 0: the world model's minibatches, one per ensemble member (``ensemble_size x
    train.batch_size`` rows, or as many from the window with ``window``)."""
    policy_imitation: float = 0.0
    """With kind policy: weight of a pull of the policy towards the stored (planned) actions in its
    loss, TD3+BC's form (0.4 is its alpha 2.5): keeps the critics queried where they were trained,
    against the over-estimation of a policy that leaves the planner's actions. 0: off."""
    policy_noise: float = 0.1
    """With kind policy and planner.proposals: std of the noise on the policy's actions in all its
    proposed sequences but the first."""


@dataclass
class VideoConfig:
    """VideoWorldModel (``model.kind`` video, image observations): frame autoencoder + a diffusion transformer
    over spacetime patches of its latent grid, conditioned on diffusion time and actions (docs/video.md)."""

    latent_channels: int = 8
    """Channels C of the autoencoder's latent grid (64x64 frames -> 8x8xC)."""
    autoencoder_depth: int = 32
    """Channels of the autoencoder's first conv (then 2d, 2d)."""
    foreground_weight: float = 20.0
    """Extra weight of the pixels that differ from the batch's per-pixel median frame (moving objects: the ball,
    the basket) in the autoencoder's squared error; small objects otherwise vanish from reconstructions. 0: off."""
    patch_size: int = 2
    """Side p of the spatial patches of the latent grid (one token per p x p cells of one frame)."""
    width: int = 128
    """Transformer width D."""
    depth: int = 4
    """Transformer blocks (full space-time self-attention + MLP, both modulated by adaptive layer norm)."""
    heads: int = 4
    """Attention heads (divides width)."""
    context_frames: int = 4
    """Clean context frames k the transformer sees before the frame it denoises; the observation must stack
    exactly k frames (frame_stack: k)."""
    sampling_steps: int = 3
    """Euler steps of the flow from noise to a frame, per generated frame (at most 4)."""
    learning_rate: float = 3e-4
    """Adam learning rate (autoencoder, transformer and heads)."""
    sparse_reward_weight: float = 0.0
    """Extra weight of steps with a non-zero reward in the reward loss (each counts 1 + this). 0: off."""
    termination_weight: float = 0.0
    """Extra weight of terminal steps in the continuation loss (each counts 1 + this). 0: off."""
    sequence_length: int = 4
    """Training windows of T steps: T next frames are predicted per window, each from its k predecessors."""
