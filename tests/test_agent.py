"""Agent loop: resume exactness, save/load, outputs, predict without side effects, evaluation, learning."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agent import MBRLAgent, RunDirInUse, resolve_config
from agent.agent import CHECKPOINT_NAME
from agent.buffer import ReplayBuffer
from agent.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agent.config import Config, ConfigError, apply_overrides, sampling_config, validate
from agent.evaluation import EvalResult, evaluate, evaluate_lockstep
from agent.models import RoboticsAdapter
from envs import BALL_CATCH_ID, POINT_MASS_ID, make_env
from planners.warm_start import WarmStart
from world_models import fast
from world_models.fast import available_threads


def debug_config(**overrides: object) -> Config:
    return resolve_config(POINT_MASS_ID, {"device": "cpu", **overrides}, preset="debug")


POLICY = {"model.value_function": True, "model.value_kind": "policy", "planner.policy_proposals": 3}
NEXT_STATE = {"model.continuation_from": "next_state"}


@pytest.mark.parametrize("settings", [{}, POLICY, NEXT_STATE], ids=["preset", "policy", "next_state"])
def test_resume_continues_exactly(tmp_path: Path, settings: dict[str, object]) -> None:
    # evaluations in lockstep, 3 episodes per plan call
    config = debug_config(**{"train.eval_episodes": 3, **settings})
    straight = MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path / "a")
    straight.learn(200, progress_bar=False)

    first = MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path / "b")
    first.learn(100, progress_bar=False)
    resumed = MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path / "b")
    assert resumed.num_timesteps == 100
    resumed.learn(200, progress_bar=False)

    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(value, resumed.model.state_dict()[key], rtol=0, atol=0, msg=key)
    a, b = straight.buffer.stored(), resumed.buffer.stored()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)  # same actions, rewards, observations
    progress_a = (tmp_path / "a" / "progress.csv").read_text().splitlines()
    progress_b = (tmp_path / "b" / "progress.csv").read_text().splitlines()
    loss_col = progress_a[0].split(",").index("world_model/loss")
    assert [r.split(",")[loss_col] for r in progress_a[1:]] == [r.split(",")[loss_col] for r in progress_b[1:]]
    eval_a = np.load(tmp_path / "a" / "evaluations.npz")
    eval_b = np.load(tmp_path / "b" / "evaluations.npz")
    assert eval_a["results"].shape == (2, 3)
    np.testing.assert_array_equal(eval_a["results"], eval_b["results"])


def test_run_directory_outputs(tmp_path: Path) -> None:
    agent = MBRLAgent(POINT_MASS_ID, debug_config(), run_dir=tmp_path)
    agent.learn(100, progress_bar=False)
    for name in ["config.yaml", "progress.csv", "monitor.csv", "evaluations.npz", CHECKPOINT_NAME]:
        assert (tmp_path / name).exists(), name
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    monitor = (tmp_path / "monitor.csv").read_text().splitlines()
    assert monitor[0].startswith("#{") and monitor[1] == "r,l,t" and len(monitor) == 4  # 2 episodes of 50
    evaluations = np.load(tmp_path / "evaluations.npz")
    assert evaluations["timesteps"].tolist() == [100]
    assert evaluations["results"].shape == (1, 1)
    header = (tmp_path / "progress.csv").read_text().splitlines()[0]
    for key in ["time/total_timesteps", "eval/mean_reward", "eval/plan_ms", "world_model/loss", "planner/plan_ms"]:
        assert key in header


def test_save_load_and_predict_have_no_side_effects(tmp_path: Path) -> None:
    agent = MBRLAgent(POINT_MASS_ID, debug_config(), run_dir=tmp_path / "run")
    agent.learn(100, progress_bar=False)
    obs = np.array([0.5, 0.0], dtype=np.float32)
    rng_state = agent.rng.bit_generator.state
    generator_state = agent._generator.get_state()
    plan_ms = list(agent._plan_ms)
    action, state = agent.predict(obs, episode_start=True)
    assert action.shape == (1,) and state is None and -1 <= action[0] <= 1
    assert agent.rng.bit_generator.state == rng_state and agent._plan_ms == plan_ms  # not in the training log
    assert torch.equal(agent._generator.get_state(), generator_state)
    agent.evaluate(2)  # evaluation plans are not training plans: they stay out of planner/plan_ms
    assert agent._plan_ms == plan_ms

    agent.save(tmp_path / "agent.pt")
    loaded = MBRLAgent.load(tmp_path / "agent.pt")
    np.testing.assert_array_equal(loaded.predict(obs, episode_start=True)[0], action)
    with pytest.raises(ValueError, match="shape"):
        agent.predict(np.zeros(3, dtype=np.float32))


def test_stochastic_predict_is_seeded_and_leaves_training_randomness_alone() -> None:
    """predict(deterministic=False) adds exploration noise from the agent's own seeded generator: two agents of
    one seed answer alike, another seed otherwise; the training generators are not drawn from."""
    obs = np.array([0.5, 0.0], dtype=np.float32)
    agents = [MBRLAgent(POINT_MASS_ID, debug_config(), seed=seed) for seed in (0, 0, 1)]
    states = [(a.rng.bit_generator.state, a._generator.get_state()) for a in agents]
    answers = [np.concatenate([a.predict(obs, deterministic=False)[0] for _ in range(3)]) for a in agents]
    np.testing.assert_array_equal(answers[0], answers[1])
    assert not np.array_equal(answers[0], answers[2]) and len(set(answers[0].tolist())) == 3
    for agent, (rng_state, generator_state) in zip(agents, states, strict=True):
        assert agent.rng.bit_generator.state == rng_state
        assert torch.equal(agent._generator.get_state(), generator_state)


def test_predict_answers_in_the_environments_own_units_and_takes_a_batch() -> None:
    """Pendulum's torque is in [-2, 2]: predict() scales the planner's [-1, 1] action to it, as SB3's
    predict answers in the env's action space; n observations give n actions from one batched plan."""
    config = resolve_config("Pendulum-v1", {"device": "cpu"}, preset="debug")
    agent, twin = MBRLAgent("Pendulum-v1", config), MBRLAgent("Pendulum-v1", config)
    obs = np.array([1.0, 0.0, 0.5], dtype=np.float32)
    action, _ = agent.predict(obs, episode_start=True)
    planned = twin.plan(obs)  # the acting planner, from a fresh warm start
    np.testing.assert_allclose(action, 2.0 * planned, rtol=1e-6)
    assert action.shape == (1,)
    actions, _ = agent.predict(np.stack([obs, -obs, obs]), episode_start=np.array([True, True, True]))
    assert actions.shape == (3, 1) and np.all(np.abs(actions) <= 2.0)
    agent.predict(np.stack([obs, -obs, obs]), episode_start=np.array([False, True, False]))
    with pytest.raises(ValueError, match="one flag per problem"):
        agent.predict(np.stack([obs, -obs, obs]), episode_start=np.array([True, False]))
    with pytest.raises(ValueError, match=r"or n of them \(n, 3\)"):
        agent.predict(np.zeros((2, 4), dtype=np.float32))


