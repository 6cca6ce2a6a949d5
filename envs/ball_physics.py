"""The ball's flight in closed form: gravity, optional linear air drag, optional bounces off the floor.

The world is a vertical plane, ``x`` in metres along a floor of width :data:`FLOOR_WIDTH`, ``y`` up,
with the floor at ``y = 0``. :class:`envs.ball_catch.BallCatchEnv` steps this physics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

GRAVITY = 9.81  # m/s^2
FLOOR_WIDTH = 10.0  # m; the floor is x in [0, FLOOR_WIDTH]
MAX_DRAG = 2.0  # 1/s; keeps throws (and the "state" observation bounds) moderate
BASKET_HALF_WIDTH = 0.5  # m
LANDINGS = 4  # landing bins reported in info["landing_bin"]

Array = NDArray[np.float64]


# ---------------------------------------------------------------- physics (pure)


@dataclass(frozen=True)
class BallPhysics:
    """How the ball flies.

    Attributes:
        gravity: downward acceleration, m/s^2 (> 0).
        drag: linear air drag coefficient ``k`` in 1/s, acceleration ``-k * v``
            (0 means none; at most ``MAX_DRAG``).
        bounce: whether the ball bounces once off the floor. Then the *landing*
            is the second floor contact; the first is a bounce whatever the basket does.
        restitution: at the bounce the vertical velocity ``vy`` becomes
            ``-restitution * vy`` (in ``[0, 1]``); ``vx`` is unchanged (frictionless floor).
    """

    gravity: float = GRAVITY
    drag: float = 0.0
    bounce: bool = False
    restitution: float = 0.5

    def __post_init__(self) -> None:
        """Reject values outside the documented ranges."""
        if not (math.isfinite(self.gravity) and self.gravity > 0):
            raise ValueError(f"gravity must be a positive number, got {self.gravity}.")
        if not 0.0 <= self.drag <= MAX_DRAG:
            raise ValueError(f"drag must be in [0, {MAX_DRAG}] (1/s), got {self.drag}; use 0.0 for no drag.")
        if not 0.0 <= self.restitution <= 1.0:
            raise ValueError(f"restitution must be in [0, 1], got {self.restitution}.")


Ball = tuple[float, float, float, float]  # (x, y, vx, vy) in m and m/s


def _phi(u: float) -> tuple[float, float]:
    """``phi1 = (1 - e^-u) / u`` and ``phi2 = (u - 1 + e^-u) / u^2``, accurate near ``u = 0``.

    ``phi1(0) = 1`` and ``phi2(0) = 1/2`` exactly, so drag 0 gives the textbook formulas.
    """
    if u >= 1e-2:
        return -math.expm1(-u) / u, (u + math.expm1(-u)) / (u * u)
    phi1 = phi2 = 0.0
    term = 1.0  # (-u)^n / n!
    for n in range(8):  # the next term is below 1e-19 for u < 0.01
        phi1 += term / (n + 1)
        phi2 += term / ((n + 1) * (n + 2))
        term *= -u / (n + 1)
    return phi1, phi2


def free_flight(t: float, ball: Ball, physics: BallPhysics) -> Ball:
    """The ball ``(x, y, vx, vy)`` after flying ``t`` s, ignoring the floor.

    Exact solution of ``x'' = -k x'``, ``y'' = -g - k y'``; with ``k = 0`` it is
    ``x0 + vx t``, ``y0 + vy t - g t^2 / 2``, ``vy - g t``.
    """
    x, y, vx, vy = ball
    phi1, phi2 = _phi(physics.drag * t)
    reach = t * phi1  # (1 - e^-kt) / k: how far unit velocity carries the ball
    decay = math.exp(-physics.drag * t)
    g = physics.gravity
    return x + vx * reach, y + vy * reach - g * t * t * phi2, vx * decay, vy * decay - g * reach


def _fall_time(height: float, vy: float, physics: BallPhysics) -> float:
    """Seconds until a ball at ``height >= 0`` moving up at ``vy`` first reaches ``y = 0``."""
    if height <= 0.0 and vy <= 0.0:
        return 0.0
    g, k = physics.gravity, physics.drag
    if k == 0.0:
        root = math.sqrt(vy * vy + 2.0 * g * height)
        return (vy + root) / g if vy >= 0.0 else 2.0 * height / (root - vy)
    # y(t) is concave (or decreasing) with y(0) >= 0, so it crosses 0 once for t > 0;
    # y(t) <= height + max(vy + g/k, 0)/k - g t/k gives a time by which it has crossed.
    low, high = 0.0, (k * height + max(vy + g / k, 0.0)) / g
    for _ in range(200):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        above = free_flight(mid, (0.0, height, 0.0, vy), physics)[1] > 0.0
        low, high = (mid, high) if above else (low, mid)
    return high


def contact(ball: Ball, physics: BallPhysics, bounce: bool) -> tuple[float, Ball]:
    """Time to the next floor contact and the ball just after it (bounced when ``bounce``)."""
    t = _fall_time(ball[1], ball[3], physics)
    x, _, vx, vy = free_flight(t, ball, physics)
    return t, (x, 0.0, vx, -physics.restitution * vy if bounce else vy)


def _segments(pos0: ArrayLike, vel0: ArrayLike, physics: BallPhysics) -> tuple[list[tuple[float, Ball]], float]:
    """The flight as free-flight segments ``(start time, ball at start)``, and the landing time."""
    pos, vel = np.asarray(pos0, dtype=np.float64), np.asarray(vel0, dtype=np.float64)
    if pos.shape != (2,) or vel.shape != (2,) or not (np.all(np.isfinite(pos)) and np.all(np.isfinite(vel))):
        raise ValueError(f"pos0 and vel0 must be finite (x, y) pairs, got {pos0!r} and {vel0!r}.")
    if pos[1] < 0.0:
        raise ValueError(f"the ball must start on or above the floor (y >= 0), got y = {pos[1]}.")
    ball: Ball = (float(pos[0]), float(pos[1]), float(vel[0]), float(vel[1]))
    segments = [(0.0, ball)]
    t_land, after = contact(ball, physics, physics.bounce)
    if physics.bounce:
        segments.append((t_land, after))
        t_land += contact(after, physics, False)[0]
    return segments, t_land


def landing_time(pos0: ArrayLike, vel0: ArrayLike, physics: BallPhysics | None = None) -> float:
    """Seconds from launch at ``pos0 (2,)``, ``vel0 (2,)`` to the landing (see :class:`BallPhysics`)."""
    return _segments(pos0, vel0, physics or BallPhysics())[1]


def trajectory(
    times: ArrayLike, pos0: ArrayLike, vel0: ArrayLike, physics: BallPhysics | None = None
) -> tuple[Array, Array]:
    """Closed-form ball positions and velocities at ``times (T,)`` after launch from ``pos0``, ``vel0``.

    Returns:
        ``(positions (T, 2), velocities (T, 2))``. Times are clamped to
        ``[0, landing_time]``, so after landing the ball stays at the landing point
        (with its velocity at impact); ``y`` is never below 0.
    """
    physics = physics or BallPhysics()
    segments, t_land = _segments(pos0, vel0, physics)
    states = np.zeros((np.size(times), 4))
    for i, t in enumerate(np.clip(np.asarray(times, dtype=np.float64).reshape(-1), 0.0, t_land)):
        start, ball = [segment for segment in segments if segment[0] <= t][-1]
        states[i] = free_flight(float(t) - start, ball, physics)
    states[:, 1] = np.maximum(states[:, 1], 0.0)
    return states[:, :2], states[:, 2:]


def landing_x(pos0: ArrayLike, vel0: ArrayLike, physics: BallPhysics | None = None) -> float:
    """Where the ball launched at ``pos0 (2,)``, ``vel0 (2,)`` lands.

    Closed form for drag 0; with drag the flight is still closed form and only the
    contact times are found numerically (bisection to float precision).
    """
    physics = physics or BallPhysics()
    positions, _ = trajectory([landing_time(pos0, vel0, physics)], pos0, vel0, physics)
    return float(positions[0, 0])


def landing_bin(x: float, width: float = FLOOR_WIDTH, bins: int = LANDINGS) -> int:
    """Index ``0 .. bins - 1`` of the equal-width floor bin holding ``x`` (``x = width`` is in the last).

    Raises:
        ValueError: when ``x`` is not in ``[0, width]`` or ``width``/``bins`` are not positive.
    """
    if width <= 0 or bins < 1:
        raise ValueError(f"width must be > 0 and bins >= 1, got width={width}, bins={bins}.")
    if not 0.0 <= x <= width:
        raise ValueError(f"x = {x} is off the floor [0, {width}]; landing bins cover only the floor.")
    return min(int(x / width * bins), bins - 1)


def launch_velocity(pos0: ArrayLike, target_x: float, flight_time: float, physics: BallPhysics | None = None) -> Array:
    """The launch velocity ``(2,)`` that lands a ball thrown from ``pos0`` at ``target_x``.

    ``flight_time`` (s, > 0) is the time of the *first* floor contact; with
    ``physics.bounce`` the ball then bounces and lands at ``target_x`` later.
    Horizontal and vertical motion are independent (linear drag, frictionless
    bounce), so both components have closed forms given the contact times.
    """
    physics = physics or BallPhysics()
    x0, y0 = (float(v) for v in np.asarray(pos0, dtype=np.float64))
    if not (flight_time > 0 and y0 >= 0):
        raise ValueError(f"need flight_time > 0 and a launch height >= 0, got {flight_time} and {y0}.")
    g, t = physics.gravity, flight_time
    phi1, phi2 = _phi(physics.drag * t)
    vy = (g * t * t * phi2 - y0) / (t * phi1)  # solves y(t) = 0
    t_land = landing_time((x0, y0), (0.0, vy), physics)
    reach = t_land * _phi(physics.drag * t_land)[0]
    return np.array([(target_x - x0) / reach, vy])
