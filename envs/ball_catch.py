"""BallCatch: a ball is thrown, the agent slides a basket along the floor to catch it.

The world is a vertical plane, ``x`` in metres along a floor of width 10 m, ``y``
up, with the floor (the basket's rim) at ``y = 0``. Each episode one ball is
thrown from the left (``x0 ~ U[0.35, 0.5]``, ``y0 ~ U[1, 2]``) and flies under
gravity ``g = 9.81``, optionally with linear air drag (acceleration ``-drag * v``)
and optionally with one bounce off the floor. The pure functions of ``envs.ball_physics`` give the
flight in closed form; :class:`BallCatchEnv` steps the same physics with a fixed
``dt = 0.05`` s and draws numpy RGB frames.

The thrower aims: it draws where the ball lands, ``U[0.5, 9.5]``, and when it
first reaches the floor, ``U[1, 2]`` s, then throws with the speed and angle
(:func:`launch_velocity`) that achieve them under the episode's physics. So
landings spread evenly over the floor (the four equal-width landing bins get
about 22%, 28%, 28%, 22%) whatever the drag, and episodes last 20 to 40 steps
(more with a bounce).
"""

from __future__ import annotations

import math
from typing import Any, Literal, SupportsFloat, get_args

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from envs.ball_physics import (
    BASKET_HALF_WIDTH,
    FLOOR_WIDTH,
    GRAVITY,
    LANDINGS,
    MAX_DRAG,
    Ball,
    BallPhysics,
    contact,
    free_flight,
    landing_bin,
    landing_time,
    landing_x,
    launch_velocity,
    trajectory,
)

__all__ = [
    "BASKET_HALF_WIDTH",
    "CATCH_REWARD",
    "DT",
    "FLOOR_WIDTH",
    "GRAVITY",
    "LANDINGS",
    "MAX_DRAG",
    "BallCatchEnv",
    "BallPhysics",
    "ObsMode",
    "landing_bin",
    "landing_time",
    "landing_x",
    "launch_velocity",
    "trajectory",
]

ObsMode = Literal["pixels", "dict", "state"]

DT = 0.05  # s per environment step
CATCH_REWARD = 1.0  # the only reward: on the landing step, when the basket is under the ball

_LAUNCH_X = (0.35, 0.5)  # m; the ball (radius 0.35 m) starts fully in view
_LAUNCH_Y = (1.0, 2.0)  # m
_FLIGHT_TIME = (1.0, 2.0)  # s until the first floor contact
_TARGET_X = (BASKET_HALF_WIDTH, FLOOR_WIDTH - BASKET_HALF_WIDTH)  # where the thrower aims the landing
_BASKET_START = (0.4 * FLOOR_WIDTH, 0.6 * FLOOR_WIDTH)
_BALL_LIMIT = np.array([FLOOR_WIDTH, 3 * FLOOR_WIDTH, 50.0, 50.0])  # bounds of x, y, |vx|, |vy|


# ---------------------------------------------------------------- drawing


_SKY = np.array([24, 28, 48], dtype=np.uint8)
_GROUND = np.array([70, 52, 36], dtype=np.uint8)
_FLOOR_LINE = np.array([150, 150, 150], dtype=np.uint8)
_BASKET = np.array([60, 200, 90], dtype=np.float32)
_BALL = np.array([250, 110, 40], dtype=np.float32)
_VIEW_TOP = FLOOR_WIDTH - 1.0  # m; the frame shows x in [0, W] and y in [-1, W - 1] (square)
_BALL_RADIUS = 0.35  # m
_BASKET_DEPTH = 0.6  # m


