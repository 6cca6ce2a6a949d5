"""Physical reasoning of a trained VideoWorldModel, read off its imagined BallCatch frames by a fixed pixel detector.

    python -m benchmarks.video_physics --run DIR

``DIR`` is the ``--out`` of ``benchmarks.video_world_model`` (its ``results.json`` and ``model.pt``). On the
held-out throws (the same reset seeds as ``benchmarks.ball_probe``'s: ``seed + 1,000,000``):

- the detector (:func:`detect_ball`, :func:`detect_basket`: colour masks of the env's own palette, no
  learning) finds the ball and basket in real and imagined frames; its error on real frames is reported;
- gravity: the detected ball's position error against the simulator's, and whether the vertical
  acceleration of a parabola fitted to the detected heights is within 10% of g, per horizon range;
- object permanence: the share of frames in which the ball is found in the imagined frame while it is
  found in the real one;
- collisions: catches predicted (imagined landing within the imagined basket) against real catches;
- the landing question from 10 observed frames: the landing bin of the imagined flight (first imagined floor
  crossing, cut where the model's continuation head ends the episode, as ``ball_probe.landing_point``).
Writes ``physics.json`` and ``physics.md`` into ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from benchmarks.ball_probe import Throws, collect, landing_point
from benchmarks.markdown import write_report
from envs.ball_catch import BASKET_HALF_WIDTH, DT, FLOOR_WIDTH, GRAVITY, landing_bin
from world_models.config import VideoConfig
from world_models.video import VideoWorldModel

__all__ = ["detect_ball", "detect_basket", "main"]

VIEW_TOP = FLOOR_WIDTH - 1.0  # m: BallCatch frames show y in [-1, W - 1] (envs/ball_catch.py)
RANGES = {"short": 10, "medium": 25, "long": 50}  # horizon ranges (steps after the context)


def _metres(u: np.ndarray, v: np.ndarray, side: int) -> np.ndarray:
    """Pixel coordinates (column, row; centres at +0.5) -> ``(x, y)`` metres."""
    scale = side / FLOOR_WIDTH
    return np.stack([u / scale, VIEW_TOP - v / scale], axis=-1)


def detect_ball(frames: np.ndarray, min_weight: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Ball centre ``(..., 2)`` in metres and whether it was found ``(...)``, from frames ``(..., S, S, 3)`` uint8:
    the centroid of the orange pixels (red well above blue), weighted by how orange they are."""
    rgb = frames.astype(np.float32)
    weight = np.clip((rgb[..., 0] - rgb[..., 2] - 40.0) / 150.0, 0.0, 1.0)  # sky, ground, basket, floor: 0
    side = frames.shape[-2]
    total = weight.sum(axis=(-2, -1))
    cells = np.arange(side, dtype=np.float32) + 0.5
    u = (weight.sum(axis=-2) * cells).sum(-1) / np.maximum(total, 1e-6)
    v = (weight.sum(axis=-1) * cells).sum(-1) / np.maximum(total, 1e-6)
    return _metres(u, v, side), total >= min_weight


def detect_basket(frames: np.ndarray) -> np.ndarray:
    """Basket centre x ``(...)`` in metres (NaN where none is found) from frames ``(..., S, S, 3)`` uint8."""
    rgb = frames.astype(np.float32)
    green = ((rgb[..., 1] - rgb[..., 0]) > 80.0).astype(np.float32)
    side = frames.shape[-2]
    column_weight = green.sum(axis=-2)  # (..., S)
    total = column_weight.sum(-1)
    u = (column_weight * (np.arange(side) + 0.5)).sum(-1) / np.maximum(total, 1e-6)
    return np.where(total >= 2, u / (side / FLOOR_WIDTH), np.nan)


