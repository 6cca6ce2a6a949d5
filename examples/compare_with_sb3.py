"""Rehearse against Stable-Baselines3's SAC on the same task, budget and evaluation episodes.

    python examples/compare_with_sb3.py [BUDGET] [--env ENV] [--episodes N] [--run-dir DIR]

BUDGET is the number of environment steps each algorithm trains for (default 5000). Both are then
evaluated with Stable-Baselines3's ``evaluate_policy`` on the same seeded environment. SAC runs with
SB3's default hyperparameters here; ``python -m benchmarks.compare`` is the full protocol (several
seeds, periodic evaluations, rl-baselines3-zoo's hyperparameters, a report).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a clone without installing: the repository's packages

from stable_baselines3 import SAC  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402

from agent import MBRLAgent, resolve_config  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The budget, task, evaluation episodes and Rehearse's run directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("budget", type=int, nargs="?", default=5000, help="environment steps of each algorithm")
    parser.add_argument("--env", default="Pendulum-v1", help="Gymnasium id (default: Pendulum-v1)")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default: 10)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/example-compare"), help="Rehearse's run directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    rehearse = MBRLAgent(args.env, resolve_config(args.env, {"train.eval_freq": 0}), seed=0, run_dir=args.run_dir)
    rehearse.learn(args.budget, progress_bar=False)
    rehearse_seconds = time.perf_counter() - start

    start = time.perf_counter()
    sac = SAC("MlpPolicy", args.env, seed=0, learning_starts=min(100, args.budget), verbose=0)
    sac.learn(args.budget)
    sac_seconds = time.perf_counter() - start

    print(f"{args.env}, {args.budget} steps each, {args.episodes} evaluation episode(s):")
    for name, model, seconds in (("Rehearse", rehearse, rehearse_seconds), ("SAC", sac, sac_seconds)):
        eval_env = make_vec_env(args.env, n_envs=1, seed=1000)  # the same episodes for both
        mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.episodes, deterministic=True)
        print(f"  {name:8s} return {mean:9.1f} +/- {std:6.1f}   training {seconds:7.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
