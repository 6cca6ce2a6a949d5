"""Train on a Gymnasium environment of your own, passed as an object and by its entry point.

    python examples/custom_environment.py [BUDGET] [--episode-steps T] [--episodes N] [--run-dir DIR]

BUDGET is the number of environment steps of each of the two runs (default 2000). The task,
``Target1D``, is defined below: move a point on a line to 0.5. A task this small gets a smaller
model and planner than the built-in defaults (``SMALL``, given as configuration overrides).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a clone without installing: the repository's packages

from agent import MBRLAgent, resolve_config  # noqa: E402

GOAL = 0.5
SMALL = {  # configuration overrides: "section.field" -> value, as train_agent.py's --<section>-<field> flags
    "model.hidden_dim": 64,
    "model.num_layers": 2,
    "planner.horizon": 10,
    "planner.num_candidates": 64,
    "planner.iterations": 3,
    "planner.num_elites": 8,
    "train.learning_starts": 200,
    "train.initial_gradient_steps": 200,
    "train.eval_freq": 0,  # no evaluations during training: one at the end
}


class Target1D(gym.Env):
    """A point on a line, pushed by an action in [-1, 1]; reward -|x - 0.5|; 40-step episodes.

    Observation ``(1,)`` float32 in ``[-2, 2]``, action ``(1,)`` float32 in ``[-1, 1]``.
    """

    def __init__(self, episode_steps: int = 40) -> None:
        if episode_steps < 1:
            raise ValueError(f"episode_steps must be >= 1, got {episode_steps}")
        self.episode_steps = episode_steps
        self.observation_space = gym.spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.x = np.zeros(1, dtype=np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1.0, 1.0, size=1).astype(np.float32)
        self.t = 0
        return self.x.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        push = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        self.x = np.clip(self.x + 0.1 * push, -2.0, 2.0).astype(np.float32)
        self.t += 1
        return self.x.copy(), -float(abs(self.x[0] - GOAL)), False, self.t >= self.episode_steps, {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("budget", type=int, nargs="?", default=2000, help="environment steps of each run")
    parser.add_argument("--episode-steps", type=int, default=40, help="length of the task's episodes (default: 40)")
    parser.add_argument("--episodes", type=int, default=5, help="evaluation episodes of each run (default: 5)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/example-custom"), help="parent of both runs")
    args = parser.parse_args(argv)
    overrides = {**SMALL, "env_kwargs": {"episode_steps": args.episode_steps}}

    # 1. As an object. Without a registered id the agent cannot make more of it by name, so it also
    #    gets a second instance for its evaluations.
    config = resolve_config("Target1D", overrides)  # no preset of that name: agent/presets/default.yaml
    env, eval_env = Target1D(args.episode_steps), Target1D(args.episode_steps)
    agent = MBRLAgent(env, config, seed=0, eval_env=eval_env, run_dir=args.run_dir / "object")
    agent.learn(args.budget, progress_bar=False)
    print(f"as an object: mean return {agent.evaluate(args.episodes).returns.mean():.2f} (0 is the best possible)")

    # 2. By entry point, as `train_agent.py --env custom_environment:Target1D` takes it (the module must be
    #    importable: here examples/ is on sys.path because this script runs from it).
    entry_point = f"{Path(__file__).stem}:Target1D"
    agent = MBRLAgent(entry_point, resolve_config(entry_point, overrides), seed=0, run_dir=args.run_dir / "entry")
    agent.learn(args.budget, progress_bar=False)
    print(f"by entry point {entry_point}: mean return {agent.evaluate(args.episodes).returns.mean():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