def test_sb3_evaluate_policy_runs_the_agent_on_a_vecenv() -> None:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    agent = MBRLAgent("Pendulum-v1", resolve_config("Pendulum-v1", {"device": "cpu"}, preset="debug"))
    vec_env = make_vec_env("Pendulum-v1", n_envs=2, seed=0, env_kwargs={"max_episode_steps": 20})
    returns, lengths = evaluate_policy(agent, vec_env, n_eval_episodes=2, return_episode_rewards=True)
    assert lengths == [20, 20] and all(np.isfinite(returns))
    with pytest.raises(TypeError, match="FlattenObservation"):
        agent.predict({"observation": np.zeros(3, dtype=np.float32)})


def test_warm_start_restart_clears_only_the_marked_problems() -> None:
    warm = WarmStart(3, 1, torch.device("cpu"), batch=2)
    warm.store(torch.ones(2, 3, 1))
    warm.restart(np.array([False, True]))
    init = warm.init()
    assert torch.equal(init[0, :, 0], torch.tensor([1.0, 1.0, 0.0])) and torch.equal(init[1], torch.zeros(3, 1))
    with pytest.raises(ValueError, match="one flag per problem"):
        warm.restart(np.array([True]))


def test_checkpoints_refuse_damaged_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"x": torch.ones(3)})
    assert load_checkpoint(path)["x"].sum() == 3
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "truncated.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a Rehearse checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": "x", "obj": Config()}, tmp_path / "pickled.pt")  # arbitrary objects are never unpickled
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "pickled.pt")
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoint_from_other_networks_is_refused_clearly(tmp_path: Path) -> None:
    agent = MBRLAgent(POINT_MASS_ID, debug_config())
    agent.save(tmp_path / "agent.pt")
    payload = load_checkpoint(tmp_path / "agent.pt")
    payload["model"].pop(next(iter(payload["model"])))  # as if saved by a version with other networks
    save_checkpoint(tmp_path / "other.pt", payload)
    with pytest.raises(CheckpointError, match="does not match this version"):
        MBRLAgent.load(tmp_path / "other.pt")


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    MBRLAgent(POINT_MASS_ID, debug_config(), run_dir=tmp_path).learn(50, progress_bar=False)
    with pytest.raises(ConfigError, match="planner.horizon"):
        MBRLAgent(POINT_MASS_ID, debug_config(**{"planner.horizon": 7}), run_dir=tmp_path)


def test_policy_value_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="value.kind must be one of"):
        validate(debug_config(**{"model.value_kind": "greedy"}))
    with pytest.raises(ConfigError, match="needs value.function: true"):
        validate(debug_config(**{"model.value_kind": "policy"}))
    with pytest.raises(ConfigError, match=r"planner.proposals \(4\) needs a learned policy"):
        validate(debug_config(**{"planner.policy_proposals": 4}))
    with pytest.raises(ConfigError, match=r"value.policy_imitation \(0.4\) trains the learned policy"):
        validate(debug_config(**{"model.policy_imitation": 0.4}))
    with pytest.raises(ConfigError, match="value.policy_imitation must be a finite number >= 0"):
        validate(debug_config(**POLICY, **{"model.policy_imitation": -1.0}))
    validate(debug_config(**POLICY, **{"model.policy_imitation": 0.4}))
    validate(debug_config(**POLICY))
    config = debug_config(**POLICY, **{"env_kwargs": {"obs_mode": "pixels"}})
    with pytest.raises(ConfigError, match="is for the robotics model"):
        MBRLAgent("rehearse/BallCatch-v0", config)


def test_continuation_source_is_checked() -> None:
    with pytest.raises(ConfigError, match="continuation_from must be one of transition, next_state"):
        validate(debug_config(**{"model.continuation_from": "state"}))
    assert debug_config(**NEXT_STATE).robotics.continuation_from == "next_state"


