"""MBRLAgent: gather transitions, train the world model, act by planning through it.

The only place that touches both the environment and the models. API in
Stable-Baselines3's shape: ``learn``, ``predict``, ``save``, ``load``.
"""

from __future__ import annotations

import collections
import copy
import resource
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from agent.acting import Acting
from agent.atomic import RunDirLock, remove_orphaned_tmp
from agent.buffer import ReplayBuffer, check_buffer_memory
from agent.checkpoint import (
    CHECKPOINT_NAME,
    agent_payload,
    checked_env_id,
    load_checkpoint,
    load_run_checkpoint,
    restore_agent,
    save_checkpoint,
)
from agent.config import (
    Config,
    config_from_dict,
    config_to_dict,
    default_run_dir,
    model_kind,
    resolve_config,
    resolve_device,
    validate,
)
from agent.evaluation import EvalResult, Evaluator
from agent.logger import RunLogger, set_aside_outputs, truncate_outputs
from agent.models import ModelAdapter, PolicyProposer, make_adapter
from agent.signals import EvaluationAbandoned, stop_on_signals
from agent.timing import PhaseClock
from agent.veto import VetoCounter
from envs import TransitionLog, env_action_bounds, env_shapes, make_env, wrap_env
from language_models import LLMProposer, make_llm_proposer
from planners.base import Planner, Proposer
from planners.warm_start import WarmStart
from world_models.fast import configure_process, torch_threads, wide_threads

__all__ = ["CHECKPOINT_NAME", "MBRLAgent", "WarmStart", "resolve_device"]