def _imagine(model: VideoWorldModel, test: Throws, start: int, horizon: int,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(n, H, S, S, 3)`` imagined after frames ``start-k+1 .. start`` of each episode under its actions
    from ``start`` on (zeros past its end), and the continuation probabilities ``(n, H)``."""
    k = model.context_frames
    context = torch.from_numpy(np.stack([f[start - k + 1:start + 1] for f in test.frames]))
    plans = np.zeros((horizon, len(test.frames), model.action_dim), np.float32)
    for i, a in enumerate(test.actions):
        taken = a[start:start + horizon]
        plans[:len(taken), i] = taken
    stacked = context.permute(0, 2, 3, 1, 4).flatten(3)
    with torch.inference_mode():
        windows = model.rollout(model.encode(stacked), torch.from_numpy(plans), torch.Generator().manual_seed(seed))
        latest = model.window(windows)[:, :, -1]  # (H+1, n, C, h, w)
        out = model.head_outputs(latest[:-1], latest[1:], torch.from_numpy(plans))
        frames = model.latents_to_frames(latest[1:].flatten(0, 1)).unflatten(0, latest[1:].shape[:2])
    return frames.transpose(0, 1).numpy(), torch.sigmoid(out[..., 1]).transpose(0, 1).numpy()


def _parabola_ok(heights: np.ndarray, found: np.ndarray) -> float | None:
    """Vertical acceleration (m/s^2) of a parabola fitted to the found ``heights (H,)`` (``None`` under 5)."""
    steps = np.flatnonzero(found)
    if len(steps) < 5:
        return None
    return float(2.0 * np.polyfit(steps * DT, heights[steps], 2)[0])


def _ranges(real: np.ndarray, real_found: np.ndarray, imagined: np.ndarray, imagined_found: np.ndarray,
            truth: np.ndarray, valid: np.ndarray) -> dict[str, Any]:
    """Gravity and permanence per horizon range; arrays ``(n, H, ...)``, ``valid (n, H)`` marks real steps."""
    out: dict[str, Any] = {}
    for name, end in RANGES.items():
        v, rf, imf = valid[:, :end], real_found[:, :end] & valid[:, :end], imagined_found[:, :end]
        both = rf & imf
        error = np.linalg.norm(imagined[:, :end] - truth[:, :end], axis=-1)[both]
        detector = np.linalg.norm(real[:, :end] - truth[:, :end], axis=-1)[rf]
        accel = {}
        for source, pos, fnd in (("imagined", imagined, imf & v), ("real", real, rf)):
            values = [_parabola_ok(pos[i, :end, 1], fnd[i]) for i in range(len(pos))]
            fitted = np.array([a for a in values if a is not None])
            accel[source] = {"episodes": int(len(fitted)),
                             "median_m_s2": float(np.median(fitted)) if len(fitted) else None,
                             "within_10pct_of_g": float(np.mean(np.abs(fitted + GRAVITY) <= 0.1 * GRAVITY))
                             if len(fitted) else None}
        out[name] = {"max_horizon": end, "frames_in_view": int(rf.sum()),
                     "position_error_m": float(error.mean()) if len(error) else None,
                     "detector_error_on_real_frames_m": float(detector.mean()) if len(detector) else None,
                     "permanence": float(both.sum() / max(rf.sum(), 1)), "vertical_acceleration": accel}
    return out


def _landing(frames: np.ndarray, continuation: np.ndarray) -> tuple[float, float]:
    """Imagined landing x and the imagined basket's x there (NaN where the ball is never found), for one
    episode: frames ``(H, S, S, 3)``, continuation ``(H,)``."""
    pos, found = detect_ball(frames)
    if not found.any():
        return float("nan"), float("nan")
    pos, continuation = pos[int(np.argmax(found)):], continuation[int(np.argmax(found)):]
    for t in range(1, len(pos)):  # hold the last found position where the ball is lost
        if not found[t]:
            pos[t] = pos[t - 1]
    x = landing_point(pos, continuation[:-1]) if len(pos) > 1 else float(pos[0, 0])
    basket = detect_basket(frames)
    ends = np.flatnonzero(continuation < 0.5)
    at = int(ends[0]) if len(ends) else len(frames) - 1
    return x, float(basket[at]) if np.isfinite(basket[at]) else float("nan")


def assess(model: VideoWorldModel, test: Throws, observed: int, seed: int) -> dict[str, Any]:
    """The physical assessment table and the landing question on the held-out throws."""
    k, horizon = model.context_frames, max(RANGES.values())
    imagined, _ = _imagine(model, test, k - 1, horizon, seed)
    n, side = len(test.frames), test.frames[0].shape[1]
    real = np.zeros((n, horizon, side, side, 3), np.uint8)
    truth, valid = np.zeros((n, horizon, 2)), np.zeros((n, horizon), bool)
    for i, (frames, ball) in enumerate(zip(test.frames, test.ball, strict=True)):
        after = frames[k:k + horizon]
        real[i, :len(after)], truth[i, :len(after)], valid[i, :len(after)] = after, ball[k:k + horizon], True
    real_pos, real_found = detect_ball(real)
    imagined_pos, imagined_found = detect_ball(imagined)
    table = _ranges(real_pos, real_found & valid, imagined_pos, imagined_found, truth, valid)
    seen, continuation = _imagine(model, test, observed - 1, horizon, seed + 1)
    landings = [_landing(seen[i], continuation[i]) for i in range(n)]
    predicted_bins = np.array([landing_bin(x) if np.isfinite(x) else -1 for x, _ in landings])  # -1: no ball seen
    predicted_catch = np.array([bool(abs(x - b) <= BASKET_HALF_WIDTH) for x, b in landings])  # False with NaN
    real_catch = np.array([r.sum() > 0 for r in test.rewards])
    now_x = detect_ball(np.stack([f[observed - 1] for f in test.frames]))[0][:, 0]
    return {
        "table": table,
        "collisions": {"bounces": "not measured: the default BallCatch has no bounce",
                       "real_catches": int(real_catch.sum()), "predicted_catches": int(predicted_catch.sum()),
                       "catch_agreement": float(np.mean(predicted_catch == real_catch)),
                       "catches_predicted_when_real": float(predicted_catch[real_catch].mean())
                       if real_catch.any() else None},
        "landing": {"observed_frames": observed, "episodes": n,
                    "accuracy": float(np.mean(predicted_bins == test.landing_bin)),
                    "baseline_bin_of_current_x": float(np.mean(np.array([landing_bin(x) for x in now_x])
                                                               == test.landing_bin)),
                    "ball_never_found": int(np.sum(predicted_bins < 0)),
                    "mean_abs_error_m": float(np.nanmean(np.abs(np.array([x for x, _ in landings]) - test.landing_x)))
                    if (predicted_bins >= 0).any() else None},
    }


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(report: dict[str, Any], command: str) -> list[str]:
    table = report["table"]
    lines = ["# Physical assessment of the video world model's imagined frames (BallCatch)", "",
             f"Command: `{command}`", "",
             f"{report['landing']['episodes']} held-out throws (the ball probe's), context: the first "
             f"{report['context_frames']} frames, true actions; ball and basket found by fixed colour masks.", "",
             "| range | frames in view | ball error (m) | detector error on real frames (m) | permanence | "
             "imagined accel. (median m/s², share within 10% of g) | real frames, same fit |",
             "|---|---|---|---|---|---|---|"]
    for name, row in table.items():
        im, re = row["vertical_acceleration"]["imagined"], row["vertical_acceleration"]["real"]
        lines.append(
            f"| {name} (≤ {row['max_horizon']}) | {row['frames_in_view']} | {_fmt(row['position_error_m'], '.3f')} | "
            f"{_fmt(row['detector_error_on_real_frames_m'], '.3f')} | {row['permanence']:.1%} | "
            f"{_fmt(im['median_m_s2'], '.2f')}, {_fmt(im['within_10pct_of_g'], '.0%')} (n={im['episodes']}) | "
            f"{_fmt(re['median_m_s2'], '.2f')}, {_fmt(re['within_10pct_of_g'], '.0%')} (n={re['episodes']}) |")
    c, land = report["collisions"], report["landing"]
    lines += ["", f"Collisions (catches): {c['real_catches']} real, {c['predicted_catches']} predicted from the "
              f"imagined frames; agreement per throw {c['catch_agreement']:.1%}; real catches also predicted: "
              f"{_fmt(c['catches_predicted_when_real'], '.1%')}. Bounces: {c['bounces']}.", "",
              f"Landing bin from {land['observed_frames']} observed frames (4 bins): {land['accuracy']:.1%} "
              f"(baseline, the bin of the ball's current x: {land['baseline_bin_of_current_x']:.1%}); mean landing "
              f"error {_fmt(land['mean_abs_error_m'], '.2f')} m where the ball was found; never found (counted "
              f"wrong): {land['ball_never_found']}."]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the --out of benchmarks.video_world_model")
    parser.add_argument("--test-episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="the benchmark's --seed (held-out seeds: +1,000,000)")
    parser.add_argument("--observed", type=int, default=10, help="frames observed before the landing question")
    args = parser.parse_args(argv)
    results = json.loads((args.run / "results.json").read_text())
    model = VideoWorldModel(1, VideoConfig(**results["config"]), seed=args.seed)
    model.load_state_dict(torch.load(args.run / "model.pt", weights_only=True))
    model.eval()
    if args.observed < model.context_frames:
        parser.error(f"--observed must be at least the model's {model.context_frames} context frames")
    test = collect(args.test_episodes, seed=args.seed + 1_000_000)
    report = {"context_frames": model.context_frames, **assess(model, test, args.observed, args.seed)}
    command = "python -m benchmarks.video_physics " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    report["command"] = command
    (args.run / "physics.json").write_text(json.dumps(report, indent=1))
    write_report(markdown(report, command), args.run / "physics.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
