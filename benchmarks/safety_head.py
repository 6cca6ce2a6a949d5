"""The safety head of a trained run judged on transitions it never trained on: recall, precision, calibration.

    python -m benchmarks.safety_head --checkpoint RUN/checkpoints/latest.pt \
        --transitions OTHER_RUN/checkpoints/latest.pt [MORE ...] --out DIR

The agent of ``--checkpoint`` predicts, for every stored transition ``(obs, action, cost)`` of each
``--transitions`` checkpoint's replay buffer (another run on the same task: held out), the probability that
the step is costly, as the run's own evaluations do (``MBRLAgent.predict_safety`` on the one-step plan, the
mean over its particles). Those are judged against the costs the environment reported
(:func:`world_models.safety.safety_metrics`) at the planner's per-step threshold (``budget(1)``, with the
checkpoint's multiplier), at the nominal one (the multiplier at 0) and at 0.5. ``results.json`` holds every
figure; ``results.md`` the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agent.agent import MBRLAgent
from agent.checkpoint import load_checkpoint
from benchmarks.markdown import write_text_atomic
from planners.constraint import CostMultiplier
from world_models.safety import safety_metrics

__all__ = ["judge", "main", "stored_transitions", "thresholds_of"]


def stored_transitions(payload: dict[str, Any], source: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(obs (n, *obs_shape), actions (n, A), costs (n,))`` of a checkpoint's replay buffer (in stored order)."""
    buffer = payload.get("buffer")
    if not isinstance(buffer, dict) or "costs" not in buffer:
        raise ValueError(f"{source}: the checkpoint holds no replay buffer with costs; pass a run's checkpoint")
    n = int(buffer["size"])
    arrays = [np.asarray(buffer[key][:n]) for key in ("obs", "actions", "costs")]
    return arrays[0], arrays[1].astype(np.float32), arrays[2].astype(np.float64)


def judge(agent: MBRLAgent, obs: np.ndarray, actions: np.ndarray, costs: np.ndarray,
          thresholds: dict[str, float]) -> dict[str, Any]:
    """The agent's predicted probability of cost on each transition, judged at each named threshold."""
    probability = agent.step_cost_probability(obs, actions)
    out: dict[str, Any] = {"transitions": int(len(costs)), "costly": int((costs > 0).sum())}
    for name, threshold in thresholds.items():
        metrics = safety_metrics(probability, costs, threshold=threshold)
        out[name] = {"threshold": threshold, "recall": metrics.recall, "precision": metrics.precision,
                     "brier": metrics.brier, "calibration_error": metrics.calibration_error}
    return out


def thresholds_of(agent: MBRLAgent) -> dict[str, float]:
    """The planner's per-step threshold with the agent's learned multiplier, the nominal one (the multiplier at
    0) and 0.5; only 0.5 for an agent without a cost limit."""
    multiplier = agent.cost_multiplier
    if multiplier is None:
        return {"half": 0.5}
    return {"planner": agent.step_threshold(), "nominal": CostMultiplier(multiplier.cost_limit).budget(1),
            "half": 0.5}


def _markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [f"`{command}`", "", "| transitions from | transitions | costly | threshold | recall | precision | "
             "Brier | calibration error |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        for name in ("planner", "nominal", "half"):
            if name not in row:
                continue
            m = row[name]
            lines.append(f"| {row['source']} | {row['transitions']} | {row['costly']} | {name} {m['threshold']:.4f} | "
                         f"{m['recall']:.3f} | {m['precision']:.3f} | {m['brier']:.4f} | "
                         f"{m['calibration_error']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="the run whose safety head is judged")
    parser.add_argument("--transitions", type=Path, nargs="+", required=True,
                        help="checkpoints of other runs on the same task, whose stored transitions are the test set")
    parser.add_argument("--env", default=None,
                        help="the task, where the checkpoint names one as module:Class (not imported unless named)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.safety_head " + " ".join(sys.argv[1:] if argv is None else argv)
    payload = load_checkpoint(args.checkpoint)
    agent = MBRLAgent.from_checkpoint(payload, args.checkpoint, args.env, run_dir=Path(tempfile.mkdtemp()))
    thresholds = thresholds_of(agent)
    del payload["buffer"]  # only the other runs' transitions are judged
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    for source in args.transitions:
        other = load_checkpoint(source)
        if other["config"]["env_id"] != agent.config.env_id:
            raise ValueError(f"{source} is a run on {other['config']['env_id']}, not {agent.config.env_id}")
        row = {"source": str(source), **judge(agent, *stored_transitions(other, source), thresholds)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        result = {"checkpoint": str(args.checkpoint), "command": command, "rows": rows}
        write_text_atomic(args.out / "results.json", json.dumps(result, indent=1) + "\n")
        write_text_atomic(args.out / "results.md", _markdown(rows, command))


if __name__ == "__main__":
    main()