def test_imagination_dtype_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="imagination_dtype must be one of float32, bfloat16, got 'float16'"):
        validate(debug_config(**{"model.imagination_dtype": "float16"}))
    agent = MBRLAgent(POINT_MASS_ID, debug_config(**{"model.imagination_dtype": "bfloat16"}), run_dir=tmp_path)
    assert isinstance(agent.adapter, RoboticsAdapter) and agent.adapter.model.imagination_dtype == torch.bfloat16
    action = agent.learn(60, progress_bar=False).predict(agent.env.reset(seed=0)[0], deterministic=True)[0]
    assert action.dtype == np.float32 and np.all(np.abs(action) <= 1.0)


def test_config_overrides_and_validation() -> None:
    config = resolve_config("Pendulum-v1", {"planner.horizon": "12", "train.total_timesteps": "5e3"})
    assert config.planner.horizon == 12 and config.train.total_timesteps == 5000
    with pytest.raises(ConfigError, match="valid keys"):
        apply_overrides(config, {"planner.horizn": 3})
    with pytest.raises(ConfigError, match="expected int"):
        apply_overrides(config, {"planner.horizon": "twelve"})
    with pytest.raises(ConfigError, match="multiple"):
        validate(apply_overrides(config, {"planner.particles": 3}))
    with pytest.raises(ConfigError, match="discount"):
        validate(apply_overrides(config, {"planner.discount": 1.0}))
    with pytest.raises(ConfigError, match="value.window must be >= 0"):
        validate(apply_overrides(config, {"model.value_window": -1}))
    with pytest.raises(ConfigError, match="no preset"):
        resolve_config("Pendulum-v1", preset="nonexistent")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"planner.name": "beam"}, "planner.name must be one of cem, mppi, random, got 'beam'"),
    ({"planner.momentum": 1.0}, "sampling settings: SamplingConfig: 0 <= momentum < 1 does not hold"),
    ({"planner.num_elites": 500}, "1 <= num_elites <= num_candidates does not hold"),
    ({"planner.temperature": 0.0}, "temperature > 0 does not hold"),
    ({"planner.num_elites": 8, "planner.num_candidates": 16, "planner.eval_num_candidates": 4},
     "sampling settings when acting (planner.eval_num_candidates): SamplingConfig: 1 <= num_elites <= num_candidates"),
])
def test_planner_settings_are_checked_with_the_config(overrides: dict[str, Any], message: str) -> None:
    """The sampling planner's own rules fail when the config is read or validated, as a ConfigError, not later
    at the planner's construction."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(apply_overrides(resolve_config("Pendulum-v1"), overrides))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"planner.horizon": 0}, "planner.horizon must be >= 1, got 0"),
    ({"planner.particles": 0}, "planner.particles must be >= 1, got 0"),
    ({"planner.discount": 1.5}, "planner.discount must be in [0, 1], got 1.5"),
    ({"planner.pessimism": -1.0}, "planner.pessimism must be a finite number >= 0 (0: off), got -1.0"),
    ({"planner.policy_proposals": -1}, "planner.proposals must be >= 0 (0: none), got -1"),
    ({"planner.policy_noise": float("inf")}, "value.policy_noise must be a finite number >= 0, got inf"),
    ({"planner.eval_num_candidates": -1},
     "planner.eval_num_candidates must be >= 0 (0: the sampling section's), got -1"),
    ({"planner.eval_iterations": -1},
     "planner.eval_iterations must be >= 0 (0: the sampling section's), got -1"),
    ({"train.total_timesteps": -5}, "train.total_timesteps must be >= 0, got -5"),
    ({"train.eval_freq": -1},
     "train.eval_freq must be >= 0 (eval_freq 0: no evaluation; loop_threads 0: auto), got -1"),
    ({"train.loop_threads": -1},
     "train.loop_threads must be >= 0 (eval_freq 0: no evaluation; loop_threads 0: auto), got -1"),
    ({"train.batch_size": 0}, "train.batch_size must be >= 1, got 0"),
    ({"train.checkpoint_freq": 0}, "train.checkpoint_freq must be >= 1, got 0"),
    ({"train.exploration_noise": float("nan")}, "train.exploration_noise must be a finite number >= 0"),
    ({"model.num_layers": 0}, "robotics.num_layers must be >= 1, got 0"),
    ({"model.learning_rate": 0.0}, "robotics.learning_rate must be a finite number > 0, got 0.0"),
    ({"latent.learning_rate": 0.0}, "latent.learning_rate must be a finite number > 0, got 0.0"),
    ({"model.value_tau": 1.5}, "value.tau must be in (0, 1]"),
    ({"model.weight_decay": -1e-5}, "robotics.weight_decay must be a finite number >= 0, got -1e-05"),
])
def test_out_of_range_settings_are_refused_with_the_key(overrides: dict[str, Any], message: str) -> None:
    """A setting no run can use is refused when the config is read, naming its key and the allowed range."""
    config = apply_overrides(resolve_config("Pendulum-v1"), overrides)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(config)


def test_learn_refuses_a_negative_budget(tmp_path: Path) -> None:
    agent = MBRLAgent(POINT_MASS_ID, debug_config(), run_dir=tmp_path)
    with pytest.raises(ValueError, match="total_timesteps must be >= 0"):
        agent.learn(-5, progress_bar=False)
    assert not (tmp_path / "checkpoints").exists()  # nothing written


HOLD_LOCK = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('locked', flush=True); time.sleep(60)")


@pytest.mark.skipif(sys.platform == "win32", reason="advisory run-directory locks need fcntl")
def test_a_second_trainer_on_a_run_directory_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """While another process trains into a run directory, learn() stops before writing anything there."""
    MBRLAgent(POINT_MASS_ID, debug_config(), run_dir=tmp_path).learn(40, progress_bar=False)
    before = {p.name: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        agent = MBRLAgent(POINT_MASS_ID, debug_config(), run_dir=tmp_path)  # reading the checkpoint is fine
        with pytest.raises(RunDirInUse, match="is in use: another process is training into it"):
            agent.learn(80, progress_bar=False)
        assert {p.name: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()} == before
    finally:
        holder.kill()
        holder.wait()
    agent.learn(80, progress_bar=False)  # the other process is gone: it resumes
    assert agent.num_timesteps == 80


def test_a_callback_that_returns_false_stops_training_with_a_checkpoint(tmp_path: Path) -> None:
    """learn's callback runs after each step with the agent; False stops it there, and learn again resumes."""
    seen: list[int] = []

    def stop_after_first_evaluation(agent: MBRLAgent) -> bool:
        seen.append(agent.num_timesteps)
        return agent.last_eval_return is None

    agent = MBRLAgent(POINT_MASS_ID, debug_config(**{"train.eval_freq": 50}), run_dir=tmp_path)
    agent.learn(200, progress_bar=False, callback=stop_after_first_evaluation)
    assert seen == list(range(1, 51)) and agent.num_timesteps == 50
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["counters"]["num_timesteps"] == 50
    resumed = MBRLAgent(POINT_MASS_ID, debug_config(**{"train.eval_freq": 50}), run_dir=tmp_path)
    assert resumed.num_timesteps == 50
    resumed.learn(100, progress_bar=False, callback=lambda a: None)  # None goes on
    assert resumed.num_timesteps == 100


