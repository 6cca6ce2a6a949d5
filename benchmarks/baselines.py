"""Model-free baselines (SB3 SAC, TD3, PPO) trained and evaluated exactly as Rehearse is.

Each baseline trains on an environment built by :func:`envs.make_env` (the same
construction Rehearse uses: action rescaling to [-1, 1], cost info, finite checks), with
rl-baselines3-zoo's hyperparameters from ``zoo_hyperparams.yaml``, and is evaluated by
:func:`agent.evaluation.evaluate` on a separate environment: every ``eval_freq`` steps,
``eval_episodes`` deterministic episodes with the same seeds Rehearse's evaluations use.

The run directory holds what ``train_agent.py`` writes: ``config.yaml``,
``monitor.csv`` (SB3's Monitor), ``progress.csv`` and TensorBoard events (SB3's logger)
and ``evaluations.npz`` (SB3's layout plus costs and wall-clock).
"""

from __future__ import annotations

import copy
import resource
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from agent.atomic import RunDirLock
from agent.evaluation import evaluate
from agent.logger import append_evaluation, clear_outputs
from envs import make_env

__all__ = ["ALGOS", "HYPERPARAMS_FILE", "hyperparams_for", "train_baseline"]

ALGOS: dict[str, type[BaseAlgorithm]] = {"sac": SAC, "td3": TD3, "ppo": PPO}
HYPERPARAMS_FILE = Path(__file__).with_name("zoo_hyperparams.yaml")
_ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "elu": torch.nn.ELU, "gelu": torch.nn.GELU}
_OURS = ("n_envs", "normalize", "noise_type", "noise_std")


def _is_mujoco(env_id: str) -> bool:
    try:
        entry = gym.spec(env_id).entry_point
    except gym.error.Error:
        return False
    return isinstance(entry, str) and entry.startswith("gymnasium.envs.mujoco")


def hyperparams_for(algo: str, env_id: str, path: Path = HYPERPARAMS_FILE) -> tuple[str, dict[str, Any]]:
    """``(entry name, hyperparameters)`` for ``algo`` on ``env_id`` (see the YAML's lookup order)."""
    table = yaml.safe_load(path.read_text())
    if algo not in table:
        raise ValueError(f"no hyperparameters for algorithm {algo!r} in {path}; known: {sorted(table)}")
    entries = table[algo]
    for name in (env_id, "mujoco" if _is_mujoco(env_id) else None, "default"):
        if name is not None and name in entries:
            return name, copy.deepcopy(entries[name])
    raise ValueError(f"{path} has no {algo!r} entry for {env_id!r} and no 'default' entry")


def _constructor_kwargs(params: dict[str, Any], action_dim: int) -> dict[str, Any]:
    kwargs = {k: v for k, v in params.items() if k not in _OURS}
    policy_kwargs = dict(kwargs.pop("policy_kwargs", {}) or {})
    if isinstance(policy_kwargs.get("activation_fn"), str):
        policy_kwargs["activation_fn"] = _ACTIVATIONS[policy_kwargs["activation_fn"]]
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    if params.get("noise_type") == "normal":
        sigma = float(params.get("noise_std", 0.1)) * np.ones(action_dim)
        kwargs["action_noise"] = NormalActionNoise(np.zeros(action_dim), sigma)
    elif params.get("noise_type") is not None:
        raise ValueError(f"noise_type {params['noise_type']!r} is not supported; use 'normal'")
    return kwargs


