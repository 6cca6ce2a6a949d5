"""Contract tests for ``envs``: making, checking, wrapping, errors, the toy task."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs.make as envs_make
from envs import (
    CostInfo,
    EnvironmentSpecError,
    FiniteCheck,
    GoalPointMassEnv,
    NonFiniteError,
    PointMassEnv,
    env_dims,
    make_env,
    parse_env_kwargs,
)
from envs.toy import goal_point_mass_reward, point_mass_reward
from tests.dummy_envs import wrapper_types

POINT_MASS = "rehearse/PointMass-v0"


def _act(value: float, dim: int = 1) -> np.ndarray:
    return np.full(dim, value, dtype=np.float32)


# ---------------------------------------------------------------- registered ids


def test_registered_id_is_wrapped_and_rescaled_to_unit_box() -> None:
    env = make_env("Pendulum-v1", seed=0)
    types = wrapper_types(env)
    assert types[:3] == [FiniteCheck, CostInfo, gym.wrappers.RescaleAction]
    space = env.action_space
    assert isinstance(space, gym.spaces.Box)
    assert np.all(space.low == -1.0) and np.all(space.high == 1.0)
    assert env_dims(env) == (3, 1)
    pendulum: Any = env.unwrapped
    env.reset(seed=0)
    env.step(_act(1.0))
    assert pendulum.last_u == pytest.approx(2.0)  # Pendulum's max torque
    env.step(_act(-0.5))
    assert pendulum.last_u == pytest.approx(-1.0)
    env.close()


def test_unit_bounds_are_not_rescaled() -> None:
    env = make_env(POINT_MASS)
    assert wrapper_types(env)[:2] == [FiniteCheck, CostInfo]
    assert gym.wrappers.RescaleAction not in wrapper_types(env)


def test_seed_seeds_the_action_space() -> None:
    first = make_env("Pendulum-v1", seed=3).action_space.sample()
    second = make_env("Pendulum-v1", seed=3).action_space.sample()
    np.testing.assert_array_equal(first, second)


def test_unknown_id_suggests_close_matches() -> None:
    with pytest.raises(EnvironmentSpecError) as caught:
        make_env("HalfCheeta-v5")
    message = str(caught.value)
    assert "HalfCheetah-v5" in message
    assert "package.module:EnvClass" in message


def test_unknown_id_is_case_insensitive() -> None:
    with pytest.raises(EnvironmentSpecError, match="Pendulum-v1"):
        make_env("pendulum-v1")


def test_wrong_version_is_a_spec_error() -> None:
    with pytest.raises(EnvironmentSpecError, match="HalfCheetah-v5"):
        make_env("HalfCheetah-v9")


def test_bad_kwargs_are_a_spec_error() -> None:
    with pytest.raises(EnvironmentSpecError, match="no_such_kwarg"):
        make_env("Pendulum-v1", {"no_such_kwarg": 1})


def test_discrete_actions_are_rejected() -> None:
    with pytest.raises(EnvironmentSpecError, match=r"Discrete\(2\)") as caught:
        make_env("CartPole-v1")
    assert "continuous" in str(caught.value)


# ---------------------------------------------------------------- entry points


def test_entry_point_env_is_made_checked_and_rescaled() -> None:
    with pytest.warns(UserWarning, match=r"^tests\.dummy_envs:WideActionEnv: "):
        env = make_env("tests.dummy_envs:WideActionEnv")
    env.reset(seed=0)
    obs, *_ = env.step(_act(1.0))
    assert obs[1] == pytest.approx(2.0)  # the env saw the rescaled action


@pytest.mark.parametrize(
    ("entry_point", "expected"),
    [
        ("tests.no_such_module:Env", "cannot import module"),
        ("tests.dummy_envs:Missing", "no attribute 'Missing'.*NaNEnv"),
        ("tests.dummy_envs:NotAnEnv", "not a gymnasium.Env subclass"),
    ],
)
def test_broken_entry_points_are_spec_errors(entry_point: str, expected: str) -> None:
    with pytest.raises(EnvironmentSpecError, match=expected):
        make_env(entry_point)


def test_env_checker_failure_is_a_spec_error() -> None:
    with pytest.raises(EnvironmentSpecError, match="failed gymnasium's env checker"):
        make_env("tests.dummy_envs:BrokenEnv")
    make_env("tests.dummy_envs:BrokenEnv", check=False)  # the checker can be skipped


# ---------------------------------------------------------------- FiniteCheck


def test_nan_observation_names_episode_step_and_action() -> None:
    env = make_env("tests.dummy_envs:NaNEnv", {"nan_at_step": 3})
    env.reset(seed=0)
    env.step(_act(0.0))
    env.reset()  # episode 1 starts; steps count from 0 again
    for _ in range(3):
        env.step(_act(0.25))
    with pytest.raises(NonFiniteError) as caught:
        env.step(_act(0.123456))
    message = str(caught.value)
    assert "observation" in message
    assert "episode 1" in message
    assert "step 3" in message
    assert "[0.1235]" in message
    assert "replay buffer" in message


def test_nan_reward_is_reported_as_reward() -> None:
    kwargs = {"nan_at_step": 0, "quantity": "reward"}
    # check=False: a NaN on the first step rightly fails the env checker itself.
    env = make_env("tests.dummy_envs:NaNEnv", kwargs, check=False)
    env.reset(seed=0)
    with pytest.raises(NonFiniteError, match="non-finite reward.*episode 0, step 0"):
        env.step(_act(-1.0))


# ---------------------------------------------------------------- CostInfo


def test_cost_defaults_to_zero_float() -> None:
    env = make_env(POINT_MASS)
    env.reset(seed=0)
    *_, info = env.step(_act(0.0))
    assert info["cost"] == 0.0 and type(info["cost"]) is float


def test_numpy_cost_becomes_python_float() -> None:
    env = make_env("tests.dummy_envs:EchoEnv", {"cost": np.float32(0.5)})
    env.reset(seed=0)
    *_, info = env.step(_act(0.0))
    assert info["cost"] == 0.5 and type(info["cost"]) is float


def test_non_numeric_cost_is_a_spec_error() -> None:
    env = make_env("tests.dummy_envs:EchoEnv", {"cost": "high"})
    env.reset(seed=0)
    with pytest.raises(EnvironmentSpecError, match="non-numeric info\\['cost'\\]"):
        env.step(_act(0.0))


# ---------------------------------------------------------------- parse_env_kwargs


def test_parse_env_kwargs_types_values() -> None:
    parsed = parse_env_kwargs(["n=3", "dt=0.5", "lr=1e-3", "on=true", "xs=[1,2]", "name=abc", "eq=a=b"])
    assert parsed == {
        "n": 3,
        "dt": 0.5,
        "lr": 1e-3,
        "on": True,
        "xs": [1, 2],
        "name": "abc",
        "eq": "a=b",
    }
    assert type(parsed["n"]) is int and type(parsed["lr"]) is float


@pytest.mark.parametrize("item", ["n3", "=3", "xs=[1,2"])
def test_parse_env_kwargs_rejects_malformed_items(item: str) -> None:
    with pytest.raises(EnvironmentSpecError, match="key=value|YAML"):
        parse_env_kwargs([item])


def test_parse_env_kwargs_rejects_duplicates() -> None:
    with pytest.raises(EnvironmentSpecError, match="twice"):
        parse_env_kwargs(["n=1", "n=2"])


# ---------------------------------------------------------------- PointMassEnv


def test_point_mass_passes_gymnasium_env_checker() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no checker warnings either
        check_env(PointMassEnv(), skip_render_check=True)


def test_point_mass_dynamics_and_truncation() -> None:
    env = PointMassEnv(max_episode_steps=2)
    env.reset(seed=0)
    env.state = np.array([0.5, 0.0], dtype=np.float32)
    obs, reward, terminated, truncated, _ = env.step(_act(1.0))
    np.testing.assert_allclose(obs, [0.51, 0.1], rtol=1e-6)
    assert reward == pytest.approx(-(0.51**2) - 0.01)
    assert not terminated and not truncated
    *_, terminated, truncated, _ = env.step(_act(0.0))
    assert not terminated and truncated


def test_point_mass_reward_is_maximal_at_origin() -> None:
    env = PointMassEnv()
    env.reset(seed=0)
    env.state = np.zeros(2, dtype=np.float32)
    _, best, *_ = env.step(_act(0.0))
    assert best == 0.0
    grid = np.linspace(-2.0, 2.0, 41)
    rewards = [point_mass_reward(x, a) for x in grid for a in np.linspace(-1, 1, 21)]
    assert max(rewards) == best


def test_point_mass_is_registered_and_renders() -> None:
    env = make_env(POINT_MASS, {"max_episode_steps": 5}, render_mode="rgb_array")
    obs, _ = env.reset(seed=1)
    assert obs.shape == (2,) and -1.0 <= obs[0] <= 1.0 and obs[1] == 0.0
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.shape == (64, 64, 3)


def test_goal_point_mass_passes_the_checker_and_hides_its_goal() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(GoalPointMassEnv(), skip_render_check=True)
    env = make_env("rehearse/GoalPointMass-v0", {"max_episode_steps": 2})
    obs, info = env.reset(seed=0, options={"goal": (0.4, -0.8)})
    np.testing.assert_array_equal(obs, np.zeros(4))  # at rest at the centre, whatever the goal
    np.testing.assert_allclose(info["goal"], [0.4, -0.8], rtol=1e-6)
    obs, reward, terminated, truncated, info = env.step(np.array([1.0, -0.5], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.01, -0.005, 0.1, -0.05], rtol=1e-5)
    assert reward == pytest.approx(goal_point_mass_reward(obs[:2], np.array([0.4, -0.8]), np.array([1.0, -0.5])))
    assert reward == pytest.approx(-(0.39**2 + 0.795**2) - 0.01 * 1.25, rel=1e-5)
    assert not terminated and not truncated
    *_, truncated, _ = env.step(np.zeros(2, dtype=np.float32))
    assert truncated
    drawn = [GoalPointMassEnv().reset(seed=s)[1]["goal"] for s in range(3)]
    assert all(np.abs(g).max() <= 1.0 for g in drawn) and not np.allclose(drawn[0], drawn[1])


@pytest.mark.parametrize("goal", [(2.0, 0.0), (0.1,), (float("nan"), 0.0)])
def test_goal_point_mass_refuses_a_goal_off_the_plane(goal: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match=r"two finite numbers in \[-1, 1\]"):
        GoalPointMassEnv().reset(options={"goal": goal})


_DEPRECATED_MODEL = (
    '<mujoco><compiler settotalmass="1"/><worldbody><body><geom size=".1"/><joint type="free"/></body>'
    "</worldbody></mujoco>"
)


def test_mujoco_warnings_are_logged_once_and_not_written_to_the_working_directory(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    mujoco = pytest.importorskip("mujoco")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(envs_make, "_mujoco_warnings_seen", set())
    make_env("InvertedPendulum-v5").close()  # installs the callback
    with caplog.at_level("WARNING", logger="envs.make"):
        for _ in range(3):
            mujoco.MjModel.from_xml_string(_DEPRECATED_MODEL)
    messages = [record.getMessage() for record in caplog.records if "settotalmass" in record.getMessage()]
    assert len(messages) == 1 and messages[0].startswith("MuJoCo: compiler attribute 'settotalmass'")
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_mujoco_warning_callback_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a logging handler that fails")

    monkeypatch.setattr(envs_make, "_mujoco_warnings_seen", set())
    monkeypatch.setattr(envs_make._LOG, "warning", broken)
    envs_make._log_mujoco_warning("a warning")  # an exception here would abort the process inside MuJoCo


def test_a_mujoco_warning_callback_installed_by_the_user_is_kept() -> None:
    mujoco = pytest.importorskip("mujoco")
    previous = mujoco.get_mju_user_warning()
    received: list[str] = []
    mujoco.set_mju_user_warning(received.append)
    try:
        make_env("InvertedPendulum-v5").close()
        mujoco.MjModel.from_xml_string(_DEPRECATED_MODEL)
        assert mujoco.get_mju_user_warning() == received.append
        assert len(received) == 1 and "settotalmass" in received[0]
    finally:
        mujoco.set_mju_user_warning(previous)
