"""BallCatch: physics against closed forms, landing bins, rewards, spaces, seeding, frames."""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import BALL_CATCH_ID, BallCatchEnv, make_env
from envs.ball_catch import (
    CATCH_REWARD,
    DT,
    FLOOR_WIDTH,
    GRAVITY,
    BallPhysics,
    landing_bin,
    landing_time,
    landing_x,
    launch_velocity,
    trajectory,
)

VARIANTS = [
    pytest.param({}, id="plain"),
    pytest.param({"drag": 0.5}, id="drag"),
    pytest.param({"bounce": True}, id="bounce"),
    pytest.param({"drag": 0.5, "bounce": True, "restitution": 0.7}, id="drag+bounce"),
]


def _physics(kwargs: dict[str, Any]) -> BallPhysics:
    return BallPhysics(**kwargs)


def _run(env: BallCatchEnv, seed: int, policy: Any) -> tuple[dict[str, Any], list[dict[str, Any]], list[float]]:
    """Play one episode; ``policy(info) -> action in [-1, 1]``. Returns reset info, step infos, rewards."""
    _, first = env.reset(seed=seed)
    infos, rewards, info, done = [], [], first, False
    while not done:
        _, reward, terminated, truncated, info = env.step(np.array([policy(info)], dtype=np.float32))
        infos.append(info)
        rewards.append(float(reward))
        done = terminated or truncated
    assert terminated and not truncated
    return first, infos, rewards


def _still(info: dict[str, Any]) -> float:
    return 0.0


def _chase(info: dict[str, Any]) -> float:
    """Steer the basket under the known landing point (max speed 8 m/s = 0.4 m per step)."""
    return float(np.clip((info["landing_x"] - info["basket_x"]) / (8.0 * DT), -1.0, 1.0))


def _flee(info: dict[str, Any]) -> float:
    return -1.0 if info["landing_x"] > info["basket_x"] else 1.0


# ---------------------------------------------------------------- physics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_steps_follow_the_textbook_trajectory_without_drag(seed: int) -> None:
    env = BallCatchEnv(obs_mode="state")
    first, infos, _ = _run(env, seed, _still)
    (x0, y0), (vx, vy) = first["ball_pos"], first["ball_vel"]
    for k, info in enumerate(infos[:-1], start=1):
        t = k * DT
        np.testing.assert_allclose(info["ball_pos"], [x0 + vx * t, y0 + vy * t - 0.5 * GRAVITY * t**2], atol=1e-6)
        np.testing.assert_allclose(info["ball_vel"], [vx, vy - GRAVITY * t], atol=1e-6)
    t_land = (vy + math.sqrt(vy**2 + 2 * GRAVITY * y0)) / GRAVITY
    np.testing.assert_allclose(infos[-1]["ball_pos"], [x0 + vx * t_land, 0.0], atol=1e-6)
    assert len(infos) == math.ceil(t_land / DT)
    assert first["landing_time"] == pytest.approx(t_land, abs=1e-9)


@pytest.mark.parametrize("kwargs", VARIANTS)
def test_simulated_landing_matches_closed_form(kwargs: dict[str, Any]) -> None:
    env, physics = BallCatchEnv(obs_mode="state", **kwargs), _physics(kwargs)
    for seed in range(4):
        first, infos, _ = _run(env, seed, _still)
        pos0, vel0 = first["ball_pos"], first["ball_vel"]
        x_land = landing_x(pos0, vel0, physics)
        assert infos[-1]["ball_pos"][0] == pytest.approx(x_land, abs=1e-9)
        assert infos[-1]["ball_pos"][1] == 0.0 and infos[-1]["landed"]
        assert first["landing_x"] == pytest.approx(x_land, abs=1e-12)
        assert all(info["landing_bin"] == landing_bin(x_land) for info in infos)
        assert len(infos) == math.ceil(landing_time(pos0, vel0, physics) / DT)
        times = DT * np.arange(1, len(infos))  # every step before the landing one
        positions, _ = trajectory(times, pos0, vel0, physics)
        np.testing.assert_allclose([info["ball_pos"] for info in infos[:-1]], positions, atol=1e-9)


def test_trajectory_is_the_textbook_parabola_and_rests_after_landing() -> None:
    pos0, vel0 = (0.4, 1.5), (3.0, 6.0)
    t_land = (6.0 + math.sqrt(36.0 + 2 * GRAVITY * 1.5)) / GRAVITY
    times = np.array([0.0, 0.3, 0.9, t_land, t_land + 1.0])
    positions, velocities = trajectory(times, pos0, vel0)
    t = np.minimum(times, t_land)
    np.testing.assert_allclose(positions[:, 0], 0.4 + 3.0 * t, atol=1e-12)
    np.testing.assert_allclose(positions[:, 1], np.maximum(1.5 + 6.0 * t - 0.5 * GRAVITY * t**2, 0.0), atol=1e-12)
    np.testing.assert_allclose(velocities[:, 1], 6.0 - GRAVITY * t, atol=1e-12)
    assert positions.shape == velocities.shape == (5, 2)
    assert landing_x(pos0, vel0) == pytest.approx(0.4 + 3.0 * t_land, abs=1e-12)


