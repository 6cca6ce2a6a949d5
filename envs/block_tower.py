"""BlockTower: will this tower of blocks fall? 2 to 5 cubes stacked with sideways offsets, simulated in MuJoCo.

A tower is the bottom block's ``x`` and each block's offset from the one below (along ``x``, the image's
horizontal axis), plus a colour per block. :func:`simulate` builds the MJCF in code (cubes of side
:data:`BLOCK_SIZE` with free joints on a plane), lets the tower stand for ``seconds`` and says whether it
fell: any block's top face (the centre of the face that was on top at the start) dropped by more than half
a block height. Frames are drawn by :func:`draw` as an orthographic side view (64x64 RGB, each block's
``x``-``z`` outline filled in its colour); drawn in numpy, so the same tower gives the same bytes on every
machine (MuJoCo's own renderer needs an OpenGL backend and its pixels differ between backends).

:func:`tower_pairs` makes a balanced question set of matched pairs: one offset pattern, scaled a little
below and a little above the scale where that tower starts to fall, so the two towers of a pair have the
same height and colours and differ by a small offset. :class:`BlockTowerEnv` (``"rehearse/BlockTower-v0"``)
shows one tower per episode: each step (the action is ignored) advances :data:`STEP_SECONDS`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from numpy.typing import NDArray

__all__ = ["BLOCK_SIZE", "STEP_SECONDS", "BlockTowerEnv", "Outcome", "Tower", "TowerSet", "draw", "sample_tower",
           "simulate", "tower_pairs"]

BLOCK_SIZE = 0.1  # m, side of each cube
STEP_SECONDS = 0.25  # s of simulated time per env step (8 steps: the 2 s that decide the label)
SETTLE_SECONDS = 2.0
TIMESTEP = 0.005  # s, MuJoCo's step (cheap: the towers are small)
IMAGE_SIZE = 64
VIEW_WIDTH = 0.64  # m of scene across the image (x from -0.32 to 0.32, 10 px per block); z from -0.02 up
_PALETTE = np.array([[220, 60, 60], [60, 170, 80], [70, 110, 220], [230, 190, 50], [170, 80, 200], [240, 130, 40],
                     [60, 190, 200], [200, 200, 200]], dtype=np.uint8)
_SKY = np.array([30, 32, 44], dtype=np.uint8)
_GROUND = np.array([90, 70, 50], dtype=np.uint8)


@dataclass(frozen=True)
class Tower:
    """One tower. ``x`` (n,): each block's centre along x (m), bottom first; ``colours`` (n, 3) uint8."""

    x: tuple[float, ...]
    colours: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if not 2 <= len(self.x) <= 5 or len(self.colours) != len(self.x):
            raise ValueError(f"a tower has 2 to 5 blocks and one colour per block; got {len(self.x)} x positions "
                             f"and {len(self.colours)} colours")

    @property
    def n(self) -> int:
        return len(self.x)

    def describe(self) -> str:
        """The tower in words, for a language model: sizes and each block's offset (cm) from the one below."""
        parts = [f"A tower of {self.n} cubes, each {100 * BLOCK_SIZE:.0f} cm wide, stands on a table."]
        for i in range(1, self.n):
            shift = 100 * (self.x[i] - self.x[i - 1])
            side = "right" if shift >= 0 else "left"
            parts.append(f"Cube {i + 1} sits on cube {i}, shifted {abs(shift):.1f} cm to the {side}.")
        return " ".join(parts)


@dataclass
class Outcome:
    """What :func:`simulate` saw. ``fell``: the label; ``drop`` (n,) m each top face fell; ``frames``
    ``(F, 64, 64, 3)`` uint8 (the initial scene first) when asked for."""

    fell: bool
    drop: NDArray[np.float64]
    frames: NDArray[np.uint8] = field(default_factory=lambda: np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8))


@lru_cache(maxsize=8)
def _model(n: int) -> mujoco.MjModel:
    """The MJCF of ``n`` free cubes on a plane (positions come from ``qpos``)."""
    h = BLOCK_SIZE / 2
    bodies = "".join(f'<body name="b{i}"><freejoint/><geom type="box" size="{h} {h} {h}" mass="0.5"/></body>'
                     for i in range(n))
    xml = (f'<mujoco><option timestep="{TIMESTEP}" iterations="20"/>'
           '<default><geom friction="0.8 0.005 0.0001" solref="0.005 1"/></default>'
           f'<worldbody><geom type="plane" size="2 2 0.1"/>{bodies}</worldbody></mujoco>')
    return mujoco.MjModel.from_xml_string(xml)


