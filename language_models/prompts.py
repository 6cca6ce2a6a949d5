"""What the language model is told and what it may answer: prompts, JSON schemas, strict parsing.

The task is described in numbers: the current observation with its bounds, the action's size and bounds (the
environment's own units), the horizon, the goal in words. A few environment families get names for their
observation entries (:data:`OBSERVATION_NAMES`); any other Box task is described generically (``x[0]``...).
Actions are answered as integer percentages of each action's range (-100: its lower bound, 100: its upper
bound): short replies for a small model, and bounds a schema-to-grammar server can enforce. Replies are parsed
strictly: anything that is not the schema's shape is rejected (and counted), numbers outside [-100, 100] are
clipped (and counted).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OBSERVATION_NAMES: dict[str, tuple[str, ...]] = {
    "MountainCarContinuous-v0": ("car position (the flag is at 0.45)", "car velocity"),
    "Pendulum-v1": ("cos(angle) (1 is upright)", "sin(angle)", "angular velocity"),
    "InvertedPendulum-v5": ("cart position", "pole angle (0 is upright)", "cart velocity", "pole angular velocity"),
    "rehearse/GoalPointMass-v0": ("x position (-1 is the left edge, 1 the right edge, 0 the centre)",
                                  "y position (-1 is the bottom edge, 1 the top edge, 0 the centre)",
                                  "x velocity", "y velocity"),
}
"""Names of the observation entries of the environment families with a template; others get ``x[i]``."""

ACTION_NAMES: dict[str, str] = {
    "MountainCarContinuous-v0": "push on the car (negative: left, positive: right)",
    "Pendulum-v1": "torque on the pendulum",
    "InvertedPendulum-v5": "force on the cart",
    "rehearse/GoalPointMass-v0": "push on the mass along x (positive: right) and along y (positive: up)",
}


@dataclass(frozen=True)
class TaskSpec:
    """The task as the language model is told it: observation and action bounds in the environment's units."""

    env_id: str
    obs_low: np.ndarray
    obs_high: np.ndarray
    act_low: np.ndarray
    act_high: np.ndarray
    goal: str = ""

    @property
    def action_dim(self) -> int:
        return int(self.act_low.shape[0])


def _number(x: float) -> str:
    return "unbounded" if not math.isfinite(x) else f"{x:.4g}"


def describe_state(spec: TaskSpec, obs: np.ndarray) -> str:
    """One line per observation entry: ``name = value (range low..high)``."""
    names = OBSERVATION_NAMES.get(spec.env_id, ())
    lines = []
    for i, value in enumerate(np.asarray(obs, dtype=np.float64).reshape(-1)):
        name = names[i] if i < len(names) else f"x[{i}]"
        low, high = spec.obs_low.reshape(-1)[i], spec.obs_high.reshape(-1)[i]
        lines.append(f"- {name} = {value:.4g} (range {_number(low)}..{_number(high)})")
    return "\n".join(lines)


PERCENT = 100
"""Replies give each action as an integer in ``[-PERCENT, PERCENT]``: ``-PERCENT`` its lower bound, ``PERCENT``
its upper bound, linear in between (the planner's ``[-1, 1]`` scaled by ``PERCENT``)."""


def describe_action(spec: TaskSpec) -> str:
    """The action: its size, meaning (where known), bounds, and how to write it."""
    what = ACTION_NAMES.get(spec.env_id, "actuator commands")
    bounds = ", ".join(f"[{_number(lo)}, {_number(hi)}]" for lo, hi in zip(spec.act_low, spec.act_high, strict=True))
    return (f"{spec.action_dim} number(s) per step, {what}; bounds per number: {bounds}. Write each number as a "
            f"multiple of 10 from -{PERCENT} (the lower bound) to {PERCENT} (the upper bound), 0 is the middle")


def goal_text(spec: TaskSpec) -> str:
    return spec.goal or "collect as much reward as possible"


def proposal_schema(spec: TaskSpec, n: int, horizon: int) -> dict[str, Any]:
    """JSON schema of a proposer reply: ``{"sequences": n x horizon x action_dim integers in [-100, 100]}``
    (:data:`PERCENT` of each action's range), multiples of 10: as an ``enum`` the bounds hold even where a
    server's schema-to-grammar conversion ignores ``minimum`` and ``maximum`` (llama-cpp-python's does)."""
    grid = list(range(-PERCENT, PERCENT + 1, 10))
    number = {"type": "integer", "minimum": -PERCENT, "maximum": PERCENT, "enum": grid}
    step = {"type": "array", "minItems": spec.action_dim, "maxItems": spec.action_dim, "items": number}
    sequence = {"type": "array", "minItems": horizon, "maxItems": horizon, "items": step}
    return {"type": "object", "properties": {"sequences": {"type": "array", "minItems": n, "maxItems": n,
                                                           "items": sequence}},
            "required": ["sequences"], "additionalProperties": False}