class _Painter:
    """Draws ``(S, S, 3)`` uint8 frames: sky, floor line, ground, basket, ball (antialiased edges)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.scale = size / FLOOR_WIDTH  # pixels per metre
        floor_row = int(_VIEW_TOP * self.scale)
        self.background = np.empty((size, size, 3), dtype=np.uint8)
        self.background[:] = _SKY
        self.background[floor_row + 1 :] = _GROUND
        self.background[floor_row] = _FLOOR_LINE
        self.basket_rows = slice(floor_row, max(int((_VIEW_TOP + _BASKET_DEPTH) * self.scale), floor_row + 1))
        self.radius = _BALL_RADIUS * self.scale
        self.offsets = np.arange(-math.ceil(self.radius + 1), math.ceil(self.radius + 2), dtype=np.float32)

    def draw(self, ball_x: float, ball_y: float, basket_x: float) -> NDArray[np.uint8]:
        """Return a new frame with the basket centred at ``basket_x`` and the ball at ``(ball_x, ball_y)``."""
        frame = self.background.copy()
        self._draw_basket(frame, basket_x)
        self._draw_ball(frame, ball_x * self.scale, (_VIEW_TOP - ball_y) * self.scale)
        return frame

    def _draw_basket(self, frame: NDArray[np.uint8], basket_x: float) -> None:
        """Fill the basket's rows between its edges; the edge columns get their covered fraction."""
        left = max((basket_x - BASKET_HALF_WIDTH) * self.scale, 0.0)
        right = min((basket_x + BASKET_HALF_WIDTH) * self.scale, float(self.size))
        c0, c1 = int(left), math.ceil(right)
        cover = np.ones(c1 - c0, dtype=np.float32)
        cover[0] = min(c0 + 1.0, right) - left
        cover[-1] = right - max(c1 - 1.0, left)
        _blend(frame[self.basket_rows, c0:c1], cover[None, :, None], _BASKET)

    def _draw_ball(self, frame: NDArray[np.uint8], u: float, v: float) -> None:
        """Draw a disc centred at pixel coordinates ``(u, v)`` (column, row); coverage ~ distance to the rim."""
        row, column = math.floor(v), math.floor(u)
        r0, c0 = row + int(self.offsets[0]), column + int(self.offsets[0])
        rows = self.offsets + (row + 0.5 - v)
        columns = self.offsets + (column + 0.5 - u)
        rows, columns = rows[max(-r0, 0) : self.size - r0], columns[max(-c0, 0) : self.size - c0]
        if rows.size == 0 or columns.size == 0:
            return  # off screen
        distance = np.sqrt(rows[:, None] ** 2 + columns[None, :] ** 2)
        cover = np.minimum(np.maximum(self.radius + 0.5 - distance, 0.0), 1.0)
        r0, c0 = max(r0, 0), max(c0, 0)
        _blend(frame[r0 : r0 + rows.size, c0 : c0 + columns.size], cover[..., None], _BALL)


def _blend(region: NDArray[np.uint8], cover: NDArray[np.float32], colour: NDArray[np.float32]) -> None:
    """Paint ``colour`` over ``region`` (a view into the frame) with per-pixel ``cover`` in [0, 1]."""
    region[...] = region * (1.0 - cover) + (colour * cover + 0.5)


# ---------------------------------------------------------------- environment