def test_ctrl_c_stops_training_after_the_step_with_a_checkpoint(tmp_path: Path) -> None:
    """The first SIGINT lets the step under way finish, writes a checkpoint there and returns; learn resumes it.
    The handlers in place before learn come back after it."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def interrupt_at_30(agent: MBRLAgent) -> None:
        if agent.num_timesteps == 30:
            os.kill(os.getpid(), signal.SIGINT)

    agent = MBRLAgent(POINT_MASS_ID, debug_config(), run_dir=tmp_path)
    agent.learn(100, progress_bar=False, callback=interrupt_at_30)
    assert agent.stopped_by is signal.SIGINT and agent.num_timesteps == 30
    counters = load_checkpoint(tmp_path / CHECKPOINT_NAME)["counters"]
    assert counters["num_timesteps"] == 30 and counters["mid_episode"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    resumed = MBRLAgent(POINT_MASS_ID, debug_config(), run_dir=tmp_path)
    assert resumed.num_timesteps == 30
    assert resumed.buffer.stored().truncated[29] and not agent.buffer.stored().truncated[29]  # the cut episode ends
    resumed.learn(100, progress_bar=False)
    assert resumed.stopped_by is None and resumed.num_timesteps == 100


def test_a_second_signal_stops_training_at_once(tmp_path: Path) -> None:
    """SIGTERM then SIGINT: KeyboardInterrupt from where the second one landed; no checkpoint is written and
    the run directory is free again."""

    def signal_twice_at_30(agent: MBRLAgent) -> None:
        if agent.num_timesteps == 30:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)

    agent = MBRLAgent(POINT_MASS_ID, debug_config(**{"train.checkpoint_freq": 10_000}), run_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt, match="second SIGINT: stopped at once"):
        agent.learn(100, progress_bar=False, callback=signal_twice_at_30)
    assert agent.num_timesteps == 30 and not (tmp_path / CHECKPOINT_NAME).exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    agent.learn(40, progress_bar=False)  # the lock was released
    assert agent.num_timesteps == 40


def test_opening_a_run_without_training_leaves_its_logs_alone(tmp_path: Path) -> None:
    """Logs written after the last checkpoint (TensorBoard too) are cut back only when training resumes, not on
    construction."""
    MBRLAgent(POINT_MASS_ID, debug_config(**{"train.checkpoint_freq": 10_000}), run_dir=tmp_path).learn(
        60, progress_bar=False)  # one checkpoint, at the end
    progress = (tmp_path / "progress.csv").read_text()
    assert "\n50.0," in progress  # logged at step 50 (log_interval 50)
    payload = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    payload["counters"]["num_timesteps"] = 20  # as if the checkpoint were older than the logs
    save_checkpoint(tmp_path / CHECKPOINT_NAME, payload)
    agent = MBRLAgent(POINT_MASS_ID, debug_config(**{"train.checkpoint_freq": 10_000}), run_dir=tmp_path)
    assert (tmp_path / "progress.csv").read_text() == progress
    agent.learn(20, progress_bar=False)
    assert "\n50.0," not in (tmp_path / "progress.csv").read_text()  # cut back to the checkpoint's step 20
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("world_model/loss")] == []  # TensorBoard hides step 50 as well
    agent.learn(60, progress_bar=False)
    events.Reload()
    rows = (tmp_path / "progress.csv").read_text().splitlines()
    loss_col = rows[0].split(",").index("world_model/loss")
    assert [(e.step, e.value) for e in events.Scalars("world_model/loss")] == [
        (50, pytest.approx(float(rows[1].split(",")[loss_col]), rel=1e-6))]  # step 50 once, the new value


def _returns(env: Any, policy: Callable[[np.ndarray], np.ndarray], episodes: int = 5) -> float:
    """Mean return of ``policy`` on the evaluation seeds the agent used (100_000 + k)."""
    totals = []
    for k in range(episodes):
        obs, _ = env.reset(seed=100_000 + k)
        total, done = 0.0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(policy(obs))
            total += float(r)
            done = terminated or truncated
        totals.append(total)
    return float(np.mean(totals))


def test_agent_learns_point_mass(tmp_path: Path) -> None:
    """Known best answer: a PD controller a = -5x - 4v (about -5); doing nothing scores about -37."""
    config = debug_config(**{
        "train.total_timesteps": 600, "train.learning_starts": 100, "train.initial_gradient_steps": 200,
        "train.gradient_steps": 2, "train.batch_size": 64, "train.eval_freq": 600, "train.eval_episodes": 5,
        "model.hidden_dim": 32, "planner.horizon": 10, "planner.num_candidates": 64, "planner.num_elites": 8,
        "planner.iterations": 3,
    })
    agent = MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path)
    agent.learn(progress_bar=False)
    learned = float(np.load(tmp_path / "evaluations.npz")["results"][-1].mean())
    env = agent.evaluator.envs[0]
    oracle = _returns(env, lambda o: np.clip([-5 * o[0] - 4 * o[1]], -1, 1).astype(np.float32))
    idle = _returns(env, lambda o: np.zeros(1, np.float32))
    assert oracle > -6 and idle < -30  # the task is what the docstring says
    assert learned > oracle + 0.25 * (idle - oracle), (learned, oracle, idle)


# --------------------------------------------------------------------------- evaluation in lockstep


def _weak_policy(obs: np.ndarray) -> np.ndarray:
    """A deterministic controller that balances InvertedPendulum for only ~100 steps (lengths vary by seed)."""
    return np.clip([0.5 * obs[1] + 0.1 * obs[3]], -1, 1).astype(np.float32)


def _point_mass_policy(obs: np.ndarray) -> np.ndarray:
    return np.clip([-2.0 * obs[0] - 1.0 * obs[1]], -1, 1).astype(np.float32)


@pytest.mark.parametrize(
    ("env_id", "policy"), [("InvertedPendulum-v5", _weak_policy), (POINT_MASS_ID, _point_mass_policy)]
)
def test_lockstep_evaluation_equals_sequential(env_id: str, policy: Callable[[np.ndarray], np.ndarray]) -> None:
    episodes = 5
    calls: list[list[int]] = []

    def act_batch(obs: np.ndarray, running: np.ndarray) -> np.ndarray:
        assert obs.ndim == 2 and obs.shape[0] == len(running)
        calls.append(running.tolist())
        return np.stack([policy(o) for o in obs])

    resets: list[int] = []
    lockstep = evaluate_lockstep([make_env(env_id) for _ in range(episodes + 1)], act_batch,
                                 lambda: resets.append(1), episodes, seed=100)
    sequential = evaluate(make_env(env_id), policy, lambda: None, episodes, seed=100)
    for got, want in zip(lockstep, sequential, strict=True):
        assert got.dtype == want.dtype and got.shape == (episodes,)
        np.testing.assert_array_equal(got, want)
    assert resets == [1]
    lengths = sequential.lengths
    assert len(calls) == lengths.max()  # one act call per time step for all running episodes
    assert calls == [[j for j in range(episodes) if lengths[j] > t] for t in range(lengths.max())]
    if env_id != POINT_MASS_ID:
        assert len(set(lengths.tolist())) > 1  # episodes really ended at different times


def test_lockstep_evaluation_needs_one_env_per_episode() -> None:
    env = make_env(POINT_MASS_ID)
    with pytest.raises(ValueError, match="3 episodes need as many envs"):
        evaluate_lockstep([env, make_env(POINT_MASS_ID)], lambda o, r: np.zeros((len(r), 1)), lambda: None, 3, 0)
    with pytest.raises(ValueError, match="its own env"):
        evaluate_lockstep([env, env], lambda o, r: np.zeros((len(r), 1)), lambda: None, 2, 0)


def test_batched_warm_start_shifts_and_drops_rows() -> None:
    warm = WarmStart(3, 2, torch.device("cpu"), batch=4)
    assert warm.init().shape == (4, 3, 2) and not warm.init().any()
    plan = torch.arange(24.0).view(4, 3, 2)
    warm.store(plan)
    init = warm.init()
    assert torch.equal(init[:, :2], plan[:, 1:]) and not init[:, 2].any()
    warm.keep(np.array([0, 2, 3]))  # episode 1 ended
    assert torch.equal(warm.init()[:, :2], plan[[0, 2, 3], 1:])
    warm.keep(np.array([2]))
    assert torch.equal(warm.init()[0, :2], plan[2, 1:])
    with pytest.raises(ValueError, match="subset"):
        warm.keep(np.array([0]))  # 0 is gone already
    warm.reset()
    assert warm.init().shape == (4, 3, 2) and not warm.init().any()
    single = WarmStart(3, 2, torch.device("cpu"))
    single.store(plan[1])
    assert torch.equal(single.init(), torch.cat([plan[1, 1:], torch.zeros(1, 2)]))


def _agent_evaluation(tmp_path: Path, env_id: str, **overrides: object) -> tuple[MBRLAgent, EvalResult, list[int]]:
    """Evaluate a fresh (untrained) agent with a seeded planner; also the batch size of every plan call."""
    config = resolve_config(env_id, {"device": "cpu", **overrides}, preset="debug")
    agent = MBRLAgent(env_id, config, run_dir=tmp_path / str(len(list(tmp_path.iterdir()))))
    agent.learn(0, progress_bar=False)  # opens the run: makes the evaluation envs
    planner = agent.make_planner(torch.Generator().manual_seed(7))
    sizes: list[int] = []
    plan = planner.plan

    def recording_plan(objective: Any, init: torch.Tensor, proposals: Any = None) -> torch.Tensor:
        sizes.append(init.shape[0] if init.dim() == 3 else 0)  # 0: an unbatched (H, A) call
        return plan(objective, init, proposals)

    planner.plan = recording_plan  # type: ignore[method-assign]
    return agent, agent._run_evaluation(planner, seed=100), sizes


def test_agent_evaluates_in_lockstep(tmp_path: Path) -> None:
    # One episode: the lockstep path (a batch of one) is bit-identical to the sequential one.
    _, one_lockstep, sizes = _agent_evaluation(tmp_path, POINT_MASS_ID, **{"train.eval_episodes": 1})
    _, one_sequential, _ = _agent_evaluation(tmp_path, POINT_MASS_ID, **{
        "train.eval_episodes": 1, "train.eval_lockstep": False})
    assert set(sizes) == {1}
    for got, want in zip(one_lockstep, one_sequential, strict=True):
        np.testing.assert_array_equal(got, want)

    # Three episodes that end at different times: one env each, one batched plan per step, rows dropped.
    pendulum = {"train.eval_episodes": 3}
    agent, result, sizes = _agent_evaluation(tmp_path, "InvertedPendulum-v5", **pendulum)
    assert len({id(env) for env in agent.evaluator.envs}) == 3 and agent.evaluator.recorder is None
    assert sizes[0] == 3 and sizes == sorted(sizes, reverse=True) and len(sizes) == result.lengths.max()
    assert sum(sizes) == result.lengths.sum()
    _, again, _ = _agent_evaluation(tmp_path, "InvertedPendulum-v5", **pendulum)
    for got, want in zip(result, again, strict=True):
        np.testing.assert_array_equal(got, want)  # seeded: the same evaluation twice

    agent, _, sizes = _agent_evaluation(tmp_path, "InvertedPendulum-v5", **pendulum, **{"train.eval_lockstep": False})
    assert len(agent.evaluator.envs) == 1 and set(sizes) == {0}


def test_public_evaluate_matches_the_training_loops_evaluation(tmp_path: Path) -> None:
    config = debug_config(**{"train.eval_episodes": 2, "train.eval_freq": 100})
    agent = MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path / "run")
    agent.learn(100, progress_bar=False)  # evaluates once, at step 100, with seed + 100_000
    logged = np.load(tmp_path / "run" / "evaluations.npz")["results"][-1]
    steps, stored = agent.num_timesteps, len(agent.buffer)
    result = agent.evaluate(seed=config.seed + 100_000)
    np.testing.assert_array_equal(result.returns, logged)  # the same episodes, the same plans
    assert (agent.num_timesteps, len(agent.buffer)) == (steps, stored)  # nothing gathered or trained

    more = agent.evaluate(5, seed=3)  # more episodes than eval envs so far: more envs, still in lockstep
    assert more.returns.shape == (5,) and len(agent.evaluator.envs) == 5
    np.testing.assert_array_equal(more.returns, agent.evaluate(5, seed=3).returns)  # seeded: repeatable
    with pytest.raises(ValueError, match="n_episodes"):
        agent.evaluate(0)


def test_eval_iterations_set_only_the_acting_planners_rounds() -> None:
    config = debug_config(**{"sampling.iterations": 3, "planner.eval_iterations": 1, "planner.eval_num_candidates": 24})
    training, acting = sampling_config(config), sampling_config(config, acting=True)
    assert (training.iterations, training.num_candidates) == (3, 16)
    assert (acting.iterations, acting.num_candidates) == (1, 24)
    unset = debug_config(**{"sampling.iterations": 3})
    assert sampling_config(unset, acting=True).iterations == 3


def test_eval_num_candidates_widens_only_the_search_of_acting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluations, evaluate() and predict() search eval_num_candidates candidates; the training loop's
    plans keep num_candidates, and its steps do not depend on the evaluation's width."""
    import agent.acting as agent_module

    searched: list[tuple[str, int]] = []  # (phase, candidates in one objective call)
    phase = ["train"]
    make_objective = agent_module.make_objective

    def recording_make_objective(*args: Any, **kwargs: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        objective = make_objective(*args, **kwargs)

        def recorded(candidates: torch.Tensor) -> torch.Tensor:  # (N, H, A) or (B, N, H, A)
            searched.append((phase[0], candidates.shape[-3]))
            return objective(candidates)
        return recorded

    monkeypatch.setattr(agent_module, "make_objective", recording_make_objective)
    runs = {}
    for width in (0, 24):
        config = debug_config(**{"planner.eval_num_candidates": width, "planner.eval_iterations": 1 if width else 0,
                                 "train.eval_freq": 50})
        agent = MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path / f"w{width}")
        evaluate_in_loop = agent._evaluate

        def in_eval_phase(evaluate_in_loop: Callable[[], EvalResult] = evaluate_in_loop) -> EvalResult:
            phase[0] = "eval"
            try:
                return evaluate_in_loop()
            finally:
                phase[0] = "train"
        agent._evaluate = in_eval_phase  # type: ignore[method-assign]
        searched.clear()
        agent.learn(100, progress_bar=False)
        training = {n for p, n in searched if p == "train"}
        evaluating = {n for p, n in searched if p == "eval"}
        assert training and evaluating
        assert max(training) <= 16 + 1 and max(evaluating) == max(training) + (width - 16 if width else 0)
        searched.clear()
        phase[0] = "acting"
        agent.evaluate(1)
        agent.predict(np.zeros(agent.obs_shape, np.float32))
        assert {n for _, n in searched} == evaluating
        phase[0] = "train"
        runs[width] = agent.buffer.stored().actions.copy()
    np.testing.assert_array_equal(runs[0], runs[24])  # the training loop's plans are the same