def _place(model: mujoco.MjModel, tower: Tower) -> mujoco.MjData:
    data = mujoco.MjData(model)
    for i, x in enumerate(tower.x):
        data.qpos[7 * i:7 * i + 7] = [x, 0.0, BLOCK_SIZE * (i + 0.5), 1.0, 0.0, 0.0, 0.0]
    mujoco.mj_forward(model, data)
    return data


def _top_faces(data: mujoco.MjData, n: int) -> NDArray[np.float64]:
    """Height (m) of the centre of each block's initially-top face: ``(n,)``."""
    up = np.array([0.0, 0.0, BLOCK_SIZE / 2])
    return np.array([data.xpos[i + 1][2] + (data.xmat[i + 1].reshape(3, 3) @ up)[2] for i in range(n)])


def simulate(tower: Tower, seconds: float = SETTLE_SECONDS, frame_every: float | None = None) -> Outcome:
    """Let ``tower`` stand for ``seconds``; the label and, with ``frame_every`` (s), frames from t = 0 on."""
    model = _model(tower.n)
    data = _place(model, tower)
    start = _top_faces(data, tower.n)
    steps = round(seconds / TIMESTEP)
    every = None if frame_every is None else max(1, round(frame_every / TIMESTEP))
    frames = [draw(tower, data)] if every is not None else []
    for step in range(1, steps + 1):
        mujoco.mj_step(model, data)
        if every is not None and step % every == 0:
            frames.append(draw(tower, data))
    drop = start - _top_faces(data, tower.n)
    stacked = np.stack(frames) if frames else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    return Outcome(bool(np.any(drop > BLOCK_SIZE / 2)), drop, stacked)


def _pixel_grid() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    scale = VIEW_WIDTH / IMAGE_SIZE
    xs = (np.arange(IMAGE_SIZE) + 0.5) * scale - VIEW_WIDTH / 2
    zs = (IMAGE_SIZE - 1 - np.arange(IMAGE_SIZE) + 0.5) * scale - 0.02
    return np.meshgrid(xs, zs)  # (64, 64) each, row 0 at the top


_GX, _GZ = _pixel_grid()


def draw(tower: Tower, data: mujoco.MjData | None = None) -> NDArray[np.uint8]:
    """Orthographic side view ``(64, 64, 3)`` uint8: each block's x-z outline filled in its colour (the
    initial placement when ``data`` is None, else the simulated poses)."""
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    image[:] = _SKY
    image[_GZ < 0.0] = _GROUND
    if data is None:
        data = _place(_model(tower.n), tower)
    h = BLOCK_SIZE / 2
    for i in range(tower.n):
        centre, rot = data.xpos[i + 1], data.xmat[i + 1].reshape(3, 3)
        # a point is inside the cube's side silhouette when its x-z offset, in the block's own x and z axes
        # (projected on the x-z plane), is within the half size
        dx, dz = _GX - centre[0], _GZ - centre[2]
        u = dx * rot[0, 0] + dz * rot[2, 0]
        v = dx * rot[0, 2] + dz * rot[2, 2]
        image[(np.abs(u) <= h) & (np.abs(v) <= h)] = tower.colours[i]
    return image


def sample_tower(rng: np.random.Generator, n: int | None = None, scale: float = 1.0,
                 pattern: NDArray[np.float64] | None = None) -> Tower:
    """A tower of ``n`` blocks (2-5 uniform when None): offsets ``scale * BLOCK_SIZE * pattern`` with
    ``pattern`` (n-1,) uniform in ``[-1, 1]`` (drawn when None), the bottom block at ``x`` in ±1 cm,
    colours drawn from a palette without repeats."""
    n = int(rng.integers(2, 6)) if n is None else n
    pattern = rng.uniform(-1.0, 1.0, n - 1) if pattern is None else pattern
    base = rng.uniform(-0.01, 0.01)
    x = base + np.concatenate([[0.0], np.cumsum(scale * BLOCK_SIZE * pattern)])
    colours = _PALETTE[rng.permutation(len(_PALETTE))[:n]]
    return Tower(tuple(float(v) for v in x), tuple((int(r), int(g), int(b)) for r, g, b in colours))


def _rescaled(tower: Tower, factor: float) -> Tower:
    x = np.asarray(tower.x)
    offsets = np.diff(x) * factor
    return Tower(tuple(float(v) for v in x[0] + np.concatenate([[0.0], np.cumsum(offsets)])), tower.colours)


def _tipping_scale(tower: Tower, steps: int = 7) -> float:
    """Bisection for the factor on ``tower``'s offsets at which it starts to fall (``tower`` must fall)."""
    low, high = 0.0, 1.0
    for _ in range(steps):
        mid = (low + high) / 2
        if simulate(_rescaled(tower, mid)).fell:
            high = mid
        else:
            low = mid
    return (low + high) / 2


