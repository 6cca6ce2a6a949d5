"""Configuration: one dataclass per component, YAML presets per environment, CLI overrides.

A preset (``agent/presets/<env id>.yaml``) holds any subset of the fields below,
nested by section. ``resolve_config`` merges defaults <- preset <- overrides and
rejects unknown keys with a message naming the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from planners import PLANNER_NAMES, SamplingConfig
from world_models.robotics import CONTINUATION_SOURCES, IMAGINATION_DTYPES

PRESET_DIR = Path(__file__).parent / "presets"


MODEL_KINDS = ("auto", "robotics", "latent")
LATENT_OBJECTIVES = ("jepa", "reconstruction")
VALUE_KINDS = ("state", "policy")


@dataclass
class ModelConfig:
    """The world model: RoboticsWorldModel (ensemble of probabilistic MLPs on states) or
    LatentWorldModel (conv encoder + latent dynamics on pixels)."""

    kind: str = "auto"
    """auto (latent for image observations, else robotics), robotics or latent."""
    ensemble_size: int = 5
    """Number of ensemble members E."""
    hidden_dim: int = 200
    """Width of each hidden layer."""
    num_layers: int = 4
    """Number of hidden layers."""
    learning_rate: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-5
    """AdamW weight decay."""
    value_function: bool = False
    """Learn a terminal value V(z) by TD(0) on stored transitions; the planner adds it after H steps."""
    value_tau: float = 0.02
    """EMA rate of the value function's target network."""
    value_window: int = 0
    """Train the value on the most recent N transitions only (0: all stored): the current planner's
    behaviour rather than the random warm-up's."""
    value_kind: str = "state"
    """Robotics model, with value_function: ``state``, V(z) by TD(0) on stored transitions (the value
    of the behaviour that filled the buffer); or ``policy``, a learned deterministic policy pi(z) and
    twin Q(z, a) trained off-policy (TD3's clipped double Q and target smoothing), the terminal
    value then being min Q(z_H, pi(z_H)): the value of acting by the learned policy after the horizon."""
    policy_imitation: float = 0.0
    """With value_kind policy: weight of a pull of the policy towards the stored (planned) actions in its
    loss, TD3+BC's form (0.4 is its alpha 2.5): keeps the critics queried where they were trained, against
    the over-estimation of a policy that leaves the planner's actions. 0: off."""
    sparse_reward_weight: float = 0.0
    """Extra weight of transitions with a non-zero reward in the reward loss (each counts 1 + this):
    for sparse rewards, which a model otherwise learns to predict as zero everywhere. 0: off."""
    termination_weight: float = 0.0
    """Extra weight of terminal transitions in the continuation loss (each counts 1 + this), so the
    model marks sharply where episodes end. 0: off."""
    continuation_from: str = "transition"
    """Robotics model: where the continuation (the episode goes on) is read from. ``transition``: an
    output of the dynamics network, from (z, a). ``next_state``: a small network of its own on the
    next state, applied to every imagined state; for tasks that end when the state leaves a healthy
    range (Hopper, Walker2d), whose end the dynamics network blurs."""
    imagination_dtype: str = "float32"
    """Robotics model: dtype of the dynamics network's hidden-to-hidden products while planning,
    ``float32`` or ``bfloat16``, about 3 significant digits in those layers; the input and output
    layers, the latents and all training stay float32. Measured on a 2-core AVX512-BF16 CPU
    (benchmarks/results/imagination_dtype.md): the PETS plan 1.36x and a HalfCheetah preset plan
    1.22x faster, batched evaluation plans slower (19.5 against 17.0 ms an action); one HalfCheetah
    seed returned 4,130 at 50k against 4,610 to 5,502 in float32. Without native bf16 it is emulated
    and slower. Off (float32) in every preset."""
    latent_dim: int = 64
    """Latent model: latent size Z."""
    depth: int = 16
    """Latent model: channels of the first conv (then 2d, 4d, 8d)."""
    objective: str = "jepa"
    """Latent model: jepa (EMA-target embedding prediction) or reconstruction (pixel decoder)."""
    sequence_length: int = 8
    """Latent model: length T of the training windows (open-loop rollout steps)."""
    windows_across_episodes: bool = False
    """Latent model: start training windows at any stored step, leaving the steps after an
    episode's end out of the losses. false: only windows inside one episode, so episodes shorter
    than sequence_length never reach the model and each episode's last steps are drawn rarely."""