@pytest.mark.parametrize("kwargs", VARIANTS)
def test_launch_velocity_lands_on_target(kwargs: dict[str, Any]) -> None:
    physics = _physics(kwargs)
    for target, flight in [(0.5, 1.0), (4.2, 1.5), (9.5, 2.0)]:
        vel0 = launch_velocity((0.4, 1.2), target, flight, physics)
        assert landing_x((0.4, 1.2), vel0, physics) == pytest.approx(target, abs=1e-9)
        first_contact = landing_time((0.4, 1.2), vel0, BallPhysics(drag=physics.drag))
        assert first_contact == pytest.approx(flight, abs=1e-9)


def test_drag_shortens_the_throw() -> None:
    pos0, vel0 = (0.4, 1.5), (4.0, 6.0)
    ranges = [landing_x(pos0, vel0, BallPhysics(drag=k)) for k in (0.0, 0.2, 0.5, 1.0)]
    assert all(a > b for a, b in zip(ranges, ranges[1:], strict=False))
    heights = [trajectory([0.6], pos0, vel0, BallPhysics(drag=k))[0][0, 1] for k in (0.0, 0.5)]
    assert heights[1] < heights[0]
    # tiny drag is continuous with none (the series branch near k t = 0)
    assert landing_x(pos0, vel0, BallPhysics(drag=1e-9)) == pytest.approx(ranges[0], abs=1e-7)


def test_the_thrower_compensates_for_drag() -> None:
    plain, draggy = BallCatchEnv(obs_mode="state"), BallCatchEnv(obs_mode="state", drag=0.5)
    _, info_plain = plain.reset(seed=5)
    _, info_drag = draggy.reset(seed=5)
    assert info_drag["landing_x"] == pytest.approx(info_plain["landing_x"], abs=1e-9)
    assert np.all(np.abs(info_drag["ball_vel"]) > np.abs(info_plain["ball_vel"]))


def test_bounce_reflects_once_then_lands() -> None:
    physics = BallPhysics(bounce=True, restitution=0.6)
    pos0, vel0 = (0.4, 1.5), (2.0, 5.0)
    first_contact = landing_time(pos0, vel0)
    t_land = landing_time(pos0, vel0, physics)
    times = np.array([first_contact - 1e-6, first_contact, first_contact + 1e-6, 0.5 * (first_contact + t_land)])
    positions, velocities = trajectory(times, pos0, vel0, physics)
    assert positions[1, 1] == pytest.approx(0.0, abs=1e-12)
    assert velocities[0, 1] < 0 < velocities[2, 1]
    assert velocities[2, 1] == pytest.approx(-0.6 * velocities[0, 1], rel=1e-5)
    assert positions[3, 1] > 0.0  # in the air between the bounce and the landing
    impact = abs(velocities[0, 1])
    assert t_land == pytest.approx(first_contact + 2 * 0.6 * impact / GRAVITY, rel=1e-5)
    assert landing_x(pos0, vel0, physics) == pytest.approx(0.4 + 2.0 * t_land, abs=1e-9)


def test_env_bounces_without_ending_the_episode() -> None:
    env = BallCatchEnv(obs_mode="state", bounce=True)
    first, infos, _ = _run(env, 3, _still)
    heights = np.array([info["ball_pos"][1] for info in infos])
    vertical = np.array([info["ball_vel"][1] for info in infos])
    bounce = int(np.argmax(np.diff(np.sign(vertical)) > 0))  # falling, then rising
    assert 0 < bounce < len(infos) - 2 and np.all(heights[:-1] > 0)
    first_contact = landing_time(first["ball_pos"], first["ball_vel"])
    assert len(infos) > math.ceil(first_contact / DT)


# ---------------------------------------------------------------- landing bins


def test_landing_bin_edges_and_errors() -> None:
    assert [landing_bin(x) for x in (0.0, 2.49, 2.5, 5.0, 7.6, FLOOR_WIDTH)] == [0, 0, 1, 2, 3, 3]
    assert landing_bin(0.5, width=1.0, bins=2) == 1
    with pytest.raises(ValueError, match="off the floor"):
        landing_bin(-0.1)
    with pytest.raises(ValueError, match="bins >= 1"):
        landing_bin(1.0, bins=0)


@pytest.mark.parametrize("kwargs", [pytest.param({}, id="plain"), pytest.param({"drag": 1.0}, id="drag")])
def test_landing_bins_are_balanced(kwargs: dict[str, Any]) -> None:
    env = BallCatchEnv(obs_mode="state", **kwargs)
    env.reset(seed=123)
    bins = [env.reset()[1]["landing_bin"] for _ in range(400)]
    shares = np.bincount(bins, minlength=4) / len(bins)
    assert np.all((shares > 0.15) & (shares < 0.35)), shares


