"""Catch balls by planning with a VideoWorldModel trained offline by ``benchmarks.video_world_model``.

    python -m benchmarks.video_planning --run DIR --episodes 10

The agent (``--preset ballcatch-video`` with the run's model settings) loads ``DIR/model.pt`` and plays
``--episodes`` deterministic BallCatch episodes side by side (one batched plan per step), CEM over
``--candidates`` sequences of ``--horizon`` steps imagined by the model, scored by its reward head. Reports the
catch rate, milliseconds per action (wall-clock of the evaluation over its steps, one thread), and the catch
rate of uniformly random actions on the same reset seeds. Writes ``planning.json`` and ``planning.md`` into ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from agent import MBRLAgent, resolve_config
from benchmarks.markdown import write_report
from envs import BALL_CATCH_ID
from envs.ball_catch import BallCatchEnv

__all__ = ["main", "random_catch_rate"]


def random_catch_rate(episodes: int, seed: int) -> float:
    """Share of episodes (reset seeds ``seed ..``) caught by uniformly random basket moves."""
    env, rng, caught = BallCatchEnv(obs_mode="state"), np.random.default_rng(seed), 0
    for j in range(episodes):
        env.reset(seed=seed + j)
        done, reward = False, 0.0
        while not done:
            _, r, terminated, truncated, _ = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
            reward, done = reward + float(r), terminated or truncated
        caught += reward > 0
    return caught / episodes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the --out of benchmarks.video_world_model")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2_000_000, help="reset seed of the first episode")
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--sampling-steps", type=int, default=1, help="Euler steps per imagined frame")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    trained = json.loads((args.run / "results.json").read_text())["config"]
    overrides: dict[str, Any] = {f"video.{key}": value for key, value in trained.items()}
    overrides.update({"video.sampling_steps": args.sampling_steps, "planner.horizon": args.horizon,
                      "sampling.num_candidates": args.candidates, "sampling.iterations": args.iterations,
                      "sampling.num_elites": max(2, args.candidates // 4), "device": "cpu"})
    agent = MBRLAgent(BALL_CATCH_ID, resolve_config(BALL_CATCH_ID, overrides, preset="ballcatch-video"))
    agent.model.load_state_dict(torch.load(args.run / "model.pt", weights_only=True))
    started = time.perf_counter()
    result = agent.evaluate(args.episodes, seed=args.seed)
    seconds = time.perf_counter() - started
    report = {
        "command": "python -m benchmarks.video_planning " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "episodes": args.episodes, "catch_rate": float(np.mean(result.returns > 0)),
        "random_actions_catch_rate": random_catch_rate(args.episodes, args.seed),
        "ms_per_action": 1000.0 * seconds / float(result.lengths.sum()), "steps": int(result.lengths.sum()),
        "ms_per_batched_plan": 1000.0 * seconds / float(result.lengths.max()),
        "planner": {"name": "cem", "horizon": args.horizon, "candidates": args.candidates,
                    "iterations": args.iterations, "sampling_steps": args.sampling_steps,
                    "episodes_side_by_side": args.episodes},
    }
    (args.run / "planning.json").write_text(json.dumps(report, indent=1))
    write_report([
        "# Planning with the video world model (BallCatch)", "", f"Command: `{report['command']}`", "",
        f"{args.episodes} episodes: catch rate {report['catch_rate']:.0%} (uniformly random actions on the same "
        f"seeds: {report['random_actions_catch_rate']:.0%}). CEM, {args.candidates} candidates x {args.iterations} "
        f"iterations, horizon {args.horizon}, {args.sampling_steps} Euler step(s) per imagined frame; the episodes "
        f"are planned side by side, one batched plan per step: {report['ms_per_batched_plan']:.0f} ms per batched "
        f"plan, {report['ms_per_action']:.0f} ms per action (wall-clock over all episodes' steps), one thread.",
    ], args.run / "planning.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