def proposal_messages(spec: TaskSpec, obs: np.ndarray, n: int, horizon: int) -> list[dict[str, str]]:
    """The proposer's chat: the task, the state now, what to answer."""
    user = (f"Task: {spec.env_id}. Goal: {goal_text(spec)}.\n"
            f"State now:\n{describe_state(spec, obs)}\n"
            f"Action: {describe_action(spec)}.\n"
            f"Propose {n} different action sequences, each exactly {horizon} steps long, that reach the goal. "
            f'Answer as JSON: {{"sequences": [[[integer, ...] per step] per sequence]}}.')
    return [{"role": "system", "content": "You plan actions for a simulated control task. Answer with JSON only."},
            {"role": "user", "content": user}]


def judge_schema(k: int) -> dict[str, Any]:
    """JSON schema of a judge reply: ``{"ratings": k integers 0..10}``."""
    rating = {"type": "integer", "minimum": 0, "maximum": 10}
    return {"type": "object", "properties": {"ratings": {"type": "array", "minItems": k, "maxItems": k,
                                                         "items": rating}},
            "required": ["ratings"], "additionalProperties": False}


def judge_messages(spec: TaskSpec, final_states: np.ndarray) -> list[dict[str, str]]:
    """The judge's chat: the goal and ``final_states (k, S)`` (imagined), one rating each."""
    states = "\n".join(f"State {i + 1}:\n{describe_state(spec, s)}" for i, s in enumerate(final_states))
    user = (f"Task: {spec.env_id}. Goal: {goal_text(spec)}.\n{states}\n"
            f"Rate how well each of the {len(final_states)} states meets the goal, from 0 (not at all) to 10 "
            '(fully). Answer as JSON: {"ratings": [integer per state]}.')
    return [{"role": "system", "content": "You judge states of a simulated control task. Answer with JSON only."},
            {"role": "user", "content": user}]


class ReplyRejected(ValueError):
    """A reply that cannot be used at all (not JSON, not the schema's object, nothing valid in it)."""


@dataclass
class Parsed:
    """A parsed proposer reply: the usable sequences and what was wrong with the rest.

    ``actions (k, H, A)`` in ``[-1, 1]`` (the planner's units: the replies' percentages divided by
    :data:`PERCENT`); ``made``: sequences in the reply; ``rejected``: sequences dropped (wrong length or shape,
    non-numbers, NaN/inf, more than asked for); ``clipped``: numbers outside ``[-100, 100]`` moved onto a
    bound; ``reasons``: why each rejected sequence was dropped."""

    actions: np.ndarray
    made: int
    rejected: int = 0
    clipped: int = 0
    reasons: list[str] = field(default_factory=list)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def load_object(text: str, key: str) -> list[Any]:
    """``json.loads(text)[key]`` as a list; :class:`ReplyRejected` for empty text, invalid JSON (NaN and
    Infinity literals included), a non-object or a missing / non-list ``key``."""
    if not text.strip():
        raise ReplyRejected("empty reply")
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ReplyRejected(f"not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
        raise ReplyRejected(f'expected an object with a list "{key}", got {text[:120]!r}')
    return list(payload[key])


def _sequence(item: Any, horizon: int, action_dim: int) -> np.ndarray:
    """One sequence as ``(H, A)`` float64, or ``ValueError`` saying what is wrong with it."""
    if not isinstance(item, list) or len(item) != horizon:
        raise ValueError(f"not a list of {horizon} steps")
    rows = []
    for step in item:
        if not isinstance(step, list) or len(step) != action_dim:
            raise ValueError(f"a step is not a list of {action_dim} number(s)")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in step):
            raise ValueError("a step holds something that is not a number")
        rows.append([float(x) for x in step])
    out = np.asarray(rows, dtype=np.float64).reshape(horizon, action_dim)
    if not np.isfinite(out).all():
        raise ValueError("a number is not finite")
    return out


def parse_proposals(text: str, spec: TaskSpec, n: int, horizon: int) -> Parsed:
    """At most ``n`` sequences of ``horizon`` steps from a proposer reply (see :class:`Parsed`);
    :class:`ReplyRejected` when none is usable."""
    items = load_object(text, "sequences")
    kept, reasons = [], []
    for i, item in enumerate(items):
        if i >= n:
            reasons.append(f"sequence {i}: more than the {n} asked for")
            continue
        try:
            kept.append(_sequence(item, horizon, spec.action_dim))
        except ValueError as exc:
            reasons.append(f"sequence {i}: {exc}")
    if not kept:
        raise ReplyRejected(f"no usable sequence among {len(items)}: " + "; ".join(reasons[:3]))
    raw = np.stack(kept)  # (k, H, A), percentages
    percent = np.clip(raw, -PERCENT, PERCENT)
    clipped = int((percent != raw).sum())
    return Parsed((percent / PERCENT).astype(np.float32), len(items), len(reasons), clipped, reasons)


def parse_ratings(text: str, k: int) -> np.ndarray:
    """``k`` ratings in ``[0, 10]`` from a judge reply (numbers outside are clipped); :class:`ReplyRejected`
    for any other shape or a non-finite value."""
    items = load_object(text, "ratings")
    if len(items) != k or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
        raise ReplyRejected(f"expected {k} numeric ratings, got {items[:k + 2]!r}")
    ratings = np.asarray(items, dtype=np.float64)
    if not np.isfinite(ratings).all():
        raise ReplyRejected("a rating is not finite")
    return np.clip(ratings, 0.0, 10.0)
