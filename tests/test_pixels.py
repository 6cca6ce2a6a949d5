"""PixelObservation / make_pixel_env: spaces, frames, resizing and the errors that say what to do."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from envs import POINT_MASS_ID, EnvironmentSpecError
from envs.pixels import PixelObservation, make_pixel_env, resize_frame


def _can_render_mujoco() -> bool:
    try:
        import mujoco

        context = mujoco.GLContext(8, 8)
        context.free()
    except Exception:  # any failure to make a GL context means: no headless MuJoCo rendering here
        return False
    return True


needs_mujoco_rendering = pytest.mark.skipif(
    not _can_render_mujoco(), reason=f"MuJoCo cannot render here (MUJOCO_GL={os.environ.get('MUJOCO_GL')})"
)


def test_importing_chooses_a_headless_backend() -> None:
    assert os.environ.get("MUJOCO_GL")


@needs_mujoco_rendering
def test_mujoco_env_gives_pixels_and_state() -> None:
    # shadow_size=1024 only makes the software renderer faster; frames are still 32x32 RGB.
    env = make_pixel_env("InvertedPendulum-v5", size=32, shadow_size=1024)
    space: Any = env.observation_space
    assert isinstance(space, gym.spaces.Dict)
    assert space["pixels"].shape == (32, 32, 3) and space["pixels"].dtype == np.uint8
    assert space["state"] == env.unwrapped.observation_space
    obs, _ = env.reset(seed=0)
    next_obs, *_ = env.step(np.zeros(1, dtype=np.float32))
    for o in (obs, next_obs):
        assert space.contains(o)
        assert o["pixels"].flags.c_contiguous and o["pixels"].std() > 0  # a real picture, not a blank
    frame: Any = env.unwrapped.render()
    assert frame.shape == (32, 32, 3)  # rendered at the observation size, no resize
    env.close()


@needs_mujoco_rendering
def test_keep_state_false_gives_the_frame_alone() -> None:
    env = make_pixel_env("InvertedPendulum-v5", size=32, keep_state=False, shadow_size=1024)
    obs, _ = env.reset(seed=0)
    assert isinstance(env.observation_space, gym.spaces.Box)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    env.close()


def test_env_without_rgb_array_is_a_clear_error() -> None:
    env = gym.make("InvertedPendulum-v5")
    with pytest.raises(EnvironmentSpecError, match="render_mode='rgb_array'") as caught:
        PixelObservation(env)
    assert "make_pixel_env" in str(caught.value)
    env.close()


def test_other_envs_frames_are_resized() -> None:
    env = make_pixel_env(POINT_MASS_ID, size=32)  # PointMass draws 64x64 frames
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (32, 32, 3)
    frame: Any = env.unwrapped.render()
    np.testing.assert_array_equal(obs["pixels"], resize_frame(frame, 32))
    assert obs["state"].shape == (2,)


def test_make_pixel_env_errors() -> None:
    with pytest.raises(EnvironmentSpecError, match="InvertedPendulum-v5"):
        make_pixel_env("InvertedPendulum-v9")
    with pytest.raises(EnvironmentSpecError, match="MuJoCo envs only"):
        make_pixel_env(POINT_MASS_ID, camera_id=0)
    with pytest.raises(EnvironmentSpecError, match="drop the render_mode"):
        make_pixel_env(POINT_MASS_ID, render_mode="human")
    with pytest.raises(EnvironmentSpecError, match="rejected the keyword arguments"):
        make_pixel_env(POINT_MASS_ID, no_such_kwarg=1)


def test_resize_frame_averages_blocks_or_samples_nearest() -> None:
    frame = np.zeros((4, 4, 3), dtype=np.uint8)
    frame[:2, :2] = 200
    frame[0, 0] = 100  # block mean (100 + 3 * 200) / 4 = 175
    halved = resize_frame(frame, 2)
    assert halved.shape == (2, 2, 3) and halved.dtype == np.uint8
    np.testing.assert_array_equal(halved[..., 0], [[175, 0], [0, 0]])
    odd = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3)
    np.testing.assert_array_equal(resize_frame(odd, 3), odd[[0, 2, 4]][:, [0, 2, 4]])
    same = resize_frame(odd, 5)
    np.testing.assert_array_equal(same, odd)
    assert not np.shares_memory(same, odd)