def _adapter_and_counting_buffer(config: Config) -> tuple[RoboticsAdapter, ReplayBuffer]:
    """A robotics adapter on 2-d states, and 30 stored transitions whose states count 0, 1, ..., 29."""
    adapter = RoboticsAdapter(config, state_dim=2, action_dim=1, device=torch.device("cpu"))
    buffer = ReplayBuffer(50, (2,), 1)
    for step in range(30):
        buffer.add(obs=np.full(2, step, np.float32), action=np.zeros(1, np.float32), reward=0.0, cost=0.0,
                   terminated=False, truncated=False, next_obs=np.full(2, step + 1, np.float32))
    adapter.fit_normalizers(buffer)
    return adapter, buffer


def test_value_window_trains_the_value_on_the_newest_transitions(monkeypatch: pytest.MonkeyPatch) -> None:
    config = debug_config(**{"model.value_function": True, "model.value_window": 5})
    adapter, buffer = _adapter_and_counting_buffer(config)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(adapter.model, "update", lambda batch, value_batch=None, target_noise=None: seen.update(
        batch=batch, value_batch=value_batch) or {})
    adapter.train_step(buffer, np.random.default_rng(0))
    assert set(seen["value_batch"].obs[..., 0].unique().tolist()) <= {25.0, 26.0, 27.0, 28.0, 29.0}
    assert seen["batch"].obs[..., 0].min() < 25  # the model itself still learns from everything