@dataclass
class PlannerConfig:
    """Model-predictive control: which optimiser and how hard it searches."""

    name: str = "cem"
    """One of cem, mppi, random."""
    horizon: int = 15
    """Planning horizon H (imagined steps)."""
    num_candidates: int = 256
    """Candidate sequences N sampled per iteration."""
    eval_num_candidates: int = 0
    """Candidates per iteration when the agent acts without exploring: evaluations, ``evaluate()`` and
    ``predict()``; the training loop's plans keep ``num_candidates``. 0: ``num_candidates``. A wider
    search at evaluation only: on a HalfCheetah-v5 agent trained with 64 candidates (50k steps), 96
    returned 4,948 against 4,400 on the same 10 episodes (benchmarks/results/HalfCheetah-v5/budget_screen)."""
    iterations: int = 4
    """Optimiser iterations per action."""
    num_elites: int = 32
    """CEM elites / MPPI top-k."""
    particles: int = 5
    """Particles P per candidate; a multiple of the ensemble size."""
    init_std: float = 0.5
    """Initial sampling std of actions in [-1, 1]."""
    min_std: float = 0.05
    """Lower bound on the sampling std."""
    momentum: float = 0.1
    """Weight of the previous mean/std in each update."""
    temperature: float = 0.5
    """MPPI softmax temperature."""
    discount: float = 0.99
    """Discount of imagined rewards."""
    cost_weight: float = 0.0
    """Penalty per unit of predicted unsafe probability."""
    pessimism: float = 0.0
    """Subtract this many standard deviations of the particles' returns (ensemble disagreement)."""
    policy_proposals: int = 0
    """With model.value_kind policy: sequences proposed by rolling the learned policy through the model
    (the first without noise, the rest with noise policy_noise on every action), scored with the
    planner's own candidates. 0: none."""
    policy_noise: float = 0.1
    """Std of the noise on the policy's actions in all proposals but the first."""


@dataclass
class TrainConfig:
    """The agent loop: warm-up, model training, evaluation, logging, checkpoints."""

    total_timesteps: int = 3000
    """Environment steps to train for (random warm-up included)."""
    learning_starts: int = 500
    """Random-action warm-up steps before planning starts."""
    train_freq: int = 1
    """Train the world model every this many environment steps."""
    gradient_steps: int = 1
    """Gradient steps per training call."""
    initial_gradient_steps: int = 500
    """Extra gradient steps once, when warm-up ends."""
    batch_size: int = 256
    """Minibatch size per ensemble member."""
    buffer_capacity: int = 1_000_000
    """Replay capacity in transitions (memory is reserved lazily)."""
    normalizer_update_freq: int = 1000
    """Refit input/target normalisers from the whole buffer every this many steps."""
    exploration_noise: float = 0.1
    """Std of Gaussian noise added to planned actions while training."""
    eval_freq: int = 1000
    """Evaluate every this many environment steps (0 disables)."""
    eval_episodes: int = 10
    """Deterministic episodes per evaluation."""
    eval_lockstep: bool = True
    """Play the evaluation episodes side by side (one env each, one batched plan per step); false: one by one."""
    eval_video: bool = False
    """Record each evaluation's first episode as ``videos/eval-<step>.gif`` (the env must render ``rgb_array``).
    Costs a rendered frame per step: MuJoCo renders in software here at about 4 frames/s at its default size."""
    log_interval: int = 1000
    """Write progress.csv / TensorBoard every this many steps."""
    checkpoint_freq: int = 1000
    """Checkpoint at the first episode end after every this many steps."""


@dataclass
class Config:
    """Everything a run needs; saved resolved as config.yaml in the run directory."""

    env_id: str = "InvertedPendulum-v5"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    pixels: bool = False
    """Observe rendered 64x64 RGB frames instead of the env's own observation (envs that render)."""
    frame_stack: int = 1
    """Stack the last k frames along the channel axis (image observations only)."""
    seed: int = 0
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS: dict[str, type] = {"model": ModelConfig, "planner": PlannerConfig, "train": TrainConfig}


class ConfigError(ValueError):
    """A preset or override names an unknown key or has a value of the wrong type."""


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(config)


def _coerce(value: Any, kind: type, key: str) -> Any:
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
    elif kind is int and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if number.is_integer():
            return int(number)
    elif kind is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif kind is str:
        return str(value)
    elif kind is dict and isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")


def _field_types(cls: type) -> dict[str, type]:
    hints = {"int": int, "float": float, "str": str, "bool": bool}
    out: dict[str, type] = {}
    for f in dataclasses.fields(cls):
        name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        out[f.name] = hints.get(name, dict if name.startswith("dict") else object)
    return out