class _Evaluate(BaseCallback):
    """Evaluates with Rehearse's protocol whenever training crosses a multiple of ``eval_freq``."""

    def __init__(self, eval_env: gym.Env, run_dir: Path, total: int, eval_freq: int, episodes: int, seed: int,
                 normalizer: VecNormalize | None) -> None:
        super().__init__()
        self.eval_env, self.run_dir, self.eval_freq, self.episodes = eval_env, run_dir, eval_freq, episodes
        self.total = total
        self.seed, self.normalizer = seed, normalizer
        self.evals_done, self.eval_seconds, self.start = 0, 0.0, 0.0

    def _on_training_start(self) -> None:
        self.start = time.time()

    def _act(self, obs: np.ndarray) -> np.ndarray:
        if self.normalizer is not None:
            obs = np.asarray(self.normalizer.normalize_obs(obs))
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action, dtype=np.float32)

    def _on_step(self) -> bool:
        """Evaluate at each multiple of ``eval_freq`` passed; stop at the budget (PPO overshoots it)."""
        while self.eval_freq and min(self.num_timesteps, self.total) >= (self.evals_done + 1) * self.eval_freq:
            self._evaluate((self.evals_done + 1) * self.eval_freq)
        return self.num_timesteps < self.total

    def _evaluate(self, step: int) -> None:
        started = time.time()
        # Same episode seeds as MBRLAgent._evaluate, so every algorithm meets the same starts.
        result = evaluate(self.eval_env, self._act, lambda: None, self.episodes,
                          self.seed + 100_000 + 1000 * self.evals_done)
        self.eval_seconds += time.time() - started
        self.evals_done += 1
        wall = time.time() - self.start
        append_evaluation(self.run_dir / "evaluations.npz", step, result, wall, self.eval_seconds)
        for key, value in {"eval/mean_reward": result.returns.mean(), "eval/std_reward": result.returns.std(),
                           "eval/mean_ep_length": result.lengths.mean(), "eval/mean_cost": result.costs.mean(),
                           "time/total_timesteps": step, "time/time_elapsed": wall,
                           "time/eval_seconds": self.eval_seconds,
                           "time/peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}.items():
            self.logger.record(key, float(value))
        self.logger.dump(step)


def _train_env(env_id: str, env_kwargs: dict[str, Any], run_dir: Path, n_envs: int, seed: int) -> VecEnv:
    def factory(rank: int) -> Any:
        name = "monitor.csv" if n_envs == 1 else f"{rank}.monitor.csv"
        return lambda: Monitor(make_env(env_id, env_kwargs), str(run_dir / name))

    venv = DummyVecEnv([factory(rank) for rank in range(n_envs)])
    venv.seed(seed)
    return venv


def train_baseline(
    algo: str,
    env_id: str,
    seed: int,
    total_timesteps: int,
    run_dir: str | Path,
    *,
    eval_freq: int,
    eval_episodes: int = 10,
    env_kwargs: dict[str, Any] | None = None,
    hyperparams_file: Path = HYPERPARAMS_FILE,
) -> Path:
    """Train one SB3 baseline from scratch into ``run_dir`` (cleared first); returns ``run_dir``.

    Like ``MBRLAgent.learn`` it holds the directory's :class:`~agent.atomic.RunDirLock` while it clears and
    writes it: a second process on the same directory gets ``RunDirInUse`` and removes nothing.
    """
    if algo not in ALGOS:
        raise ValueError(f"unknown baseline {algo!r}; choose from {sorted(ALGOS)}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunDirLock(run_dir)
    lock.acquire()
    try:
        clear_outputs(run_dir)  # an unfinished baseline restarts from step 0
        _train(algo, env_id, seed, total_timesteps, run_dir, eval_freq, eval_episodes, dict(env_kwargs or {}),
               hyperparams_file)
    finally:
        lock.release()
    return run_dir


def _train(algo: str, env_id: str, seed: int, total_timesteps: int, run_dir: Path, eval_freq: int,
           eval_episodes: int, env_kwargs: dict[str, Any], hyperparams_file: Path) -> None:
    entry, params = hyperparams_for(algo, env_id, hyperparams_file)
    venv: VecEnv = _train_env(env_id, env_kwargs, run_dir, int(params.get("n_envs", 1)), seed)
    normalizer = VecNormalize(venv) if params.get("normalize") else None
    action_dim = int(np.prod(venv.action_space.shape or (1,)))
    model = ALGOS[algo](env=normalizer or venv, seed=seed, verbose=0, device="cpu",
                        **_constructor_kwargs(params, action_dim))
    model.set_logger(configure(str(run_dir), ["csv", "tensorboard"]))
    config = {"algo": algo, "env_id": env_id, "env_kwargs": env_kwargs, "seed": seed,
              "total_timesteps": total_timesteps, "eval_freq": eval_freq, "eval_episodes": eval_episodes,
              "hyperparams_source": f"{hyperparams_file.name}:{algo}.{entry}", "hyperparams": params}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    callback = _Evaluate(make_env(env_id, env_kwargs), run_dir, total_timesteps, eval_freq, eval_episodes, seed,
                         normalizer)
    model.learn(total_timesteps, callback=callback)
    if callback.evals_done * eval_freq < total_timesteps:  # budget not a multiple of eval_freq
        callback._evaluate(total_timesteps)
    venv.close()