def test_episodes_are_short() -> None:
    env = BallCatchEnv(obs_mode="state")
    env.reset(seed=0)
    steps = [math.ceil(env.reset()[1]["landing_time"] / DT) for _ in range(200)]
    assert 20 <= min(steps) and max(steps) <= 40


# ---------------------------------------------------------------- reward


@pytest.mark.parametrize("kwargs", [pytest.param({}, id="plain"), pytest.param({"bounce": True}, id="bounce")])
def test_basket_under_the_landing_point_catches(kwargs: dict[str, Any]) -> None:
    env = BallCatchEnv(obs_mode="state", **kwargs)
    for seed in range(8):
        _, infos, rewards = _run(env, seed, _chase)
        assert rewards[-1] == CATCH_REWARD and sum(rewards) == CATCH_REWARD
        assert infos[-1]["caught"] and not any(info["caught"] for info in infos[:-1])
        assert abs(infos[-1]["basket_x"] - infos[-1]["ball_pos"][0]) <= 0.5


def test_basket_far_away_gets_nothing() -> None:
    env = BallCatchEnv(obs_mode="state")
    for seed in range(8):
        _, infos, rewards = _run(env, seed, _flee)
        assert sum(rewards) == 0.0 and infos[-1]["landed"] and not infos[-1]["caught"]


def test_truncation_after_max_episode_steps() -> None:
    env = BallCatchEnv(obs_mode="state", max_episode_steps=3)
    env.reset(seed=0)
    results = [env.step(np.zeros(1, dtype=np.float32))[2:4] for _ in range(3)]
    assert results == [(False, False), (False, False), (False, True)]


# ---------------------------------------------------------------- Gymnasium API


@pytest.mark.parametrize("obs_mode", ["dict", "pixels", "state"])
def test_gymnasium_env_checker_passes(obs_mode: str) -> None:
    env = gym.make(BALL_CATCH_ID, obs_mode=obs_mode, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


def test_observations_have_the_documented_shapes_and_dtypes() -> None:
    env = BallCatchEnv(size=48)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (48, 48, 3) and obs["pixels"].dtype == np.uint8
    assert obs["state"].shape == (2,) and obs["state"].dtype == np.float32
    pixels, _ = BallCatchEnv(obs_mode="pixels").reset(seed=0)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
    state, info = BallCatchEnv(obs_mode="state").reset(seed=0)
    assert state.shape == (6,) and state.dtype == np.float32
    np.testing.assert_allclose(state[:4], np.concatenate([info["ball_pos"], info["ball_vel"]]), rtol=1e-6)


def test_state_observations_stay_in_the_space_with_strong_drag_and_bounce() -> None:
    env = BallCatchEnv(obs_mode="state", drag=2.0, bounce=True, restitution=1.0)
    env.action_space.seed(0)
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            assert env.observation_space.contains(obs), obs
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated


def test_seeding_makes_runs_reproducible() -> None:
    def episode(seed: int) -> list[Any]:
        env = BallCatchEnv()
        env.action_space.seed(seed)
        obs, info = env.reset(seed=seed)
        trace: list[Any] = [obs["pixels"], info["ball_vel"]]
        for _ in range(10):
            obs, reward, *_ = env.step(env.action_space.sample())
            trace += [obs["pixels"], obs["state"], reward]
        return trace

    for a, b in zip(episode(4), episode(4), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(episode(4)[1], episode(5)[1])


def test_registered_and_usable_through_make_env() -> None:
    env = make_env(BALL_CATCH_ID, {"obs_mode": "state", "drag": 0.2})
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6,)
    *_, info = env.step(np.zeros(1, dtype=np.float32))
    assert info["cost"] == 0.0


def test_bad_arguments_say_what_to_pass() -> None:
    with pytest.raises(ValueError, match="obs_mode must be one of"):
        BallCatchEnv(obs_mode="image")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drag must be in"):
        BallCatchEnv(drag=-0.1)
    with pytest.raises(ValueError, match="restitution"):
        BallCatchEnv(bounce=True, restitution=1.5)
    with pytest.raises(ValueError, match="size"):
        BallCatchEnv(size=8)


# ---------------------------------------------------------------- frames


def test_render_returns_the_pixel_observation_and_draws_ball_and_basket() -> None:
    env = BallCatchEnv(render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    frame = env.render()
    assert frame is not None
    np.testing.assert_array_equal(frame, obs["pixels"])
    scale = 64 / FLOOR_WIDTH
    row = int((FLOOR_WIDTH - 1.0 - info["ball_pos"][1]) * scale)
    column = int(info["ball_pos"][0] * scale)
    assert frame[row, column, 0] > 200 and frame[row, column, 2] < 100  # the orange ball
    basket = frame[58, int(info["basket_x"] * scale)]
    assert basket[1] > 150 and basket[0] < 100  # the green basket, just under the floor line
    obs_after, *_ = env.step(np.ones(1, dtype=np.float32))
    assert not np.array_equal(obs_after["pixels"], frame)
    assert BallCatchEnv().render() is None