@pytest.mark.parametrize("kind", ["state", "policy"])
def test_value_batch_size_draws_one_minibatch_of_that_many_rows(kind: str) -> None:
    config = debug_config(**{"model.value_function": True, "model.value_kind": kind, "value.batch_size": 7,
                             "model.value_window": 5})
    adapter, buffer = _adapter_and_counting_buffer(config)
    seen: dict[str, Any] = {}
    adapter.model.update = lambda batch, value_batch=None, target_noise=None: seen.update(  # type: ignore[method-assign]
        batch=batch, value_batch=value_batch, noise=target_noise) or {}
    adapter.train_step(buffer, np.random.default_rng(0))
    assert tuple(seen["value_batch"].obs.shape) == (1, 7, 2)
    assert set(seen["value_batch"].obs[..., 0].unique().tolist()) <= {25.0, 26.0, 27.0, 28.0, 29.0}
    assert tuple(seen["batch"].obs.shape[:2]) == (config.robotics.ensemble_size, config.train.batch_size)
    assert (seen["noise"] is None) == (kind == "state") and (kind == "state" or seen["noise"].shape == (1, 7, 1))
    metrics = RoboticsAdapter(config, state_dim=2, action_dim=1, device=torch.device("cpu"))
    fresh = metrics.train_step(buffer, np.random.default_rng(0))  # the real update takes the (1, 7) batch
    assert all(np.isfinite(v) for v in fresh.values())