@dataclass
class TowerSet:
    """A question set of matched pairs: towers ``2k`` (stands) and ``2k+1`` (falls) share blocks, colours and
    offset pattern. ``frames`` ``(M, F, 64, 64, 3)`` uint8 (``F`` frames every ``frame_every`` s, the
    initial scene first); ``fell`` ``(M,)`` bool."""

    towers: list[Tower]
    fell: NDArray[np.bool_]
    frames: NDArray[np.uint8]
    seed: int

    def digest(self) -> str:
        """SHA-256 of the towers, labels and frames: a silent change of the data changes it."""
        sha = hashlib.sha256()
        for tower in self.towers:
            sha.update(np.asarray(tower.x, np.float64).round(9).tobytes())
            sha.update(np.asarray(tower.colours, np.uint8).tobytes())
        sha.update(self.fell.astype(np.uint8).tobytes())
        sha.update(np.ascontiguousarray(self.frames).tobytes())
        return sha.hexdigest()


def tower_pairs(pairs: int, seed: int, margin: float = 0.3, frames: int = 9,
                frame_every: float = STEP_SECONDS) -> TowerSet:
    """``pairs`` matched pairs (so ``2 * pairs`` towers, half of them falling), reproducible from ``seed``.

    For each pair: a tower with offsets large enough to fall (``scale`` 1), its tipping factor ``c`` by
    bisection, then the same tower scaled by ``c (1 - margin)`` (must stand) and ``c (1 + margin)`` (must
    fall), each checked by simulation; a pattern whose pair does not come out that way is redrawn.
    """
    if pairs < 1 or not 0.0 < margin < 1.0 or frames < 1:
        raise ValueError(f"tower_pairs needs pairs >= 1, 0 < margin < 1 and frames >= 1; got pairs={pairs}, "
                         f"margin={margin}, frames={frames}")
    rng = np.random.default_rng(seed)
    towers: list[Tower] = []
    labels: list[bool] = []
    movies: list[NDArray[np.uint8]] = []
    seconds = (frames - 1) * frame_every
    while len(towers) < 2 * pairs:
        tower = sample_tower(rng)
        if not simulate(tower).fell:
            continue
        tipping = _tipping_scale(tower)
        pair = [_rescaled(tower, tipping * (1 - margin)), _rescaled(tower, tipping * (1 + margin))]
        outcomes = [simulate(t, max(seconds, SETTLE_SECONDS), frame_every) for t in pair]
        if outcomes[0].fell or not outcomes[1].fell:
            continue
        for t, outcome in zip(pair, outcomes, strict=True):
            towers.append(t)
            labels.append(outcome.fell)
            movies.append(outcome.frames[:frames])
    return TowerSet(towers, np.array(labels), np.stack(movies), seed)


class BlockTowerEnv(gym.Env[NDArray[np.uint8], NDArray[np.float32]]):
    """One tower per episode, seen as 64x64 RGB frames. The action ``(1,)`` is ignored (the tower is only
    watched); each step advances :data:`STEP_SECONDS`; the episode ends (terminated) after ``max_steps``.

    ``info``: ``"tower"`` (:class:`Tower`), ``"fell"`` (the label, from a 2 s simulation run at reset) and
    ``"drop"`` (m each top face has dropped so far).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, max_steps: int = 8, render_mode: str | None = None) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.max_steps, self.render_mode = max_steps, render_mode
        self.observation_space = gym.spaces.Box(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._tower: Tower | None = None
        self._data: mujoco.MjData | None = None

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[NDArray[np.uint8], dict[str, Any]]:
        super().reset(seed=seed)
        self._tower = sample_tower(self.np_random, scale=float(self.np_random.uniform(0.2, 0.6)))
        self._data = _place(_model(self._tower.n), self._tower)
        self._start = _top_faces(self._data, self._tower.n)
        self._fell, self._steps = simulate(self._tower).fell, 0
        return draw(self._tower, self._data), self._info()

    def _info(self) -> dict[str, Any]:
        assert self._tower is not None and self._data is not None
        return {"tower": self._tower, "fell": self._fell, "drop": self._start - _top_faces(self._data, self._tower.n)}

    def step(self, action: NDArray[np.float32]) -> tuple[NDArray[np.uint8], SupportsFloat, bool, bool, dict[str, Any]]:
        if self._tower is None or self._data is None:
            raise RuntimeError("call reset() before step()")
        model = _model(self._tower.n)
        for _ in range(round(STEP_SECONDS / TIMESTEP)):
            mujoco.mj_step(model, self._data)
        self._steps += 1
        return draw(self._tower, self._data), 0.0, self._steps >= self.max_steps, False, self._info()

    def render(self) -> NDArray[np.uint8]:  # type: ignore[override]
        if self._tower is None:
            raise RuntimeError("call reset() before render()")
        return draw(self._tower, self._data)