class BallCatchEnv(gym.Env[Any, NDArray[np.float32]]):
    """Catch a thrown ball with a basket that slides along the floor.

    Action ``(1,)`` in ``[-1, 1]``: the basket's velocity as a fraction of
    ``max_speed`` (m/s). Each step (``dt = 0.05`` s) the basket moves first
    (its centre is kept in ``[0.5, 9.5]``), then the ball flies. When the ball
    lands the episode terminates, with reward ``CATCH_REWARD`` (1.0) if
    ``|landing x - basket x| <= 0.5`` (the basket's half-width) and 0 otherwise;
    every other step pays 0 (no shaping). Episodes are truncated after
    ``max_episode_steps`` steps (never reached with the defaults).

    Observations by ``obs_mode``:

    - ``"dict"`` (default): ``{"pixels": (S, S, 3) uint8, "state": (2,) float32}``
      with state ``(basket x, basket velocity)``, the basket's own senses;
    - ``"pixels"``: the ``(S, S, 3)`` uint8 frame only;
    - ``"state"``: ``(6,) float32`` ``(ball x, y, vx, vy, basket x, basket velocity)``,
      for debugging and ablations.

    ``info`` on every reset and step holds the true state: ``ball_pos (2,)``,
    ``ball_vel (2,)``, ``basket_x``, ``landing_x`` and ``landing_time`` (from the
    closed form at reset), ``landing_bin`` (0..3, equal-width floor bins),
    ``landed`` and ``caught`` (both ``False`` until the ball lands). On the landing
    step ``ball_pos`` is the contact point, ``(landing x, 0)``.
    """

    # Gymnasium reads metadata from the class and types it as a plain dict.
    metadata = {"render_modes": ["rgb_array"], "render_fps": round(1 / DT)}  # noqa: RUF012

    def __init__(
        self,
        obs_mode: ObsMode = "dict",
        size: int = 64,
        drag: float = 0.0,
        bounce: bool = False,
        restitution: float = 0.5,
        max_speed: float = 8.0,
        max_episode_steps: int = 100,
        render_mode: str | None = None,
    ) -> None:
        """Create the task (``size``: frame side in pixels; see the class docstring for the rest)."""
        _check_args(obs_mode, size, max_speed, max_episode_steps, render_mode, self.metadata["render_modes"])
        self.physics = BallPhysics(drag=drag, bounce=bounce, restitution=restitution)
        self.obs_mode: ObsMode = obs_mode
        self.max_speed = max_speed
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.painter = _Painter(size)
        self.observation_space = _observation_space(obs_mode, size, max_speed)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._ball: Ball = (0.0, 0.0, 0.0, 0.0)
        self._basket = (0.0, 0.0)  # (x, velocity)
        self._bounces_left = 0
        self._landing_x, self._landing_time = 0.0, 0.0
        self._landed = self._caught = False
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Throw a new ball (see the module docstring for the launch distribution)."""
        super().reset(seed=seed)
        x0, y0, target, flight, basket = (float(self.np_random.uniform(*r)) for r in _RANGES)
        vx, vy = (float(v) for v in launch_velocity((x0, y0), target, flight, self.physics))
        self._ball = (x0, y0, vx, vy)
        self._basket = (basket, 0.0)
        self._bounces_left = int(self.physics.bounce)
        self._landing_time = landing_time((x0, y0), (vx, vy), self.physics)
        self._landing_x = landing_x((x0, y0), (vx, vy), self.physics)
        self._landed = self._caught = False
        self.steps = 0
        return self._observation(), self._info()

    def step(self, action: NDArray[np.float32]) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Move the basket by ``action`` (clipped to ``[-1, 1]``), then fly the ball for ``dt``."""
        push = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        x = self._basket[0]
        moved = min(max(x + push * self.max_speed * DT, _TARGET_X[0]), _TARGET_X[1])
        self._basket = (moved, min(max((moved - x) / DT, -self.max_speed), self.max_speed))
        reward = 0.0
        if not self._landed and self._fly(DT):
            self._landed = True
            self._caught = abs(self._ball[0] - moved) <= BASKET_HALF_WIDTH
            reward = CATCH_REWARD if self._caught else 0.0
        self.steps += 1
        truncated = not self._landed and self.steps >= self.max_episode_steps
        return self._observation(), reward, self._landed, truncated, self._info()

    def render(self) -> NDArray[np.uint8] | None:
        """Return the current ``(S, S, 3)`` uint8 frame (``rgb_array``), the same as the pixel observation."""
        if self.render_mode != "rgb_array":
            return None
        return self._frame()

    def _fly(self, duration: float) -> bool:
        """Advance the ball by ``duration`` s, bouncing if one is due; return whether it landed."""
        while True:
            ball = free_flight(duration, self._ball, self.physics)
            if ball[1] > 0.0 or duration <= 0.0:  # y(t) concave or decreasing: no contact on the way
                self._ball = ball
                return False
            elapsed, self._ball = contact(self._ball, self.physics, self._bounces_left > 0)
            if self._bounces_left == 0:
                return True
            self._bounces_left -= 1
            duration -= elapsed

    def _frame(self) -> NDArray[np.uint8]:
        return self.painter.draw(self._ball[0], self._ball[1], self._basket[0])

    def _observation(self) -> Any:
        if self.obs_mode == "pixels":
            return self._frame()
        basket = np.array(self._basket, dtype=np.float32)
        if self.obs_mode == "state":
            return np.concatenate([np.array(self._ball, dtype=np.float32), basket])
        return {"pixels": self._frame(), "state": basket}

    def _info(self) -> dict[str, Any]:
        return {
            "ball_pos": np.array(self._ball[:2]),
            "ball_vel": np.array(self._ball[2:]),
            "basket_x": self._basket[0],
            "landing_x": self._landing_x,
            "landing_time": self._landing_time,
            "landing_bin": landing_bin(self._landing_x),
            "landed": self._landed,
            "caught": self._caught,
        }


_RANGES = (_LAUNCH_X, _LAUNCH_Y, _TARGET_X, _FLIGHT_TIME, _BASKET_START)  # drawn in this order at reset


def _check_args(
    obs_mode: str, size: int, max_speed: float, max_episode_steps: int, render_mode: str | None, modes: list[str]
) -> None:
    if obs_mode not in get_args(ObsMode):
        raise ValueError(f"obs_mode must be one of {get_args(ObsMode)}, got {obs_mode!r}.")
    if not (isinstance(size, int) and size >= 16):
        raise ValueError(f"size (frame side in pixels) must be an int >= 16, got {size!r}.")
    if not (math.isfinite(max_speed) and max_speed > 0):
        raise ValueError(f"max_speed must be a positive number (m/s), got {max_speed}.")
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}; pass a positive episode length.")
    if render_mode not in (None, *modes):
        raise ValueError(f"BallCatchEnv supports render_mode None or 'rgb_array', got {render_mode!r}.")


def _observation_space(obs_mode: ObsMode, size: int, max_speed: float) -> gym.Space[Any]:
    pixels = gym.spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)
    basket_low = np.array([_TARGET_X[0], -max_speed], dtype=np.float32)
    basket_high = np.array([_TARGET_X[1], max_speed], dtype=np.float32)
    if obs_mode == "pixels":
        return pixels
    if obs_mode == "state":
        ball_low = np.array([0.0, 0.0, -_BALL_LIMIT[2], -_BALL_LIMIT[3]], dtype=np.float32)
        low = np.concatenate([ball_low, basket_low])
        high = np.concatenate([_BALL_LIMIT.astype(np.float32), basket_high])
        return gym.spaces.Box(low, high, dtype=np.float32)
    return gym.spaces.Dict({"pixels": pixels, "state": gym.spaces.Box(basket_low, basket_high, dtype=np.float32)})
