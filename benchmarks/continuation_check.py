"""Does a run's world model see where its episodes end?

    python -m benchmarks.continuation_check RUN_DIR [--before 1 2 5 10]

Loads ``RUN_DIR/checkpoints/latest.pt`` (robotics model) and computes, for every transition in
its replay buffer, the continuation the model predicts for it (the probability that the episode
goes on, ensemble mean, from the stored state and action, as imagination computes it: with
``model.continuation_from: next_state`` from the predicted next state). It prints the mean and
the share below 0.5 for the transitions that ended an episode (terminated, not truncated), for
those ``k`` steps before such an end, and for all the others.

A planner can only avoid an end it sees coming: a continuation near 0.5 at the terminal
transitions halves what a fall costs in its imagined returns. The buffer must be in slot order,
as it is until it wraps.
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


def steps_to_termination(terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
    """``(N,)`` steps from each stored transition to the termination that ends its episode: 0 at the
    terminal transition itself; ``-1`` where the episode was truncated or has not ended."""
    out = np.full(len(terminated), -1, dtype=np.int64)
    following = -1  # the value of the next transition, within the same episode
    for i in range(len(terminated) - 1, -1, -1):
        if terminated[i]:
            following = 0
        elif truncated[i] or following < 0:
            following = -1
        else:
            following += 1
        out[i] = following
    return out


def predicted_continuation(model: RoboticsWorldModel, obs: torch.Tensor, actions: torch.Tensor,
                           chunk: int = 8192) -> np.ndarray:
    """Ensemble-mean continuation ``(N,)`` of stored transitions ``obs (N, Z)``, ``actions (N, A)``."""
    e, parts = model.ensemble_size, []
    with torch.no_grad():
        for lo in range(0, len(obs), chunk):
            z, a = obs[lo : lo + chunk], actions[lo : lo + chunk]
            pred = model.predict(z.expand(e, *z.shape), a.expand(e, *a.shape), with_variance=False)
            parts.append(model.continuation(pred).mean(dim=0))
    return torch.cat(parts).double().numpy()


def continuation_table(run_dir: Path, before: Sequence[int]) -> str:
    agent = load_agent(run_dir)
    model = agent.adapter.model
    if not isinstance(model, RoboticsWorldModel):
        raise ReportError(f"{run_dir} does not hold a robotics model (state observations)")
    data = agent.buffer.stored()
    terminated = np.asarray(data.terminated, dtype=bool)
    if not terminated.any():
        raise ReportError(f"no stored transition of {run_dir} ended an episode by termination")
    obs = torch.as_tensor(np.array(data.obs), dtype=torch.float32)
    actions = torch.as_tensor(np.array(data.actions), dtype=torch.float32)
    continuation = predicted_continuation(model, obs, actions)
    to_end = steps_to_termination(terminated, np.asarray(data.truncated, dtype=bool))
    rows = [("terminal transitions", to_end == 0)]
    rows += [(f"{k} step{'s' if k > 1 else ''} before one", to_end == k) for k in before]
    rows.append((f"all others (more than {max(before, default=0)} steps before one, or none)",
                 (to_end > max(before, default=0)) | (to_end < 0)))
    source = "the next state" if model.continuation_net is not None else "the transition"
    lines = [f"Continuation check of {run_dir} ({len(continuation)} stored transitions, "
             f"continuation read from {source})", "",
             "| stored transitions | count | mean continuation | share below 0.5 |", "|---|---|---|---|"]
    for name, mask in rows:
        values = continuation[mask]
        cells = f"{values.mean():.3f} | {(values < 0.5).mean():.3f}" if len(values) else "- | -"
        lines.append(f"| {name} | {int(mask.sum())} | {cells} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory (holds checkpoints/latest.pt)")
    parser.add_argument("--before", type=int, nargs="*", default=[1, 2, 5, 10],
                        help="also show the transitions this many steps before a termination (default: 1 2 5 10)")
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.before):
        parser.error(f"--before takes step counts of at least 1, got {args.before}")
    return print_or_refuse(lambda: continuation_table(args.run_dir, sorted(set(args.before))))


if __name__ == "__main__":
    sys.exit(main())