def apply_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """Return a new Config with ``{"section.key" or "key": value}`` applied (nested dicts too)."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in SECTIONS and isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    data = config_to_dict(config)
    for key, value in flat.items():
        section, _, name = key.rpartition(".")
        cls = SECTIONS.get(section) if section else Config
        if cls is None:
            raise ConfigError(f"unknown config section {section!r} in {key!r}; valid: {sorted(SECTIONS)}")
        types = _field_types(cls)
        if name not in types or (not section and name in SECTIONS):
            raise ConfigError(f"unknown config key {key!r}; valid keys: {sorted(types)}")
        target = data[section] if section else data
        target[name] = _coerce(value, types[name], key)
    return config_from_dict(data)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Inverse of :func:`config_to_dict`."""
    top = {k: v for k, v in data.items() if k not in SECTIONS}
    sections = {name: cls(**data.get(name, {})) for name, cls in SECTIONS.items()}
    return Config(**top, **sections)


def safe_name(env_id: str) -> str:
    """``env_id`` usable as a file name (``/`` and ``:`` replaced by ``_``)."""
    return env_id.replace("/", "_").replace(":", "_")


def default_run_dir(env_id: str, seed: int) -> Path:
    """``runs/<env>-seed<seed>``: re-running the same command resumes the same run."""
    return Path("runs") / f"{safe_name(env_id)}-seed{seed}"


def preset_path(env_id: str) -> Path:
    """Where the preset for ``env_id`` lives (``/`` and ``:`` replaced by ``_``)."""
    return PRESET_DIR / f"{safe_name(env_id)}.yaml"


def load_preset(env_id: str, preset: str | None = None) -> dict[str, Any]:
    """A preset by name (``debug``) or path, else the one for ``env_id``, else ``default``."""
    if preset is not None:
        path = Path(preset) if preset.endswith((".yaml", ".yml")) else PRESET_DIR / f"{preset}.yaml"
        if not path.exists():
            names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
            raise ConfigError(f"no preset {preset!r}; give a YAML path or one of {names}")
    else:
        path = preset_path(env_id)
        if not path.exists():
            path = PRESET_DIR / "default.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path} must be a mapping of sections to values")
    return data


def resolve_config(env_id: str, overrides: Mapping[str, Any] | None = None, preset: str | None = None) -> Config:
    """Defaults <- preset (``preset`` or the one for ``env_id``) <- overrides."""
    config = apply_overrides(Config(env_id=env_id), load_preset(env_id, preset))
    config = apply_overrides(config, {"env_id": env_id})
    return apply_overrides(config, overrides or {})


def model_kind(config: Config, image_obs: bool) -> str:
    """The world model to build: ``model.kind``, with ``auto`` resolved by the observations."""
    if config.model.kind == "auto":
        return "latent" if image_obs else "robotics"
    return config.model.kind


def validate(config: Config, kind: str | None = None) -> None:
    """Cross-field checks with messages that say how to fix them.

    ``kind``: the resolved model kind (see :func:`model_kind`); ``None`` uses ``model.kind``,
    and an unresolved ``auto`` is checked like ``robotics``.
    """
    _validate_model(config.model)
    if config.frame_stack < 1:
        raise ConfigError(f"frame_stack must be >= 1 (1: no stacking), got {config.frame_stack}")
    kind = kind or config.model.kind
    if kind != "latent" and config.planner.particles % config.model.ensemble_size:
        raise ConfigError(
            f"planner.particles ({config.planner.particles}) must be a multiple of "
            f"model.ensemble_size ({config.model.ensemble_size}) for the robotics ensemble "
            "(the latent model, model.kind latent, is deterministic and takes any number)"
        )
    _validate_planner(config.planner)
    _validate_train(config.train)
    if config.model.value_function and config.planner.discount >= 1.0:  # [0, 1] is checked with the planner
        raise ConfigError(
            f"planner.discount must be in [0, 1) when model.value_function is on, got {config.planner.discount}"
        )
    if config.model.value_kind == "policy" and not config.model.value_function:
        raise ConfigError("model.value_kind policy needs model.value_function: true")
    if config.model.policy_imitation and config.model.value_kind != "policy":
        raise ConfigError(
            f"model.policy_imitation ({config.model.policy_imitation}) trains the learned policy: set "
            "model.value_kind: policy (with model.value_function: true), or model.policy_imitation: 0"
        )
    if config.planner.policy_proposals and config.model.value_kind != "policy":
        raise ConfigError(
            f"planner.policy_proposals ({config.planner.policy_proposals}) needs a learned policy: "
            "set model.value_kind: policy (with model.value_function: true), or planner.policy_proposals: 0"
        )
    if config.device not in ("auto", "cpu", "cuda") and not config.device.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {config.device!r}")


def search_width(p: PlannerConfig, acting: bool = False) -> int:
    """Candidates per iteration: the training loop's ``num_candidates``, or, when ``acting`` (evaluations,
    ``evaluate``, ``predict``), ``eval_num_candidates`` where set."""
    return p.eval_num_candidates if acting and p.eval_num_candidates else p.num_candidates


