"""Train an agent, evaluate it, save and reload it, and act with it in a plain Gymnasium env.

    python examples/train_and_evaluate.py [BUDGET] [--env ENV] [--episodes N] [--run-dir DIR]

BUDGET is the number of environment steps to train for (default 3000, InvertedPendulum-v5's preset).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a clone without installing: the repository's packages

from agent import MBRLAgent, resolve_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("budget", type=int, nargs="?", default=3000, help="environment steps to train for")
    parser.add_argument("--env", default="InvertedPendulum-v5", help="Gymnasium id (default: InvertedPendulum-v5)")
    parser.add_argument("--episodes", type=int, default=10, help="deterministic evaluation episodes (default: 10)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/example-train"), help="outputs and checkpoints")
    args = parser.parse_args(argv)

    agent = MBRLAgent(args.env, resolve_config(args.env), seed=0, run_dir=args.run_dir)
    agent.learn(args.budget, progress_bar=False)  # the same run directory continues where it stopped
    result = agent.evaluate(args.episodes)
    print(f"{args.env} after {agent.num_timesteps} steps: mean return {result.returns.mean():.1f} "
          f"over {args.episodes} episode(s), mean length {result.lengths.mean():.1f}")

    path = args.run_dir / "agent.pt"
    agent.save(path)
    agent = MBRLAgent.load(path)

    env = gym.make(args.env)  # a plain environment: predict answers in its own action units
    obs, _ = env.reset(seed=123)
    episode_return, done = 0.0, False
    while not done:
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(action)
        episode_return += float(reward)
        done = terminated or truncated
    print(f"one episode with the reloaded agent: return {episode_return:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