def test_eval_video_records_each_evaluations_first_episode(tmp_path: Path) -> None:
    from PIL import Image

    config = debug_config(**{"train.eval_video": True, "train.eval_episodes": 2})  # lockstep: episode 0 on env 0
    MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path).learn(200, progress_bar=False)
    with np.load(tmp_path / "evaluations.npz") as data:
        steps, lengths = data["timesteps"], data["ep_lengths"]
    videos = sorted((tmp_path / "videos").glob("*.gif"))
    assert [v.name for v in videos] == [f"eval-{int(s):08d}.gif" for s in steps]
    for video, length in zip(videos, lengths[:, 0], strict=True):
        with Image.open(video) as gif:
            frame_ms = [gif.info["duration"] for _ in _gif_frames(gif)]
        # PointMass renders at 10 frames/s: the reset frame and one per step, 100 ms each (Pillow may merge
        # identical neighbours into one longer frame, so compare the total)
        assert sum(frame_ms) == 100 * (int(length) + 1)


def _gif_frames(gif: Any) -> Any:
    for k in range(gif.n_frames):
        gif.seek(k)
        yield k


def test_eval_video_needs_an_env_that_renders(tmp_path: Path) -> None:
    from envs import EnvironmentSpecError, EpisodeRecorder

    env = make_env(POINT_MASS_ID)  # render_mode None
    with pytest.raises(EnvironmentSpecError, match="render_mode='rgb_array'"):
        EpisodeRecorder(env)
    config = debug_config(**{"train.eval_video": True})
    agent = MBRLAgent(POINT_MASS_ID, config, eval_env=make_env(POINT_MASS_ID), run_dir=tmp_path)
    with pytest.raises(EnvironmentSpecError, match="render_mode='rgb_array'"):
        agent.learn(10, progress_bar=False)


def test_episode_recorder_keeps_one_episode_only_when_armed() -> None:
    from envs import EpisodeRecorder

    recorder = EpisodeRecorder(make_env(POINT_MASS_ID, render_mode="rgb_array"))
    recorder.reset(seed=0)
    recorder.step(np.zeros(recorder.action_space.shape, dtype=np.float32))
    assert recorder.take().shape[0] == 0  # not armed: nothing rendered
    recorder.arm()
    recorder.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = recorder.step(np.ones(recorder.action_space.shape, dtype=np.float32))
        steps, done = steps + 1, terminated or truncated
    recorder.reset(seed=1)  # the next episode is not recorded
    recorder.step(np.zeros(recorder.action_space.shape, dtype=np.float32))
    frames = recorder.take()
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3
    assert frames.shape[0] == steps + 1


