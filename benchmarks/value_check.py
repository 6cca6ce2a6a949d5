"""Does a run's learned terminal value match the returns it was learned from?

    python -m benchmarks.value_check RUN_DIR [--blocks 10]

Loads ``RUN_DIR/checkpoints/latest.pt`` (robotics model with ``model.value_function``) and, over
its replay buffer in slot order cut into ``--blocks`` blocks of consecutive stored steps, prints
the mean reward, the discounted return-to-go (the planner's discount, summed to each episode's
end: exact where episodes terminate, low near a time-limit cut, which is not bootstrapped), and
the value the planner adds after its horizon:

- ``value_kind: state``: ``V(s)``;
- ``value_kind: policy``: the smaller critic's ``Q(s, a)`` for the stored action and ``Q(s, pi(s))``
  (the terminal value itself).

A value that does not rise and fall with the return-to-go tells the planner nothing; one well
above it is an overestimate that the planner will chase. The buffer must be in slot order, as it
is until it wraps (a wrapped buffer's oldest block is mixed with its newest).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.world_model_report import ReportError, load_agent, print_or_refuse
from world_models.robotics import RoboticsWorldModel


def returns_to_go(rewards: np.ndarray, ends: np.ndarray, discount: float) -> np.ndarray:
    """``(N,)`` discounted sum of rewards from each step to its episode's end (``ends[i]``: step ``i`` ended one)."""
    out = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for i in range(len(rewards) - 1, -1, -1):
        running = float(rewards[i]) + (0.0 if ends[i] else discount * running)
        out[i] = running
    return out


def value_table(run_dir: Path, blocks: int) -> str:
    agent = load_agent(run_dir)
    model = agent.adapter.model
    if not isinstance(model, RoboticsWorldModel) or (model.value_net is None and model.actor is None):
        raise ReportError(f"{run_dir} has no learned terminal value (robotics model with model.value_function)")
    data = agent.buffer.stored()
    if len(data.rewards) < blocks:
        raise ReportError(f"the buffer holds {len(data.rewards)} steps, fewer than --blocks {blocks}")
    obs = torch.as_tensor(np.array(data.obs), dtype=torch.float32)
    ends = np.asarray(data.terminated) | np.asarray(data.truncated)
    to_go = returns_to_go(np.asarray(data.rewards), ends, model.discount)
    columns = {"mean reward": np.asarray(data.rewards, dtype=np.float64), "return-to-go": to_go}
    with torch.no_grad():
        if model.actor is not None:
            actions = torch.as_tensor(np.array(data.actions), dtype=torch.float32)
            columns["Q(s, stored a)"] = model.q_values(obs, actions).amin(dim=0).double().numpy()
            columns["Q(s, pi(s))"] = model.q_values(obs, model.policy(obs)).amin(dim=0).double().numpy()
        else:
            columns["V(s)"] = model.value(obs).double().numpy()
    edges = np.linspace(0, len(to_go), blocks + 1).astype(int)
    lines = [f"Value check of {run_dir} (discount {model.discount}, {len(to_go)} stored steps)", "",
             "| stored steps | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        cells = " | ".join(f"{values[lo:hi].mean():.2f}" for values in columns.values())
        lines.append(f"| {lo}-{hi} | {cells} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory (holds checkpoints/latest.pt)")
    parser.add_argument("--blocks", type=int, default=10, help="blocks of consecutive stored steps (default: 10)")
    args = parser.parse_args(argv)
    if args.blocks < 1:
        parser.error(f"--blocks must be at least 1, got {args.blocks}")
    return print_or_refuse(lambda: value_table(args.run_dir, args.blocks))


if __name__ == "__main__":
    sys.exit(main())
