"""Configuration: one dataclass per component, YAML presets per environment, CLI overrides.

A preset (``agent/presets/<env id>.yaml``) holds any subset of the fields below, nested by section
(:data:`SECTIONS`). ``resolve_config`` merges defaults <- preset <- overrides and rejects unknown keys with a
message naming the valid ones. Keys of earlier versions are read through :data:`RENAMED`. The world models'
sections are defined in ``world_models/config.py``, the sampling planners' in ``planners/sampling.py``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from agent.config_values import coerce, field_types
from agent.preset_files import ConfigError, load_preset, safe_name
from language_models.client import RESPONSE_FORMATS
from language_models.config import LLMConfig, validate_llm
from planners import PLANNER_NAMES, SamplingConfig
from world_models.config import LatentConfig, RoboticsConfig, ValueConfig, VideoConfig
from world_models.robotics import CONTINUATION_SOURCES, COST_HEADS, IMAGINATION_DTYPES

MODEL_KINDS = ("auto", "robotics", "latent", "video")
LATENT_OBJECTIVES = ("jepa", "reconstruction")
VALUE_KINDS = ("state", "policy")


@dataclass
class ModelConfig:
    """Which world model: its settings are the ``robotics``, ``latent`` or ``video`` section."""

    kind: str = "auto"
    """auto (latent for image observations, else robotics), robotics (RoboticsWorldModel, an MLP ensemble on
    states), latent (LatentWorldModel, conv encoder + latent dynamics) or video (VideoWorldModel, docs/video.md)."""


@dataclass
class PlannerConfig:
    """Model-predictive control: which optimiser, what it imagines and scores; how hard it searches is
    the ``sampling`` section (the planners' own SamplingConfig)."""

    name: str = "cem"
    """One of cem, mppi, random."""
    horizon: int = 15
    """Planning horizon H (imagined steps)."""
    eval_num_candidates: int = 0
    """Candidates per iteration when the agent acts without exploring: evaluations, ``evaluate()`` and
    ``predict()``; the training loop's plans keep ``sampling.num_candidates``. 0: ``sampling.num_candidates``.
    A wider search at evaluation only (benchmarks/results/HalfCheetah-v5/budget_screen)."""
    eval_iterations: int = 0
    """Sample-score-refit rounds per plan when the agent acts without exploring (as ``eval_num_candidates``).
    0: ``sampling.iterations``. Those plans start from the previous plan shifted by one step, so fewer rounds
    can do (benchmarks/results/time_to_result)."""
    particles: int = 5
    """Particles P per candidate; a multiple of the robotics model's ensemble size."""
    discount: float = 0.99
    """Discount of imagined rewards."""
    cost_weight: float = 0.0
    """Penalty per unit of predicted unsafe probability."""
    cost_limit: float | None = None
    """Safety budget: the cost the agent may incur per 1,000 environment steps (Safety-Gymnasium's definition,
    scaled to the episode's length), from the environment's ``info["cost"]``. Candidate plans whose predicted
    cost (the most pessimistic particle's) fits the plan's share of it are ranked by return ahead of the others;
    a Lagrange multiplier learned from the real episodes' costs adds to cost_weight and tightens the share
    (docs/safety.md). null: unconstrained."""
    cost_multiplier_lr: float = 0.5
    """Step of the cost limit's Lagrange multiplier per training episode, per unit of relative overspending
    (episode cost per 1,000 steps minus cost_target x cost_limit, over max(cost_limit, 1)). 0: the multiplier
    stays 0."""
    cost_multiplier_min: float = 0.0
    """Floor of the multiplier (<= 0). 0: it only tightens the plan's share of the budget. Below 0 it also
    loosens it while the real episodes cost less than cost_target x cost_limit, up to exp(-cost_multiplier_min)
    times the share: a cautious cost head then stops holding the agent far under the limit (docs/safety.md)."""
    cost_target: float = 1.0
    """The training episodes' cost, as a fraction of cost_limit in (0, 1], that the multiplier steers towards;
    below 1 it leaves evaluations a margin under the limit."""
    pessimism: float = 0.0
    """Subtract this many standard deviations of the particles' returns (ensemble disagreement)."""
    proposals: int = 0
    """Sequences a proposer adds to each plan's candidates, scored with the planner's own: the agent's
    ``proposer``, else the learned policy's plans (value.kind policy; the first without noise, the rest
    with noise value.policy_noise on every action). 0: none."""


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
    """Record each evaluation's first episode as ``videos/eval-<step>.gif`` (the env must render ``rgb_array``;
    a rendered frame per step)."""
    loop_threads: int = 0
    """torch threads for the training loop's plans and gradient steps (evaluations use all where a core is spare);
    0: one for vector observations (waking a thread per small operation costs more than it gives), all for images."""
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
    robotics: RoboticsConfig = field(default_factory=RoboticsConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    value: ValueConfig = field(default_factory=ValueConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)


SECTIONS: dict[str, type] = {
    "model": ModelConfig, "robotics": RoboticsConfig, "latent": LatentConfig, "video": VideoConfig,
    "value": ValueConfig, "planner": PlannerConfig, "sampling": SamplingConfig, "train": TrainConfig, "llm": LLMConfig,
}
"""Section name -> its dataclass (a preset's top-level keys, the CLI's ``--<section>-<field>`` flags)."""

_BOTH_MODELS = ("hidden_dim", "learning_rate", "sparse_reward_weight", "termination_weight")
RENAMED: dict[str, tuple[str, ...]] = {
    **{f"model.{name}": (f"robotics.{name}",) for name in (
        "ensemble_size", "num_layers", "weight_decay", "continuation_from", "imagination_dtype")},
    **{f"model.{name}": (f"robotics.{name}", f"latent.{name}") for name in _BOTH_MODELS},
    **{f"model.{name}": (f"latent.{name}",) for name in (
        "latent_dim", "depth", "objective", "sequence_length", "windows_across_episodes")},
    "model.value_function": ("value.function",),
    "model.value_tau": ("value.tau",),
    "model.value_window": ("value.window",),
    "model.value_kind": ("value.kind",),
    "model.policy_imitation": ("value.policy_imitation",),
    "planner.policy_proposals": ("planner.proposals",),
    "planner.policy_noise": ("value.policy_noise",),
    **{f"planner.{f.name}": (f"sampling.{f.name}",) for f in dataclasses.fields(SamplingConfig)},
}
"""Keys of earlier versions (presets, saved config.yaml files, checkpoints, CLI flags) -> the keys that hold
their values now. A key shared by both world models (``model.hidden_dim``) sets it for both."""


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(config)


def apply_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """Return a new Config with ``{"section.key" or "key": value}`` applied (nested dicts too); keys of
    earlier versions are applied where they are now (:data:`RENAMED`)."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in SECTIONS and isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    data = config_to_dict(config)
    for old_key, value in flat.items():
        for key in RENAMED.get(old_key, (old_key,)):
            section, _, name = key.rpartition(".")
            cls = SECTIONS.get(section) if section else Config
            if cls is None:
                raise ConfigError(f"unknown config section {section!r} in {key!r}; valid: {sorted(SECTIONS)}")
            types = field_types(cls)
            if name not in types or (not section and name in SECTIONS):
                raise ConfigError(f"unknown config key {key!r}; valid keys: {sorted(types)}")
            target = data[section] if section else data
            target[name] = coerce(value, types[name], old_key)
    return config_from_dict(data)


def upgrade_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    """A nested config dict with the keys of earlier versions moved where they are now (:data:`RENAMED`);
    where a dict holds both, the current key wins."""
    out = {k: dict(v) if k in SECTIONS and isinstance(v, Mapping) else v for k, v in data.items()}
    moved: dict[str, dict[str, Any]] = {}
    for old_key, new_keys in RENAMED.items():
        section, _, name = old_key.partition(".")
        if isinstance(out.get(section), dict) and name in out[section]:
            value = out[section].pop(name)
            for key in new_keys:
                new_section, _, new_name = key.partition(".")
                moved.setdefault(new_section, {})[new_name] = value
    for section, values in moved.items():
        out[section] = {**values, **out.get(section, {})}
    return out


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Inverse of :func:`config_to_dict`; reads the layout of earlier versions too (:func:`upgrade_dict`)."""
    data = upgrade_dict(data)
    top = {k: v for k, v in data.items() if k not in SECTIONS}
    sections = {}
    for name, cls in SECTIONS.items():
        try:
            sections[name] = cls(**data.get(name, {}))
        except ValueError as exc:  # SamplingConfig checks its values
            raise ConfigError(f"{name} settings: {exc}") from None
        except TypeError as exc:
            valid = sorted(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"unknown key in section {name!r} ({exc}); valid keys: {valid}") from None
    return Config(**top, **sections)


def default_run_dir(env_id: str, seed: int) -> Path:
    """``runs/<env>-seed<seed>``: re-running the same command resumes the same run."""
    return Path("runs") / f"{safe_name(env_id)}-seed{seed}"


def resolve_config(env_id: str, overrides: Mapping[str, Any] | None = None, preset: str | None = None) -> Config:
    """Defaults <- preset (``preset`` or the one for ``env_id``) <- overrides."""
    config = apply_overrides(Config(env_id=env_id), load_preset(env_id, preset))
    config = apply_overrides(config, {"env_id": env_id})
    return apply_overrides(config, overrides or {})


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA device is available; use --device cpu")
    return torch.device(name)


def model_kind(config: Config, image_obs: bool) -> str:
    """The world model to build: ``model.kind``, with ``auto`` resolved by the observations."""
    if config.model.kind == "auto":
        return "latent" if image_obs else "robotics"
    return config.model.kind


def validate(config: Config, kind: str | None = None, proposer: bool = False) -> None:
    """Cross-field checks with messages that say how to fix them.

    ``kind``: the resolved model kind (see :func:`model_kind`); ``None`` uses ``model.kind``,
    and an unresolved ``auto`` is checked like ``robotics``. ``proposer``: the agent has a proposer of
    its own (``planner.proposals`` then needs no learned policy); a language model (``llm.base_url``) is one.
    """
    if config.model.kind not in MODEL_KINDS:
        raise ConfigError(f"model.kind must be one of {', '.join(MODEL_KINDS)}, got {config.model.kind!r}")
    _validate_robotics(config.robotics)
    _validate_latent(config.latent)
    _validate_value(config.value)
    if config.frame_stack < 1:
        raise ConfigError(f"frame_stack must be >= 1 (1: no stacking), got {config.frame_stack}")
    kind = kind or config.model.kind
    if kind not in ("latent", "video") and config.planner.particles % config.robotics.ensemble_size:
        raise ConfigError(
            f"planner.particles ({config.planner.particles}) must be a multiple of "
            f"robotics.ensemble_size ({config.robotics.ensemble_size}) for the robotics ensemble "
            "(the latent and video models take any number)"
        )
    _validate_planner(config.planner, config.sampling)
    _validate_train(config.train)
    _validate_llm(config.llm)
    _validate_value_use(config, proposer or bool(config.llm.base_url))
    if config.device not in ("auto", "cpu", "cuda") and not config.device.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {config.device!r}")


def _validate_value_use(config: Config, proposer: bool) -> None:
    """The value and policy settings against each other and the planner's."""
    v = config.value
    if v.function and config.planner.discount >= 1.0:  # [0, 1] is checked with the planner
        raise ConfigError(
            f"planner.discount must be in [0, 1) when value.function is on, got {config.planner.discount}"
        )
    if v.kind == "policy" and not v.function:
        raise ConfigError("value.kind policy needs value.function: true")
    if v.policy_imitation and v.kind != "policy":
        raise ConfigError(
            f"value.policy_imitation ({v.policy_imitation}) trains the learned policy: set "
            "value.kind: policy (with value.function: true), or value.policy_imitation: 0"
        )
    if config.planner.proposals and v.kind != "policy" and not proposer:
        raise ConfigError(
            f"planner.proposals ({config.planner.proposals}) needs a learned policy: "
            "set value.kind: policy (with value.function: true), give the agent a proposer, or planner.proposals: 0"
        )


def search_width(p: PlannerConfig, s: SamplingConfig, acting: bool = False) -> int:
    """Candidates per iteration: the training loop's ``sampling.num_candidates``, or, when ``acting``
    (evaluations, ``evaluate``, ``predict``), ``planner.eval_num_candidates`` where set."""
    return p.eval_num_candidates if acting and p.eval_num_candidates else s.num_candidates


def sampling_config(config: Config, acting: bool = False) -> SamplingConfig:
    """The sampling planner's settings (``ValueError`` for values it cannot run with); ``acting``: for acting
    without exploration (:func:`search_width`, and ``planner.eval_iterations`` where set)."""
    p, s = config.planner, config.sampling
    iterations = p.eval_iterations if acting and p.eval_iterations else s.iterations
    return dataclasses.replace(s, num_candidates=search_width(p, s, acting), iterations=iterations)


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


def _one_of(section: str, holder: object, name: str, valid: Iterable[str]) -> None:
    """``ConfigError`` when the string field ``name`` of ``holder`` is none of ``valid``."""
    value, valid = getattr(holder, name), tuple(valid)
    if value not in valid:
        raise ConfigError(f"{section}.{name} must be one of {', '.join(valid)}, got {value!r}")


def _validate_llm(c: LLMConfig) -> None:
    problem = validate_llm(c)  # roles and the server's address (language_models/config.py)
    if problem is not None:
        raise ConfigError(problem)
    _at_least("llm", c, ("num_proposals", "max_tokens"), 1)
    _at_least("llm", c, ("every",), 0)
    _at_least("llm", c, ("threads",), 0, " (0: OMP_NUM_THREADS, else llama-cpp-python's defaults)")
    if not 0.0 <= c.explore <= 1.0:  # NaN fails too
        raise ConfigError(f"llm.explore must be a probability in [0, 1] (0: off), got {c.explore}")
    for name in ("timeout_s", "startup_timeout_s"):
        if not getattr(c, name) > 0:
            raise ConfigError(f"llm.{name} must be > 0 seconds, got {getattr(c, name)}")
    _finite_at_least_zero("llm", c, ("wait_s", "judge_weight", "temperature"))
    _one_of("llm", c, "response_format", ("auto", *RESPONSE_FORMATS))


def _validate_train(t: TrainConfig) -> None:
    _at_least("train", t, ("total_timesteps", "learning_starts", "gradient_steps", "initial_gradient_steps"), 0)
    _at_least("train", t, ("eval_freq", "loop_threads"), 0, " (eval_freq 0: no evaluation; loop_threads 0: auto)")
    _at_least("train", t, ("train_freq", "batch_size", "buffer_capacity", "normalizer_update_freq",
                           "eval_episodes", "log_interval", "checkpoint_freq"), 1)
    _finite_at_least_zero("train", t, ("exploration_noise",), " (0: act as planned)")


def _validate_planner(p: PlannerConfig, s: SamplingConfig) -> None:
    _one_of("planner", p, "name", PLANNER_NAMES)
    _at_least("planner", p, ("horizon", "particles"), 1)
    _at_least("planner", p, ("proposals",), 0, " (0: none)")
    _at_least("planner", p, ("eval_num_candidates", "eval_iterations"), 0, " (0: the sampling section's)")
    _finite_at_least_zero("planner", p, ("cost_weight", "pessimism"), " (0: off)")
    _finite_at_least_zero("planner", p, ("cost_multiplier_lr",), " (0: a fixed multiplier of 0)")
    if not (math.isfinite(p.cost_multiplier_min) and p.cost_multiplier_min <= 0):
        raise ConfigError(
            f"planner.cost_multiplier_min must be a finite number <= 0 (0: the multiplier only tightens the "
            f"budget; e.g. -2.3: it may loosen it up to 10x), got {p.cost_multiplier_min}"
        )
    if not (math.isfinite(p.cost_target) and 0 < p.cost_target <= 1):
        raise ConfigError(
            f"planner.cost_target must be in (0, 1] (the share of cost_limit training episodes aim at), "
            f"got {p.cost_target}"
        )
    if p.cost_limit is not None and not (math.isfinite(p.cost_limit) and p.cost_limit >= 0):
        raise ConfigError(
            f"planner.cost_limit must be a finite number >= 0 (the cost allowed per 1,000 environment steps), "
            f"or null for no constraint; got {p.cost_limit}"
        )
    if not 0.0 <= p.discount <= 1.0:
        raise ConfigError(f"planner.discount must be in [0, 1], got {p.discount}")
    try:
        dataclasses.replace(s, num_candidates=search_width(p, s, acting=True))
    except ValueError as exc:
        raise ConfigError(f"sampling settings when acting (planner.eval_num_candidates): {exc}") from None


def _learning_rate(section: str, holder: RoboticsConfig | LatentConfig) -> None:
    if not (math.isfinite(holder.learning_rate) and holder.learning_rate > 0):
        raise ConfigError(f"{section}.learning_rate must be a finite number > 0, got {holder.learning_rate}")


def _validate_robotics(m: RoboticsConfig) -> None:
    _finite_at_least_zero("robotics", m, ("sparse_reward_weight", "termination_weight", "costly_weight"), " (0: off)")
    _finite_at_least_zero("robotics", m, ("weight_decay",))
    _learning_rate("robotics", m)
    _one_of("robotics", m, "continuation_from", CONTINUATION_SOURCES)
    _one_of("robotics", m, "cost_head", COST_HEADS)
    _one_of("robotics", m, "imagination_dtype", IMAGINATION_DTYPES)
    _at_least("robotics", m, ("hidden_dim", "ensemble_size", "num_layers"), 1)


def _validate_latent(m: LatentConfig) -> None:
    _one_of("latent", m, "objective", LATENT_OBJECTIVES)
    _finite_at_least_zero("latent", m, ("sparse_reward_weight", "termination_weight"), " (0: off)")
    _learning_rate("latent", m)
    _at_least("latent", m, ("latent_dim", "depth", "sequence_length", "hidden_dim"), 1)


def _validate_value(v: ValueConfig) -> None:
    _one_of("value", v, "kind", VALUE_KINDS)
    _finite_at_least_zero("value", v, ("policy_imitation",), " (0: off)")
    _finite_at_least_zero("value", v, ("policy_noise",))
    if not 0.0 < v.tau <= 1.0:
        raise ConfigError(f"value.tau must be in (0, 1] (1: the target copies the network), got {v.tau}")
    _at_least("value", v, ("window",), 0, " (0: all stored transitions)")
    _at_least("value", v, ("batch_size",), 0, " (0: the world model's minibatches)")
