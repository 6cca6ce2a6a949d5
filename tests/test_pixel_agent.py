"""Planning from pixels: image observations in make_env, FrameStack, the latent model in the agent loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import train_agent
from agent import MBRLAgent, resolve_config
from agent.agent import CHECKPOINT_NAME
from agent.checkpoint import load_checkpoint
from agent.config import Config, ConfigError, apply_overrides, validate
from envs import BALL_CATCH_ID, POINT_MASS_ID, CostInfo, EnvironmentSpecError, FiniteCheck, FrameStack, make_env
from envs.make import env_shapes
from tests.dummy_envs import wrapper_types
from world_models.latent import LatentWorldModel

PIXELS = {"obs_mode": "pixels"}


# ---------------------------------------------------------------- envs


def test_make_env_gives_uint8_images_and_stacks_frames() -> None:
    env = make_env(BALL_CATCH_ID, PIXELS)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env_shapes(env) == ((64, 64, 3), 1)

    stacked = make_env(BALL_CATCH_ID, PIXELS, frame_stack=3)
    assert wrapper_types(stacked)[:3] == [FiniteCheck, CostInfo, FrameStack]
    assert env_shapes(stacked) == ((64, 64, 9), 1)
    first, _ = stacked.reset(seed=0)
    assert first.dtype == np.uint8 and first.shape == (64, 64, 9)
    np.testing.assert_array_equal(first[..., 0:3], first[..., 3:6])  # the first frame fills every slot
    np.testing.assert_array_equal(first[..., 3:6], first[..., 6:9])
    frame, _ = env.reset(seed=0)
    np.testing.assert_array_equal(first[..., 6:9], frame)
    second, *_ = stacked.step(np.ones(1, np.float32))
    np.testing.assert_array_equal(second[..., 0:6], first[..., 3:9])  # oldest dropped, newest last
    assert not np.array_equal(second[..., 6:9], first[..., 6:9])  # the ball flew on


def test_make_env_refuses_unsupported_observations_clearly() -> None:
    supported = r"1-D gymnasium.spaces.Box\) or a channel-last image.*obs_mode=pixels"
    with pytest.raises(EnvironmentSpecError, match=supported):
        make_env(BALL_CATCH_ID)  # {"pixels", "state"} dict observations
    with pytest.raises(EnvironmentSpecError, match="FrameStack needs image observations"):
        make_env(POINT_MASS_ID, frame_stack=2)
    with pytest.raises(EnvironmentSpecError, match="frame_stack must be"):
        make_env(BALL_CATCH_ID, PIXELS, frame_stack=0)
    with pytest.raises(EnvironmentSpecError, match="registered ids only"):
        make_env("envs.toy:PointMassEnv", pixels=True)


# ---------------------------------------------------------------- config


def test_latent_config_validation() -> None:
    config = resolve_config(BALL_CATCH_ID, preset="ballcatch-pixels")
    assert config.env_kwargs == PIXELS and config.frame_stack == 2
    assert config.model.kind == "latent" and config.planner.particles == 1
    validate(config)  # particles=1 is fine for the (deterministic) latent model
    with pytest.raises(ConfigError, match="multiple"):
        validate(apply_overrides(config, {"model.kind": "robotics"}))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"model.kind": "pixels"}, "model.kind must be one of auto, robotics, latent"),
        ({"model.objective": "mse"}, "latent.objective must be one of jepa, reconstruction"),
        ({"latent.sequence_length": 0}, "latent.sequence_length must be >= 1"),
        ({"model.latent_dim": 0}, "latent.latent_dim must be >= 1"),
        ({"frame_stack": 0}, "frame_stack must be >= 1"),
        ({"latent.sparse_reward_weight": -1.0}, "latent.sparse_reward_weight must be a finite number >= 0"),
        ({"model.termination_weight": -1.0}, "termination_weight must be a finite number >= 0"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            validate(apply_overrides(config, overrides))
    with pytest.raises(ConfigError, match="expected bool"):
        apply_overrides(config, {"pixels": "maybe"})


def test_model_kind_must_match_the_observations(tmp_path: Path) -> None:
    state = resolve_config(POINT_MASS_ID, {"device": "cpu", "model.kind": "latent"}, preset="debug")
    with pytest.raises(ConfigError, match="needs image observations"):
        MBRLAgent(POINT_MASS_ID, state, run_dir=tmp_path / "a")
    pixels = resolve_config(BALL_CATCH_ID, {"device": "cpu", "env_kwargs": PIXELS, "model.kind": "robotics"},
                            preset="debug")
    with pytest.raises(ConfigError, match="needs a state vector"):
        MBRLAgent(BALL_CATCH_ID, pixels, run_dir=tmp_path / "b")


# ---------------------------------------------------------------- the agent on pixels


def tiny_pixel_config(**overrides: object) -> Config:
    return resolve_config(BALL_CATCH_ID, {
        "device": "cpu", "env_kwargs": PIXELS, "frame_stack": 2,
        "train.learning_starts": 20, "train.initial_gradient_steps": 2, "train.train_freq": 5,
        "train.batch_size": 4, "train.eval_freq": 60, "train.eval_episodes": 2, "train.log_interval": 30,
        "train.checkpoint_freq": 30, "train.buffer_capacity": 1000,
        "model.latent_dim": 8, "model.depth": 4, "model.hidden_dim": 16, "model.sequence_length": 4,
        "planner.horizon": 4, "planner.num_candidates": 16, "planner.iterations": 2, "planner.num_elites": 4,
        "planner.particles": 1, **overrides,
    }, preset="debug")


def test_agent_plans_from_pixels_saves_loads_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    agent = MBRLAgent(BALL_CATCH_ID, tiny_pixel_config(), run_dir=run)
    assert agent.model_kind == "latent" and isinstance(agent.model, LatentWorldModel)
    assert agent.buffer.obs_dtype == np.uint8 and agent.obs_shape == (64, 64, 6)
    agent.learn(60, progress_bar=False)

    evaluations = np.load(run / "evaluations.npz")
    assert evaluations["timesteps"].tolist() == [60] and evaluations["results"].shape == (1, 2)
    header = (run / "progress.csv").read_text().splitlines()[0]
    for key in ["world_model/jepa_loss", "world_model/embedding_std", "planner/plan_ms", "eval/mean_reward"]:
        assert key in header
    payload = load_checkpoint(run / CHECKPOINT_NAME)
    assert payload["counters"]["num_timesteps"] == 60
    assert any(key.startswith("target_encoder.") for key in payload["model"])  # the EMA target is saved

    frame, _ = agent.evaluator.envs[0].reset(seed=3)
    action, _ = agent.predict(frame, episode_start=True)
    assert action.shape == (1,) and -1 <= action[0] <= 1
    agent.save(tmp_path / "agent.pt")
    loaded = MBRLAgent.load(tmp_path / "agent.pt")
    np.testing.assert_array_equal(loaded.predict(frame, episode_start=True)[0], action)
    with pytest.raises(ValueError, match="shape"):
        agent.predict(frame[..., :3])

    resumed = MBRLAgent(BALL_CATCH_ID, tiny_pixel_config(), run_dir=run)
    assert resumed.num_timesteps == 60 and len(resumed.buffer) == 60
    resumed.learn(70, progress_bar=False)
    assert resumed.num_timesteps == 70
    assert load_checkpoint(run / CHECKPOINT_NAME)["counters"]["num_timesteps"] == 70


def test_cli_smoke_on_pixels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = train_agent.main([
        "--env", BALL_CATCH_ID, "--env-kwargs", "obs_mode=pixels", "--frame-stack", "2", "--preset", "debug",
        "--model-latent-dim", "8", "--model-depth", "4", "--train-learning-starts", "30",
        "--total-timesteps", "60", "--run-dir", str(tmp_path), "--no-progress-bar", "--device", "cpu",
    ])
    out, err = capsys.readouterr()
    assert code == 0, err
    text = (tmp_path / "config.yaml").read_text()
    assert "frame_stack: 2" in text and "obs_mode: pixels" in text
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["counters"]["num_timesteps"] == 60


def test_mujoco_pixels_smoke(tmp_path: Path) -> None:
    try:
        env = make_env("InvertedPendulum-v5", pixels=True)
        env.reset(seed=0)
        env.close()
    except Exception as exc:  # no GL backend on this machine
        pytest.skip(f"MuJoCo cannot render here: {exc}")
    config = resolve_config("InvertedPendulum-v5", {
        "device": "cpu", "pixels": True, "frame_stack": 2, "train.learning_starts": 15, "train.batch_size": 4,
        "train.eval_freq": 0, "train.initial_gradient_steps": 1, "train.train_freq": 5,
        "model.latent_dim": 8, "model.depth": 4, "model.sequence_length": 2, "planner.particles": 1,
    }, preset="debug")
    agent = MBRLAgent("InvertedPendulum-v5", config, run_dir=tmp_path)
    assert agent.obs_shape == (64, 64, 6) and agent.model_kind == "latent"
    agent.learn(30, progress_bar=False)
    assert agent.num_timesteps == 30
