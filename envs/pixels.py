"""Pixel observations for any Gymnasium env that renders ``rgb_array`` frames (MuJoCo included).

``make_pixel_env("HalfCheetah-v5", size=64)`` makes the env with
``render_mode="rgb_array"`` (and, for MuJoCo envs, a renderer of exactly
``size x size``) and wraps it in :class:`PixelObservation`, whose observations are
``{"pixels": (size, size, 3) uint8, "state": the env's own observation}``.

Importing this module sets ``MUJOCO_GL=egl`` on Linux when ``MUJOCO_GL`` is unset,
so MuJoCo renders headless (GPU EGL, or Mesa's software EGL on machines without a
GPU). Gymnasium reads the variable when it first creates a renderer, so the
setting works even when ``mujoco`` was imported earlier. Set ``MUJOCO_GL`` yourself
(``osmesa``, ``glfw``) to choose another backend.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from envs.errors import EnvironmentSpecError
from envs.ids import did_you_mean
from envs.wrappers import env_name

__all__ = ["PixelObservation", "make_pixel_env", "resize_frame"]

if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")

_HOW_TO_MAKE = (
    "create it with render_mode='rgb_array', e.g. gymnasium.make(env_id, render_mode='rgb_array', "
    "width=64, height=64) for MuJoCo envs, or use envs.pixels.make_pixel_env(env_id, size=64)"
)


class PixelObservation(gym.ObservationWrapper[Any, Any, Any]):
    """Observe the env's rendered frame, resized to ``(size, size, 3)`` uint8.

    Observations are ``{"pixels": (size, size, 3) uint8, "state": original observation}``
    when ``keep_state`` (the default), else the ``(size, size, 3)`` frame alone.
    The frame is rendered after every ``reset`` and ``step``, and resized (see
    :func:`resize_frame`) only when the renderer returns another size; making the
    env render at ``size`` directly (:func:`make_pixel_env` does) is much faster.

    Args:
        env: an env created with ``render_mode="rgb_array"``.
        size: side of the pixel observation, in pixels.
        keep_state: also return the env's own observation under ``"state"``.
        camera_id: MuJoCo camera to render from (``-1`` is the free camera); ``None``
            keeps the env's camera. Only for MuJoCo envs.

    Raises:
        EnvironmentSpecError: when ``env`` was not made with ``render_mode="rgb_array"``,
            or ``camera_id`` is given for an env that is not a MuJoCo env.
    """

    def __init__(
        self, env: gym.Env[Any, Any], size: int = 64, keep_state: bool = True, camera_id: int | None = None
    ) -> None:
        """Wrap ``env``; see the class docstring."""
        super().__init__(env)
        if not (isinstance(size, int) and size >= 1):
            raise ValueError(f"size must be a positive int (pixels), got {size!r}.")
        if env.render_mode != "rgb_array":
            raise EnvironmentSpecError(
                f"PixelObservation needs frames, but environment {env_name(env)} was made with "
                f"render_mode={env.render_mode!r}; {_HOW_TO_MAKE}."
            )
        if camera_id is not None:
            _set_mujoco_camera(env, camera_id)
        self.size = size
        self.keep_state = keep_state
        pixels = gym.spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)
        self.observation_space = (
            gym.spaces.Dict({"pixels": pixels, "state": env.observation_space}) if keep_state else pixels
        )

    def observation(self, observation: Any) -> Any:
        """Return the current frame (with ``observation`` under ``"state"`` when ``keep_state``)."""
        pixels = resize_frame(_checked_frame(self.env.render(), env_name(self)), self.size)
        return {"pixels": pixels, "state": observation} if self.keep_state else pixels


def resize_frame(frame: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    """Return a new ``(size, size, C)`` uint8 copy of ``frame (Hf, Wf, C)``.

    Unchanged when already that size; averaged over blocks when ``Hf`` and ``Wf``
    are multiples of ``size`` (area resampling); otherwise nearest-pixel sampling.
    Non-square frames are stretched to the square.
    """
    height, width = frame.shape[:2]
    if (height, width) == (size, size):
        return np.array(frame, dtype=np.uint8, order="C", copy=True)
    if height % size == 0 and width % size == 0:
        blocks = frame.reshape(size, height // size, size, width // size, -1).mean(axis=(1, 3))
        return (blocks + 0.5).astype(np.uint8)
    rows = ((np.arange(size) + 0.5) * height / size).astype(np.intp)
    columns = ((np.arange(size) + 0.5) * width / size).astype(np.intp)
    return np.ascontiguousarray(frame[rows[:, None], columns[None, :]], dtype=np.uint8)


def make_pixel_env(
    env_id: str,
    size: int = 64,
    *,
    keep_state: bool = True,
    camera_id: int | None = None,
    shadow_size: int | None = None,
    **kwargs: Any,
) -> PixelObservation:
    """Make ``env_id`` with ``render_mode="rgb_array"`` and wrap it in :class:`PixelObservation`.

    MuJoCo envs get ``width=height=size`` (unless ``kwargs`` set them) so they render
    at the observation size; other envs' frames are resized. ``camera_id`` is passed
    to MuJoCo envs' constructors. Other ``kwargs`` go to ``gymnasium.make``.

    ``shadow_size`` (MuJoCo only) overrides the model's shadow-map side (4096 in
    Gymnasium's models). With software rendering (Mesa llvmpipe) the shadow map is
    most of the cost of a small frame: on a busy 2-core machine HalfCheetah-v5 at
    64x64 (physics included) ran at about 6-8 frames/s with 4096, 22 with 1024 (which
    looks the same at 64 pixels) and 34-44 with 0 (no shadows, visibly different
    lighting). ``None`` keeps the model's value, so frames look as Gymnasium draws them.

    Raises:
        EnvironmentSpecError: for an unknown id, kwargs the env rejects, a
            ``render_mode`` other than ``"rgb_array"``, ``camera_id`` or ``shadow_size``
            for an env that is not a MuJoCo env, or an env that cannot render.
    """
    if kwargs.get("render_mode", "rgb_array") != "rgb_array":
        raise EnvironmentSpecError(
            f"make_pixel_env always uses render_mode='rgb_array', got render_mode={kwargs['render_mode']!r}; "
            "drop the render_mode argument."
        )
    is_mujoco = _is_mujoco(env_id)
    for name, value in (("camera_id", camera_id), ("shadow_size", shadow_size)):
        if value is not None and not is_mujoco:
            raise EnvironmentSpecError(f"{name} applies to MuJoCo envs only; {env_id} is not one.")
    sizes = {"width": size, "height": size} if is_mujoco else {}
    camera = {} if camera_id is None else {"camera_id": camera_id}
    try:
        env = gym.make(env_id, **{**sizes, **camera, **kwargs, "render_mode": "rgb_array"})
    except TypeError as exc:
        raise EnvironmentSpecError(
            f"{env_id} rejected the keyword arguments {sorted(kwargs)}: {exc}. "
            "Check them against the environment's constructor."
        ) from exc
    if shadow_size is not None:  # read when the renderer is first created, at the first frame
        unwrapped: Any = env.unwrapped
        unwrapped.model.vis.quality.shadowsize = shadow_size
    return PixelObservation(env, size=size, keep_state=keep_state)


def _is_mujoco(env_id: str) -> bool:
    """Whether ``env_id`` is registered with a ``MujocoEnv`` subclass as its entry point."""
    try:
        creator: Any = gym.spec(env_id).entry_point
    except gym.error.Error as exc:
        raise EnvironmentSpecError(f"unknown environment id {env_id!r} ({exc}).{did_you_mean(env_id)}") from exc
    if isinstance(creator, str):
        creator = gym.envs.registration.load_env_creator(creator)
    try:
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
    except ImportError:  # mujoco not installed: nothing can be a MujocoEnv
        return False
    return isinstance(creator, type) and issubclass(creator, MujocoEnv)


def _set_mujoco_camera(env: gym.Env[Any, Any], camera_id: int) -> None:
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    if renderer is None:
        raise EnvironmentSpecError(
            f"camera_id applies to MuJoCo envs only; {env_name(env)} has no MuJoCo renderer. "
            "Choose the view through the environment's own options instead."
        )
    renderer.camera_id = camera_id


def _checked_frame(frame: Any, name: str) -> NDArray[np.uint8]:
    """Return ``frame`` as ``(Hf, Wf, 3)`` uint8, dropping an alpha channel; raise if it is not a frame."""
    array = np.asarray(frame) if frame is not None else None
    if array is None or array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        got = "None" if array is None else f"{array.dtype} array of shape {array.shape}"
        raise EnvironmentSpecError(
            f"environment {name} rendered {got}, not an (H, W, 3) uint8 RGB frame; "
            "PixelObservation needs render_mode='rgb_array' frames."
        )
    return array[..., :3]