def sampling_config(p: PlannerConfig, acting: bool = False) -> SamplingConfig:
    """The sampling planner's settings out of ``p`` (``ValueError`` for values it cannot run with);
    ``acting``: for acting without exploration (:func:`search_width`)."""
    return SamplingConfig(
        num_candidates=search_width(p, acting), iterations=p.iterations, num_elites=p.num_elites,
        init_std=p.init_std, min_std=p.min_std, momentum=p.momentum, temperature=p.temperature,
    )


def _at_least(section: str, holder: object, names: tuple[str, ...], low: int, meaning: str = "") -> None:
    """``ConfigError`` naming the first of ``names`` (integer fields of ``holder``) below ``low``."""
    for name in names:
        value = getattr(holder, name)
        if value < low:
            raise ConfigError(f"{section}.{name} must be >= {low}{meaning}, got {value}")


def _finite_at_least_zero(section: str, holder: object, names: tuple[str, ...], meaning: str = "") -> None:
    """``ConfigError`` naming the first of ``names`` (float fields of ``holder``) not a finite number >= 0."""
    for name in names:
        value = getattr(holder, name)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{section}.{name} must be a finite number >= 0{meaning}, got {value}")


def _validate_train(t: TrainConfig) -> None:
    _at_least("train", t, ("total_timesteps", "learning_starts", "gradient_steps", "initial_gradient_steps"), 0)
    _at_least("train", t, ("eval_freq",), 0, " (0: no evaluation)")
    _at_least("train", t, ("train_freq", "batch_size", "buffer_capacity", "normalizer_update_freq",
                           "eval_episodes", "log_interval", "checkpoint_freq"), 1)
    _finite_at_least_zero("train", t, ("exploration_noise",), " (0: act as planned)")


def _validate_planner(p: PlannerConfig) -> None:
    if p.name not in PLANNER_NAMES:
        raise ConfigError(f"planner.name must be one of {', '.join(PLANNER_NAMES)}, got {p.name!r}")
    _at_least("planner", p, ("horizon", "particles"), 1)
    _at_least("planner", p, ("policy_proposals",), 0, " (0: none)")
    _at_least("planner", p, ("eval_num_candidates",), 0, " (0: num_candidates)")
    _finite_at_least_zero("planner", p, ("cost_weight", "pessimism"), " (0: off)")
    _finite_at_least_zero("planner", p, ("policy_noise",))
    if not 0.0 <= p.discount <= 1.0:
        raise ConfigError(f"planner.discount must be in [0, 1], got {p.discount}")
    for acting, which in ((False, ""), (True, " when acting (eval_num_candidates)")):
        try:
            sampling_config(p, acting)
        except ValueError as exc:
            raise ConfigError(f"planner settings{which}: {exc}") from None


def _validate_model(m: ModelConfig) -> None:
    if m.kind not in MODEL_KINDS:
        raise ConfigError(f"model.kind must be one of {', '.join(MODEL_KINDS)}, got {m.kind!r}")
    if m.objective not in LATENT_OBJECTIVES:
        raise ConfigError(f"model.objective must be one of {', '.join(LATENT_OBJECTIVES)}, got {m.objective!r}")
    _finite_at_least_zero("model", m, ("sparse_reward_weight", "termination_weight", "policy_imitation"), " (0: off)")
    _finite_at_least_zero("model", m, ("weight_decay",))
    if not (math.isfinite(m.learning_rate) and m.learning_rate > 0):
        raise ConfigError(f"model.learning_rate must be a finite number > 0, got {m.learning_rate}")
    if not 0.0 < m.value_tau <= 1.0:
        raise ConfigError(f"model.value_tau must be in (0, 1] (1: the target copies the network), got {m.value_tau}")
    if m.value_kind not in VALUE_KINDS:
        raise ConfigError(f"model.value_kind must be one of {', '.join(VALUE_KINDS)}, got {m.value_kind!r}")
    if m.continuation_from not in CONTINUATION_SOURCES:
        raise ConfigError(
            f"model.continuation_from must be one of {', '.join(CONTINUATION_SOURCES)}, got {m.continuation_from!r}"
        )
    if m.imagination_dtype not in IMAGINATION_DTYPES:
        raise ConfigError(
            f"model.imagination_dtype must be one of {', '.join(IMAGINATION_DTYPES)}, got {m.imagination_dtype!r}"
        )
    _at_least("model", m, ("value_window",), 0, " (0: all stored transitions)")
    _at_least("model", m, ("latent_dim", "depth", "sequence_length", "hidden_dim", "ensemble_size", "num_layers"), 1)