class MBRLAgent(Acting):
    """Model-based agent: a world model (RoboticsWorldModel on states, LatentWorldModel on pixels)
    + CEM/MPPI model-predictive control. The model-specific parts live in ``agent.models``."""

    def __init__(
        self,
        env: gym.Env | str,
        config: Config | None = None,
        *,
        seed: int | None = None,
        run_dir: str | Path | None = None,
        eval_env: gym.Env | Sequence[gym.Env] | None = None,
        proposer: Proposer | None = None,
    ) -> None:
        """``eval_env``: one env (evaluation episodes then run one by one on it) or at least
        ``train.eval_episodes`` distinct ones (run side by side); by default the agent makes
        ``train.eval_episodes`` envs from ``config.env_id`` (one when ``train.eval_lockstep`` is off).
        ``proposer``: a source of ``planner.proposals`` candidate sequences per plan (context: ``obs``,
        ``z0 (B, Z)``, the planner's ``generator``); default the learned policy's with ``value.kind`` policy. With
        ``llm.base_url`` set and no ``proposer`` given, the language model's proposals join them (docs/llm.md)."""
        env_id = env if isinstance(env, str) else (env.spec.id if env.spec is not None else None)
        if config is None:
            config = resolve_config(env_id or "custom")
        config = copy.deepcopy(config)
        if seed is not None:
            config.seed = seed
        if env_id is not None:
            config.env_id = env_id
        validate(config, kind="latent" if config.model.kind == "auto" else None,  # kind-specific checks below
                 proposer=proposer is not None)
        self.config = config
        self.device = resolve_device(config.device)
        self.env = self._make_env() if isinstance(env, str) else wrap_env(env)
        if eval_env is None and env_id is None:
            raise ValueError("this environment has no registered id; pass eval_env=... (a second instance)")
        self.evaluator = Evaluator(
            [] if eval_env is None else [eval_env] if isinstance(eval_env, gym.Env) else list(eval_env),
            lambda check, render_mode: self._make_eval_env(check, render_mode),
            lockstep=config.train.eval_lockstep, video=config.train.eval_video,
        )
        self.obs_shape, self.action_dim = env_shapes(self.env)
        self.model_kind = model_kind(config, image_obs=len(self.obs_shape) == 3)
        validate(config, kind=self.model_kind, proposer=proposer is not None)

        check_buffer_memory(config.train.buffer_capacity, self.obs_shape, self.action_dim,  # before the networks
                            np.uint8 if self.model_kind in ("latent", "video") else np.float32)
        configure_process()  # thread count and allocator for planning (world_models/fast.py)
        torch.manual_seed(config.seed)
        self.adapter: ModelAdapter = make_adapter(config, self.model_kind, self.obs_shape, self.action_dim, self.device)
        self.model = self.adapter.model
        self.llm: LLMProposer | None = None
        if proposer is None and config.llm.base_url:
            space = self.env.observation_space
            bounds = (getattr(space, "low", np.full(self.obs_shape, -np.inf)),
                      getattr(space, "high", np.full(self.obs_shape, np.inf)))
            self.llm = make_llm_proposer(config.llm, config.env_id, bounds, env_action_bounds(self.env))
        if proposer is None and config.value.kind == "policy" and config.planner.proposals:
            proposer = PolicyProposer(self.adapter.model, config.value.policy_noise)  # type: ignore[arg-type]
        self.proposer = proposer
        self._generator = torch.Generator().manual_seed(config.seed)
        self.planner = self.make_planner(self._generator)
        self._predict_planner = self.make_planner(torch.Generator().manual_seed(config.seed + 1), acting=True)
        self._predict_rng = np.random.default_rng(config.seed + 1)  # predict(deterministic=False)'s noise
        self.buffer = self._make_buffer(config.train.buffer_capacity)
        self.rng = np.random.default_rng(config.seed)

        self.num_timesteps = 0
        self._episode = 0
        self._obs: np.ndarray | None = None
        self._ep_return, self._ep_length, self._ep_cost = 0.0, 0, 0.0
        self.cost_multiplier = self._make_cost_multiplier()  # planner.cost_limit's Lagrange multiplier (or None)
        self.veto = VetoCounter()  # what the cost constraint let through (agent/veto.py; safety/train_*, eval_*)
        self._cumulative_cost = 0.0  # cost of all training steps (train/cumulative_cost)
        self._vacuous_checked = False  # whether the first episode's end looked for costs (agent/safety.py)
        self._ep_returns: collections.deque[float] = collections.deque(maxlen=100)
        self._next_checkpoint = config.train.checkpoint_freq
        self._trained = False
        self._last_fit = -(10**12)
        self._evals_done = 0
        self._elapsed_before = 0.0  # wall-clock seconds of earlier sessions of this run (resume)
        self._eval_seconds = 0.0  # wall-clock seconds spent evaluating, over the whole run
        self._eval_threads = self._loop_threads = 1  # torch threads of evaluations and the loop (learn sets them)
        self.clock = PhaseClock()  # time/<phase>_s: where the run's wall-clock went (agent/timing.py)
        self._start_time: float | None = None
        self.last_eval_return: float | None = None
        self.stopped_by: signal.Signals | None = None  # the signal that stopped the last learn() early
        self._plan_ms: list[float] = []
        self._train_ws = WarmStart(config.planner.horizon, self.action_dim, self.device)
        self._predict_ws = WarmStart(config.planner.horizon, self.action_dim, self.device)
        self._predict_batch_ws: WarmStart | None = None  # predict() on n observations at once
        self._env_action_bounds = env_action_bounds(self.env)  # predict() answers in the env's own units
        self.logger: RunLogger | None = None
        self._run_lock: RunDirLock | None = None
        self._resumed_at: int | None = None  # the run directory's logs are cut back to this step when training opens it
        self._pending_step: bool | None = None  # a step whose evaluation a stop abandoned (its episode ended?)
        self._resumed_rows: int | None = None  # monitor.csv's episode rows at the checkpoint resumed from
        self._saved_at: int | None = None  # the step of the checkpoint last written or resumed from
        self.run_dir = Path(run_dir) if run_dir is not None else None
        found = load_run_checkpoint(self.run_dir, set_aside=True) if self.run_dir is not None else None
        if found is not None:  # the newest readable one (agent/checkpoint.py)
            restore_agent(self, *found)

    # ----------------------------------------------------------------- building blocks
    def _make_env(self, check: bool | None = None, render_mode: str | None = None) -> gym.Env:
        c = self.config
        return make_env(c.env_id, c.env_kwargs, check=check, render_mode=render_mode, pixels=c.pixels,
                        frame_stack=c.frame_stack)

    def _make_eval_env(self, check: bool | None, render_mode: str | None) -> gym.Env:
        """An evaluation env; on state observations it keeps its transitions (:class:`~envs.TransitionLog`), on
        which each evaluation judges the safety head."""
        env = self._make_env(check, render_mode)
        return TransitionLog(env) if self.model_kind == "robotics" else env

    def _make_buffer(self, capacity: int) -> ReplayBuffer:
        return ReplayBuffer(capacity, self.obs_shape, self.action_dim, obs_dtype=self.adapter.obs_dtype)

    # ----------------------------------------------------------------- training loop
    def learn(
        self,
        total_timesteps: int | None = None,
        progress_bar: bool = True,
        callback: Callable[[MBRLAgent], bool | None] | None = None,
    ) -> MBRLAgent:
        """Train until ``total_timesteps`` environment steps (counted from the run's start).

        ``callback(agent)``, if given, runs after every environment step (after that step's training,
        evaluation and logging; ``agent.num_timesteps``, ``agent.last_eval_return`` are current). If it
        returns ``False`` training stops there, as SB3's callbacks stop ``learn``: a checkpoint is written,
        and ``learn`` again continues from it.

        Ctrl-C (SIGINT) or SIGTERM in the main thread stops it the same way, after the step under way
        (:mod:`agent.signals`; an evaluation under way is abandoned, and played again when the run resumes):
        ``stopped_by`` then names the signal. A second one stops at once.
        """
        total = total_timesteps if total_timesteps is not None else self.config.train.total_timesteps
        if total < 0:
            raise ValueError(f"total_timesteps must be >= 0 (steps counted from the run's start), got {total}")
        self.config.train.total_timesteps = total
        self.clock.start_session()
        with self.clock.phase("setup"):
            self._open_run()
        bar = tqdm(total=total, initial=self.num_timesteps, disable=not progress_bar, unit="step", dynamic_ncols=True)
        self.stopped_by = None
        self._eval_threads, self._loop_threads = torch.get_num_threads(), self.loop_threads()
        try:
            with stop_on_signals() as stop, torch_threads(self._loop_threads):
                self.evaluator.stop = stop  # a stop abandons an evaluation under way (it is rerun on resume)
                try:
                    if self._pending_step is not None:  # the step whose evaluation a stop abandoned
                        self._after_step(self._pending_step, self._obs)
                    while self.num_timesteps < total:
                        self._step()
                        bar.update(1)
                        if self.last_eval_return is not None:
                            bar.set_postfix(eval=f"{self.last_eval_return:.1f}", refresh=False)
                        if callback is not None and callback(self) is False:
                            break
                        if stop.signal is not None:
                            break
                except EvaluationAbandoned:
                    pass
                self.stopped_by = stop.signal
                self._checkpoint()
        finally:
            self.clock.stop_session()
            self.evaluator.stop = None
            if self.llm is not None:
                self.llm.close()
            bar.close()
            if self.logger is not None:
                self.logger.close()
            if self._run_lock is not None:
                self._run_lock.release()
        return self

    def loop_threads(self) -> int:
        """torch threads for the training loop's plans and gradient steps (``train.loop_threads``; 0: one for
        vector observations, all of the process's for images); at most the process's."""
        n = self.config.train.loop_threads or (torch.get_num_threads() if len(self.obs_shape) == 3 else 1)
        return min(n, torch.get_num_threads())

    def _open_run(self) -> None:
        if self.run_dir is None:
            self.run_dir = default_run_dir(self.config.env_id, self.config.seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._run_lock = RunDirLock(self.run_dir)
        self._run_lock.acquire()  # before anything is written: a second trainer stops here
        self.logger = None
        resumed_at = self._resumed_at
        try:
            remove_orphaned_tmp(self.run_dir)  # temp files of writes a kill interrupted
            if resumed_at is not None:  # rows logged after the checkpoint this run resumes from
                truncate_outputs(self.run_dir, resumed_at, self._resumed_rows)
            elif self.num_timesteps == 0:  # logs of a run that ended before its first checkpoint: moved aside
                set_aside_outputs(self.run_dir)
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(self.config), sort_keys=False))
            self.logger = RunLogger(self.run_dir, self.config.env_id, resumed_at=resumed_at,
                                    elapsed_before=self._elapsed_before)
            if self.llm is not None:
                self.llm.open_run(self.run_dir)
            self.evaluator.ensure(self.config.train.eval_episodes)
            if self.config.train.eval_video:
                self.evaluator.record_video()
            self._resumed_at = None
        except BaseException:
            if self.logger is not None:
                self.logger.close()
            self._run_lock.release()
            raise
        self._start_time, self._start_steps = time.time(), self.num_timesteps

    def _elapsed(self) -> float:
        """Wall-clock seconds of this run so far, summed over resumed sessions."""
        now = time.time() - self._start_time if self._start_time is not None else 0.0
        return self._elapsed_before + now

    def _step(self) -> None:
        t = self.config.train
        clock = self.clock
        if self._obs is None:
            with clock.phase("env"):
                self._obs, _ = self.env.reset(seed=self.config.seed if self._episode == 0 else None)
            self.draw_exploring()  # an episode led by the language model's proposals (llm.explore)
        obs = self._obs
        if self.num_timesteps < t.learning_starts:
            action = self.rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)
        else:
            with clock.phase("plan"):
                action = self.plan(obs, self.planner, self._train_ws, self._plan_ms, cost_spent=self._ep_cost,
                                   explore=self._exploring)
            action = np.clip(action + t.exploration_noise * self.rng.normal(size=self.action_dim), -1, 1)
            action = action.astype(np.float32)
        with clock.phase("env"):
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            cost = float(info.get("cost", 0.0))
            self.veto.add_step_cost(cost)  # counted where this step's action was planned under a cost limit
            self.buffer.add(obs, action, float(reward), cost, bool(terminated), bool(truncated), next_obs)
        self.num_timesteps += 1
        self._ep_return += float(reward)
        self._ep_length += 1
        self._ep_cost += cost
        self._cumulative_cost += cost
        n = self.num_timesteps
        if n >= t.learning_starts and n % t.train_freq == 0:
            with clock.phase("train"):
                self._train()
        self._after_step(bool(terminated or truncated), next_obs)

    def _after_step(self, done: bool, next_obs: np.ndarray | None) -> None:
        """The evaluation, log and episode end due after the step just taken (``done``: it ended the episode).

        A stop abandons the evaluation (EvaluationAbandoned): ``_pending_step`` then tells the checkpoint
        that the rest of this method is still to do, and the resumed run does it first."""
        t, n, clock = self.config.train, self.num_timesteps, self.clock
        self._obs = None if done else next_obs
        if t.eval_freq and n % t.eval_freq == 0:
            self._pending_step = done
            with clock.phase("eval"), torch_threads(wide_threads(self._eval_threads, self._loop_threads)):
                self._evaluate()
            self._pending_step = None
        if n % t.log_interval == 0:
            with clock.phase("log"):
                self._log()
        if done:
            self._end_episode()

    def _end_episode(self) -> None:
        assert self.logger is not None
        self.logger.episode(self._ep_return, self._ep_length, self._ep_cost)
        self._end_episode_cost(self._ep_cost, self._ep_length)
        self._ep_returns.append(self._ep_return)
        self._ep_return, self._ep_length, self._ep_cost = 0.0, 0, 0.0
        self._episode += 1
        self._obs = None
        self._train_ws.reset()
        if self.num_timesteps >= self._next_checkpoint:
            self._checkpoint()
            while self._next_checkpoint <= self.num_timesteps:
                self._next_checkpoint += self.config.train.checkpoint_freq

    def _train(self) -> None:
        t = self.config.train
        steps = t.gradient_steps
        if not self._trained:
            steps += t.initial_gradient_steps
            self._trained = True
        if self.num_timesteps - self._last_fit >= t.normalizer_update_freq:
            self.adapter.fit_normalizers(self.buffer)
            self._last_fit = self.num_timesteps
        metrics: dict[str, float] = {}
        for _ in range(steps):
            metrics = self.adapter.train_step(self.buffer, self.rng)
        self._train_metrics = metrics

    def evaluate(self, n_episodes: int | None = None, seed: int = 0) -> EvalResult:
        """Play ``n_episodes`` (default ``train.eval_episodes``) deterministic episodes and return
        their returns, lengths and costs, as the training loop's evaluations do (Stable-Baselines3's
        ``evaluate_policy``): separate evaluation envs, episode ``j`` reset with seed ``seed + j``,
        the planner's mean plan without exploration noise. Nothing is trained or logged."""
        episodes = self.config.train.eval_episodes if n_episodes is None else n_episodes
        if episodes < 1:
            raise ValueError(f"evaluate: n_episodes must be >= 1, got {episodes}")
        self.evaluator.ensure(episodes)
        planner = self.make_planner(torch.Generator().manual_seed(seed), acting=True)
        return self._run_evaluation(planner, seed, episodes)

    def _run_evaluation(self, planner: Planner, seed: int, episodes: int | None = None,
                        times: list[float] | None = None) -> EvalResult:
        """The evaluation episodes (default ``train.eval_episodes``) with ``planner`` (:meth:`Evaluator.run`)."""
        episodes = self.config.train.eval_episodes if episodes is None else episodes
        self._start_evaluation(self.evaluator.envs)  # the safety head is judged on this evaluation's alone
        # the episodes' costs so far: under a cost limit, each plan keeps within what is left, as in training
        return self.evaluator.run(lambda obs, warm, spent: self.plan(obs, planner, warm, times, cost_spent=spent),
                                  (self.config.planner.horizon, self.action_dim), self.device, episodes, seed)

    def _evaluate(self) -> EvalResult:
        """The training loop's evaluation: the episodes, their video, the logged ``eval/...`` values."""
        assert self.logger is not None and self.evaluator.envs
        seed = self.config.seed + 100_000 + 1000 * self._evals_done
        planner = self.make_planner(torch.Generator().manual_seed(seed), acting=True)
        started = time.time()
        recorder = self.evaluator.recorder
        if recorder is not None:
            recorder.arm()
        plan_ms: list[float] = []
        result = self._run_evaluation(planner, seed, times=plan_ms)
        if recorder is not None:
            self.logger.video(self.num_timesteps, recorder.take(), recorder.fps)
        self._eval_seconds += time.time() - started
        self._evals_done += 1
        self.last_eval_return = float(result.returns.mean())
        self.logger.evaluation(self.num_timesteps, result, self._elapsed(), self._eval_seconds, float(np.mean(plan_ms)))
        for key, value in self._evaluation_safety(self.evaluator.envs).items():  # none without costs
            self.logger.record(key, value)
        return result

    def _log(self) -> None:
        assert self.logger is not None
        assert self._start_time is not None
        session = max(time.time() - self._start_time, 1e-9)
        self.logger.record("time/fps", (self.num_timesteps - self._start_steps) / session)
        self.logger.record("time/time_elapsed", self._elapsed())
        self.logger.record("time/eval_seconds", self._eval_seconds)
        self.logger.record("time/peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        for phase, seconds in self.clock.snapshot().items():
            self.logger.record(f"time/{phase}_s", seconds)
        if self._ep_returns:
            self.logger.record("rollout/ep_rew_mean", float(np.mean(self._ep_returns)))
        self.logger.record("train/cumulative_cost", self._cumulative_cost)
        for key, value in self._training_safety().items():  # none when unconstrained
            self.logger.record(key, value)
        if self._plan_ms:
            self.logger.record("planner/plan_ms", float(np.mean(self._plan_ms)))
            self._plan_ms = []
        stats = getattr(self.planner, "last_stats", {})
        for key, value in stats.items():
            self.logger.record(f"planner/{key}", value)
        for key, value in getattr(self, "_train_metrics", {}).items():
            self.logger.record(key, value)
        for key, value in (self.llm.metrics() if self.llm is not None else {}).items():
            self.logger.record(f"llm/{key}", value)
        self.logger.dump(self.num_timesteps)

    # ----------------------------------------------------------------- persistence (agent/checkpoint.py)
    def _checkpoint(self) -> None:
        """Save to the run directory, unless this step's checkpoint is written already (no duplicate: the
        run directory keeps its last distinct ones, agent/checkpoint.py)."""
        if self.run_dir is not None and self._saved_at != self.num_timesteps:
            with self.clock.phase("checkpoint"):
                save_checkpoint(self.run_dir / CHECKPOINT_NAME, agent_payload(self))
            self._saved_at = self.num_timesteps

    def save(self, path: str | Path) -> None:
        """Write everything needed to resume or deploy to ``path`` (atomically)."""
        save_checkpoint(path, agent_payload(self))

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | str | None = None, **kwargs: Any) -> MBRLAgent:
        """Rebuild an agent from a checkpoint written by :meth:`save` or a run directory's checkpoint."""
        return cls.from_checkpoint(load_checkpoint(path), Path(path), env, **kwargs)

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any], source: Path, env: gym.Env | str | None = None,
                        **kwargs: Any) -> MBRLAgent:
        """Rebuild an agent from a checkpoint ``payload`` already read from ``source`` (see :meth:`load`)."""
        config = config_from_dict(payload["config"])
        agent = cls(env if env is not None else checked_env_id(payload, None), config, **kwargs)
        restore_agent(agent, payload, source)
        return agent