def test_write_gif_scales_large_frames_and_refuses_bad_input(tmp_path: Path) -> None:
    from PIL import GifImagePlugin, Image

    from agent.logger import VIDEO_SIDE, write_gif

    frames = np.zeros((3, 480, 320, 3), dtype=np.uint8)
    frames[1, :, :, 0] = 255
    write_gif(tmp_path / "v.gif", frames, fps=25)
    with Image.open(tmp_path / "v.gif") as gif:
        assert gif.size == (VIDEO_SIDE * 320 // 480, VIDEO_SIDE)
        assert isinstance(gif, GifImagePlugin.GifImageFile)
        assert gif.n_frames == 3 and gif.info["duration"] == 40
    with pytest.raises(ValueError, match=r"\(T >= 1, H, W, 3\) uint8"):
        write_gif(tmp_path / "w.gif", frames.astype(np.float32), fps=25)
    assert not (tmp_path / "w.gif").exists()


def test_a_proposers_sequences_join_the_planners_candidates() -> None:
    """A Proposer given to the agent offers planner.proposals sequences to every plan, as the planner's
    proposals; without one (and without a learned policy) planner.proposals is refused."""

    class Constant:
        def __init__(self) -> None:
            self.contexts: list[dict[str, object]] = []

        def propose(self, context: dict[str, object], n: int, horizon: int) -> torch.Tensor:
            self.contexts.append(context)
            return torch.full((n, horizon, 1), 0.5)

    proposer = Constant()
    config = debug_config(**{"planner.proposals": 2})
    agent = MBRLAgent(POINT_MASS_ID, config, proposer=proposer)
    planner = agent.make_planner(torch.Generator().manual_seed(0), acting=True)
    received: list[torch.Tensor | None] = []
    plan = planner.plan

    def recording_plan(objective: Any, init: torch.Tensor, proposals: torch.Tensor | None = None) -> torch.Tensor:
        received.append(proposals)
        return plan(objective, init, proposals)

    planner.plan = recording_plan  # type: ignore[method-assign]
    action = agent.plan(np.zeros(agent.obs_shape, np.float32), planner)
    assert action.shape == (1,) and len(received) == 1 and received[0] is not None
    assert torch.equal(received[0], torch.full((2, config.planner.horizon, 1), 0.5))
    z0 = proposer.contexts[0]["z0"]
    assert isinstance(z0, torch.Tensor) and z0.shape == (1, *agent.obs_shape)
    with pytest.raises(ConfigError, match="needs a learned policy"):
        MBRLAgent(POINT_MASS_ID, config)


def test_both_world_models_meet_the_world_model_contract() -> None:
    from world_models.base import WorldModel

    robotics = MBRLAgent(POINT_MASS_ID, debug_config())
    latent = MBRLAgent(BALL_CATCH_ID, debug_config(**{"env_kwargs": {"obs_mode": "pixels"}}))
    assert (robotics.model_kind, latent.model_kind) == ("robotics", "latent")
    assert isinstance(robotics.model, WorldModel) and isinstance(latent.model, WorldModel)


@pytest.mark.skipif(available_threads() < 2, reason="needs two threads")
@pytest.mark.parametrize("spare, eval_threads", [(1.0, 2), (0.2, 1)], ids=["idle machine", "busy machine"])
def test_the_training_loop_plans_on_loop_threads_and_evaluates_on_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spare: float, eval_threads: int) -> None:
    """Vector observations: the loop's plans and gradient steps on one thread, evaluations on the process's
    threads where the machine has a spare core (else on the loop's)."""
    monkeypatch.setattr(fast, "spare_cores", lambda: spare)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        agent = MBRLAgent(POINT_MASS_ID, debug_config(), run_dir=tmp_path)
        assert agent.loop_threads() == 1
        seen: dict[str, set[int]] = {"train": set(), "eval": set(), "train_step": set()}
        plan, train_step = agent.plan, agent.adapter.train_step

        def spy_plan(obs: Any, planner: Any, *args: Any, **kwargs: Any) -> np.ndarray:
            seen["train" if planner is agent.planner else "eval"].add(torch.get_num_threads())
            return plan(obs, planner, *args, **kwargs)

        def spy_step(*args: Any) -> dict[str, float]:
            seen["train_step"].add(torch.get_num_threads())
            return train_step(*args)

        agent.plan = spy_plan  # type: ignore[method-assign,assignment]
        agent.adapter.train_step = spy_step  # type: ignore[method-assign,assignment]
        agent.learn(110, progress_bar=False)
        assert seen == {"train": {1}, "eval": {eval_threads}, "train_step": {1}}
        assert torch.get_num_threads() == 2  # restored after learn
        assert MBRLAgent(POINT_MASS_ID, debug_config(**{"train.loop_threads": 2})).loop_threads() == 2
        assert MBRLAgent(POINT_MASS_ID, debug_config(**{"train.loop_threads": 8})).loop_threads() == 2  # capped
        pixel_config = resolve_config(BALL_CATCH_ID, {"device": "cpu", "env_kwargs": {"obs_mode": "pixels"}}, "debug")
        pixels = MBRLAgent(BALL_CATCH_ID, pixel_config)
        assert pixels.loop_threads() == 2  # images: all
    finally:
        torch.set_num_threads(before)
